"""The stored procedures that apply landed batches, and the landing table they read.

A batch of any width costs the same few Data API calls: its changes are landed in one generic
table (``_cdc_landing``: batch id, source table, kind, and the row as a SUPER object, plus one
end-of-batch row that makes the batch pending), then ``_cdc_apply_pending`` applies every
pending batch at once (docs/warehouse-apply.md): for each table with pending changes its
procedure (found by a dynamic ``CALL``) stages the newest change per key across the batches and
MERGEs it, then the procedure of every wide table whose fact or dimensions were touched runs,
then the applied batches are recorded (``_cdc_applied``) and removed from the landing table.
The caller sends ``LOCK`` of the landing table first, in the same transaction, so appliers run
one after another while analysts keep reading; they see all of an apply or none of it.

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
- "Window functions" (ROW_NUMBER, MIN, FIRST_VALUE with a frame clause), for the newest change
  per key across batches: https://docs.aws.amazon.com/redshift/latest/dg/c_Window_functions.html
- "TO_VARBYTE function": formats hex, binary, utf8 and base64 (a landed ``bytes`` value is
  base64, as ``msgspec`` writes it; COPY cannot load VARBYTE from JSON, so it goes through
  the SUPER row): https://docs.aws.amazon.com/redshift/latest/dg/r_TO_VARBYTE.html
- "Navigation" / "Limitations" of the SUPER type: ``l.row_data."column"`` reads an attribute;
  a string value casts to VARCHAR and then to the column type; a single string value holds at
  most 65,535 bytes: https://docs.aws.amazon.com/redshift/latest/dg/limitations-super.html
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from shared.order_key import reduction_key_sql
from shared.spec import PipelineSpec, Table, Target
from shared.staging import CHANGE_ID, DELETED, ORDER_KEY, sql_literal, staging_columns
from shared.warehouse_sql import (
    APPLIED,
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
    replica_key,
    replica_table,
    truncate_statements,
    wide_rows_table,
)

APPLY_PENDING = "_cdc_apply_pending"
TABLE_PROCEDURE_PREFIX = "_cdc_apply_"
TARGET_PROCEDURE_PREFIX = "_cdc_wide_"
# Landing rows of a batch that never became pending (a consumer that died between two landing
# transactions, without a staging bucket) are removed after this long.
ORPHAN_AGE = "INTERVAL '1 day'"
# How long an applied batch is remembered, so that one delivered again (the applier's queue
# keeps a message at most 14 days) is not applied twice.
APPLIED_MEMORY = "INTERVAL '15 days'"
FORGET_EVERY_APPLIES = 50
KIND_CHANGE = "c"
KIND_TRUNCATE = "t"
# The last row of a landed batch: it makes the batch pending. Its ``row_data`` holds ``known``,
# the added source columns the consumer decoded with (``known_columns``).
KIND_END = "e"
# The temp table of the batches one apply takes (created by ``_cdc_apply_pending``).
PENDING = "_cdc_pending"
_NATIVE_JSON = ("smallint", "integer", "bigint", "real", "double", "boolean")
_KNEW_PREFIX = "_cdc_knew_"
_RANK = "_cdc_rank"


def landing_columns() -> list[tuple[str, str]]:
    return [("batch_id", "VARCHAR(64)"), ("table_name", "VARCHAR(127)"), ("kind", "CHAR(1)"),
            ("row_data", "SUPER"), ("landed_at", "TIMESTAMP")]


# The landing columns a consumer writes (``landed_at`` takes its default).
LANDED_COLUMNS = tuple(name for name, _ in landing_columns() if name != "landed_at")


def create_landing_statement(spec: PipelineSpec) -> str:
    required = ("batch_id", "table_name", "kind")
    body = ", ".join(f"{ident(c)} {t}{' NOT NULL' if c in required else ''}"
                     f"{' DEFAULT GETDATE()' if c == 'landed_at' else ''}"
                     for c, t in landing_columns())
    return (f"CREATE TABLE IF NOT EXISTS {replica_table(spec, LANDING)} ({body}) "
            f"DISTSTYLE EVEN SORTKEY({ident('batch_id')})")


def copy_landing_statement(spec: PipelineSpec, url: str, iam_role_arn: str) -> str:
    """COPY landing rows from the JSON-lines object (or every object under the prefix) at
    ``url``, or from the objects a manifest lists when ``url`` ends with ``.manifest``."""
    columns = ", ".join(ident(c) for c in LANDED_COLUMNS)
    role = iam_role_arn.replace("'", "''")
    manifest = " MANIFEST" if url.endswith(".manifest") else ""
    return (f"COPY {replica_table(spec, LANDING)} ({columns}) FROM '{url}' "
            f"IAM_ROLE '{role}' FORMAT AS JSON 'auto'{manifest}")


def known_columns(added: Mapping[str, Sequence[tuple[str, str]]]) -> str:
    """The added source columns a consumer decoded with, as the end-of-batch row carries them:
    ``,table.column,`` for each (spec names: no commas)."""
    names = [f"{table}.{column}" for table, columns in sorted(added.items())
             for column, _ in columns]
    return "," + ",".join(names) + "," if names else ""


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


def _pending_landing(spec: PipelineSpec) -> str:
    """The landing rows (``l``) of the pending batches (``p``, with their ``known``)."""
    return (f"FROM {replica_table(spec, LANDING)} l JOIN {PENDING} p "
            f"ON l.{ident('batch_id')} = p.{ident('batch_id')}")


def _pending_rows(spec: PipelineSpec, table: Table, kind: str) -> str:
    return (f"{_pending_landing(spec)} WHERE l.{ident('table_name')} = "
            f"{sql_literal(table.name)} AND l.{ident('kind')} = '{kind}'")


def landed_rows_select(spec: PipelineSpec, table: Table, added: Sequence[str] = ()) -> str:
    """The pending changes of ``table``, typed as its replica, with the batch they came in
    and, per column in ``added`` (schema evolution), whether that batch's consumer knew it."""
    values = []
    names = staging_columns(table)
    for name in names:
        if name in table.column_names:
            column_type = table.column(name).warehouse_type
            values.append(_value(name, column_type.kind, column_type.sql))
        elif name == ORDER_KEY:
            values.append(_value(name, "varchar", "VARCHAR(142)"))
        elif name == DELETED:
            values.append(_value(name, "boolean", "BOOLEAN"))
        elif name == CHANGE_ID:
            values.append(_value(name, "varchar", "VARCHAR(128)"))
        else:  # the truncated-text flag (``staging_columns``)
            values.append(_value(name, "boolean", "BOOLEAN"))
    typed = [f"{v} AS {ident(n)}" for v, n in zip(values, names, strict=True)]
    typed.append(f"l.{ident('batch_id')} AS _cdc_batch")
    typed += [f"POSITION({sql_literal(f',{table.name}.{c},')} IN p.known) > 0 "
              f"AS {ident(_KNEW_PREFIX + c)}" for c in added]
    return f"SELECT {', '.join(typed)} {_pending_rows(spec, table, KIND_CHANGE)}"


