"""Typed rows: one msgspec Struct per source table, built from the spec.

msgspec parses a DMS ``data`` object straight into the table's Struct and checks every value's
type in C (lax mode: DMS sends large numerics as strings, booleans as ``"true"``), which is
what lets the core run faster than merely ``json.loads`` on the record. What msgspec cannot
check is done after, only where it can matter: Redshift VARCHAR lengths count UTF-8 bytes,
DECIMAL precision, finite floats, NUL characters. Error texts name the column and the
expected type, never the value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
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
    if kind == "timestamp":
        return Annotated[datetime, Meta(tz=False)]
    if kind == "timestamptz":
        return Annotated[datetime, Meta(tz=True)]
    raise ValueError(f"no Python type for {kind}")


def _decimal_fixer(name: str, precision: int, scale: int) -> Callable[[Any], Any]:
    quantum = Decimal(1).scaleb(-scale)
    max_integer_digits = precision - scale

    def fix(value: Decimal) -> Decimal:
        if not value.is_finite():
            raise BadRow(f"column {name!r}: expected decimal({precision},{scale}), got non-finite")
        rounded = value.quantize(quantum, rounding=ROUND_HALF_UP)
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


@dataclass(frozen=True)
class RowType:
    """The Struct of one table plus the checks msgspec cannot make."""

    table: Table
    struct: type[msgspec.Struct]
    decoder: msgspec.json.Decoder[Any]
    key_decoder: msgspec.json.Decoder[Any]  # before images: key columns only, all optional
    fixers: tuple[tuple[str, Callable[[Any], Any]], ...]  # decimals, floats
    strings: tuple[tuple[str, int], ...]  # (column, byte limit) of char/varchar columns

    def decode(self, data: bytes) -> Any:
        """Parse and validate a ``data`` object; raises ``BadRow``."""
        try:
            row = self.decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise BadRow(_reason(str(exc))) from None
        except msgspec.DecodeError:
            raise BadRow("'data' is not a JSON object") from None
        for name, fix in self.fixers:
            value = getattr(row, name)
            if value is not None:
                setattr(row, name, fix(value))
        if self.strings:
            blob = bytes(data)
            # msgspec checked every string's length in characters; in pure ASCII JSON without
            # \u escapes a character is a byte, so only other JSON needs the byte check.
            if not blob.isascii() or b"\\u" in blob:
                has_nul = b"\\u0000" in blob
                if has_nul or len(blob) > self.strings[0][1]:
                    self._check_strings(row, len(blob), has_nul)
        return row

    def decode_key(self, data: bytes) -> Any:
        """A tombstone row from a delete's or a before image's key columns; raises ``BadRow``."""
        try:
            key_only = self.key_decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise BadRow(_reason(str(exc))) from None
        except msgspec.DecodeError:
            raise BadRow("the key is not a JSON object") from None
        return self.struct(**msgspec.structs.asdict(key_only))

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
        if col.type.kind == "decimal":
            assert col.type.precision is not None and col.type.scale is not None
            fixers.append((col.name, _decimal_fixer(col.name, col.type.precision, col.type.scale)))
        elif col.type.kind in ("real", "double"):
            fixers.append((col.name, _float_fixer(col.name)))
    strings = sorted(
        ((c.name, c.type.length or 0) for c in table.columns if c.type.kind in ("varchar", "char")),
        key=lambda item: item[1],
    )
    return RowType(
        table=table,
        struct=struct,
        decoder=msgspec.json.Decoder(struct, strict=False),
        key_decoder=msgspec.json.Decoder(key_struct, strict=False),
        fixers=tuple(fixers),
        strings=tuple(strings),
    )
