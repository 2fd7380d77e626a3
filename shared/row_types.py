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

The types DMS sends as text (AWS DMS User Guide, "Using a PostgreSQL database as an AWS DMS
source", "Source data types for PostgreSQL": TIME is DMS ``TIME``, UUID and ENUM ``STRING``,
TEXT, JSON, JSONB and ARRAY ``NCLOB``, BYTEA ``BLOB``):

- ``time``: ``HH:MM:SS`` with 0 to 9 fractional digits, kept as ``"HH:MM:SS[.ffffff]"``
  (rounded to the microseconds Redshift's TIME keeps; ``24:00:00`` is the end of the day).
- ``uuid``: the canonical 8-4-4-4-12 form in lower case (upper case, braces and the form
  without hyphens are accepted); anything else is rejected without quoting it.
- ``super``: DMS sends json/jsonb as their JSON text (a capture in crate/commons-codec shows
  ``"attributes": "{\"foo\": \"bar\"}"``), parsed here into the JSON value; an array
  arrives in PostgreSQL's array text (``{1,2,3}``, ``{"a b",NULL}``: PostgreSQL manual,
  "Arrays", "Array Value Input"), parsed into a JSON list (unquoted elements that are numbers
  become numbers, ``NULL`` null, the rest strings). JSON text wins where both readings work,
  so an empty array ``{}`` lands as an empty object.
- ``varbyte(n)``: binary data as hexadecimal digits (see ``local/dms/records.py`` for why),
  decoded to ``bytes``; more than n bytes is a reject.
- ``text`` and ``varchar(n)``: a value longer than the column's UTF-8 byte limit is rejected
  (``long_text = "dead-letter"``) or cut at a character boundary with the row's
  ``_cdc_truncated`` flag set (``long_text = "truncate"``); key columns are never cut.

The common renderings are parsed in C (the fast path); anything msgspec refuses is parsed
again by ``_lenient_row`` (standard ``json`` with exact decimals) before a reason is given, and
so are rows whose column names are not in the spec's case (Oracle and Db2 send upper case).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from shared.spec import DELETED, ORDER_KEY, TRUNCATED_FLAG, ColumnType, Table

_INT_BOUNDS = {"smallint": 2**15, "integer": 2**31, "bigint": 2**63}
_ERROR_PATH = re.compile(r"^(.*?)(?: - at `\$\.([^`]+)`)?$")


class BadRow(ValueError):
    """A row does not fit its table's types. The message holds no part of any value."""


def python_type(column_type: ColumnType, cut_to_fit: bool = False) -> Any:
    """The annotated Python type msgspec validates a column's values against.

    ``cut_to_fit``: a varchar or text column of a ``long_text = "truncate"`` table, whose
    values are cut to fit after decoding rather than refused by length."""
    kind = column_type.kind
    if kind in _INT_BOUNDS:
        bound = _INT_BOUNDS[kind]
        return Annotated[int, Meta(ge=-bound, le=bound - 1)]
    if column_type.is_text:
        if cut_to_fit and kind != "char":
            return str
        return Annotated[str, Meta(max_length=column_type.length)]  # chars; bytes checked after
    if kind in ("time", "uuid", "varbyte"):
        return str  # checked and normalized by the column's fixer
    if kind == "super":
        return Any  # JSON text (json, jsonb, arrays) parsed by the fixer
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


_TIME_TEXT = re.compile(r"^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?$")
_DAY_MICROS = 86_400_000_000


def _time_fixer(name: str) -> Callable[[Any], Any]:
    """DMS ``TIME`` text to ``HH:MM:SS[.ffffff]`` (Redshift TIME keeps microseconds)."""

    def fix(value: str) -> str:
        match = _TIME_TEXT.match(value.strip())
        if match is None:
            raise BadRow(f"column {name!r}: expected a time of day (HH:MM:SS)")
        hours, minutes, seconds, fraction = match.groups()
        if int(minutes) > 59 or int(seconds) > 59:
            raise BadRow(f"column {name!r}: not a valid time of day")
        micros = round(int(fraction.ljust(9, "0")) / 1000) if fraction else 0
        total = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1_000_000 + micros
        if total > _DAY_MICROS:
            raise BadRow(f"column {name!r}: not a valid time of day")
        seconds_total, micros = divmod(total, 1_000_000)
        minutes_total, second = divmod(seconds_total, 60)
        hour, minute = divmod(minutes_total, 60)
        text = f"{hour:02d}:{minute:02d}:{second:02d}"
        return f"{text}.{micros:06d}" if micros else text

    return fix


