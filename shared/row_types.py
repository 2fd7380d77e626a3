"""Typed rows: one msgspec Struct per source table, built from the spec.

msgspec parses a DMS ``data`` object straight into the table's Struct and checks every value's
type in C (lax mode: DMS sends large numerics as strings, booleans as ``"true"``), which is
what lets the core run faster than merely ``json.loads`` on the record. What msgspec cannot
check is done after, only where it can matter: Redshift VARCHAR lengths count UTF-8 bytes,
DECIMAL precision, finite floats, NUL characters, one time zone rule per timestamp type.
Error texts name the column and the expected type, never the value.

Every rendering DMS produces for a type is accepted and normalized to one value (sources:
AWS DMS User Guide, "Using Amazon Kinesis Data Streams as a target" -- BigInt values of more
than 16 digits are sent in scientific notation -- and published captures such as
``"created_at": "2020-01-09T04:13:38Z"``; see ../shared/reference/dms-kinesis-records.md):

- ``timestamp`` and ``timestamptz`` are both DMS ``DATETIME``, so either may arrive with ``T``
  or a space, ``Z``, ``+00``, ``+00:00`` or no zone, and 0 to 9 fractional digits (rounded to
  the microseconds Redshift keeps). ``timestamp`` keeps the wall-clock value as the source
  wrote it (the zone dropped: for a MySQL ``DATETIME`` the ``Z`` does not mean UTC);
  ``timestamptz`` is UTC (a value without a zone is read as UTC).
- ``date`` accepts a date, or a date-time at midnight.
- integers accept JSON numbers, numeric strings and exponent notation when the value is exact;
  an integer of 16 or more digits whose exponent form dropped digits is rejected as having
  lost precision on the way. Decimals accept numbers, strings and exponent notation.
- MySQL zero dates and PostgreSQL ``infinity`` are rejected with a reason, never stored as a
  wrong date.

The common renderings are parsed in C (the fast path); anything msgspec refuses is parsed
again by ``_lenient_row`` (standard ``json`` with exact decimals) before a reason is given, and
so are rows whose column names are not in the spec's case (Oracle and Db2 send upper case).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from shared.spec import ColumnType, Table

_INT_BOUNDS = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
_ERROR_PATH = re.compile(r"^(.*?)(?: - at `\$\.([^`]+)`)?$")


class BadRow(ValueError):
    """A row does not fit its table's types. The message holds no part of any value."""


def python_type(column_type: ColumnType) -> Any:
    """The annotated Python type msgspec validates a column's values against."""
    kind = column_type.kind
    if kind in _INT_BOUNDS:
        bound = _INT_BOUNDS[kind]
        return Annotated[int, Meta(ge=-bound, le=bound - 1)]
    if kind in ("varchar", "char"):
        return Annotated[str, Meta(max_length=column_type.length)]  # chars; bytes checked after
    if kind == "decimal":
        return Decimal
    if kind in ("real", "double"):
        return float
    if kind == "boolean":
        return bool
    if kind == "date":
        return date
    if kind in ("timestamp", "timestamptz"):
        return datetime  # either zone form: ``_wall_clock`` / ``_to_utc`` normalize it
    raise ValueError(f"no Python type for {kind}")


# DECIMAL(38, s) values have up to 38 digits: the default context's 28 would refuse them.
_DECIMAL_CONTEXT = Context(prec=80, rounding=ROUND_HALF_UP)


def _decimal_fixer(name: str, precision: int, scale: int) -> Callable[[Any], Any]:
    quantum = Decimal(1).scaleb(-scale)
    max_integer_digits = precision - scale

    def fix(value: Decimal) -> Decimal:
        if not value.is_finite():
            raise BadRow(f"column {name!r}: expected decimal({precision},{scale}), got non-finite")
        try:
            rounded = value.quantize(quantum, context=_DECIMAL_CONTEXT)
        except InvalidOperation:  # more digits than any Redshift DECIMAL holds
            raise BadRow(
                f"column {name!r}: value does not fit decimal({precision},{scale})") from None
        if rounded and rounded.adjusted() + 1 > max_integer_digits:
            raise BadRow(f"column {name!r}: value does not fit decimal({precision},{scale})")
        return rounded

    return fix


