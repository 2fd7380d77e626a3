"""The local DMS task's reader of its replication slot: the streaming replication protocol.

AWS DMS reads a PostgreSQL source as a logical replication client ("Using a PostgreSQL database
as an AWS DMS source", AWS DMS User Guide: it needs a replication slot and the REPLICATION
privilege, and ``wal_sender_timeout`` bounds how long it may be silent). So does the stand-in:
``START_REPLICATION SLOT ... LOGICAL`` over a replication connection (psycopg2's
``LogicalReplicationConnection``; psycopg 3 has no replication protocol), decoding each WAL
record once as it is written. (Peeking with ``pg_logical_slot_peek_changes`` decodes again from
the slot's ``restart_lsn`` on every call: up to 15 s of the whole cluster's WAL under load.)

The position is confirmed with a standby status update (``flush_lsn``) only after what was
read is in Kinesis, so a crash re-sends and never skips ("Streaming Replication Protocol",
PostgreSQL manual: the server may discard what the client reports as flushed). A new
connection starts at the slot's confirmed position.

Reading "everything committed so far" (``read(..., sync=conn)``: the tests' ``capture_once``,
``drain``, the reload's catch-up) needs a point in the stream to read up to: a transactional
logical message with the prefix ``SYNC_PREFIX``, committed synchronously (decoding reads only
flushed WAL) on the task's own connection. Every transaction committed before it comes out
before it. Such transactions are read past and never returned.

Logs name the slot and LSNs only.
"""

from __future__ import annotations

import logging
import select
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg2
import psycopg2.errors
import psycopg2.extras

from local.dms.wal2json import Transaction, TransactionAssembler

log = logging.getLogger(__name__)

SYNC_PREFIX = "local-dms-sync"
SYNC_TIMEOUT_SECONDS = 60.0
SLOT_BUSY_SECONDS = 15.0  # how long to wait for a slot an ended client's server still holds
# Errors of the replication connection a task retries (with a new connection).
TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError, psycopg2.DatabaseError)


class SlotStream:
    """One task's logical replication stream from ``slot_name``.

    ``plugin_options`` are wal2json's, flat (name, value, name, value ...); ``settings`` are
    session settings (name -> value) the walsender formats values with (``TimeZone``,
    ``DateStyle`` ...), passed as connection options because a replication connection runs
    no ``SET``."""

    def __init__(self, dsn: str, slot_name: str, plugin_options: Sequence[str],
                 settings: dict[str, str]) -> None:
        self.dsn = dsn
        self.slot_name = slot_name
        self.plugin_options = dict(zip(plugin_options[::2], plugin_options[1::2], strict=True))
        self.plugin_options["add-msg-prefixes"] = SYNC_PREFIX
        self.settings = settings
        self._conn: Any = None
        self._cursor: Any = None
        self._assembler = TransactionAssembler()
        self._synced: set[str] = set()

    @property
    def open(self) -> bool:
        return self._cursor is not None

    def _open(self) -> Any:
        if self._cursor is not None:
            return self._cursor
        options = " ".join(f"-c {name}={value.replace(' ', '')}"
                           for name, value in self.settings.items())
        deadline = time.monotonic() + SLOT_BUSY_SECONDS
        while True:
            conn = psycopg2.connect(
                self.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection,
                application_name="local-dms", options=options)
            cursor = conn.cursor()
            try:
                # start_lsn 0: the slot's confirmed position.
                cursor.start_replication(slot_name=self.slot_name, decode=True,
                                         options=self.plugin_options)
            except psycopg2.errors.ObjectInUse:
                conn.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # an ended client's walsender has not let go of the slot yet
                continue
            except BaseException:
                conn.close()
                raise
            self._conn, self._cursor = conn, cursor
            self._assembler = TransactionAssembler()
            log.debug("streaming slot %s", self.slot_name)
            return cursor

    def read(self, max_changes: int, wait_seconds: float = 0.0,
             sync: psycopg.Connection[Any] | None = None) -> list[Transaction]:
        """Whole transactions, in commit order, about ``max_changes`` messages' worth at most.

        Without ``sync``: what has arrived, waiting up to ``wait_seconds`` for the first
        message when nothing has. With ``sync`` (the task's autocommit connection): every
        transaction committed before the call (up to ``max_changes``)."""
        cursor = self._open()
        token = self._mark(sync) if sync is not None else None
        deadline = time.monotonic() + (SYNC_TIMEOUT_SECONDS if token else wait_seconds)
        done: list[Transaction] = []
        messages = 0
        while messages < max_changes or self._assembler.in_transaction:
            message = cursor.read_message()
            if message is None:
                if token is None and done and not self._assembler.in_transaction:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if token is not None:
                        raise TimeoutError(f"slot {self.slot_name}: the sync point never came")
                    break
                select.select([cursor], [], [], remaining)
                continue
            messages += 1
            transaction = self._assembler.add(message.data_start, message.payload)
            if transaction is None:
                continue
            marks = {c for p, c in transaction.messages if p == SYNC_PREFIX}
            if marks and not transaction.changes:
                self._synced |= marks
                if token in self._synced:
                    self._synced.clear()
                    break
                continue
            done.append(transaction)
        return done

    @staticmethod
    def _mark(conn: psycopg.Connection[Any]) -> str:
        token = uuid.uuid4().hex
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = on")  # flushed: decoding can read it
            conn.execute("SELECT pg_logical_emit_message(true, %s, %s)", (SYNC_PREFIX, token))
        return token

    def confirm(self, lsn: int) -> None:
        """Tell the server everything up to ``lsn`` is delivered (sent now)."""
        cursor = self._open()
        cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, force=True)

    def close(self) -> None:
        """End the stream; what was read and not confirmed comes again on the next one."""
        conn, self._conn, self._cursor = self._conn, None, None
        self._synced.clear()
        if conn is not None:
            conn.close()
