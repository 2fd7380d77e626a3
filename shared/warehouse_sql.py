"""SQL text for the warehouse: schema DDL and the statements that apply landed changes.

Pure functions of the spec. Only Redshift grammar: one WHEN MATCHED and one WHEN NOT MATCHED
per MERGE with no conditions, so the order guard and deletes are statements of their own. The
stored procedures of ``shared.apply_procedures`` run them, in one transaction per apply (see
docs/warehouse-apply.md):

1. ``LOCK`` the landing table (``applier_lock_statement``): appliers queue behind each other;
   no table an analyst reads is locked, so readers keep reading the previous snapshot;
2. per source table with pending changes: fill its stage with the newest change per key among
   the pending batches that is newer than the replica row and the last truncate (order guard),
   MERGE it into the replica (deletes are tombstones: key + order key + ``_cdc_deleted``), and
   in hard-delete mode remove tombstones;
3. per wide table: collect the fact keys the apply touched (the facts themselves, and facts
   whose joined dimension rows changed), collect their recomputed rows from the replicas in a
   temp table (LEFT JOINs, so a fact without its dimension is written and completed later;
   a MERGE source must be a table), MERGE them and delete the wide rows whose fact is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from shared.order_key import (
    CLASS_LOAD,
    LOAD_TIME_UNKNOWN,
    ORDER_KEY_MAX_LENGTH,
    POSITION_LENGTH,
    RECORD_LENGTH,
    TIME_LENGTH,
    TIME_START,
    newer_sql,
    with_load_time,
)
from shared.spec import TRUNCATED_FLAG, PipelineSpec, Table, Target, parse_column_type
from shared.staging import CHANGE_ID, DELETED, ORDER_KEY, sql_literal, staging_columns

# The pipeline's own tables in the replica schema (spec names cannot start with ``_cdc_``):
# per source table, the newest truncate and the recorded load start; and the source columns
# that schema evolution added to the replicas.
TABLE_STATE = "_cdc_tables"
# A full-load key read at no particular time: the reload sweep's tombstones take the load start.
LOAD_KEY_UNKNOWN_TIME = CLASS_LOAD + LOAD_TIME_UNKNOWN + "0" * (POSITION_LENGTH + RECORD_LENGTH)
ADDED_COLUMNS = "_cdc_columns"
# Where consumers land a batch's changes before ``shared.apply_procedures`` applies them.
LANDING = "_cdc_landing"
# The batches applied lately (a landed batch delivered twice is applied once).
APPLIED = "_cdc_applied"


def ident(name: str) -> str:
    """A quoted identifier. Names come from the validated spec (``[a-z_][a-z0-9_]*``)."""
    return '"' + name + '"'


def replica_table(spec: PipelineSpec, table: str) -> str:
    return f"{ident(spec.replica_schema)}.{ident(table)}"


def target_table(spec: PipelineSpec, target: str) -> str:
    return f"{ident(spec.target_schema)}.{ident(target)}"


STAGE_PREFIX = "_cdc_stage_"


def stage_table(spec: PipelineSpec, table: str) -> str:
    """The table's stage in the replica schema: a permanent table, empty between batches
    (DML costs far less than creating a temp table per table and batch)."""
    return replica_table(spec, STAGE_PREFIX + table)


def affected_table(target: str) -> str:
    return ident(f"affected_{target}")


def _key_match(left: str, right: str, left_cols: Iterable[str], right_cols: Iterable[str]) -> str:
    return " AND ".join(
        f"{left}.{ident(a)} = {right}.{ident(b)}"
        for a, b in zip(left_cols, right_cols, strict=True)
    )


# --- schema ---------------------------------------------------------------------------------

_METADATA_TYPES = {ORDER_KEY: f"VARCHAR({ORDER_KEY_MAX_LENGTH})", DELETED: "BOOLEAN",
                   TRUNCATED_FLAG: "BOOLEAN", CHANGE_ID: "VARCHAR(128)"}


def replica_columns(table: Table) -> list[tuple[str, str]]:
    """(name, SQL type) of a replica table, in staging order."""
    types = {c.name: c.warehouse_type.sql for c in table.columns} | _METADATA_TYPES
    return [(name, types[name]) for name in staging_columns(table)]


def replica_key(table: Table) -> tuple[str, ...]:
    """The replica's key: the spec's, or for an append-only table where the change sits in
    the source log (``CHANGE_ID`` tells full-load rows apart)."""
    return table.key if not table.append_only else (ORDER_KEY, CHANGE_ID)


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


def table_state_columns() -> list[tuple[str, str]]:
    return [("table_name", "VARCHAR(127)"), ("truncated_key", f"VARCHAR({ORDER_KEY_MAX_LENGTH})"),
            ("load_started", f"CHAR({TIME_LENGTH})")]


def added_columns_columns() -> list[tuple[str, str]]:
    return [("table_name", "VARCHAR(127)"), ("column_name", "VARCHAR(127)"),
            ("column_type", "VARCHAR(64)"), ("added_key", f"VARCHAR({ORDER_KEY_MAX_LENGTH})")]


def create_applied_statement(spec: PipelineSpec) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {replica_table(spec, APPLIED)} "
            f"({ident('batch_id')} VARCHAR(64) NOT NULL, "
            f"{ident('applied_at')} TIMESTAMP DEFAULT GETDATE())")


def create_pipeline_table_statement(spec: PipelineSpec, name: str) -> str:
    """``CREATE TABLE`` of ``TABLE_STATE`` or ``ADDED_COLUMNS``."""
    columns = table_state_columns() if name == TABLE_STATE else added_columns_columns()
    key = ("table_name",) if name == TABLE_STATE else ("table_name", "column_name")
    body = ", ".join(f"{ident(c)} {t}{' NOT NULL' if c in key else ''}" for c, t in columns)
    return (f"CREATE TABLE IF NOT EXISTS {replica_table(spec, name)} ({body}, "
            f"PRIMARY KEY ({', '.join(ident(k) for k in key)}))")


def create_schema_statements(spec: PipelineSpec) -> list[str]:
    schemas = dict.fromkeys([spec.replica_schema, spec.target_schema])
    return [f"CREATE SCHEMA IF NOT EXISTS {ident(s)}" for s in schemas]


def recreate_stage_statements(spec: PipelineSpec, table: Table) -> list[str]:
    """The table's stage, with the replica's columns (recreated by every migration: it is
    empty between batches)."""
    stage = stage_table(spec, table.name)
    return [f"DROP TABLE IF EXISTS {stage}",
            f"CREATE TABLE {stage} (LIKE {replica_table(spec, table.name)})"]


def create_replica_statement(spec: PipelineSpec, table: Table) -> str:
    return _create_table(replica_table(spec, table.name), replica_columns(table),
                         replica_key(table))


def create_target_statement(spec: PipelineSpec, target: Target) -> str:
    return _create_table(
        target_table(spec, target.name), target_columns(spec, target), target.key
    )


def add_column_statement(table_name: str, column: str, sql_type: str) -> str:
    return f"ALTER TABLE {table_name} ADD COLUMN {ident(column)} {sql_type}"


def add_replica_column_statements(spec: PipelineSpec, table: str, column: str,
                                  spec_type: str, order_key: str) -> list[str]:
    """Schema evolution: add a source column to its replica and record it (one transaction)."""
    sql_type = parse_column_type(spec_type, f"{table}.{column}").sql
    return [
        add_column_statement(replica_table(spec, table), column, sql_type),
        add_column_statement(stage_table(spec, table), column, sql_type),
        f"INSERT INTO {replica_table(spec, ADDED_COLUMNS)} "
        "(table_name, column_name, column_type, added_key) VALUES ("
        f"{sql_literal(table)}, {sql_literal(column)}, {sql_literal(spec_type)}, "
        f"{sql_literal(order_key)})",
    ]


def widen_varchar_statement(table_name: str, column: str, sql_type: str) -> str:
    return f"ALTER TABLE {table_name} ALTER COLUMN {ident(column)} TYPE {sql_type}"


# --- one batch ------------------------------------------------------------------------------

def added_columns_query(spec: PipelineSpec) -> str:
    """The source columns schema evolution added, per table in the order they were added."""
    return (f"SELECT table_name, column_name, column_type FROM "
            f"{replica_table(spec, ADDED_COLUMNS)} ORDER BY table_name, added_key, column_name")


def added_columns_still_statements(spec: PipelineSpec, known: int) -> list[str]:
    """The start of a transaction that must see exactly ``known`` added columns: LOCK of
    ``ADDED_COLUMNS`` (concurrent adders queue), then a division by zero when another consumer
    added one since it was read (Redshift has no RAISE outside procedures)."""
    added = replica_table(spec, ADDED_COLUMNS)
    return [f"LOCK {added}",
            f"SELECT 1 / (CASE WHEN COUNT(*) = {int(known)} THEN 1 ELSE 0 END) FROM {added}"]


def load_starts_query(spec: PipelineSpec) -> str:
    """The recorded load start of every table being reloaded (``tools.table_reload``)."""
    return (f"SELECT table_name, load_started FROM {replica_table(spec, TABLE_STATE)} "
            "WHERE load_started IS NOT NULL")


def delete_landed_batch_statement(spec: PipelineSpec, batch_id: str) -> str:
    """Remove a batch's landing rows (its landing or apply failed; it is landed again)."""
    return f"DELETE FROM {replica_table(spec, LANDING)} WHERE batch_id = {sql_literal(batch_id)}"