_UUID_TEXT = re.compile(
    r"^\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?$")


def _uuid_fixer(name: str) -> Callable[[Any], Any]:
    def fix(value: str) -> str:
        match = _UUID_TEXT.match(value.strip().lower())
        if match is None or (value.strip().startswith("{") != value.strip().endswith("}")):
            raise BadRow(f"column {name!r}: expected a UUID (32 hexadecimal digits, "
                         "8-4-4-4-12)")
        return "-".join(match.groups())

    return fix


def _no_constant(_text: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def _array_token(token: str) -> Any:
    """An unquoted array element: NULL, a number, or text."""
    if token.upper() == "NULL":
        return None
    if _JSON_NUMBER.match(token):
        return json.loads(token)
    return token


_JSON_NUMBER = re.compile(r"^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$")
_ARRAY_DIMENSIONS = re.compile(r"^(?:\[-?\d+:-?\d+\])+=")


def parse_pg_array(text: str) -> list[Any]:
    """PostgreSQL's array text (``{1,2,3}``, ``{{1,2},{3,4}}``, ``{"a,b",NULL}``,
    ``[0:1]={a,b}``) as a list (PostgreSQL manual, "Arrays", "Array Value Input": elements
    separated by commas, double quotes around elements with special characters, backslash
    escapes inside them, unquoted NULL for a null). Raises ``ValueError``."""
    source = _ARRAY_DIMENSIONS.sub("", text.strip(), count=1)
    position = 0
    length = len(source)

    def parse_array() -> list[Any]:
        nonlocal position
        if position >= length or source[position] != "{":
            raise ValueError("not an array")
        position += 1
        items: list[Any] = []
        if position < length and source[position] == "}":
            position += 1
            return items
        while True:
            while position < length and source[position].isspace():
                position += 1
            if position >= length:
                raise ValueError("unterminated array")
            char = source[position]
            if char == "{":
                items.append(parse_array())
            elif char == '"':
                position += 1
                chunk: list[str] = []
                while True:
                    if position >= length:
                        raise ValueError("unterminated quoted element")
                    char = source[position]
                    if char == "\\":
                        position += 1
                        if position >= length:
                            raise ValueError("dangling escape")
                        chunk.append(source[position])
                    elif char == '"':
                        position += 1
                        break
                    else:
                        chunk.append(char)
                    position += 1
                items.append("".join(chunk))
            else:
                start = position
                while position < length and source[position] not in ",}":
                    position += 1
                token = source[start:position].strip()
                if not token:
                    raise ValueError("empty element")
                items.append(_array_token(token))
            while position < length and source[position].isspace():
                position += 1
            if position >= length:
                raise ValueError("unterminated array")
            if source[position] == ",":
                position += 1
                continue
            if source[position] == "}":
                position += 1
                return items
            raise ValueError("unexpected character")

    parsed = parse_array()
    if source[position:].strip():
        raise ValueError("text after the array")
    return parsed


def _super_fixer(name: str) -> Callable[[Any], Any]:
    """JSON text (json, jsonb) or PostgreSQL array text to the JSON value it holds."""

    def fix(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # already a JSON value
        try:
            return json.loads(value, parse_constant=_no_constant)
        except ValueError:
            pass
        stripped = value.lstrip()
        if stripped.startswith(("{", "[")):
            try:
                return parse_pg_array(value)
            except ValueError:
                pass
        raise BadRow(f"column {name!r}: expected JSON text or a PostgreSQL array")

    return fix


def _varbyte_fixer(name: str, limit: int) -> Callable[[Any], Any]:
    def fix(value: str) -> bytes:
        digits = value[2:] if value.startswith(("\\x", "0x")) else value
        try:
            data = bytes.fromhex(digits)
        except ValueError:
            raise BadRow(f"column {name!r}: expected binary data as hexadecimal digits"
                         ) from None
        if len(data) > limit:
            raise BadRow(f"column {name!r}: value too long ({len(data)} bytes, limit {limit})")
        return data

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
    strings: tuple[tuple[str, int], ...]  # (column, byte limit) of char/varchar/text columns
    normalizers: tuple[tuple[str, Callable[[str, Any], Any]], ...]  # the lenient path's
    # char(n) columns: Redshift's CHAR holds single-byte characters only, so a non-ASCII value
    # is a reject (a dead letter with a reason), never a batch that fails on every retry.
    chars: tuple[str, ...] = ()
    # ``long_text = "truncate"``: varchar/text values too long for their column are cut to
    # fit (except key and char columns) and the row's ``TRUNCATED_FLAG`` is set.
    truncate: bool = False

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
            # \u escapes a character is a byte, so only other JSON needs the byte check
            # (and a NUL character is always escaped).
            plain = blob.isascii() and b"\\u" not in blob
            if not plain:
                self._check_chars(row, self.chars)
            has_nul = not plain and b"\\u0000" in blob
            if self.truncate:
                setattr(row, TRUNCATED_FLAG, False)  # set here only, never by the source
                if has_nul or len(blob) > self.strings[0][1]:
                    self._fit_strings(row, len(blob), has_nul)
            elif not plain and (has_nul or len(blob) > self.strings[0][1]):
                self._check_strings(row, len(blob), has_nul)
        elif self.truncate:
            setattr(row, TRUNCATED_FLAG, False)
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

    def _strings_to_check(self, row: Any, data_size: int,
                          has_nul: bool) -> Iterator[tuple[str, int, str]]:
        """The string columns that may be too long, as (name, byte limit, value), after
        rejecting a value that holds a NUL. A value's UTF-8 size is at most the size of the
        JSON it came from, so only columns whose limit is below ``data_size`` can be too long
        (``strings`` is sorted by limit); with a NUL in the data every column is looked at."""
        for name, limit in self.strings:
            if limit >= data_size and not has_nul:
                return
            value = getattr(row, name)
            if value is None:
                continue
            if has_nul and "\x00" in value:
                raise BadRow(f"column {name!r}: value holds a NUL character")
            yield name, limit, value

    def _fit_strings(self, row: Any, data_size: int, has_nul: bool) -> None:
        """``long_text = "truncate"``: cut varchar/text values to their byte limit at a UTF-8
        character boundary and flag the row; key and char columns are checked as usual."""
        key = self.table.key
        for name, limit, value in self._strings_to_check(row, data_size, has_nul):
            if len(value) * 4 <= limit:
                continue
            encoded = value.encode("utf-8")
            if len(encoded) <= limit:
                continue
            if name in key or name in self.chars:
                raise BadRow(
                    f"column {name!r}: value too long ({len(encoded)} bytes, limit {limit})")
            # Cutting mid-character leaves an incomplete sequence at the end only: dropped.
            setattr(row, name, encoded[:limit].decode("utf-8", errors="ignore"))
            setattr(row, TRUNCATED_FLAG, True)

    def _check_strings(self, row: Any, data_size: int, has_nul: bool) -> None:
        for name, limit, value in self._strings_to_check(row, data_size, has_nul):
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
_METADATA_NAMES = {ORDER_KEY_FIELD: ORDER_KEY, DELETED_FIELD: DELETED}


def row_type(table: Table) -> RowType:
    truncate = table.long_text == "truncate"
    fields: list[tuple[str, Any, Any]] = [
        (c.name, python_type(c.type, truncate and c.name not in table.key) | None, None)
        for c in table.columns
    ]
    fields += [(ORDER_KEY_FIELD, str, ""), (DELETED_FIELD, bool, False)]
    if truncate:
        fields.append((TRUNCATED_FLAG, bool, False))
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
        elif col.type.kind == "time":
            fixers.append((col.name, _time_fixer(col.name)))
        elif col.type.kind == "uuid":
            fixers.append((col.name, _uuid_fixer(col.name)))
        elif col.type.kind == "super":
            fixers.append((col.name, _super_fixer(col.name)))
        elif col.type.kind == "varbyte":
            fixers.append((col.name, _varbyte_fixer(col.name, col.type.length or 0)))
    strings = sorted(
        ((c.name, c.type.length or 0) for c in table.columns if c.type.is_text),
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
        truncate=truncate,
    )
