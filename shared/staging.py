"""Encode reduced changes: SQL literals and the JSON of a typed row (``shared.landing``).

Values reach SQL as literals escaped the Redshift way (quotes and backslashes doubled: Redshift
treats a backslash in a string literal as an escape), never by string interpolation of raw
text; identifiers come from the validated spec only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from shared.records import Change
from shared.spec import CHANGE_ID, DELETED, ORDER_KEY, TRUNCATED_FLAG, Table

astuple = msgspec.structs.astuple
# Decimals as JSON strings: the "COPY from JSON format" usage notes warn that numbers in JSON
# may lose precision on load and suggest quoting them
# (https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-json.html); COPY
# converts a source string to the target column's type ("Data conversion parameters":
# https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html), so a
# quoted decimal loads exactly into a DECIMAL column.
_JSON_ROW = msgspec.json.Encoder(decimal_format="string")


__all__ = ["CHANGE_ID", "DELETED", "ORDER_KEY", "row_json", "sql_literal", "staging_columns"]


def staging_columns(table: Table) -> tuple[str, ...]:
    """Replica/staging column order: the spec's columns, then the CDC metadata (and the
    truncated-text flag, ``TRUNCATED_FLAG``, of a table with ``long_text = "truncate"``)."""
    extra = (TRUNCATED_FLAG,) if table.long_text == "truncate" else ()
    identity = (CHANGE_ID,) if table.append_only else ()
    return (*table.column_names, ORDER_KEY, DELETED, *extra, *identity)


def _string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _float_literal(number: float) -> str:
    return repr(float(number))


_LITERAL_BY_TYPE: dict[type, Callable[[Any], str]] = {
    str: _string_literal,
    int: int.__repr__,
    bool: lambda flag: "TRUE" if flag else "FALSE",
    float: _float_literal,
    type(None): lambda _: "NULL",
    Decimal: Decimal.__str__,  # quantized to the column's scale: plain notation
    date: lambda day: "'" + day.isoformat() + "'",
    datetime: lambda moment: "'" + moment.isoformat(" ") + "'",
}


def sql_literal(value: Any) -> str:
    """A Redshift SQL literal for a validated value (a type of ``_LITERAL_BY_TYPE``)."""
    try:
        return _LITERAL_BY_TYPE[type(value)](value)
    except KeyError:
        raise TypeError(f"no SQL literal for {type(value).__name__}") from None


def row_json(change: Change, append_only: bool = False) -> bytes:
    """The change's typed row as a JSON object (decimals as JSON strings: exact, where a JSON
    number would be read as a float); an append-only table's row also gets ``CHANGE_ID``
    (the second part of its ``Change.key``)."""
    encoded = _JSON_ROW.encode(change.row)
    if not append_only:
        return encoded
    return encoded[:-1] + b',"' + CHANGE_ID.encode() + b'":' + _JSON_ROW.encode(
        str(change.key[1])) + b"}"