def newest_pending_select(spec: PipelineSpec, table: Table, added: Sequence[str] = ()) -> str:
    """The newest pending change per key of ``table`` across the pending batches, as
    ``shared.transform.newest_change`` picks it within one batch (``reduction_key_sql``;
    a change landed twice counts once). A ``keep_when_null`` column the newest change lacks
    takes the newest value an older pending change carries, never from before a delete
    (``shared.transform.kept_values``); so does a column in ``added`` (schema evolution) whose
    newest change came from a consumer that did not know it yet, from the newest change whose
    consumer did (its ``_cdc_knew_`` flag then says some change knew it)."""
    key = ", ".join(f"a.{ident(k)}" for k in replica_key(table))
    classes = (f"SELECT a.*, MIN(LEFT(a.{ident(ORDER_KEY)}, 1)) OVER (PARTITION BY {key}) "
               f"AS _cdc_classes FROM ({landed_rows_select(spec, table, added)}) a")
    partition = f"PARTITION BY {', '.join(f'b.{ident(k)}' for k in replica_key(table))}"
    rank_key = reduction_key_sql(f"b.{ident(ORDER_KEY)}", "b._cdc_classes = '2'")
    windows = [f"ROW_NUMBER() OVER ({partition} ORDER BY {rank_key} DESC, b._cdc_batch DESC) "
               f"AS {_RANK}"]
    carried = [(c, f"b.{ident(c)} IS NOT NULL") for c in table.keep_when_null]
    carried += [(c, f"b.{ident(_KNEW_PREFIX + c)}") for c in added]
    if carried:
        windows.append(f"MAX(CASE WHEN b.{ident(DELETED)} THEN {rank_key} END) "
                       f"OVER ({partition}) AS _cdc_deleted_rank")
    whole = "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
    for i, (column, present) in enumerate(carried):
        carrying = (f"OVER ({partition} ORDER BY CASE WHEN {present} THEN 0 ELSE 1 END, "
                    f"{rank_key} DESC {whole})")
        windows += [f"FIRST_VALUE(b.{ident(column)}) {carrying} AS _cdc_kept_{i}",
                    f"FIRST_VALUE({rank_key}) {carrying} AS _cdc_kept_rank_{i}",
                    f"MAX(CASE WHEN {present} THEN 1 ELSE 0 END) OVER ({partition}) "
                    f"AS _cdc_kept_any_{i}"]
    ranked = f"SELECT b.*, {', '.join(windows)} FROM ({classes}) b"

    def since_delete(i: int) -> str:
        return (f"c._cdc_kept_any_{i} = 1 AND (c._cdc_deleted_rank IS NULL "
                f"OR c._cdc_kept_rank_{i} > c._cdc_deleted_rank)")

    index = {column: i for i, (column, _) in enumerate(carried)}
    outputs = []
    for name in staging_columns(table):
        if name in index:
            outputs.append(
                f"CASE WHEN c.{ident(DELETED)} THEN NULL WHEN {since_delete(index[name])} "
                f"THEN c._cdc_kept_{index[name]} ELSE c.{ident(name)} END AS {ident(name)}")
        else:
            outputs.append(f"c.{ident(name)}")
    outputs += [f"c.{ident(_KNEW_PREFIX + col)} OR ({since_delete(index[col])}) "
                f"AS {ident(_KNEW_PREFIX + col)}" for col in added]
    return f"SELECT {', '.join(outputs)} FROM ({ranked}) c WHERE c.{_RANK} = 1"