def applier_lock_statement(spec: PipelineSpec) -> str:
    """The first statement of every transaction that writes replicas or wide tables: LOCK of
    the landing table, which only appliers (and consumers landing without a staging bucket)
    write. Redshift's LOCK is ACCESS EXCLUSIVE ("LOCK", Amazon Redshift Database Developer
    Guide), so appliers run one after another (no "1023 Serializable isolation violation"
    between them), while analysts' SELECTs on the replicas and wide tables never wait."""
    return f"LOCK {replica_table(spec, LANDING)}"


def guarded_stage_statement(spec: PipelineSpec, table: Table, changes: str,
                            kept_unless: Mapping[str, str] | None = None) -> str:
    """Fill the stage with the changes of the SELECT ``changes`` (typed as the
    replica) that are newer than what the replica holds for their key and than the table's
    last truncate (``shared.order_key.newer_sql``: the log position decides where both have
    one). An append-only table keeps the changes it does not hold yet (a redelivery adds
    nothing). ``kept_unless`` maps a column to a boolean column of ``changes``: where that is
    false (the consumer did not know the column yet) the replica's value is kept. One
    statement, so a batch costs few statements per table."""
    replica, state = replica_table(spec, table.name), replica_table(spec, TABLE_STATE)
    key = replica_key(table)
    order_key = f"s.{ident(ORDER_KEY)}"
    held = f"r.{ident(key[0])} IS NULL"
    if not table.append_only:
        held = f"({held} OR {newer_sql(order_key, f'r.{ident(ORDER_KEY)}')})"
    truncate = f"(t.truncated_key IS NULL OR {newer_sql(order_key, 't.truncated_key')})"
    kept = kept_unless or {}
    columns = ", ".join(ident(c) for c in staging_columns(table))
    columns_of_s = ", ".join(
        f"CASE WHEN s.{ident(kept[c])} OR s.{ident(DELETED)} THEN s.{ident(c)} "
        f"ELSE r.{ident(c)} END" if c in kept else f"s.{ident(c)}"
        for c in staging_columns(table))
    return (
        f"INSERT INTO {stage_table(spec, table.name)} ({columns}) SELECT {columns_of_s} "
        f"FROM ({changes}) s "
        f"LEFT JOIN {replica} r ON {_key_match('s', 'r', key, key)} "
        f"LEFT JOIN {state} t ON t.table_name = {sql_literal(table.name)} "
        f"WHERE {held} AND {truncate}"
    )


