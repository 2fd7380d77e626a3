"""Validate and normalize column values against the spec's column types.

DMS delivers JSON numbers, strings, booleans and null; dates and timestamps as strings; large
numerics sometimes as strings. Each column gets one converter, built once per spec, that
returns the normalized value or raises ``BadValue`` with a reason that never quotes the value
(it may be personal data).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from shared.spec import ColumnType

Converter = Callable[[Any], Any]

_INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
}
_TRUE = frozenset(("true", "t", "1", "yes", "y"))
_FALSE = frozenset(("false", "f", "0", "no", "n"))


class BadValue(ValueError):
    """A value does not fit its column type. The message holds no part of the value."""


def _kind_of(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _int_converter(kind: str) -> Converter:
    low, high = _INT_RANGES[kind]

    def convert(value: Any) -> int:
        if type(value) is int:
            result = value
        elif (type(value) is str and value.strip().lstrip("+-").isdigit()) or (
            type(value) is float and value.is_integer()
        ):
            result = int(value)
        else:
            raise BadValue(f"expected {kind}, got {_kind_of(value)}")
        if not low <= result <= high:
            raise BadValue(f"{kind} value out of range")
        return result

    return convert


def _decimal_converter(precision: int, scale: int) -> Converter:
    max_integer_digits = precision - scale
    quantum = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> str:
        if type(value) in (int, float, str):
            try:
                number = Decimal(str(value).strip())
            except InvalidOperation:
                raise BadValue(
                    f"expected decimal({precision},{scale}), got a non-numeric string"
                ) from None
        else:
            raise BadValue(f"expected decimal({precision},{scale}), got {_kind_of(value)}")
        if not number.is_finite():
            raise BadValue(f"expected decimal({precision},{scale}), got a non-finite number")
        rounded = number.quantize(quantum, rounding=ROUND_HALF_UP)
        if rounded.adjusted() + 1 > max_integer_digits and rounded != 0:
            raise BadValue(f"value does not fit decimal({precision},{scale})")
        return f"{rounded:f}"

    return convert


def _float_converter(kind: str) -> Converter:
    def convert(value: Any) -> float:
        if type(value) in (int, float):
            result = float(value)
        elif type(value) is str:
            try:
                result = float(value)
            except ValueError:
                raise BadValue(f"expected {kind}, got a non-numeric string") from None
        else:
            raise BadValue(f"expected {kind}, got {_kind_of(value)}")
        if not math.isfinite(result):
            raise BadValue(f"expected a finite {kind}")
        return result

    return convert


def _bool_converter(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if type(value) is str:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise BadValue(f"expected boolean, got {_kind_of(value)}")


def _string_converter(kind: str, length: int) -> Converter:
    """Redshift lengths count bytes: check the UTF-8 size only when it could matter."""
    quick_limit = length // 4

    def convert(value: Any) -> str:
        if type(value) is not str:
            raise BadValue(f"expected {kind}({length}), got {_kind_of(value)}")
        if len(value) > quick_limit and len(value.encode("utf-8")) > length:
            raise BadValue(f"{kind}({length}) value too long ({len(value.encode('utf-8'))} bytes)")
        if "\x00" in value:
            raise BadValue(f"{kind}({length}) value holds a NUL character")
        return value

    return convert


def _date_converter(value: Any) -> str:
    if type(value) is str:
        text = value.strip()[:10]
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            pass
        raise BadValue("expected a date as YYYY-MM-DD")
    raise BadValue(f"expected date, got {_kind_of(value)}")


def _timestamp_converter(with_zone: bool) -> Converter:
    kind = "timestamptz" if with_zone else "timestamp"

    def convert(value: Any) -> str:
        if type(value) is not str:
            raise BadValue(f"expected {kind}, got {_kind_of(value)}")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadValue(f"expected {kind} as YYYY-MM-DD HH:MM:SS[.ffffff]") from None
        if not with_zone and parsed.tzinfo is not None:
            raise BadValue("expected a timestamp without time zone")
        return parsed.isoformat(sep=" ", timespec="microseconds")

    return convert


def converter_for(column_type: ColumnType) -> Converter:
    """The converter for one column type."""
    kind = column_type.kind
    if kind in _INT_RANGES:
        return _int_converter(kind)
    if kind == "decimal":
        assert column_type.precision is not None and column_type.scale is not None
        return _decimal_converter(column_type.precision, column_type.scale)
    if kind in ("real", "double"):
        return _float_converter(kind)
    if kind == "boolean":
        return _bool_converter
    if kind in ("varchar", "char"):
        assert column_type.length is not None
        return _string_converter(kind, column_type.length)
    if kind == "date":
        return _date_converter
    if kind in ("timestamp", "timestamptz"):
        return _timestamp_converter(kind == "timestamptz")
    raise ValueError(f"no converter for {kind}")
