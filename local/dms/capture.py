"""The local DMS task: a replication slot, a full load, then CDC from wal2json into Kinesis.

The order of things is what makes a restart safe:

1. The slot is created (if missing) BEFORE the full load reads the tables, so every change
   committed after the load's snapshot is still in the slot. Changes the snapshot already saw
   come again as CDC records; they sort after the load rows (phase 0 order keys), so the
   consumer ends at the same state.
2. The full load is marked done in the state file only after its last record is in Kinesis;
   a restart in the middle loads everything again (duplicates are harmless, the consumer is
   idempotent). A slot that had to be created anew means the old position is gone, so the
   full load runs again as well.
3. CDC peeks (``pg_logical_slot_peek_changes``: nothing is consumed), puts the records, and
   only then confirms the position (``pg_replication_slot_advance`` to the end of the last
   transaction put). A crash between the put and the advance re-sends those transactions;
   nothing is ever skipped.

Logs carry counts, table names and LSNs, never row values (they hold personal data).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import sql

from local.dms.kinesis import MAX_RECORD_BYTES, KinesisPutError, KinesisPutter
from local.dms.records import (
    KinesisEntry,
    TransactionCursor,
    cdc_records,
    create_table_record,
    dms_value,
    load_record,
    truncates,
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
from local.dms.wal2json import Transaction, format_lsn, parse_transactions, pg_lsn
from shared.spec import PipelineSpec

log = logging.getLogger(__name__)

DEFAULT_SLOT = "cdc_local_dms"
OUTPUT_PLUGIN = "wal2json"
FULL_LOAD_BATCH = 1000
# Session settings that fix how values are written as text, by wal2json and by the full load.
_SESSION_SETTINGS = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
)
_TRANSIENT = (psycopg.OperationalError, KinesisPutError, ClientError, BotoCoreError)


@dataclass
class DmsCounters:
    """What the task has done since this ``LocalDms`` was built (``last_*`` survive restarts)."""

    records_loaded: int = 0  # full-load data records
    control_records: int = 0
    records_captured: int = 0  # CDC data records
    transactions: int = 0
    polls: int = 0
    truncates_skipped: int = 0
    records_too_large: int = 0
    errors: int = 0
    put_retries: int = 0
    last_lsn: str | None = None
    last_commit_time: str | None = None


@dataclass(frozen=True)
class SourceTable:
    schema: str
    name: str
    columns: tuple[tuple[str, str, bool], ...]  # (name, format_type, nullable)
    key: tuple[str, ...]


class LocalDms:
    """A full-load-and-CDC DMS task from one PostgreSQL database to one Kinesis stream."""

    def __init__(self, source_dsn: str, spec: PipelineSpec, kinesis: Any, stream_name: str,
                 state_dir: Path, slot_name: str = DEFAULT_SLOT) -> None:
        self.source_dsn = source_dsn
        self.spec = spec
        self.stream_name = stream_name
        self.slot_name = slot_name
        self.state_path = state_path(Path(state_dir), slot_name)
        self.state: DmsState = load_state(self.state_path)
        self.counters = DmsCounters(last_lsn=self.state.last_lsn,
                                    last_commit_time=self.state.last_commit_time)
        self.putter = KinesisPutter(kinesis, stream_name)
        self._conn: psycopg.Connection[Any] | None = None
        self._slot_checked = False
        schema = spec.source_schema
        self._spec_keys = {t.name: t.key for t in spec.tables.values()}
        self._peek_options: list[str] = [
            "format-version", "2", "include-xids", "1", "include-timestamp", "1",
            "include-lsn", "1", "include-pk", "1", "include-transaction", "1",
            # The task's table mapping: the spec's tables (names are [a-z0-9_], no escaping).
            "add-tables", ",".join(f"{schema}.{t}" for t in spec.tables),
        ]

    # -- connection and slot -------------------------------------------------------------

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
        """The task's connection, with the slot made sure of (created if missing)."""
        conn = self._session()
        if not self._slot_checked:
            self._ensure_slot(conn)
            self._slot_checked = True
        return conn

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
        """Drop the replication slot (it keeps WAL on the server); True if it existed."""
        row = self._session().execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s", (self.slot_name,),
        ).fetchone()
        self._slot_checked = False
        return row is not None

    def close(self) -> None:
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

    def _source_table(self, conn: psycopg.Connection[Any], name: str) -> SourceTable | None:
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
        return SourceTable(schema, name, tuple((str(c), str(t), bool(n)) for c, t, n in columns),
                           tuple(str(k[0]) for k in key) or self._spec_keys[name])

    def full_load(self, force: bool = False) -> int:
        """Load every table of the spec (unless done before); the number of rows sent.

        ``create-table`` control records come first, then each table's rows as ``load``
        records, read in one REPEATABLE READ snapshot.
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
        controls = [create_table_record(t.schema, t.name, t.columns, t.key, self.state.task_id)
                    for t in tables]
        self._put(controls)
        self.counters.control_records += len(controls)
        loaded = 0
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for table in tables:
                loaded += self._load_table(conn, table)
        self.state.full_load = FULL_LOAD_DONE
        save_state(self.state_path, self.state)
        log.info("full load done: %d rows of %d tables in %.1f s", loaded, len(tables),
                 time.monotonic() - started)
        return loaded

    def _load_table(self, conn: psycopg.Connection[Any], table: SourceTable) -> int:
        select = sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c))
                               for c, _, _ in table.columns),
            sql.Identifier(table.schema), sql.Identifier(table.name),
        )
        names = [c for c, _, _ in table.columns]
        types = [t for _, t, _ in table.columns]
        loaded = 0
        with conn.cursor(name=f"dms_load_{table.name}") as cursor:
            cursor.itersize = FULL_LOAD_BATCH
            cursor.execute(select)
            while rows := cursor.fetchmany(FULL_LOAD_BATCH):
                entries = [
                    load_record(table.schema, table.name,
                                {n: dms_value(t, v) for n, t, v in zip(names, types, row,
                                                                         strict=True)},
                                table.key)
                    for row in rows
                ]
                self._put(entries)
                loaded += len(entries)
                self.counters.records_loaded += len(entries)
        log.info("full load: %s.%s, %d rows", table.schema, table.name, loaded)
        return loaded

    # -- CDC -----------------------------------------------------------------------------

    def _peek(self, conn: psycopg.Connection[Any], max_changes: int) -> list[Transaction]:
        placeholders = sql.SQL(", ").join(sql.Placeholder() for _ in self._peek_options)
        query = sql.SQL(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_changes(%s, NULL, %s, {})"
        ).format(placeholders)
        rows = conn.execute(query, (self.slot_name, max_changes, *self._peek_options)).fetchall()
        return parse_transactions((str(lsn), str(data)) for lsn, data in rows)

    def capture_once(self, max_changes: int = 5000) -> int:
        """One poll: peek up to about ``max_changes`` changes (whole transactions), put their
        records to Kinesis, then confirm the position. Returns the number of records put."""
        return self._capture(max_changes)[1]

    def drain(self, max_changes: int = 5000) -> int:
        """Poll until the slot holds no more committed (and flushed) transactions; the number
        of records put. A poll can put nothing and still move on (transactions that touched
        no table of the task, such as autovacuum's), so "0 records" does not mean "drained"."""
        total = 0
        while True:
            consumed, put = self._capture(max_changes)
            total += put
            if consumed == 0:
                return total

    def _capture(self, max_changes: int) -> tuple[int, int]:
        """(transactions consumed, records put) of one poll."""
        conn = self._connection()
        self.counters.polls += 1
        transactions = self._peek(conn, max_changes)
        if not transactions:
            return 0, 0
        previous = TransactionCursor(self.state.prev_transaction_id,
                                     self.state.prev_transaction_record_id)
        entries: list[KinesisEntry] = []
        for tx in transactions:
            entries += cdc_records(tx, self._spec_keys, previous, self.spec.before_image_field)
            self.counters.truncates_skipped += truncates(tx)
        self._put(entries)
        last = transactions[-1]
        # Only now is the position confirmed: a crash before this line re-sends, never skips.
        conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                     (self.slot_name, pg_lsn(last.end_lsn)))
        self.state.prev_transaction_id = previous.transaction_id
        self.state.prev_transaction_record_id = previous.record_id
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
        """Full load if needed, then CDC polls until ``stop`` is set.

        Connection and Kinesis errors are logged and retried with backoff (the position is
        only confirmed after a successful put); anything else is a bug and propagates.
        """
        backoff = poll_interval
        while not stop.is_set():
            try:
                if self.full_load_needed:
                    self.full_load()
                consumed, _ = self._capture(max_changes)
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
            if consumed == 0:
                stop.wait(poll_interval)
        self.close()
