"""Encode reduced changes as staging rows: inline SQL VALUES or JSON lines for COPY.

Values reach SQL as literals escaped the Redshift way (quotes and backslashes doubled: Redshift
treats a backslash in a string literal as an escape), never by string interpolation of raw
text; identifiers come from the validated spec only.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from shared.records import Change
from shared.spec import Table

astuple = msgspec.structs.astuple
# Decimals as JSON strings: the "COPY from JSON format" usage notes warn that numbers in JSON
# may lose precision on load and suggest quoting them
# (https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-json.html); COPY
# converts a source string to the target column's type ("Data conversion parameters":
# https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html), so a
# quoted decimal loads exactly into a DECIMAL column.
_JSON_ROW = msgspec.json.Encoder(decimal_format="string")
ORDER_KEY = "_cdc_order_key"
DELETED = "_cdc_deleted"


def staging_columns(table: Table) -> tuple[str, ...]:
    """Replica/staging column order: the spec's columns, then the CDC metadata."""
    return (*table.column_names, ORDER_KEY, DELETED)


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


def values_rows(changes: Iterable[Change]) -> Iterator[str]:
    """One ``(v1, v2, ...)`` tuple per change, in ``staging_columns`` order."""
    literals = _LITERAL_BY_TYPE
    for change in changes:
        values = astuple(change.row)
        try:
            yield "(" + ",".join([literals[type(v)](v) for v in values]) + ")"
        except KeyError:
            yield "(" + ",".join([sql_literal(v) for v in values]) + ")"  # raises TypeError


def insert_statements(
    target: str, table: Table, changes: Iterable[Change], max_bytes: int,
    max_statements: int | None = None,
) -> list[str] | None:
    """``INSERT INTO target (...) VALUES ...`` statements, each at most ``max_bytes`` of UTF-8.

    Returns None as soon as more than ``max_statements`` would be needed (so a table too big to
    stage inline costs little before it is sent through S3 instead).
    """
    head = "INSERT INTO " + target + " (" + ",".join(f'"{c}"' for c in staging_columns(table))
    head += ") VALUES "
    head_size = len(head.encode("utf-8"))
    statements: list[str] = []
    batch: list[str] = []
    size = head_size
    for row in values_rows(changes):
        row_size = len(row) + 1 if row.isascii() else len(row.encode("utf-8")) + 1
        if head_size + row_size > max_bytes:
            raise ValueError(f"a single {table.name} row is larger than {max_bytes} bytes of SQL")
        if batch and size + row_size > max_bytes:
            statements.append(head + ",".join(batch))
            if max_statements is not None and len(statements) >= max_statements:
                return None
            batch, size = [], head_size
        batch.append(row)
        size += row_size
    if batch:
        statements.append(head + ",".join(batch))
    return statements


def json_lines(changes: Iterable[Change], compress: bool = False) -> bytes:
    """Newline-delimited JSON objects for ``COPY ... FORMAT AS JSON 'auto'`` (optionally gzip).

    A row holds exactly the table's columns and the CDC metadata; decimals are JSON strings
    (exact: a JSON number would be read as a float). Uncompressed by default: encoding is the
    hot path and S3 charges per request.
    """
    body = _JSON_ROW.encode_lines([change.row for change in changes])
    return gzip.compress(body, compresslevel=1) if compress else body
