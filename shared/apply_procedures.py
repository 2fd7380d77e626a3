"""The stored procedures that apply a landed batch, and the landing table they read.

A batch of any width costs the same few Data API calls: the consumer lands every change of the
batch in one generic table (``_cdc_landing``: batch id, source table, kind, and the row as a
SUPER object), with one COPY or a few multi-row INSERTs, then calls ``_cdc_apply_batch`` once.
That procedure runs, inside the caller's transaction, the per-table procedure of every table
the batch touched (found by a dynamic ``CALL``), then the procedure of every wide table whose
fact or dimensions were touched, then removes the batch from the landing table. (The writer
sends ``LOCK`` on the replicas and wide tables first, in the same transaction.) So an analyst
sees the whole batch or none of it, and the Data API's limits (40 statements per
BatchExecuteStatement, 100,000 bytes per statement) bound only the landing of the rows.

The migration creates one procedure per source table and per wide table (each well under the
100,000-byte statement limit), and recreates a table's procedure when schema evolution adds a
column. Redshift documentation relied on:

- "CREATE PROCEDURE" and "Supported PL/pgSQL statements" (assignment, SELECT INTO, IF, WHILE,
  dynamic SQL with EXECUTE, RAISE): https://docs.aws.amazon.com/redshift/latest/dg/c_PLpgSQL-statements.html
- "CALL": nested calls up to 16 levels; a CALL inside a transaction block runs in it:
  https://docs.aws.amazon.com/redshift/latest/dg/r_CALL_procedure.html
- "Limits and differences for stored procedure support": one open cursor per session (so no
  FOR loop over a query around nested calls: the dispatcher walks a LISTAGG string instead),
  2 MB of source per procedure, 10,000 procedures per database:
  https://docs.aws.amazon.com/redshift/latest/dg/stored-procedure-constraints.html
- "TO_VARBYTE function": formats hex, binary, utf8 and base64 (a landed ``bytes`` value is
  base64, as ``msgspec`` writes it; COPY cannot load VARBYTE from JSON, so it goes through
  the SUPER row): https://docs.aws.amazon.com/redshift/latest/dg/r_TO_VARBYTE.html
- "Navigation" / "Limitations" of the SUPER type: ``l.row_data."column"`` reads an attribute;
  a string value casts to VARCHAR and then to the column type; a single string value holds at
  most 65,535 bytes: https://docs.aws.amazon.com/redshift/latest/dg/limitations-super.html
"""

from __future__ import annotations

import hashlib

from shared.spec import PipelineSpec, Table, Target
from shared.staging import CHANGE_ID, DELETED, ORDER_KEY, sql_literal, staging_columns
from shared.warehouse_sql import (
    ADDED_COLUMNS,
    LANDING,
    STAGE_PREFIX,
    affected_keys_statement,
    affected_table,
    append_statement,
    delete_gone_facts_statement,
    guarded_stage_statement,
    hard_delete_statement,
    ident,
    merge_replica_statement,
    merge_target_statements,
    replica_table,
    truncate_statements,
    wide_rows_table,
)

APPLY_BATCH = "_cdc_apply_batch"
TABLE_PROCEDURE_PREFIX = "_cdc_apply_"
TARGET_PROCEDURE_PREFIX = "_cdc_wide_"
# Landing rows of an interrupted batch (a consumer that died between landing and applying,
# without a staging bucket) are removed by a later batch after this long.
ORPHAN_AGE = "INTERVAL '1 day'"
KIND_CHANGE = "c"
KIND_TRUNCATE = "t"
BATCH_PARAM = "_cdc_batch"
_NATIVE_JSON = ("smallint", "integer", "bigint", "real", "double", "boolean")


def landing_columns() -> list[tuple[str, str]]:
    return [("batch_id", "VARCHAR(64)"), ("table_name", "VARCHAR(127)"), ("kind", "CHAR(1)"),
            ("row_data", "SUPER"), ("landed_at", "TIMESTAMP")]


def create_landing_statement(spec: PipelineSpec) -> str:
    required = ("batch_id", "table_name", "kind")
    body = ", ".join(f"{ident(c)} {t}{' NOT NULL' if c in required else ''}"
                     f"{' DEFAULT GETDATE()' if c == 'landed_at' else ''}"
                     for c, t in landing_columns())
    return (f"CREATE TABLE IF NOT EXISTS {replica_table(spec, LANDING)} ({body}) "
            f"DISTSTYLE EVEN SORTKEY({ident('batch_id')})")