def _record_table_state(spec: PipelineSpec, table: str, column: str, value: str,
                        only_if: str | None = None) -> list[str]:
    """Set ``column`` of the table's ``TABLE_STATE`` row to the SQL literal ``value`` (when
    ``only_if`` holds), creating the row when missing."""
    state, name = replica_table(spec, TABLE_STATE), sql_literal(table)
    condition = f" AND ({only_if})" if only_if else ""
    return [
        f"UPDATE {state} SET {column} = {value} WHERE table_name = {name}{condition}",
        f"INSERT INTO {state} (table_name, {column}) SELECT {name}, {value} "
        f"WHERE NOT EXISTS (SELECT 1 FROM {state} WHERE table_name = {name})",
    ]


def _remove_rows(spec: PipelineSpec, table: Table, condition: str, key: str) -> str:
    """Delete the live replica rows matching ``condition``: tombstones with order key ``key``
    (an SQL literal), or the rows themselves in hard-delete mode."""
    replica = replica_table(spec, table.name)
    if spec.delete_mode == "hard" or table.append_only:
        return f"DELETE FROM {replica} WHERE {condition}"
    emptied = ", ".join(f"{ident(c)} = NULL" for c in table.column_names if c not in table.key)
    return (
        f"UPDATE {replica} SET {emptied + ', ' if emptied else ''}{ident(DELETED)} = TRUE, "
        f"{ident(ORDER_KEY)} = {key} WHERE NOT {replica}.{ident(DELETED)} AND {condition}"
    )