def _procedure(name: str, params: str, declare: list[str], body: list[str]) -> str:
    declarations = "".join(f" {d};" for d in declare)
    statements = " ".join(s if s.endswith(";") else s + ";" for s in body)
    return (f"CREATE OR REPLACE PROCEDURE {name}({params}) AS $$"
            f"{' DECLARE' + declarations if declare else ''} BEGIN {statements} END; "
            "$$ LANGUAGE plpgsql")


def table_procedure_statement(spec: PipelineSpec, table: Table,
                              base: Table | None = None) -> str:
    """``_cdc_apply_<table>(has_truncates)``: the table's pending truncates (when there are),
    then its newest pending change per key staged (only those newer than the replica and the
    last truncate) and MERGEd (appended, for an append-only table; hard-deleted rows removed in
    hard-delete mode). The stage table stays for the wide tables' procedures. ``base``: the
    table as the spec writes it, when ``table`` has columns schema evolution added (a batch
    whose consumer did not know one keeps the replica's value of it)."""
    added = [c for c in table.column_names if base is not None and c not in base.column_names]
    order_key = f"CAST(CAST(l.{ident('row_data')}.{ident(ORDER_KEY)} AS VARCHAR(65535)) AS " \
        "VARCHAR(142))"
    truncate = [
        f"SELECT INTO _cdc_keys LISTAGG({order_key}, ',') "
        f"{_pending_rows(spec, table, KIND_TRUNCATE)}",
        "_cdc_truncate := SPLIT_PART(_cdc_keys, ',', _cdc_i)",
        "WHILE _cdc_truncate <> '' LOOP "
        + " ".join(s + ";" for s in truncate_statements(spec, table, "_cdc_truncate"))
        + " _cdc_i := _cdc_i + 1; _cdc_truncate := SPLIT_PART(_cdc_keys, ',', _cdc_i); END LOOP",
    ]
    body = [
        "IF _cdc_has_truncates THEN " + " ".join(s + ";" for s in truncate) + " END IF",
        guarded_stage_statement(spec, table, newest_pending_select(spec, table, added),
                                {c: _KNEW_PREFIX + c for c in added}),
    ]
    if table.append_only:
        body.append(append_statement(spec, table))
    else:
        body.append(merge_replica_statement(spec, table))
    if spec.delete_mode == "hard" and not table.append_only:
        body.append(hard_delete_statement(spec, table))
    return _procedure(procedure_name(spec, TABLE_PROCEDURE_PREFIX, table.name),
                      "_cdc_has_truncates BOOLEAN",
                      ["_cdc_keys VARCHAR(65535)", "_cdc_truncate VARCHAR(142)",
                       "_cdc_i INTEGER := 1"], body)