def procedure_name(spec: PipelineSpec, prefix: str, name: str) -> str:
    return f"{ident(spec.replica_schema)}.{ident(prefix + name)}"


def _value(column: str, kind: str, sql_type: str) -> str:
    """The landed value of ``column`` as ``sql_type``. Numbers and booleans are JSON numbers
    and booleans; decimals, dates, times and text are JSON strings; binary is base64 (what
    ``msgspec`` writes for bytes); SUPER columns keep the JSON value."""
    attribute = f"l.{ident('row_data')}.{ident(column)}"
    if kind == "super":
        return attribute
    if kind == "varbyte":
        return f"TO_VARBYTE(CAST({attribute} AS VARCHAR(65535)), 'base64')"
    if kind in _NATIVE_JSON:
        return f"CAST({attribute} AS {sql_type})"
    return f"CAST(CAST({attribute} AS VARCHAR(65535)) AS {sql_type})"


def landed_rows_select(spec: PipelineSpec, table: Table) -> str:
    """The batch's changes of ``table`` from the landing table, typed as its replica."""
    values = []
    names = staging_columns(table)
    for name in names:
        if name == ORDER_KEY:
            values.append(_value(name, "varchar", "VARCHAR(142)"))
        elif name == DELETED:
            values.append(_value(name, "boolean", "BOOLEAN"))
        elif name == CHANGE_ID:
            values.append(_value(name, "varchar", "VARCHAR(128)"))
        elif name in table.column_names:
            column_type = table.column(name).warehouse_type
            values.append(_value(name, column_type.kind, column_type.sql))
        else:  # the truncated-text flag (``staging_columns``)
            values.append(_value(name, "boolean", "BOOLEAN"))
    typed = ", ".join(f"{v} AS {ident(n)}" for v, n in zip(values, names, strict=True))
    return (f"SELECT {typed} FROM {replica_table(spec, LANDING)} l "
            f"WHERE l.{ident('batch_id')} = {BATCH_PARAM} AND l.{ident('table_name')} = "
            f"{sql_literal(table.name)} AND l.{ident('kind')} = '{KIND_CHANGE}'")


def _procedure(name: str, params: str, declare: list[str], body: list[str]) -> str:
    declarations = "".join(f" {d};" for d in declare)
    statements = " ".join(s if s.endswith(";") else s + ";" for s in body)
    return (f"CREATE OR REPLACE PROCEDURE {name}({params}) AS $$"
            f"{' DECLARE' + declarations if declare else ''} BEGIN {statements} END; "
            "$$ LANGUAGE plpgsql")


def table_procedure_statement(spec: PipelineSpec, table: Table) -> str:
    """``_cdc_apply_<table>(batch, truncated)``: the table's truncate of the batch (when
    ``truncated``), then its changes staged (only those newer than the replica and the last
    truncate) and MERGEd (appended, for an append-only table; hard-deleted rows removed in
    hard-delete mode). The stage table stays for the wide tables' procedures."""
    landing = replica_table(spec, LANDING)
    truncate = [
        f"SELECT INTO _cdc_truncate CAST(CAST(l.{ident('row_data')}.{ident(ORDER_KEY)} "
        f"AS VARCHAR(65535)) AS VARCHAR(142)) FROM {landing} l "
        f"WHERE l.{ident('batch_id')} = {BATCH_PARAM} "
        f"AND l.{ident('table_name')} = {sql_literal(table.name)} "
        f"AND l.{ident('kind')} = '{KIND_TRUNCATE}'",
        *truncate_statements(spec, table, "_cdc_truncate"),
    ]
    body = [
        "IF _cdc_truncated THEN " + " ".join(s + ";" for s in truncate) + " END IF",
        guarded_stage_statement(spec, table, landed_rows_select(spec, table)),
    ]
    if table.append_only:
        body.append(append_statement(spec, table))
    else:
        body.append(merge_replica_statement(spec, table))
    if spec.delete_mode == "hard" and not table.append_only:
        body.append(hard_delete_statement(spec, table))
    return _procedure(procedure_name(spec, TABLE_PROCEDURE_PREFIX, table.name),
                      f"{BATCH_PARAM} VARCHAR(64), _cdc_truncated BOOLEAN",
                      ["_cdc_truncate VARCHAR(142)"], body)