def truncate_statements(spec: PipelineSpec, table: Table, key: str) -> list[str]:
    """A source ``TRUNCATE`` as of the order key in SQL expression ``key`` (a literal, or a
    procedure variable): record it (the newest wins) and delete every replica row not newer
    than it (a tombstone, or the row itself in hard-delete mode)."""
    replica = replica_table(spec, table.name)
    older = f"NOT {newer_sql(f'{replica}.{ident(ORDER_KEY)}', key)}"
    return [
        *_record_table_state(spec, table.name, "truncated_key", key,
                             f"truncated_key IS NULL OR {newer_sql(key, 'truncated_key')}"),
        _remove_rows(spec, table, older, key),
    ]


def rows_newer_than_query(spec: PipelineSpec, table: str, order_key: str) -> str:
    """How many live replica rows carry a change newer than ``order_key`` (column ``n``)."""
    replica = replica_table(spec, table)
    newer = newer_sql(f"{replica}.{ident(ORDER_KEY)}", sql_literal(order_key))
    return f"SELECT COUNT(*) AS n FROM {replica} WHERE NOT {replica}.{ident(DELETED)} AND {newer}"


def reload_start_statements(spec: PipelineSpec, table: str, started: str) -> list[str]:
    """Record that a reload of ``table`` starts at ``started`` (27-char UTC): full-load rows
    read from then on beat the CDC changes committed before it (``shared.order_key``)."""
    return _record_table_state(spec, table, "load_started", sql_literal(started))


def _older_than_reload(spec: PipelineSpec, table: str, started: str) -> str:
    """Rows whose time is older than the reload's start: the reload did not read them and no
    change committed since touched them."""
    replica = replica_table(spec, table)
    return (f"SUBSTRING({replica}.{ident(ORDER_KEY)}, {TIME_START + 1}, {TIME_LENGTH}) "
            f"< {sql_literal(started)}")


def reload_stale_rows_query(spec: PipelineSpec, table: str, started: str) -> str:
    """How many live rows ``reload_sweep_statements`` would delete (column ``n``)."""
    replica = replica_table(spec, table)
    return (f"SELECT COUNT(*) AS n FROM {replica} WHERE NOT {replica}.{ident(DELETED)} AND "
            f"{_older_than_reload(spec, table, started)}")