def target_procedure_statement(spec: PipelineSpec, target: Target) -> str:
    """``_cdc_wide_<target>(whole)``: recompute the wide rows of the facts the apply touched
    (directly or through a joined dimension), or of every fact when ``whole`` (a truncate of
    one of its tables touched rows the apply did not stage)."""
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
                      "_cdc_whole BOOLEAN", [], body)


def procedures_fingerprint(spec: PipelineSpec) -> str:
    """What the table and wide-table procedures of ``spec`` (the spec as written, without the
    columns schema evolution added) are: an applier passes it with each call, so one whose spec
    is not the one the warehouse was migrated to fails with a clear error instead of applying
    batches with another spec's SQL."""
    text = "\n".join([*(table_procedure_statement(spec, t) for t in spec.tables.values()),
                      *(target_procedure_statement(spec, t) for t in spec.targets.values())])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def apply_pending_procedure_statement(spec: PipelineSpec, fingerprint: str) -> str:
    """``_cdc_apply_pending(fingerprint)``: the one call that applies every pending batch (a
    batch whose end row is landed and which is not in ``_cdc_applied``), after the caller's
    LOCK of the landing table, in the same transaction."""
    landing, applied = replica_table(spec, LANDING), replica_table(spec, APPLIED)
    batch_id = ident("batch_id")
    pending_rows = f"{_pending_landing(spec)} WHERE l.{ident('kind')}"
    # The batches whose end row is landed. ``_cdc_applied`` (15 days of batch ids) is looked
    # up only for them: the applied ids among them are a few rows, which the anti-join takes
    # instead of the whole table ("IN condition" with a subquery,
    # https://docs.aws.amazon.com/redshift/latest/dg/r_in_condition.html).
    ended = f"SELECT {batch_id} FROM {landing} WHERE {ident('kind')} = '{KIND_END}'"
    dispatch = (
        f"EXECUTE 'CALL ' || {sql_literal(ident(spec.replica_schema) + '.')} || "
        f"QUOTE_IDENT({sql_literal(TABLE_PROCEDURE_PREFIX)} || _cdc_table) || '(' || "
        "CASE WHEN POSITION(',' || _cdc_table || ',' IN _cdc_truncated) > 0 THEN 'TRUE' "
        "ELSE 'FALSE' END || ')'"
    )
    body = [
        f"IF _cdc_fingerprint <> '{fingerprint}' THEN RAISE EXCEPTION '{SPEC_CHANGED}: the "
        "warehouse was migrated to another spec; run the schema migration with the consumers'' "
        "spec (procedures %, consumer %)', "
        f"'{fingerprint}', _cdc_fingerprint; END IF",
        f"DROP TABLE IF EXISTS {PENDING}",
        f"CREATE TEMP TABLE {PENDING} AS SELECT DISTINCT l.{batch_id}, "
        f"CAST(l.{ident('row_data')}.{ident('known')} AS VARCHAR(65535)) AS known "
        f"FROM {landing} l LEFT JOIN (SELECT {batch_id} FROM {applied} WHERE {batch_id} IN "
        f"({ended})) a ON a.{batch_id} = l.{batch_id} "
        f"WHERE l.{ident('kind')} = '{KIND_END}' AND a.{batch_id} IS NULL",
        f"SELECT INTO _cdc_tables LISTAGG(DISTINCT l.{ident('table_name')}, ',') "
        f"{pending_rows} IN ('{KIND_CHANGE}', '{KIND_TRUNCATE}')",
        f"SELECT INTO _cdc_truncated LISTAGG(DISTINCT l.{ident('table_name')}, ',') "
        f"{pending_rows} = '{KIND_TRUNCATE}'",
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
            f"{procedure_name(spec, TARGET_PROCEDURE_PREFIX, target.name)}("
            f"{any_in('_cdc_truncated')}); END IF")
    clear = (f"EXECUTE 'DELETE FROM ' || {sql_literal(ident(spec.replica_schema) + '.')} || "
             f"QUOTE_IDENT({sql_literal(STAGE_PREFIX)} || _cdc_table)")
    body += [
        "_cdc_i := 1",
        "_cdc_table := SPLIT_PART(_cdc_touched, ',', _cdc_i)",
        f"WHILE _cdc_table <> '' LOOP {clear}; _cdc_i := _cdc_i + 1; "
        "_cdc_table := SPLIT_PART(_cdc_touched, ',', _cdc_i); END LOOP",
        f"INSERT INTO {applied} ({batch_id}) SELECT {batch_id} FROM {PENDING}",
        # Every batch whose end row is landed is applied now (it was pending) or was before
        # (delivered again): its rows go, found in the landing table rather than by a join
        # with the whole of ``_cdc_applied`` (15 days of batch ids); "DELETE" allows a
        # subquery on the table deleted from in its WHERE clause
        # (https://docs.aws.amazon.com/redshift/latest/dg/r_DELETE.html).
        f"DELETE FROM {landing} WHERE {batch_id} IN ({ended})",
        f"DELETE FROM {landing} WHERE {ident('landed_at')} < GETDATE() - {ORPHAN_AGE}",
        # Forgetting old batch ids scans ``_cdc_applied``; about one apply in
        # FORGET_EVERY_APPLIES does it (a batch id is kept at least APPLIED_MEMORY, a little
        # longer at times), not every apply ("RANDOM function": a value from 0.0 to 1.0,
        # https://docs.aws.amazon.com/redshift/latest/dg/r_RANDOM.html).
        f"IF RANDOM() < {1 / FORGET_EVERY_APPLIES} THEN DELETE FROM {applied} "
        f"WHERE {ident('applied_at')} < GETDATE() - {APPLIED_MEMORY}; END IF",
        f"DROP TABLE {PENDING}",
    ]
    declare = ["_cdc_tables VARCHAR(65535)", "_cdc_touched VARCHAR(65535)",
               "_cdc_truncated VARCHAR(65535)", "_cdc_table VARCHAR(127)",
               "_cdc_i INTEGER := 1"]
    return _procedure(procedure_name(spec, "", APPLY_PENDING), "_cdc_fingerprint VARCHAR(32)",
                      declare, body)