def target_procedure_statement(spec: PipelineSpec, target: Target) -> str:
    """``_cdc_wide_<target>(batch, whole)``: recompute the wide rows of the facts the batch
    touched (directly or through a joined dimension), or of every fact when ``whole`` (a
    truncate of one of its tables touched rows the batch did not stage)."""
    tables = [target.fact, *dict.fromkeys(j.table for j in target.joins)]
    affected = affected_keys_statement(spec, target, tables)
    assert affected is not None
    whole = [*merge_target_statements(spec, target, restrict_to_affected=False),
             delete_gone_facts_statement(spec, target, restrict_to_affected=False)]
    restricted = [affected,
                  *merge_target_statements(spec, target, restrict_to_affected=True),
                  delete_gone_facts_statement(spec, target, restrict_to_affected=True)]
    body = [
        "IF _cdc_whole THEN " + " ".join(s + ";" for s in whole)
        + " ELSE " + " ".join(s + ";" for s in restricted) + " END IF",
        f"DROP TABLE IF EXISTS {wide_rows_table(target.name)}",
        f"DROP TABLE IF EXISTS {affected_table(target.name)}",
    ]
    return _procedure(procedure_name(spec, TARGET_PROCEDURE_PREFIX, target.name),
                      f"{BATCH_PARAM} VARCHAR(64), _cdc_whole BOOLEAN", [], body)


def procedures_fingerprint(spec: PipelineSpec) -> str:
    """What the table and wide-table procedures of ``spec`` (the spec as written, without the
    columns schema evolution added) are: a consumer passes it with each call, so a consumer
    whose spec is not the one the warehouse was migrated to fails with a clear error instead
    of applying batches with another spec's SQL."""
    text = "\n".join([*(table_procedure_statement(spec, t) for t in spec.tables.values()),
                      *(target_procedure_statement(spec, t) for t in spec.targets.values())])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def apply_batch_procedure_statement(spec: PipelineSpec, fingerprint: str) -> str:
    """``_cdc_apply_batch(batch, added_known)``: the one call that applies a landed batch
    (after the caller's LOCK of the replicas and wide tables, in the same transaction).

    ``added_known`` is how many added source columns the consumer decoded with (-1 when
    schema evolution is off): when another consumer added one since, the procedure raises
    ``ADDED_COLUMNS_CHANGED`` before writing anything, and the consumer decodes again.
    """
    landing = replica_table(spec, LANDING)
    batch_rows = f"FROM {landing} WHERE {ident('batch_id')} = {BATCH_PARAM}"
    dispatch = (
        f"EXECUTE 'CALL ' || {sql_literal(ident(spec.replica_schema) + '.')} || "
        f"QUOTE_IDENT({sql_literal(TABLE_PROCEDURE_PREFIX)} || _cdc_table) || '(' || "
        f"QUOTE_LITERAL({BATCH_PARAM}) || ', ' || CASE WHEN POSITION(',' || _cdc_table || ',' "
        "IN _cdc_truncated) > 0 THEN 'TRUE' ELSE 'FALSE' END || ')'"
    )
    body = [
        f"IF _cdc_fingerprint <> '{fingerprint}' THEN RAISE EXCEPTION '{SPEC_CHANGED}: the "
        "warehouse was migrated to another spec; run the schema migration with the consumers'' "
        "spec (procedures %, consumer %)', "
        f"'{fingerprint}', _cdc_fingerprint; END IF",
        "IF _cdc_added_known >= 0 THEN "
        f"SELECT INTO _cdc_count COUNT(*) FROM {replica_table(spec, ADDED_COLUMNS)}; "
        "IF _cdc_count <> _cdc_added_known THEN "
        f"RAISE EXCEPTION '{ADDED_COLUMNS_CHANGED}: % known, % recorded', _cdc_added_known, "
        "_cdc_count; END IF; END IF",
        f"SELECT INTO _cdc_tables LISTAGG(DISTINCT {ident('table_name')}, ',') {batch_rows}",
        f"SELECT INTO _cdc_truncated LISTAGG(DISTINCT {ident('table_name')}, ',') {batch_rows} "
        f"AND {ident('kind')} = '{KIND_TRUNCATE}'",
        "_cdc_truncated := ',' || NVL(_cdc_truncated, '') || ','",
        "_cdc_table := SPLIT_PART(_cdc_tables, ',', _cdc_i)",
        f"WHILE _cdc_table <> '' LOOP {dispatch}; _cdc_i := _cdc_i + 1; "
        "_cdc_table := SPLIT_PART(_cdc_tables, ',', _cdc_i); END LOOP",
        "_cdc_touched := _cdc_tables",
        "_cdc_tables := ',' || NVL(_cdc_tables, '') || ','",
    ]
    for target in spec.targets.values():
        tables = [target.fact, *dict.fromkeys(j.table for j in target.joins)]

        def any_in(variable: str, tables: list[str] = tables) -> str:
            return " OR ".join(f"POSITION({sql_literal(',' + t + ',')} IN {variable}) > 0"
                               for t in tables)

        body.append(
            f"IF {any_in('_cdc_tables')} THEN CALL "
            f"{procedure_name(spec, TARGET_PROCEDURE_PREFIX, target.name)}({BATCH_PARAM}, "
            f"{any_in('_cdc_truncated')}); END IF")
    clear = (f"EXECUTE 'DELETE FROM ' || {sql_literal(ident(spec.replica_schema) + '.')} || "
             f"QUOTE_IDENT({sql_literal(STAGE_PREFIX)} || _cdc_table)")
    body += [
        "_cdc_i := 1",
        "_cdc_table := SPLIT_PART(_cdc_touched, ',', _cdc_i)",
        f"WHILE _cdc_table <> '' LOOP {clear}; _cdc_i := _cdc_i + 1; "
        "_cdc_table := SPLIT_PART(_cdc_touched, ',', _cdc_i); END LOOP",
        f"DELETE FROM {landing} WHERE {ident('batch_id')} = {BATCH_PARAM} "
        f"OR {ident('landed_at')} < GETDATE() - {ORPHAN_AGE}",
    ]
    declare = ["_cdc_tables VARCHAR(65535)", "_cdc_touched VARCHAR(65535)",
               "_cdc_truncated VARCHAR(65535)",
               "_cdc_table VARCHAR(127)", "_cdc_count INTEGER", "_cdc_i INTEGER := 1"]
    return _procedure(procedure_name(spec, "", APPLY_BATCH),
                      f"{BATCH_PARAM} VARCHAR(64), _cdc_added_known INTEGER, "
                      "_cdc_fingerprint VARCHAR(32)", declare, body)