def reload_sweep_statements(spec: PipelineSpec, table: Table, started: str) -> list[str]:
    """After a reload that started at ``started`` was applied: delete every replica row that
    neither the reload read nor a change committed since touched (its time is older), then
    recompute the wide tables that join the table. The tombstone's key is the load start, so
    a late row of the same reload still beats it. (Hard-delete mode keeps no tombstones, so its
    DELETE needs no live-row condition.)"""
    tombstone = sql_literal(with_load_time(LOAD_KEY_UNKNOWN_TIME, started))
    statements = [applier_lock_statement(spec),
                  _remove_rows(spec, table, _older_than_reload(spec, table.name, started),
                               tombstone)]
    for target in spec.targets.values():
        if table.name in {target.fact, *(j.table for j in target.joins)}:
            statements.extend(merge_target_statements(spec, target, restrict_to_affected=False))
            statements.append(
                delete_gone_facts_statement(spec, target, restrict_to_affected=False))
    return statements


def _upsert_statement(target: str, source: str, key: Sequence[str],
                      columns: Sequence[str], keep_when_null: Sequence[str] = ()) -> str:
    """MERGE in Redshift's grammar: one WHEN MATCHED (update every non-key column from the
    source row ``s``) and one WHEN NOT MATCHED (insert it), no conditions.

    A ``keep_when_null`` column keeps the target's value when the change carries none (an
    unchanged PostgreSQL TOAST value arrives as null), except on a delete's tombstone.
    """
    updates = ", ".join(
        f"{ident(c)} = CASE WHEN s.{ident(DELETED)} THEN NULL "
        f"ELSE COALESCE(s.{ident(c)}, {target}.{ident(c)}) END"
        if c in keep_when_null else f"{ident(c)} = s.{ident(c)}"
        for c in columns if c not in key
    )
    return (
        f"MERGE INTO {target} USING {source} s "
        f"ON {_key_match(target, 's', key, key)} "
        f"WHEN MATCHED THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(ident(c) for c in columns)}) "
        f"VALUES ({', '.join('s.' + ident(c) for c in columns)})"
    )


def merge_replica_statement(spec: PipelineSpec, table: Table) -> str:
    return _upsert_statement(replica_table(spec, table.name), stage_table(spec, table.name),
                             table.key, staging_columns(table), table.keep_when_null)


def append_statement(spec: PipelineSpec, table: Table) -> str:
    """An append-only table: append the staged changes (``guarded_stage_statement`` left out
    the ones it holds)."""
    columns = ", ".join(ident(c) for c in staging_columns(table))
    return (f"INSERT INTO {replica_table(spec, table.name)} ({columns}) "
            f"SELECT {columns} FROM {stage_table(spec, table.name)}")


def hard_delete_statement(spec: PipelineSpec, table: Table) -> str:
    replica = replica_table(spec, table.name)
    match = _key_match(replica, "s", table.key, table.key)
    return (
        f"DELETE FROM {replica} USING {stage_table(spec, table.name)} s "
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
        selects.append(f"SELECT {key_cols} FROM {stage_table(spec, target.fact)} {fact_alias}")
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
            f"JOIN {stage_table(spec, last.table)} {ident(last.alias)} ON "
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


def wide_rows_table(target: str) -> str:
    return ident(f"wide_rows_{target}")


def merge_target_statements(spec: PipelineSpec, target: Target,
                            restrict_to_affected: bool) -> list[str]:
    """MERGE the recomputed wide rows (of the affected facts, or of all facts on a rebuild).

    The rows are first collected in a temp table, because a Redshift MERGE source is a table:
    the MERGE page (https://docs.aws.amazon.com/redshift/latest/dg/r_MERGE.html) defines
    ``source_table`` as "the temporary or permanent table supplying the rows", and AWS re:Post
    ("merge statement with filter") says a view, subquery or CTE source is not allowed.
    """
    rows = wide_rows_table(target.name)
    return [
        f"CREATE TEMP TABLE {rows} AS {_wide_select(spec, target, restrict_to_affected)}",
        _upsert_statement(target_table(spec, target.name), rows,
                          target.key, [c.name for c in target.columns]),
    ]


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


def rebuild_target_statements(spec: PipelineSpec, target: Target) -> list[str]:
    """Recompute a whole wide table from the replicas (after a migration changed it)."""
    return [
        applier_lock_statement(spec),
        *merge_target_statements(spec, target, restrict_to_affected=False),
        delete_gone_facts_statement(spec, target, restrict_to_affected=False),
    ]
