"""The source database of the local stack: PostgreSQL tables created from the pipeline spec.

The DDL comes from the spec (so users' own specs get their own source tables), with
``REPLICA IDENTITY FULL`` so logical decoding sees whole before-images of updates and deletes.
"""

from __future__ import annotations

from shared.spec import PipelineSpec, Table
from shared.warehouse_sql import ident


def create_table_statement(spec: PipelineSpec, table: Table) -> str:
    columns = ", ".join(
        f"{ident(c.name)} {c.type.sql}{' NOT NULL' if c.name in table.key else ''}"
        for c in table.columns
    )
    key = ", ".join(ident(k) for k in table.key)
    return (f"CREATE TABLE IF NOT EXISTS {ident(spec.source_schema)}.{ident(table.name)} "
            f"({columns}, PRIMARY KEY ({key}))")


def schema_statements(spec: PipelineSpec) -> list[str]:
    statements = [f"CREATE SCHEMA IF NOT EXISTS {ident(spec.source_schema)}"]
    for table in spec.tables.values():
        statements.append(create_table_statement(spec, table))
        statements.append(
            f"ALTER TABLE {ident(spec.source_schema)}.{ident(table.name)} REPLICA IDENTITY FULL")
    return statements
