"""The local DMS task: a replication slot, a full load, then CDC from wal2json into Kinesis.

The order of things is what makes a restart safe:

1. The slot is created (if missing) BEFORE the full load reads the tables, so every change
   committed after the load's snapshot is still in the slot. Changes the snapshot already saw
   come again as CDC records; they sort after the load rows, so the consumer ends at the same
   state.
2. The full load is marked done in the state file only after its last record is in Kinesis;
   a restart in the middle loads everything again (duplicates are harmless, the consumer is
   idempotent). A slot that had to be created anew means the old position is gone, so the
   full load runs again as well.
3. CDC streams the slot (``local.dms.stream``: the replication protocol, as DMS reads a
   PostgreSQL source), puts the records, and only then confirms the position (a standby
   status update to the end of the last transaction put). A crash between the put and the
   confirmation re-sends those transactions; nothing is ever skipped.

What DMS does besides rows, as the stand-in renders it (shapes: ``local.dms.records``):

- Control tables: a full load starts with the ``create-table`` record of DMS's own
  ``awsdms_apply_exceptions`` table, then a ``create-table`` record before each table's rows.
- DDL capture, the way DMS captures DDL on a PostgreSQL source (AWS DMS User Guide, "Using a
  PostgreSQL database as an AWS DMS source": the ``awsdms_ddl_audit`` table, the
  ``awsdms_intercept_ddl`` function and the event trigger of that name on
  ``ddl_command_end``, created in ``ddl_schema``, default ``public``). The trigger writes
  each CREATE/ALTER/DROP TABLE statement to the audit table in the statement's own
  transaction, so the slot sees it in commit order with the data changes around it. The
  stand-in never sends the audit rows; at each one it compares the task's tables in the
  catalog with the columns it last described and sends ``add-column``, ``drop-column``,
  ``column-type-change``, ``create-table`` or ``drop-table`` control records with the table's
  ``table-def``. (It reads the catalog when it decodes the audit row: several DDL statements
  waiting in the slot are reported at the first of them.)
- TRUNCATE: wal2json (format-version 2, its default ``actions``) reports it as a ``T`` change
  and the stand-in sends a ``truncate-table`` control record in its place. NOTE: the DMS User
  Guide's PostgreSQL source limitations say "AWS DMS doesn't support change processing of
  TRUNCATE operations"; ``truncate_records=False`` (``--no-truncate-records``) renders that
  documented behaviour (the truncate never reaches the stream; a table reload repairs the
  target).
- Table reloads (DMS ``ReloadTables``), asked for with a request file
  (``python -m local.dms reload``): the stand-in first sends what the slot holds, then reads
  the table in a REPEATABLE READ snapshot and sends a ``create-table`` record and ``load``
  records of every row, a batch per poll, while CDC of the other tables goes on. Changes of
  the reloading table from transactions the snapshot does not see are held back and sent
  after its last ``load`` record, as DMS caches them; the slot is not confirmed past the
  first held-back transaction until they are sent, so a crash loses nothing (the reload
  starts over: its request file is removed only when it is done). The snapshot read holds
  the table's ACCESS SHARE lock, so DDL on that table waits until its load is read.
- ``local.dms.requests.request_skip`` is a TEST DEVICE, not DMS behaviour: the named source
  transaction is left out of the stream, to make the warehouse drift the way a lost change
  does.

Logs carry counts, table names and LSNs, never row values (they hold personal data).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from local.dms import requests
from local.dms.kinesis import MAX_RECORD_BYTES, KinesisPutError, KinesisPutter
from local.dms.records import (
    ControlChange,
    KinesisEntry,
    TableDef,
    TransactionCursor,
    apply_exceptions_record,
    cdc_records,
    create_table_record,
    dms_value,
    load_record,
)
from local.dms.state import (
    FULL_LOAD_DONE,
    FULL_LOAD_PENDING,
    FULL_LOAD_RUNNING,
    DmsState,
    load_state,
    save_state,
    state_path,
)
from local.dms.stream import TRANSIENT as STREAM_TRANSIENT
from local.dms.stream import SlotStream
from local.dms.wal2json import RowChange, Transaction, format_lsn
from shared.spec import PipelineSpec

log = logging.getLogger(__name__)

DEFAULT_SLOT = "cdc_local_dms"
OUTPUT_PLUGIN = "wal2json"
FULL_LOAD_BATCH = 1000
SLOT_RELEASE_SECONDS = 10.0  # drop_slot waits this long for the walsender to let go
DDL_AUDIT_TABLE = "awsdms_ddl_audit"
DDL_FUNCTION = "awsdms_intercept_ddl"
DEFAULT_DDL_SCHEMA = "public"  # DMS's ddlArtifactsSchema default
# Session settings that fix how values are written as text, by wal2json (the replication
# connection's options) and by the loads (SET).
_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    # bytea as ``\x`` + hex digits in the full load's ``::text`` (wal2json writes the digits
    # without the prefix); PostgreSQL manual, "Binary Data Types", "bytea Hex Format".
    "bytea_output": "hex",
}
_SESSION_SETTINGS = tuple(f"SET {name} = '{value}'" for name, value in _SETTINGS.items())
_TRANSIENT = (psycopg.OperationalError, KinesisPutError, ClientError, BotoCoreError,
              *STREAM_TRANSIENT, TimeoutError)
ColumnList = list[list[object]]


@dataclass
class DmsCounters:
    """What the task has done since this ``LocalDms`` was built (``last_*`` survive restarts)."""

    records_loaded: int = 0  # full-load and reload data records
    control_records: int = 0
    records_captured: int = 0  # CDC data records
    transactions: int = 0
    polls: int = 0
    truncates_skipped: int = 0  # with truncate_records off
    reloads: int = 0
    transactions_skipped_on_request: int = 0  # the test device
    records_too_large: int = 0
    errors: int = 0
    put_retries: int = 0
    last_lsn: str | None = None
    last_commit_time: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """A ``pg_current_snapshot()``: which transactions a REPEATABLE READ read sees."""

    xmin: int
    xmax: int
    in_progress: frozenset[int]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x))

    def sees(self, xid: int) -> bool:
        """Whether the committed transaction ``xid`` (32-bit, as decoding reports it) was
        committed when the snapshot was taken."""
        ahead = ((xid & 0xFFFFFFFF) - self.xmax) % (1 << 32)  # 32-bit distance from xmax
        full = self.xmax + ahead if ahead < 1 << 31 else self.xmax + ahead - (1 << 32)
        return full < self.xmin or (full < self.xmax and full not in self.in_progress)


@dataclass
class _Reload:
    table: TableDef
    request: Path
    conn: psycopg.Connection[Any]
    cursor: Any
    snapshot: Snapshot
    held_back: list[KinesisEntry] = field(default_factory=list)
    rows: int = 0


def _columns(table: TableDef) -> ColumnList:
    return [[name, pg_type, nullable] for name, pg_type, nullable in table.columns]


def ddl_changes(schema: str, tables: Sequence[str], known: dict[str, ColumnList],
                current: dict[str, TableDef | None]) -> list[ControlChange]:
    """The control records a DDL statement calls for: each task table's catalog state
    (``current``) against the columns last described (``known``, updated in place)."""
    changes: list[ControlChange] = []
    for name in tables:
        now, before = current.get(name), known.get(name)
        if now is None:
            if before is not None:
                changes.append(ControlChange("drop-table", schema, name))
                del known[name]
            continue
        columns = _columns(now)
        if before is None:
            changes.append(ControlChange("create-table", schema, name, now))
        elif columns != before:
            old_types = {str(c[0]): c[1] for c in before}
            new_types = {str(c[0]): c[1] for c in columns}
            if set(new_types) - set(old_types):
                changes.append(ControlChange("add-column", schema, name, now))
            if set(old_types) - set(new_types):
                changes.append(ControlChange("drop-column", schema, name, now))
            if any(old_types[c] != t for c, t in new_types.items() if c in old_types):
                changes.append(ControlChange("column-type-change", schema, name, now))
        known[name] = columns
    return changes


class LocalDms:
    """A full-load-and-CDC DMS task from one PostgreSQL database to one Kinesis stream."""

    def __init__(self, source_dsn: str, spec: PipelineSpec, kinesis: Any, stream_name: str,
                 state_dir: Path, slot_name: str = DEFAULT_SLOT, *,
                 truncate_records: bool = True, ddl_schema: str = DEFAULT_DDL_SCHEMA) -> None:
        self.source_dsn = source_dsn
        self.spec = spec
        self.stream_name = stream_name
        self.slot_name = slot_name
        self.state_dir = Path(state_dir)
        self.truncate_records = truncate_records
        self.ddl_schema = ddl_schema
        self.state_path = state_path(self.state_dir, slot_name)
        self.state: DmsState = load_state(self.state_path)
        self.counters = DmsCounters(last_lsn=self.state.last_lsn,
                                    last_commit_time=self.state.last_commit_time)
        self.putter = KinesisPutter(kinesis, stream_name)
        self._conn: psycopg.Connection[Any] | None = None
        self._slot_checked = False
        self._reload: _Reload | None = None
        # End of the last transaction sent (may be ahead of the slot while a reload holds
        # changes back); None: the slot's confirmed position.
        self._processed_lsn: int | None = None
        self._holding = False
        # Columns as the records sent so far describe them; saved to the state only up to
        # the confirmed position (a held-back DDL record must be found again after a crash).
        self._sent_columns: dict[str, ColumnList] | None = None
        self._skipped: list[tuple[int, Path]] = []  # (end LSN, request) until confirmed
        schema = spec.source_schema
        self._spec_keys = {t.name: t.key for t in spec.tables.values()}
        plugin_options = [
            "format-version", "2", "include-xids", "1", "include-timestamp", "1",
            "include-lsn", "1", "include-pk", "1", "include-transaction", "1",
            # The task's table mapping (the spec's tables; names are [a-z0-9_]) and the DDL
            # audit table DMS reads its DDL events from.
            "add-tables", ",".join([*(f"{schema}.{t}" for t in spec.tables),
                                    f"{ddl_schema}.{DDL_AUDIT_TABLE}"]),
        ]
        self._stream = SlotStream(source_dsn, slot_name, plugin_options, _SETTINGS)

    # -- connection, slot and DDL capture objects ---------------------------------------

    def _session(self) -> psycopg.Connection[Any]:
        """The task's connection (autocommit), without touching the slot."""
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.source_dsn, autocommit=True,
                                   application_name="local-dms")
            for statement in _SESSION_SETTINGS:
                conn.execute(statement)
            self._conn = conn
            self._slot_checked = False
        return self._conn

    def _connection(self) -> psycopg.Connection[Any]:
        """The task's connection, with the DDL capture objects and the slot made sure of."""
        conn = self._session()
        if not self._slot_checked:
            self._ensure_ddl_capture(conn)
            self._ensure_slot(conn)
            for name in self.spec.tables:
                if name not in self.state.table_columns:
                    table = self._source_table(conn, name)
                    if table is not None:
                        self.state.table_columns[name] = _columns(table)
            self._slot_checked = True
        return conn

    def _ensure_ddl_capture(self, conn: psycopg.Connection[Any]) -> None:
        """DMS's DDL capture objects, as the DMS User Guide lists them, created if missing
        (only then: a CREATE TABLE IF NOT EXISTS would itself pass the event trigger and
        leave an audit row in the slot)."""
        schema = sql.Identifier(self.ddl_schema)
        table = sql.SQL("{}.{}").format(schema, sql.Identifier(DDL_AUDIT_TABLE))
        function = sql.SQL("{}.{}").format(schema, sql.Identifier(DDL_FUNCTION))
        found = conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL, to_regprocedure(%s) IS NOT NULL, "
            "EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = %s)",
            (table.as_string(conn), f"{function.as_string(conn)}()", DDL_FUNCTION)).fetchone()
        has_table, has_function, has_trigger = found if found else (False, False, False)
        if not has_table:
            conn.execute(sql.SQL(
                "CREATE TABLE {} (c_key bigserial primary key, c_time timestamp, "
                "c_user varchar(64), c_txn varchar(16), c_tag varchar(24), c_oid integer, "
                "c_name varchar(64), c_schema varchar(64), c_ddlqry text)").format(table))
        if not has_function:
            conn.execute(sql.SQL(
                "CREATE FUNCTION {}() RETURNS event_trigger LANGUAGE plpgsql "
                "SECURITY DEFINER AS $$ declare _qry text; BEGIN "
                "if (tg_tag='CREATE TABLE' or tg_tag='ALTER TABLE' or tg_tag='DROP TABLE') then "
                "SELECT current_query() into _qry; "
                "insert into {} values (default,current_timestamp,current_user,"
                "cast(TXID_CURRENT()as varchar(16)),tg_tag,0,'',current_schema,_qry); "
                "delete from {}; end if; END; $$").format(function, table, table))
        if not has_trigger:
            conn.execute(sql.SQL(
                "CREATE EVENT TRIGGER {} ON ddl_command_end EXECUTE PROCEDURE {}()").format(
                    sql.Identifier(DDL_FUNCTION), function))

    def _ensure_slot(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(
            "SELECT database, plugin FROM pg_replication_slots WHERE slot_name = %s",
            (self.slot_name,),
        ).fetchone()
        if row is not None:
            database = conn.execute("SELECT current_database()").fetchone()
            if database is None or row[0] != database[0] or row[1] != OUTPUT_PLUGIN:
                raise RuntimeError(
                    f"replication slot {self.slot_name!r} belongs to database {row[0]!r} "
                    f"with plugin {row[1]!r}; use another slot name")
            return
        created = conn.execute(
            "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)",
            (self.slot_name, OUTPUT_PLUGIN),
        ).fetchone()
        log.info("created replication slot %s at %s", self.slot_name,
                 created[0] if created else "?")
        if self.state.full_load != FULL_LOAD_PENDING:
            # A new slot starts at "now": whatever the old one held is gone, so load again.
            log.warning("slot %s was missing: the full load runs again", self.slot_name)
            self.state.full_load = FULL_LOAD_PENDING
            save_state(self.state_path, self.state)

    def drop_slot(self) -> bool:
        """Drop the replication slot (it keeps WAL on the server); True if it existed. The
        stream's walsender leaves the slot a moment after its connection closes, and an active
        slot cannot be dropped ("ERROR: replication slot ... is active for PID"): wait for it
        (up to ``SLOT_RELEASE_SECONDS``)."""
        self._stream.close()
        session = self._session()
        deadline = time.monotonic() + SLOT_RELEASE_SECONDS
        while time.monotonic() < deadline and session.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active",
                (self.slot_name,)).fetchone():
            time.sleep(0.02)
        row = session.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s", (self.slot_name,),
        ).fetchone()
        self._slot_checked = False
        return row is not None

    def close(self) -> None:
        self._abort_reload()
        self._stream.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> LocalDms:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- full load -----------------------------------------------------------------------

    @property
    def full_load_needed(self) -> bool:
        self._connection()  # a missing slot resets the full load
        return self.state.full_load != FULL_LOAD_DONE

    def _source_table(self, conn: psycopg.Connection[Any], name: str) -> TableDef | None:
        schema = self.spec.source_schema
        relation = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        qualified = relation.as_string(conn)
        columns = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull "
            "FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum", (qualified,),
        ).fetchall()
        if not columns:
            return None
        key = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
            "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = to_regclass(%s) AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)", (qualified,),
        ).fetchall()
        return TableDef(schema, name, tuple((str(c), str(t), bool(n)) for c, t, n in columns),
                        tuple(str(k[0]) for k in key) or self._spec_keys[name])

    def full_load(self, force: bool = False) -> int:
        """Load every table of the spec (unless done before); the number of rows sent.

        The ``create-table`` record of DMS's ``awsdms_apply_exceptions`` table comes first,
        then one per table, then each table's rows as ``load`` records, read in one
        REPEATABLE READ snapshot.
        """
        conn = self._connection()
        if self.state.full_load == FULL_LOAD_DONE and not force:
            return 0
        self.state.full_load = FULL_LOAD_RUNNING
        save_state(self.state_path, self.state)
        started = time.monotonic()
        tables = [t for name in self.spec.tables
                  if (t := self._source_table(conn, name)) is not None]
        for missing in set(self.spec.tables) - {t.name for t in tables}:
            log.warning("full load: table %s.%s not found in the source",
                        self.spec.source_schema, missing)
        controls = [apply_exceptions_record(self.state.task_id),
                    *(create_table_record(t, self.state.task_id) for t in tables)]
        self._put(controls)
        self.counters.control_records += len(controls)
        loaded = 0
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for table in tables:
                loaded += self._load_table(conn, table)
        self.state.full_load = FULL_LOAD_DONE
        self.state.table_columns.update({t.name: _columns(t) for t in tables})
        save_state(self.state_path, self.state)
        log.info("full load done: %d rows of %d tables in %.1f s", loaded, len(tables),
                 time.monotonic() - started)
        return loaded

    @staticmethod
    def _select(table: TableDef) -> sql.Composed:
        return sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c))
                               for c, _, _ in table.columns),
            sql.Identifier(table.schema), sql.Identifier(table.name),
        )

    def _load_entries(self, table: TableDef, rows: Sequence[Sequence[Any]]) -> list[KinesisEntry]:
        names = [c for c, _, _ in table.columns]
        types = [t for _, t, _ in table.columns]
        return [load_record(table.schema, table.name,
                            {n: dms_value(t, v) for n, t, v in zip(names, types, row,
                                                                     strict=True)},
                            table.key)
                for row in rows]

    def _load_table(self, conn: psycopg.Connection[Any], table: TableDef) -> int:
        loaded = 0
        with conn.cursor(name=f"dms_load_{table.name}") as cursor:
            cursor.itersize = FULL_LOAD_BATCH
            cursor.execute(self._select(table))
            while rows := cursor.fetchmany(FULL_LOAD_BATCH):
                entries = self._load_entries(table, rows)
                self._put(entries)
                loaded += len(entries)
                self.counters.records_loaded += len(entries)
        log.info("full load: %s.%s, %d rows", table.schema, table.name, loaded)
        return loaded

    # -- table reloads -------------------------------------------------------------------

    @property
    def reloading(self) -> str | None:
        """The table being reloaded, if any."""
        return self._reload.table.name if self._reload else None

    def step_reloads(self, max_changes: int) -> bool:
        """Start the oldest requested reload, or send the next batch of the running one;
        whether there was anything to do."""
        if self._reload is not None:
            self._reload_batch()
            return True
        for name, path in requests.pending(self.state_dir, self.slot_name,
                                           requests.RELOAD).items():
            self._start_reload(name, path, max_changes)
            return True
        return False

    def _start_reload(self, name: str, path: Path, max_changes: int) -> None:
        conn = self._connection()
        table = self._source_table(conn, name) if name in self.spec.tables else None
        if table is None:
            log.warning("reload of %s ignored: not a table of the task", name)
            requests.done(path)
            return
        while self._capture(max_changes, synced=True)[0]:
            pass  # what the slot holds goes out before the snapshot is taken
        reader = psycopg.connect(self.source_dsn, application_name="local-dms-reload")
        try:
            reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            reader.read_only = True
            for statement in _SESSION_SETTINGS:
                reader.execute(statement)
            row = reader.execute("SELECT pg_current_snapshot()::text").fetchone()
            snapshot = Snapshot.parse(str(row[0] if row else ""))
            cursor = reader.cursor(name=f"dms_reload_{table.name}")
            cursor.itersize = FULL_LOAD_BATCH
            cursor.execute(self._select(table))
        except BaseException:
            reader.close()
            raise
        self._reload = _Reload(table, path, reader, cursor, snapshot)
        self._put([create_table_record(table, self.state.task_id)])
        self.counters.control_records += 1
        log.info("reload of %s.%s started", table.schema, table.name)

    def _reload_batch(self) -> None:
        reload = self._reload
        assert reload is not None
        rows = reload.cursor.fetchmany(FULL_LOAD_BATCH)
        entries = self._load_entries(reload.table, rows)
        self._put(entries)
        reload.rows += len(entries)
        self.counters.records_loaded += len(entries)
        if len(rows) == FULL_LOAD_BATCH:
            return
        # The load is out: now the table's changes committed during it, then release the
        # slot position they held back.
        self._put(reload.held_back)
        self.counters.records_captured += len(reload.held_back)
        reload.conn.close()
        self._reload = None
        if self._sent_columns is not None:
            self.state.table_columns = self._sent_columns
            self._sent_columns = None
        self.state.table_columns[reload.table.name] = _columns(reload.table)
        if self._holding and self._processed_lsn is not None:
            self._confirm(self._processed_lsn)
        self._holding = False
        save_state(self.state_path, self.state)
        requests.done(reload.request)
        self.counters.reloads += 1
        log.info("reload of %s.%s done: %d rows, %d changes held back", reload.table.schema,
                 reload.table.name, reload.rows, len(reload.held_back))

    def _abort_reload(self) -> None:
        """Drop the running reload (its request stays: it starts over); its held-back
        changes are still in the slot (a new stream reads them again)."""
        if self._reload is not None:
            self._reload.conn.close()
            self._reload = None
        if self._holding:
            self._stream.close()
            self._processed_lsn = None
            self._sent_columns = None
            self._holding = False

    # -- CDC -----------------------------------------------------------------------------

    def capture_once(self, max_changes: int = 5000) -> int:
        """One poll: read what was committed before the call, up to about ``max_changes``
        changes (whole transactions), put their records to Kinesis, then confirm the position.
        Returns the number of records put."""
        return self._capture(max_changes, synced=True)[1]

    def drain(self, max_changes: int = 5000) -> int:
        """Poll until the slot holds no more committed (and flushed) transactions and no
        reload is requested or running; the number of CDC records put. A poll can put
        nothing and still move on (transactions that touched no table of the task, such as
        autovacuum's), so "0 records" does not mean "drained"."""
        total = 0
        while True:
            busy = self.step_reloads(max_changes)
            consumed, put = self._capture(max_changes, synced=True)
            total += put
            if consumed == 0 and not busy:
                return total

    def _task_changes(self, conn: psycopg.Connection[Any], tx: Transaction,
                      known: dict[str, ColumnList]) -> list[RowChange | ControlChange]:
        """The transaction's changes as the task sends them: DDL audit rows become control
        records (the audit rows themselves are DMS's and never sent), truncates are dropped
        when ``truncate_records`` is off."""
        changes: list[RowChange | ControlChange] = []
        for change in tx.changes:
            if change.table == DDL_AUDIT_TABLE and change.schema == self.ddl_schema:
                if change.action == "I":
                    tables = list(self.spec.tables)
                    current = {name: self._source_table(conn, name) for name in tables}
                    changes += ddl_changes(self.spec.source_schema, tables, known, current)
                continue
            if change.action == "T" and not self.truncate_records:
                self.counters.truncates_skipped += 1
                continue
            changes.append(change)
        return changes

    def _capture(self, max_changes: int, wait_seconds: float = 0.0,
                 synced: bool = False) -> tuple[int, int]:
        """(transactions consumed, records put) of one poll: what the stream has (waiting up
        to ``wait_seconds`` for it), or with ``synced`` everything committed before it."""
        conn = self._connection()
        self.counters.polls += 1
        transactions = self._stream.read(max_changes, wait_seconds, conn if synced else None)
        # A stream started again (after an error or an aborted reload) begins at the slot's
        # confirmed position: pass over what was already sent.
        if self._processed_lsn is not None:
            done = self._processed_lsn
            transactions = [t for t in transactions if t.end_lsn > done]
        if not transactions:
            return 0, 0
        skips = requests.pending(self.state_dir, self.slot_name, requests.SKIP)
        previous = TransactionCursor(self.state.prev_transaction_id,
                                     self.state.prev_transaction_record_id)
        described = self._sent_columns or self.state.table_columns
        known = {name: list(columns) for name, columns in described.items()}
        reload = self._reload
        entries: list[KinesisEntry] = []
        held: list[KinesisEntry] = []
        confirm_to: int | None = None
        for tx in transactions:
            if str(tx.xid) in skips:
                # The test device: this transaction is left out of the stream.
                self._skipped.append((tx.end_lsn, skips[str(tx.xid)]))
                self.counters.transactions_skipped_on_request += 1
            else:
                records = cdc_records(tx, self._spec_keys, previous, self.state.task_id,
                                      self.spec.before_image_field,
                                      self._task_changes(conn, tx, known))
                for record in records:
                    if (reload is not None and record.table == reload.table.name
                            and not reload.snapshot.sees(tx.xid)):
                        held.append(record.entry)
                        self._holding = True
                    else:
                        entries.append(record.entry)
            if not self._holding:
                confirm_to = tx.end_lsn
        self._put(entries)
        if reload is not None:
            reload.held_back += held
        last = transactions[-1]
        self._processed_lsn = last.end_lsn
        if confirm_to is not None:
            # Only now is the position confirmed: a crash before this re-sends, never skips.
            self._confirm(confirm_to)
        self.state.prev_transaction_id = previous.transaction_id
        self.state.prev_transaction_record_id = previous.record_id
        if self._holding:
            self._sent_columns = known
        else:
            self.state.table_columns = known
        self.state.last_lsn = format_lsn(last.end_lsn)
        self.state.last_commit_time = last.commit_time
        save_state(self.state_path, self.state)
        self.counters.records_captured += len(entries)
        self.counters.transactions += len(transactions)
        self.counters.last_lsn = self.state.last_lsn
        self.counters.last_commit_time = last.commit_time
        log.debug("captured %d records of %d transactions up to %s", len(entries),
                  len(transactions), self.state.last_lsn)
        return len(transactions), len(entries)

    def _confirm(self, lsn: int) -> None:
        self._stream.confirm(lsn)
        for end_lsn, path in [s for s in self._skipped if s[0] <= lsn]:
            requests.done(path)
            self._skipped.remove((end_lsn, path))

    def _put(self, entries: Sequence[KinesisEntry]) -> None:
        """Put to Kinesis. A record over 1 MiB can never be put: it is logged (table only)
        and counted instead of blocking the task forever (DMS's limited LOB mode keeps
        records small by truncating LOBs, which this stand-in does not do)."""
        deliverable = [e for e in entries if e.size <= MAX_RECORD_BYTES]
        if len(deliverable) != len(entries):
            dropped = len(entries) - len(deliverable)
            self.counters.records_too_large += dropped
            log.error("%d record(s) over Kinesis's 1 MiB limit not sent", dropped)
        before = self.putter.stats.retried_entries
        try:
            self.putter.put(deliverable)
        finally:
            self.counters.put_retries += self.putter.stats.retried_entries - before

    # -- the task loop -------------------------------------------------------------------

    def run(self, stop: threading.Event, poll_interval: float = 0.2,
            max_changes: int = 5000) -> None:
        """Full load if needed, then CDC polls (and requested reloads) until ``stop`` is set.

        Connection and Kinesis errors are logged and retried with backoff (the position is
        only confirmed after a successful put); anything else is a bug and propagates.
        """
        backoff = poll_interval
        while not stop.is_set():
            try:
                if self.full_load_needed:
                    self.full_load()
                busy = self.step_reloads(max_changes)
                # Waits on the stream while nothing comes, so a change goes out as soon as
                # it is decoded.
                self._capture(max_changes, wait_seconds=0.0 if busy else poll_interval)
            except _TRANSIENT as exc:
                self.counters.errors += 1
                # Connection and AWS errors name no row values.
                log.warning("local DMS: %s: %s; retrying in %.1f s", type(exc).__name__,
                            str(exc)[:300], backoff)
                self.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = poll_interval
        self.close()
