"""Create and migrate the warehouse schema from the spec, idempotently.

Reads what exists (information_schema), then creates missing schemas and tables (the spec's,
and the pipeline's own ``_cdc_tables`` and ``_cdc_columns``), adds missing columns, widens
VARCHARs that the spec made longer, and recomputes a wide table from the replicas when it was
created or changed. Running it twice changes nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared import apply_procedures as procedures
from shared import warehouse_grants as grants
from shared import warehouse_sql as sql
from shared.data_api import RedshiftDataApi
from shared.landing import MAX_STATEMENTS
from shared.redshift_writer import read_added_columns
from shared.schema_evolution import evolved_spec
from shared.spec import PipelineSpec

_KIND_BY_DATA_TYPE = {
    "smallint": "SMALLINT", "integer": "INTEGER", "bigint": "BIGINT", "real": "REAL",
    "double precision": "DOUBLE PRECISION", "boolean": "BOOLEAN", "date": "DATE",
    "timestamp without time zone": "TIMESTAMP", "timestamp with time zone": "TIMESTAMPTZ",
}


class MigrationError(Exception):
    """The warehouse holds a column whose type the spec changed in a way we cannot migrate."""


@dataclass
class MigrationPlan:
    statements: list[str] = field(default_factory=list)
    rebuild_targets: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.statements and not self.rebuild_targets


def _existing_type(row: dict[str, Any]) -> str:
    data_type = str(row["data_type"]).lower()
    if data_type == "character varying":
        return f"VARCHAR({row['character_maximum_length']})"
    if data_type in ("character", "bpchar"):
        return f"CHAR({row['character_maximum_length']})"
    if data_type == "numeric":
        return f"DECIMAL({row['numeric_precision']},{row['numeric_scale']})"
    return _KIND_BY_DATA_TYPE.get(data_type, data_type.upper())


def _varchar_length(sql_type: str) -> int | None:
    if sql_type.startswith("VARCHAR("):
        return int(sql_type[8:-1])
    return None


def _type_change(schema: str, table: str, column: str, current: str, wanted: str,
                 is_key: bool) -> str | None:
    """The type to widen a column to, None to keep it, or a MigrationError.

    Redshift's ``ALTER COLUMN ... TYPE`` only changes the size of a VARCHAR, not of a key
    (PRIMARY KEY) column, and not inside a transaction block (ALTER TABLE,
    https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html): ``migrate`` runs each
    statement on its own. A spec VARCHAR shorter than the warehouse's keeps the wider column.
    """
    old_len, new_len = _varchar_length(current), _varchar_length(wanted)
    where = f"{schema}.{table}.{column}"
    if old_len is not None and new_len is not None:
        if new_len <= old_len:
            return None
        if is_key:
            raise MigrationError(
                f"{where} is a key column: Redshift cannot widen it from {current} to {wanted} "
                "in place; create a new table with the wider key, copy the rows into it "
                "(INSERT ... SELECT) and swap the names, or keep the old length in the spec")
        return wanted
    raise MigrationError(
        f"{where} is {current} in the warehouse but {wanted} in the spec; Redshift changes a "
        "column's type in place only to widen a VARCHAR: add a new column (or rebuild the "
        "table) with the new type and copy the values, or keep the old type in the spec")


def plan_migration(
    spec: PipelineSpec, existing: dict[tuple[str, str], dict[str, str]]
) -> MigrationPlan:
    """What to run, given ``existing[(schema, table)] = {column: SQL type}``."""
    plan = MigrationPlan(statements=sql.create_schema_statements(spec))
    wanted: list[tuple[str, str, str, list[tuple[str, str]], str | None, tuple[str, ...]]] = []
    for table in spec.tables.values():
        wanted.append((spec.replica_schema, table.name, sql.create_replica_statement(spec, table),
                       sql.replica_columns(table), None, table.key))
    wanted.append((spec.replica_schema, sql.TABLE_STATE,
                   sql.create_pipeline_table_statement(spec, sql.TABLE_STATE),
                   sql.table_state_columns(), None, ("table_name",)))
    wanted.append((spec.replica_schema, sql.ADDED_COLUMNS,
                   sql.create_pipeline_table_statement(spec, sql.ADDED_COLUMNS),
                   sql.added_columns_columns(), None, ("table_name", "column_name")))
    if (spec.replica_schema, sql.LANDING) not in existing:
        # The pipeline's own; its columns never change (and the SUPER column reads back
        # under a different name in some catalogs), so it is only created.
        plan.statements.append(procedures.create_landing_statement(spec))
    if (spec.replica_schema, sql.APPLIED) not in existing:
        plan.statements.append(sql.create_applied_statement(spec))
    for target in spec.targets.values():
        wanted.append((spec.target_schema, target.name, sql.create_target_statement(spec, target),
                       sql.target_columns(spec, target), target.name, target.key))
    for schema, name, create, columns, target_name, key in wanted:
        have = existing.get((schema, name))
        qualified = f"{sql.ident(schema)}.{sql.ident(name)}"
        if have is None:
            plan.statements.append(create)
            if target_name:
                plan.rebuild_targets.append(target_name)
            continue
        changed = False
        for column, sql_type in columns:
            current = have.get(column)
            if current is None:
                plan.statements.append(sql.add_column_statement(qualified, column, sql_type))
                changed = True
            elif current != sql_type:
                widen = _type_change(schema, name, column, current, sql_type, column in key)
                if widen is not None:
                    plan.statements.append(sql.widen_varchar_statement(qualified, column, widen))
        if changed and target_name:
            plan.rebuild_targets.append(target_name)
    return plan


def read_existing(
    api: RedshiftDataApi, spec: PipelineSpec
) -> dict[tuple[str, str], dict[str, str]]:
    rows = api.query(
        "SELECT table_schema, table_name, column_name, data_type, character_maximum_length, "
        "numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = :replica_schema OR table_schema = :target_schema",
        {"replica_schema": spec.replica_schema, "target_schema": spec.target_schema},
    )
    existing: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        table = existing.setdefault((row["table_schema"], row["table_name"]), {})
        table[row["column_name"]] = _existing_type(row)
    return existing


def migrate(api: RedshiftDataApi, spec: PipelineSpec,
            consumer: grants.ConsumerLogin | None = None) -> MigrationPlan:
    """Bring the warehouse schema in line with the spec; return what was done. With
    ``consumer``, also create that user if missing and (re)grant it what the consumers need
    on everything the migration created (``shared.warehouse_grants``)."""
    plan = plan_migration(spec, read_existing(api, spec))
    for statement in plan.statements:
        api.execute(statement)
    stages = [s for t in spec.tables.values() for s in sql.recreate_stage_statements(spec, t)]
    _in_transactions(api, stages)
    _in_transactions(api, procedures.replaced_procedure_statements(spec))
    _in_transactions(api, procedures.procedure_statements(_with_added_columns(api, spec), spec))
    for target in plan.rebuild_targets:
        api.run_transaction(sql.rebuild_target_statements(spec, spec.targets[target]))
    if consumer is not None:
        exists = bool(api.query(*grants.user_exists_query(consumer.username)))
        database = str(api.query("SELECT current_database() AS name")[0]["name"])
        _in_transactions(api, grants.consumer_access_statements(spec, consumer, database, exists))
    return plan


def _with_added_columns(api: RedshiftDataApi, spec: PipelineSpec) -> PipelineSpec:
    """The spec plus the source columns schema evolution added (the apply procedures stage
    them too)."""
    if spec.evolve == "off":
        return spec
    return evolved_spec(spec, read_added_columns(api, spec))


def _in_transactions(api: RedshiftDataApi, statements: list[str]) -> None:
    """Idempotent statements, as many per BatchExecuteStatement as the Data API takes."""
    for start in range(0, len(statements), MAX_STATEMENTS):
        api.run_transaction(statements[start:start + MAX_STATEMENTS])
