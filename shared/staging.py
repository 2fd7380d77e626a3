"""Encode reduced changes as staging rows: inline SQL VALUES or JSON lines for COPY.

Values reach SQL as literals escaped the Redshift way (quotes and backslashes doubled: Redshift
treats a backslash in a string literal as an escape), never by string interpolation of raw
text; identifiers come from the validated spec only.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from shared.records import Change
from shared.spec import Table

ORDER_KEY = "_cdc_order_key"
DELETED = "_cdc_deleted"


def staging_columns(table: Table) -> tuple[str, ...]:
    """Replica/staging column order: the spec's columns, then the CDC metadata."""
    return (*table.column_names, ORDER_KEY, DELETED)


def sql_literal(value: Any) -> str:
    """A Redshift SQL literal for a validated value."""
    if value is None:
        return "NULL"
    kind = type(value)
    if kind is str:
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(float(value))
    raise TypeError(f"no SQL literal for {kind.__name__}")


def values_rows(table: Table, changes: Iterable[Change]) -> Iterator[str]:
    """One ``(v1, v2, ...)`` tuple per change, in ``staging_columns`` order."""
    names = table.column_names
    literal = sql_literal
    for change in changes:
        values = change.values
        parts = [literal(values[name]) for name in names]
        parts.append("'" + change.order_key + "'")
        parts.append("TRUE" if change.deleted else "FALSE")
        yield "(" + ",".join(parts) + ")"


def insert_statements(
    target: str, table: Table, changes: Iterable[Change], max_bytes: int
) -> list[str]:
    """``INSERT INTO target (...) VALUES ...`` statements, each at most ``max_bytes`` of UTF-8."""
    head = "INSERT INTO " + target + " (" + ",".join(f'"{c}"' for c in staging_columns(table))
    head += ") VALUES "
    head_size = len(head.encode("utf-8"))
    statements: list[str] = []
    batch: list[str] = []
    size = head_size
    for row in values_rows(table, changes):
        row_size = len(row.encode("utf-8")) + 1
        if head_size + row_size > max_bytes:
            raise ValueError(f"a single {table.name} row is larger than {max_bytes} bytes of SQL")
        if batch and size + row_size > max_bytes:
            statements.append(head + ",".join(batch))
            batch, size = [], head_size
        batch.append(row)
        size += row_size
    if batch:
        statements.append(head + ",".join(batch))
    return statements


def _json_value(value: Any, is_decimal: bool) -> Any:
    if is_decimal and value is not None:
        return orjson.Fragment(value.encode("ascii"))
    return value


def json_lines(table: Table, changes: Iterable[Change], compress: bool = True) -> bytes:
    """Newline-delimited JSON objects for ``COPY ... FORMAT AS JSON 'auto'`` (gzip by default).

    Decimals are written as JSON numbers (exact, from their normalized text).
    """
    decimals = {c.name for c in table.columns if c.warehouse_type.kind == "decimal"}
    names = table.column_names
    lines = []
    dumps = orjson.dumps
    for change in changes:
        values = change.values
        row = {name: _json_value(values[name], name in decimals) for name in names}
        row[ORDER_KEY] = change.order_key
        row[DELETED] = change.deleted
        lines.append(dumps(row))
    body = b"\n".join(lines) + b"\n" if lines else b""
    return gzip.compress(body, compresslevel=5) if compress else body
