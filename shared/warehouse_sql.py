"""SQL text for the warehouse: schema DDL and the statements of one stage-and-merge transaction.

Pure functions of the spec. Only Redshift grammar: one WHEN MATCHED and one WHEN NOT MATCHED
per MERGE with no conditions, so the order guard and deletes are statements of their own, all
in one transaction:

1. ``LOCK`` every replica and wide table (writers queue instead of failing serialization);
2. per source table in the batch: create a temp stage, fill it, drop staged changes that are
   not newer than the replica row (order guard), MERGE the rest into the replica (deletes are
   tombstones: key + order key + ``_cdc_deleted``), and in hard-delete mode remove tombstones;
3. per wide table: collect the fact keys the batch touched (the facts themselves, and facts
   whose joined dimension rows changed), MERGE their recomputed rows from the replicas (LEFT
   JOINs, so a fact without its dimension is written and completed later) and delete the wide
   rows whose fact is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shared.order_key import ORDER_KEY_MAX_LENGTH
from shared.spec import PipelineSpec, Table, Target
from shared.staging import DELETED, ORDER_KEY, staging_columns


def ident(name: str) -> str:
    """A quoted identifier. Names come from the validated spec (``[a-z_][a-z0-9_]*``)."""
    return '"' + name + '"'


def replica_table(spec: PipelineSpec, table: str) -> str:
    return f"{ident(spec.replica_schema)}.{ident(table)}"


def target_table(spec: PipelineSpec, target: str) -> str:
    return f"{ident(spec.target_schema)}.{ident(target)}"


def stage_table(table: str) -> str:
    return ident(f"stage_{table}")


def affected_table(target: str) -> str:
    return ident(f"affected_{target}")


def _key_match(left: str, right: str, left_cols: Iterable[str], right_cols: Iterable[str]) -> str:
    return " AND ".join(
        f"{left}.{ident(a)} = {right}.{ident(b)}"
        for a, b in zip(left_cols, right_cols, strict=True)
    )


# --- schema ---------------------------------------------------------------------------------

def replica_columns(table: Table) -> list[tuple[str, str]]:
    """(name, SQL type) of a replica table, in staging order."""
    cols = [(c.name, c.warehouse_type.sql) for c in table.columns]
    cols.append((ORDER_KEY, f"VARCHAR({ORDER_KEY_MAX_LENGTH})"))
    cols.append((DELETED, "BOOLEAN"))
    return cols


def target_columns(spec: PipelineSpec, target: Target) -> list[tuple[str, str]]:
    """(name, SQL type) of a wide table."""
    cols = []
    for col in target.columns:
        source = spec.tables[target.alias_table(col.alias)].column(col.column)
        cols.append((col.name, source.warehouse_type.sql))
    return cols


def _create_table(name: str, columns: list[tuple[str, str]], key: tuple[str, ...]) -> str:
    body = ", ".join(
        f"{ident(c)} {t}{' NOT NULL' if c in key or c in (ORDER_KEY, DELETED) else ''}"
        for c, t in columns
    )
    keys = ", ".join(ident(k) for k in key)
    return (
        f"CREATE TABLE IF NOT EXISTS {name} ({body}, PRIMARY KEY ({keys})) "
        f"DISTKEY({ident(key[0])}) SORTKEY({keys})"
    )


def create_schema_statements(spec: PipelineSpec) -> list[str]:
    schemas = dict.fromkeys([spec.replica_schema, spec.target_schema])
    return [f"CREATE SCHEMA IF NOT EXISTS {ident(s)}" for s in schemas]


def create_replica_statement(spec: PipelineSpec, table: Table) -> str:
    return _create_table(replica_table(spec, table.name), replica_columns(table), table.key)


def create_target_statement(spec: PipelineSpec, target: Target) -> str:
    return _create_table(
        target_table(spec, target.name), target_columns(spec, target), target.key
    )


def add_column_statement(table_name: str, column: str, sql_type: str) -> str:
    return f"ALTER TABLE {table_name} ADD COLUMN {ident(column)} {sql_type}"


def widen_varchar_statement(table_name: str, column: str, sql_type: str) -> str:
    return f"ALTER TABLE {table_name} ALTER COLUMN {ident(column)} TYPE {sql_type}"


# --- one batch ------------------------------------------------------------------------------

def lock_statement(spec: PipelineSpec) -> str:
    """Lock every table a batch may write, always in the same order (no deadlocks)."""
    names = [replica_table(spec, t) for t in spec.tables]
    names += [target_table(spec, t) for t in spec.targets]
    return "LOCK " + ", ".join(names)


def create_stage_statement(spec: PipelineSpec, table: str) -> str:
    return f"CREATE TEMP TABLE {stage_table(table)} (LIKE {replica_table(spec, table)})"


def order_guard_statement(spec: PipelineSpec, table: Table) -> str:
    """Drop staged changes that are not newer than what the replica already holds."""
    stage, replica = stage_table(table.name), replica_table(spec, table.name)
    match = _key_match(stage, "r", table.key, table.key)
    return (
        f"DELETE FROM {stage} USING {replica} r WHERE {match} "
        f"AND {stage}.{ident(ORDER_KEY)} <= r.{ident(ORDER_KEY)}"
    )


def _upsert_statement(target: str, source: str, key: Sequence[str],
                      columns: Sequence[str]) -> str:
    """MERGE in Redshift's grammar: one WHEN MATCHED (update every non-key column from the
    source row ``s``) and one WHEN NOT MATCHED (insert it), no conditions."""
    updates = ", ".join(f"{ident(c)} = s.{ident(c)}" for c in columns if c not in key)
    return (
        f"MERGE INTO {target} USING {source} s "
        f"ON {_key_match(target, 's', key, key)} "
        f"WHEN MATCHED THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(ident(c) for c in columns)}) "
        f"VALUES ({', '.join('s.' + ident(c) for c in columns)})"
    )


def merge_replica_statement(spec: PipelineSpec, table: Table) -> str:
    return _upsert_statement(replica_table(spec, table.name), stage_table(table.name),
                             table.key, staging_columns(table))


def hard_delete_statement(spec: PipelineSpec, table: Table) -> str:
    replica = replica_table(spec, table.name)
    match = _key_match(replica, "s", table.key, table.key)
    return (
        f"DELETE FROM {replica} USING {stage_table(table.name)} s "
        f"WHERE {match} AND s.{ident(DELETED)}"
    )


def _join_clauses(spec: PipelineSpec, target: Target) -> str:
    """LEFT JOIN every dimension, live rows only: a missing or deleted one leaves NULLs."""
    clauses = []
    for join in target.joins:
        on = " AND ".join(
            f"{ident(join.from_alias)}.{ident(a)} = {ident(join.alias)}.{ident(b)}"
            for a, b in join.on
        )
        clauses.append(
            f"LEFT JOIN {replica_table(spec, join.table)} {ident(join.alias)} ON {on} "
            f"AND NOT {ident(join.alias)}.{ident(DELETED)}"
        )
    return " ".join(clauses)


def affected_keys_statement(
    spec: PipelineSpec, target: Target, staged_tables: Iterable[str]
) -> str | None:
    """A temp table of the fact keys whose wide row must be recomputed, or None."""
    staged = set(staged_tables)
    fact = spec.tables[target.fact]
    fact_alias = ident(target.fact)
    key_cols = ", ".join(f"{fact_alias}.{ident(k)}" for k in fact.key)
    selects = []
    if target.fact in staged:
        selects.append(f"SELECT {key_cols} FROM {stage_table(target.fact)} {fact_alias}")
    for join in target.joins:
        if join.table not in staged:
            continue
        path = target.join_path(join.alias)
        inner = [
            f"JOIN {replica_table(spec, step.table)} {ident(step.alias)} ON "
            + " AND ".join(
                f"{ident(step.from_alias)}.{ident(a)} = {ident(step.alias)}.{ident(b)}"
                for a, b in step.on
            )
            for step in path[:-1]
        ]
        last = path[-1]
        inner.append(
            f"JOIN {stage_table(last.table)} {ident(last.alias)} ON "
            + " AND ".join(
                f"{ident(last.from_alias)}.{ident(a)} = {ident(last.alias)}.{ident(b)}"
                for a, b in last.on
            )
        )
        selects.append(
            f"SELECT {key_cols} FROM {replica_table(spec, target.fact)} {fact_alias} "
            + " ".join(inner)
        )
    if not selects:
        return None
    return f"CREATE TEMP TABLE {affected_table(target.name)} AS " + " UNION ".join(selects)


def _wide_select(spec: PipelineSpec, target: Target, restrict_to_affected: bool) -> str:
    fact = spec.tables[target.fact]
    fact_alias = ident(target.fact)
    cols = ", ".join(
        f"{ident(c.alias)}.{ident(c.column)} AS {ident(c.name)}" for c in target.columns
    )
    source = f"{replica_table(spec, target.fact)} {fact_alias}"
    if restrict_to_affected:
        match = _key_match(fact_alias, "a", fact.key, fact.key)
        source += f" JOIN {affected_table(target.name)} a ON {match}"
    joins = _join_clauses(spec, target)
    return f"SELECT {cols} FROM {source} {joins} WHERE NOT {fact_alias}.{ident(DELETED)}"


def merge_target_statement(spec: PipelineSpec, target: Target, restrict_to_affected: bool) -> str:
    """MERGE the recomputed wide rows (of the affected facts, or of all facts on a rebuild)."""
    return _upsert_statement(target_table(spec, target.name),
                             f"({_wide_select(spec, target, restrict_to_affected)})",
                             target.key, [c.name for c in target.columns])


def delete_gone_facts_statement(
    spec: PipelineSpec, target: Target, restrict_to_affected: bool
) -> str:
    """Delete wide rows whose fact row is deleted or absent."""
    name = target_table(spec, target.name)
    fact = spec.tables[target.fact]
    live = (
        f"SELECT 1 FROM {replica_table(spec, target.fact)} f WHERE "
        f"{_key_match('f', name, fact.key, target.key)} AND NOT f.{ident(DELETED)}"
    )
    if restrict_to_affected:
        match = _key_match(name, "a", target.key, fact.key)
        return (
            f"DELETE FROM {name} USING {affected_table(target.name)} a "
            f"WHERE {match} AND NOT EXISTS ({live})"
        )
    return f"DELETE FROM {name} WHERE NOT EXISTS ({live})"


def batch_statements(spec: PipelineSpec, stage_loads: Mapping[str, list[str]]) -> list[str]:
    """Every statement of one stage-and-merge transaction.

    ``stage_loads`` maps each source table in the batch to the statements that fill its stage
    table (INSERTs, or one COPY), in the order the tables appear in the spec.
    """
    statements = [lock_statement(spec)]
    staged = [name for name in spec.tables if stage_loads.get(name)]
    for name in staged:
        table = spec.tables[name]
        statements.append(create_stage_statement(spec, name))
        statements.extend(stage_loads[name])
        statements.append(order_guard_statement(spec, table))
        statements.append(merge_replica_statement(spec, table))
        if spec.delete_mode == "hard":
            statements.append(hard_delete_statement(spec, table))
    for target in spec.targets.values():
        affected = affected_keys_statement(spec, target, staged)
        if affected is None:
            continue
        statements.append(affected)
        statements.append(merge_target_statement(spec, target, restrict_to_affected=True))
        statements.append(delete_gone_facts_statement(spec, target, restrict_to_affected=True))
    return statements


def fixed_statement_count(spec: PipelineSpec, staged_tables: Iterable[str]) -> int:
    """Statements of a batch besides the stage-filling ones."""
    staged = [t for t in spec.tables if t in set(staged_tables)]
    per_table = 4 if spec.delete_mode == "hard" else 3
    count = 1 + per_table * len(staged)
    for target in spec.targets.values():
        if affected_keys_statement(spec, target, staged) is not None:
            count += 3
    return count


def rebuild_target_statements(spec: PipelineSpec, target: Target) -> list[str]:
    """Recompute a whole wide table from the replicas (after a migration changed it)."""
    return [
        lock_statement(spec),
        merge_target_statement(spec, target, restrict_to_affected=False),
        delete_gone_facts_statement(spec, target, restrict_to_affected=False),
    ]