SPEC_CHANGED = "apply procedures of another spec"


def apply_pending_call(spec: PipelineSpec, fingerprint: str) -> str:
    return f"CALL {procedure_name(spec, '', APPLY_PENDING)}({sql_literal(fingerprint)})"


def procedure_statements(spec: PipelineSpec, base: PipelineSpec | None = None) -> list[str]:
    """Every procedure of ``spec`` (``CREATE OR REPLACE``: idempotent); ``base``: the spec as
    written, when ``spec`` has columns schema evolution added (``procedures_fingerprint``)."""
    written = base or spec
    return [
        *(table_procedure_statement(spec, t, written.tables[t.name])
          for t in spec.tables.values()),
        *(target_procedure_statement(spec, t) for t in spec.targets.values()),
        apply_pending_procedure_statement(spec, procedures_fingerprint(written)),
    ]


def replaced_procedure_statements(spec: PipelineSpec) -> list[str]:
    """DROP the procedures of the one-batch-per-call layout (before ``_cdc_apply_pending``),
    which a warehouse migrated by an older release still has; Redshift tells procedures apart
    by their argument types ("DROP PROCEDURE")."""
    return [
        f"DROP PROCEDURE IF EXISTS {procedure_name(spec, '', '_cdc_apply_batch')}"
        "(VARCHAR, INTEGER, VARCHAR)",
        *(f"DROP PROCEDURE IF EXISTS {procedure_name(spec, prefix, name)}(VARCHAR, BOOLEAN)"
          for prefix, names in ((TABLE_PROCEDURE_PREFIX, spec.tables),
                                (TARGET_PROCEDURE_PREFIX, spec.targets))
          for name in names),
    ]