def _float_fixer(name: str) -> Callable[[Any], Any]:
    def fix(value: float) -> float:
        if not math.isfinite(value):
            raise BadRow(f"column {name!r}: expected a finite number")
        return value

    return fix


def _wall_clock(value: datetime) -> datetime:
    return value.replace(tzinfo=None) if value.tzinfo is not None else value


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


_DATETIME_TEXT = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?)?"
    r"\s*(Z|[+-]\d\d(?::?\d\d)?)?$"
)
_INFINITIES = frozenset(("infinity", "-infinity", "+infinity"))
# DMS sends BigInt values of more than 16 digits in scientific notation (Kinesis target page).
_EXPONENT_DIGITS = 16


def parse_datetime_text(name: str, text: str, expected: str = "a date-time",
                        ) -> tuple[datetime, timedelta | None]:
    """A DMS date-time rendering as (the clock reading as written, its UTC offset or None)."""
    cleaned = text.strip()
    if cleaned.lower() in _INFINITIES:
        raise BadRow(f"column {name!r}: an infinite date-time (PostgreSQL 'infinity') "
                     "has no Redshift value")
    match = _DATETIME_TEXT.match(cleaned)
    if match is None:
        raise BadRow(f"column {name!r}: expected {expected} (ISO 8601)")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if year == "0000" or month == "00" or day == "00":
        raise BadRow(f"column {name!r}: a zero date (MySQL '0000-00-00') is not a date")
    micros = round(int(fraction.ljust(9, "0")) / 1000) if fraction else 0
    try:
        value = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                         int(second or 0)) + timedelta(microseconds=micros)
    except (ValueError, OverflowError):
        raise BadRow(f"column {name!r}: not a valid calendar date-time") from None
    if zone is None:
        return value, None
    if zone == "Z":
        return value, timedelta(0)
    digits = zone[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return value, (offset if zone[0] == "+" else -offset)


def _integer_of(name: str, value: Any) -> Any:
    """An integer column's value from any DMS rendering; other types are left to msgspec."""
    if isinstance(value, bool) or not isinstance(value, (str, Decimal)):
        return value
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else value
    except InvalidOperation:
        return value  # msgspec names the expected type
    if not number.is_finite() or number != number.to_integral_value():
        raise BadRow(f"column {name!r}: expected an integer, got a fraction")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0 and abs(number) >= 10**_EXPONENT_DIGITS:
        raise BadRow(
            f"column {name!r}: an integer of more than {_EXPONENT_DIGITS} digits arrived in "
            "exponent notation and lost precision on the way (map the column to a string "
            "in the DMS task, or use a NUMERIC source type)"
        )
    return int(number)


def _timestamp_of(name: str, value: Any) -> Any:
    """``timestamp``: the clock reading as the source wrote it, any zone dropped."""
    return parse_datetime_text(name, value)[0] if isinstance(value, str) else value


def _timestamptz_of(name: str, value: Any) -> Any:
    """``timestamptz``: UTC; a reading without a zone is UTC already."""
    if not isinstance(value, str):
        return value
    reading, offset = parse_datetime_text(name, value)
    return (reading - (offset or timedelta(0))).replace(tzinfo=UTC)


def _date_of(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parsed, _offset = parse_datetime_text(name, value, "a date")
    if parsed.time() != datetime.min.time():
        raise BadRow(f"column {name!r}: expected a date, got a date-time that is not midnight")
    return parsed.date()


def _float_of(_name: str, value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


_NORMALIZERS: dict[str, Callable[[str, Any], Any]] = {
    "smallint": _integer_of, "integer": _integer_of, "bigint": _integer_of,
    "timestamp": _timestamp_of, "timestamptz": _timestamptz_of,
    "date": _date_of, "real": _float_of, "double": _float_of,
}


@dataclass(frozen=True)
class RowType:
    """The Struct of one table plus the checks msgspec cannot make."""

    table: Table
    struct: type[msgspec.Struct]
    key_struct: type[msgspec.Struct]  # before images and deletes: key columns only, optional
    decoder: msgspec.json.Decoder[Any]
    key_decoder: msgspec.json.Decoder[Any]
    fixers: tuple[tuple[str, Callable[[Any], Any]], ...]  # decimals, floats, time zones
    strings: tuple[tuple[str, int], ...]  # (column, byte limit) of char/varchar columns
    normalizers: tuple[tuple[str, Callable[[str, Any], Any]], ...]  # the lenient path's
    # char(n) columns: Redshift's CHAR holds single-byte characters only, so a non-ASCII value
    # is a reject (a dead letter with a reason), never a batch that fails on every retry.
    chars: tuple[str, ...] = ()

    def decode(self, data: bytes, names_as_spec: bool = True) -> Any:
        """Parse and validate a ``data`` object; raises ``BadRow``.

        ``names_as_spec=False`` when the source's identifiers are not in the spec's case:
        the column names are then matched case-insensitively.
        """
        if names_as_spec:
            try:
                row = self.decoder.decode(data)
            except msgspec.ValidationError:
                row = self._lenient_row(data, self.struct, self.normalizers, names_as_spec)
            except msgspec.DecodeError:
                raise BadRow("'data' is not a JSON object") from None
        else:
            row = self._lenient_row(data, self.struct, self.normalizers, names_as_spec)
        for name, fix in self.fixers:
            value = getattr(row, name)
            if value is not None:
                setattr(row, name, fix(value))
        if self.strings:
            blob = bytes(data)
            # msgspec checked every string's length in characters; in pure ASCII JSON without
            # \u escapes a character is a byte, so only other JSON needs the byte check.
            if not blob.isascii() or b"\\u" in blob:
                self._check_chars(row, self.chars)
                has_nul = b"\\u0000" in blob
                if has_nul or len(blob) > self.strings[0][1]:
                    self._check_strings(row, len(blob), has_nul)
        return row

    def decode_key(self, data: bytes, names_as_spec: bool = True) -> Any:
        """A tombstone row from a delete's or a before image's key columns; raises ``BadRow``."""
        key_names = set(self.table.key)
        normalizers = tuple(item for item in self.normalizers if item[0] in key_names)
        if names_as_spec:
            try:
                key_only = self.key_decoder.decode(data)
            except msgspec.ValidationError:
                key_only = self._lenient_row(data, self.key_struct, normalizers, names_as_spec)
            except msgspec.DecodeError:
                raise BadRow("the key is not a JSON object") from None
        else:
            key_only = self._lenient_row(data, self.key_struct, normalizers, names_as_spec)
        self._check_chars(key_only, [c for c in self.chars if c in key_names])
        row = self.struct(**msgspec.structs.asdict(key_only))
        for name, fix in self.fixers:
            value = getattr(row, name)
            if name in key_names and value is not None:
                setattr(row, name, fix(value))
        return row

    @staticmethod
    def _lenient_row(data: bytes, struct: type[msgspec.Struct],
                     normalizers: tuple[tuple[str, Callable[[str, Any], Any]], ...],
                     names_as_spec: bool) -> Any:
        """The slow path: every DMS rendering normalized, then msgspec's checks and reasons."""
        try:
            raw = json.loads(bytes(data), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            raise BadRow("'data' is not a JSON object") from None
        if not isinstance(raw, dict):
            raise BadRow("'data' is not a JSON object")
        if not names_as_spec:
            folded = {str(name).lower(): value for name, value in raw.items()}
            if len(folded) != len(raw):
                raise BadRow("two columns differ only in the case of their names")
            raw = folded
        for name, normalize in normalizers:
            value = raw.get(name)
            if value is not None:
                raw[name] = normalize(name, value)
        try:
            return msgspec.convert(raw, struct, strict=False)
        except msgspec.ValidationError as exc:
            raise BadRow(_reason(str(exc))) from None

    @staticmethod
    def _check_chars(row: Any, columns: Iterable[str]) -> None:
        for name in columns:
            value = getattr(row, name)
            if value is not None and not value.isascii():
                raise BadRow(f"column {name!r}: char(n) holds single-byte (ASCII) characters "
                             "only; declare the column varchar(n) in the spec")

    def _check_strings(self, row: Any, data_size: int, has_nul: bool) -> None:
        """A value's UTF-8 size is at most the size of the JSON it came from, so only columns
        whose limit is below ``data_size`` can be too long (``strings`` is sorted by limit)."""
        for name, limit in self.strings:
            if limit >= data_size and not has_nul:
                return
            value = getattr(row, name)
            if value is None:
                continue
            if has_nul and "\x00" in value:
                raise BadRow(f"column {name!r}: value holds a NUL character")
            if len(value) * 4 > limit and len(value.encode("utf-8")) > limit:
                size = len(value.encode("utf-8"))
                raise BadRow(f"column {name!r}: value too long ({size} bytes, limit {limit})")


def _reason(message: str) -> str:
    """``Expected `int`, got `str` - at `$.x``` -> ``column 'x': expected `int`, got `str```."""
    match = _ERROR_PATH.match(message)
    assert match is not None
    text, path = match.groups()
    text = (text[:1].lower() + text[1:]).replace(" | null`", "`")
    return f"column {path!r}: {text}" if path else text


# The CDC metadata every staged row carries after the table's own columns (see
# ``shared.staging.staging_columns``): set by the decoder, never read from the source.
ORDER_KEY_FIELD, DELETED_FIELD = "cdc_order_key", "cdc_deleted"
_METADATA_NAMES = {ORDER_KEY_FIELD: "_cdc_order_key", DELETED_FIELD: "_cdc_deleted"}


def row_type(table: Table) -> RowType:
    fields: list[tuple[str, Any, Any]] = [
        (c.name, python_type(c.type) | None, None) for c in table.columns
    ]
    fields += [(ORDER_KEY_FIELD, str, ""), (DELETED_FIELD, bool, False)]
    # gc=False: rows hold scalars only, so the cyclic collector need not track them.
    struct = msgspec.defstruct(f"{table.name}_row", fields, kw_only=True, rename=_METADATA_NAMES,
                               gc=False)
    key_fields = [(k, python_type(table.column(k).type) | None, None) for k in table.key]
    key_struct = msgspec.defstruct(f"{table.name}_key", key_fields, kw_only=True, gc=False)
    fixers: list[tuple[str, Callable[[Any], Any]]] = []
    for col in table.columns:
        if col.type.kind == "timestamp":
            fixers.append((col.name, _wall_clock))
        elif col.type.kind == "timestamptz":
            fixers.append((col.name, _to_utc))
        elif col.type.kind == "decimal":
            assert col.type.precision is not None and col.type.scale is not None
            fixers.append((col.name, _decimal_fixer(col.name, col.type.precision, col.type.scale)))
        elif col.type.kind in ("real", "double"):
            fixers.append((col.name, _float_fixer(col.name)))
    strings = sorted(
        ((c.name, c.type.length or 0) for c in table.columns if c.type.kind in ("varchar", "char")),
        key=lambda item: item[1],
    )
    normalizers = tuple(
        (c.name, _NORMALIZERS[c.type.kind]) for c in table.columns if c.type.kind in _NORMALIZERS
    )
    return RowType(
        table=table,
        struct=struct,
        key_struct=key_struct,
        decoder=msgspec.json.Decoder(struct, strict=False),
        key_decoder=msgspec.json.Decoder(key_struct, strict=False),
        fixers=tuple(fixers),
        strings=tuple(strings),
        normalizers=normalizers,
        chars=tuple(c.name for c in table.columns if c.type.kind == "char"),
    )
