"""The source database of the local stack: PostgreSQL tables created from the pipeline spec.

The DDL comes from the spec (so users' own specs get their own source tables), with
``REPLICA IDENTITY FULL`` so logical decoding sees whole before-images of updates and deletes.

``column_types`` can make chosen columns looser than the spec (``text`` instead of
``varchar(64)``, ``numeric`` without precision), so the source can hold values that DMS
delivers but the pipeline rejects: what a real source with drifted types does.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.spec import PipelineSpec, Table
from shared.warehouse_sql import ident

# Looser source types for the reference spec's columns that take "bad rows" (see local.workload).
LOOSE_COLUMN_TYPES: Mapping[str, str] = {
    "customer.phone": "TEXT",
    "ticket.ticket_price": "NUMERIC",
}


def create_table_statement(spec: PipelineSpec, table: Table,
                           column_types: Mapping[str, str] | None = None) -> str:
    """``CREATE TABLE`` for one spec table; ``column_types`` maps ``table.column`` to a SQL
    type that replaces the spec's (entries for other tables are ignored)."""
    overrides = column_types or {}

    def sql_type(column: str, default: str) -> str:
        return overrides.get(f"{table.name}.{column}", default)

    columns = ", ".join(
        f"{ident(c.name)} {sql_type(c.name, c.type.sql)}"
        f"{' NOT NULL' if c.name in table.key else ''}"
        for c in table.columns
    )
    key = ", ".join(ident(k) for k in table.key)
    return (f"CREATE TABLE IF NOT EXISTS {ident(spec.source_schema)}.{ident(table.name)} "
            f"({columns}, PRIMARY KEY ({key}))")


def schema_statements(spec: PipelineSpec,
                      column_types: Mapping[str, str] | None = None) -> list[str]:
    """The schema and every table of the spec, each with ``REPLICA IDENTITY FULL``."""
    unknown = [name for name in (column_types or {})
               if name.partition(".")[0] not in spec.tables
               or name.partition(".")[2] not in spec.tables[name.partition(".")[0]].column_names]
    if unknown:
        raise ValueError(f"column_types names columns not in the spec: {sorted(unknown)}")
    statements = [f"CREATE SCHEMA IF NOT EXISTS {ident(spec.source_schema)}"]
    for table in spec.tables.values():
        statements.append(create_table_statement(spec, table, column_types))
        statements.append(
            f"ALTER TABLE {ident(spec.source_schema)}.{ident(table.name)} REPLICA IDENTITY FULL")
    return statements