ADDED_COLUMNS_CHANGED = "added source columns changed"
SPEC_CHANGED = "apply procedures of another spec"


def apply_batch_call(spec: PipelineSpec, batch_id: str, added_known: int | None,
                     fingerprint: str) -> str:
    return (f"CALL {procedure_name(spec, '', APPLY_BATCH)}({sql_literal(batch_id)}, "
            f"{-1 if added_known is None else int(added_known)}, {sql_literal(fingerprint)})")


def procedure_statements(spec: PipelineSpec, base: PipelineSpec | None = None) -> list[str]:
    """Every procedure of ``spec`` (``CREATE OR REPLACE``: idempotent); ``base``: the spec as
    written, when ``spec`` has columns schema evolution added (``procedures_fingerprint``)."""
    return [
        *(table_procedure_statement(spec, t) for t in spec.tables.values()),
        *(target_procedure_statement(spec, t) for t in spec.targets.values()),
        apply_batch_procedure_statement(spec, procedures_fingerprint(base or spec)),
    ]


def procedure_signatures(spec: PipelineSpec) -> list[str]:
    """``name(argument types)`` of every procedure, for GRANT/ALTER ... OWNER."""
    return [
        *(f"{procedure_name(spec, TABLE_PROCEDURE_PREFIX, t)}(VARCHAR, BOOLEAN)"
          for t in spec.tables),
        *(f"{procedure_name(spec, TARGET_PROCEDURE_PREFIX, t)}(VARCHAR, BOOLEAN)"
          for t in spec.targets),
        f"{procedure_name(spec, '', APPLY_BATCH)}(VARCHAR, INTEGER, VARCHAR)",
    ]
