"""A workload on the sports-ticketing source database: schema, seed data, a steady stream of
changes of every kind the pipeline must handle.

    python -m local.workload --source-dsn DSN --rate 50 --duration 30 [--create-schema]
                             [--seed-customers 50 --seed-events 10 --seed-purchases 200]

Each tick of ``run`` is one source transaction (a late-arriving customer is two: the purchase
first, the customer a few ticks later):

- purchase: a new ticket and its ticket_activity, in one transaction
- purchase_update: an admin changes a purchase (seat, purchaser, updated_at)
- purchase_delete: a purchase (ticket_activity and ticket) is deleted
- customer_change: a customer's email and/or phone changes
- new_customer, new_event
- event_change: an event moves to another date
- key_change (rare): a ticket is renumbered, in ticket and ticket_activity
- late_purchase: a purchase committed before its customer row exists
- bad rows (``bad_row_share`` of the ticks): values DMS delivers but the spec rejects, ONLY as
  inserts of new keys (a customer with a 100-character phone, a ticket priced beyond
  decimal(12,2)); their keys are listed in ``bad_rows``. They need the looser source schema
  (``create_schema(loose=True)``, see ``local.source_db.LOOSE_COLUMN_TYPES``).

Values include quotes, non-ASCII names and phone extensions. Nothing logs row values.

Schema and table events, for a demo to run once at a moment of its choosing (each safe to call
while ``run`` goes on in another thread):

- ``truncate_and_reinsert``: TRUNCATE sport_event and re-insert some of its events, in one
  transaction (DMS: a ``truncate-table`` control record, then the inserts);
- ``add_column``: ALTER TABLE ticket ADD COLUMN section varchar(16), then values in it
  (DMS: an ``add-column`` control record, then rows carrying the new column);
- ``lose_purchases_and_reload``: delete some purchases in a transaction the local DMS is asked
  to leave out of the stream (``local.dms.request_skip``, a TEST DEVICE that makes the
  warehouse drift the way a lost change does), then ask it to reload ticket_activity
  (``local.dms.request_reload``, DMS's ReloadTables), which repairs the drift.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import sql

from local.dms.requests import request_reload, request_skip
from local.source_db import LOOSE_COLUMN_TYPES, schema_statements
from shared.spec import PipelineSpec, load_spec

log = logging.getLogger(__name__)

TABLES = ("sport_event", "ticket", "customer", "ticket_activity")
OPERATIONS = ("purchase", "purchase_update", "purchase_delete", "customer_change",
              "new_customer", "new_event", "event_change", "key_change", "late_purchase")
DEFAULT_WEIGHTS: dict[str, float] = {
    "purchase": 45, "purchase_update": 12, "purchase_delete": 5, "customer_change": 12,
    "new_customer": 8, "new_event": 2, "event_change": 6, "key_change": 2, "late_purchase": 5,
}
PHONE_LIMIT = 64  # customer.phone is varchar(64) in the spec
BAD_PHONE_LENGTH = 100
SECTIONS = ["North", "South", "East", "West", "Upper Ring", "Lower Ring"]
_SQL_TYPE = re.compile(r"^[a-z][a-z ]*(\(\d+(,\d+)?\))?$")

SPORTS = [("Baseball", "Seattle, US"), ("Baseball", "New York, US"),
          ("Football", "San Francisco, US"), ("Basketball", "Chicago, US"),
          ("Hockey", "Boston, US"), ("Soccer", "Zürich, CH")]
FIRST = ["Teresa", "Caleb", "Raymond", "Ana", "Kenji", "Fatima", "Liam", "Zoë", "Sean", "Priya",
         "José", "Siobhán"]
LAST = ["Stein", "Houston", "Turner", "O'Brien", "Tanaka", "Haddad", "Müller", "Novak",
        "D'Angelo", "Nguyễn"]
LEVELS = [("Standard", Decimal("100.00")), ("Premium", Decimal("300.00")),
          ("VIP", Decimal("950.50"))]


@dataclass(frozen=True)
class InvalidSourceRow:
    """A row the spec rejects: its table, key and what is wrong (no value)."""

    table: str
    key: tuple[int, ...]
    kind: str


@dataclass
class WorkloadCounters:
    transactions: int = 0
    operations: Counter[str] = field(default_factory=Counter)
    bad_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["operations"] = dict(self.operations)
        return data


def _ascii(text: str) -> str:
    return "".join(c for c in text.lower() if c.isascii() and c.isalnum())


class Workload:
    """Generates the reference schema's source history on one database (one generator per
    database at a time: keys are allocated in memory)."""

    def __init__(self, source_dsn: str, spec: PipelineSpec | None = None, seed: int = 0,
                 weights: dict[str, float] | None = None) -> None:
        self.source_dsn = source_dsn
        self.spec = spec or load_spec()
        missing = [t for t in TABLES if t not in self.spec.tables]
        if missing:
            raise ValueError(f"the workload needs the reference tables; missing: {missing}")
        self.schema = self.spec.source_schema
        self.rng = random.Random(seed)
        self.weights = dict(weights or DEFAULT_WEIGHTS)
        unknown = set(self.weights) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown operations in weights: {sorted(unknown)}")
        self.counters = WorkloadCounters()
        self.bad_rows: list[InvalidSourceRow] = []
        self.late_customers: list[int] = []  # customers inserted after a purchase of theirs
        self.loose = False
        self._loaded = False
        self.events: list[int] = []
        self.customers: list[int] = []
        self.purchases: list[int] = []  # ticket ids with a ticket and a ticket_activity
        self.next_id = dict.fromkeys(TABLES, 1)
        self._late: list[tuple[int, int]] = []  # (tick due, customer id) not yet inserted
        self._tick = 0
        self._lock = threading.Lock()  # one change at a time on the in-memory keys

    # -- helpers -------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.source_dsn, autocommit=True, application_name="workload")

    def _table(self, name: str) -> str:
        return f'"{self.schema}"."{name}"'

    def _new_id(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] = value + 1
        return value

    def _now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)

    def _phone(self) -> str:
        rng = self.rng
        phone = (f"+1-{rng.randrange(200, 999)}-{rng.randrange(100, 999)}-"
                 f"{rng.randrange(1000, 9999)}")
        return phone + (f"x{rng.randrange(100, 99999)}" if rng.random() < 0.2 else "")

    def _customer_row(self, customer_id: int) -> tuple[Any, ...]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        email = f"{_ascii(first)}.{_ascii(last)}{customer_id}@example.com"
        if self.rng.random() < 0.1:
            email = "  " + email.upper() + " "  # tokenization trims and lower-cases first
        return (customer_id, f"{first} {last}", email, self._phone())

    def _event_row(self, event_id: int) -> tuple[Any, ...]:
        sport, place = self.rng.choice(SPORTS)
        start = date(2024, 1, 1) + timedelta(days=self.rng.randrange(0, 3 * 365))
        return (event_id, sport, start, place)

    def _ticket_row(self, ticket_id: int) -> tuple[Any, ...]:
        level, price = self.rng.choice(LEVELS)
        cents = Decimal(self.rng.randrange(0, 5000)) / 100
        return (ticket_id, self.rng.choice(self.events), level,
                f"{level[0]}-{self.rng.randrange(1, 60)}-{ticket_id}", price + cents)

    def _insert(self, conn: psycopg.Connection[Any], table: str, row: tuple[Any, ...]) -> None:
        marks = ", ".join(["%s"] * len(row))
        conn.execute(f"INSERT INTO {self._table(table)} VALUES ({marks})", row)

    def _insert_purchase(self, conn: psycopg.Connection[Any], customer_id: int) -> int:
        ticket_id = self._new_id("ticket")
        now = self._now()
        with conn.transaction():
            self._insert(conn, "ticket", self._ticket_row(ticket_id))
            self._insert(conn, "ticket_activity", (ticket_id, customer_id, now, now))
        self.purchases.append(ticket_id)
        return ticket_id

    # -- schema and seed -----------------------------------------------------------------

    def create_schema(self, loose: bool = True) -> None:
        """Create the source tables from the spec; ``loose`` gives the columns that take bad
        rows looser types (``text``, unconstrained ``numeric``)."""
        with self._connect() as conn:
            for statement in schema_statements(self.spec, LOOSE_COLUMN_TYPES if loose else None):
                conn.execute(statement)
        self.loose = loose

    def seed_data(self, customers: int = 50, events: int = 10, purchases: int = 200) -> None:
        """Consistent starting data: every ticket's event and every purchase's customer exist."""
        self._load_keys()
        with self._connect() as conn, conn.transaction():
            for _ in range(events):
                event_id = self._new_id("sport_event")
                self._insert(conn, "sport_event", self._event_row(event_id))
                self.events.append(event_id)
            for _ in range(customers):
                customer_id = self._new_id("customer")
                self._insert(conn, "customer", self._customer_row(customer_id))
                self.customers.append(customer_id)
            base = self._now() - timedelta(days=30)
            for _ in range(purchases):
                ticket_id = self._new_id("ticket")
                bought = base + timedelta(seconds=self.rng.randrange(0, 30 * 86400),
                                          microseconds=self.rng.randrange(0, 10**6))
                self._insert(conn, "ticket", self._ticket_row(ticket_id))
                self._insert(conn, "ticket_activity",
                             (ticket_id, self.rng.choice(self.customers), bought, bought))
                self.purchases.append(ticket_id)
        log.info("seeded %d events, %d customers, %d purchases", events, customers, purchases)

    def _load_keys(self) -> None:
        """Read the keys already in the source (a generator started on an existing database),
        leaving out bad rows so they are never updated."""
        if self._loaded:
            return
        with self._connect() as conn:
            self.loose = self._schema_is_loose(conn)
            self.events = [r[0] for r in conn.execute(
                f"SELECT event_id FROM {self._table('sport_event')} ORDER BY 1")]
            self.customers = [r[0] for r in conn.execute(
                f"SELECT customer_id FROM {self._table('customer')} "
                f"WHERE coalesce(octet_length(phone), 0) <= {PHONE_LIMIT} ORDER BY 1")]
            self.purchases = [r[0] for r in conn.execute(
                f"SELECT a.ticket_id FROM {self._table('ticket_activity')} a "
                f"JOIN {self._table('ticket')} t USING (ticket_id) ORDER BY 1")]
            for table in TABLES:
                key = self.spec.tables[table].key[0]
                row = conn.execute(
                    f'SELECT coalesce(max("{key}"), 0) FROM {self._table(table)}').fetchone()
                self.next_id[table] = max(self.next_id[table], int(row[0] if row else 0) + 1)
            # Customers are referenced before they exist (late arrivals): never reuse an id
            # a purchase already points at.
            row = conn.execute(
                f"SELECT coalesce(max(purchased_by), 0) FROM {self._table('ticket_activity')}"
            ).fetchone()
            self.next_id["customer"] = max(self.next_id["customer"],
                                           int(row[0] if row else 0) + 1)
            # Renumbered tickets take ids from the ticket sequence too.
            self.next_id["ticket"] = max(self.next_id["ticket"], self.next_id["ticket_activity"])
        self._loaded = True

    def _schema_is_loose(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'customer' AND column_name = 'phone'", (self.schema,)).fetchone()
        return row is not None and row[0] == "text"

    # -- the steady workload -------------------------------------------------------------

    def run(self, rate_per_second: float = 50.0, duration_seconds: float | None = 30.0,
            stop_event: threading.Event | None = None, bad_row_share: float = 0.02,
            max_operations: int | None = None) -> WorkloadCounters:
        """Run ticks at ``rate_per_second`` until ``duration_seconds`` passed, ``stop_event``
        is set or ``max_operations`` ticks ran; late customers still due are inserted at the
        end, so every purchase's customer exists afterwards."""
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self._load_keys()
        if bad_row_share > 0 and not self.loose:
            raise ValueError("bad rows need the loose source schema (create_schema(loose=True))")
        if not self.events or not self.customers:
            raise ValueError("seed the source first (seed_data): no events or customers")
        stop = stop_event or threading.Event()
        interval = 1.0 / rate_per_second
        started = time.monotonic()
        deadline = None if duration_seconds is None else started + duration_seconds
        next_at = started
        ops = 0
        with self._connect() as conn:
            while not stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if max_operations is not None and ops >= max_operations:
                    break
                if next_at > now:
                    stop.wait(next_at - now)
                    continue
                next_at += interval
                with self._lock:
                    self.tick(conn, bad_row_share)
                ops += 1
            with self._lock:
                self._insert_late_customers(conn, everything=True)
        log.info("workload: %d transactions in %.1f s", self.counters.transactions,
                 time.monotonic() - started)
        return self.counters

    def tick(self, conn: psycopg.Connection[Any], bad_row_share: float = 0.0) -> str:
        """One operation (one transaction, plus any late customers now due); its name."""
        self._tick += 1
        self._insert_late_customers(conn)
        if bad_row_share > 0 and self.rng.random() < bad_row_share:
            operation = "bad_row"
            self._bad_row(conn)
        else:
            names = [n for n in OPERATIONS if self.weights.get(n, 0) > 0]
            operation = self.rng.choices(names, weights=[self.weights[n] for n in names])[0]
            getattr(self, f"_{operation}")(conn)
        self.counters.operations[operation] += 1
        self.counters.transactions += 1
        return operation

    # -- a backlog, and sampled changes (bench.e2e_bench) --------------------------------

    def commit_changes(self, changes: int, stop_event: threading.Event | None = None) -> int:
        """Commit ticks one after another, as fast as the source takes them, until at least
        ``changes`` row changes are committed (then the late customers still due); the row
        changes committed. A row change is a row a statement inserted, updated or deleted:
        the local DMS sends one CDC record for each. No bad rows: every change must land.

        Counting is exact: it adds up each statement's row count (psycopg's
        ``Cursor.rowcount``, from the command tag PostgreSQL returns)."""
        if changes <= 0:
            raise ValueError("changes must be positive")
        self._load_keys()
        if not self.events or not self.customers:
            raise ValueError("seed the source first (seed_data): no events or customers")
        stop = stop_event or threading.Event()
        tally = [0]
        started = time.monotonic()
        with psycopg.connect(self.source_dsn, autocommit=True, application_name="workload",
                             cursor_factory=_counting_cursor(tally)) as conn:
            while tally[0] < changes and not stop.is_set():
                with self._lock:
                    self.tick(conn)
            with self._lock:
                self._insert_late_customers(conn, everything=True)
        log.info("workload: %d row changes in %d transactions in %.1f s", tally[0],
                 self.counters.transactions, time.monotonic() - started)
        return tally[0]

    def touch_purchase(self, conn: psycopg.Connection[Any]) -> tuple[int, datetime] | None:
        """A purchase_update of one purchase's ``updated_at`` only, on the caller's
        connection (autocommit): a change whose arrival in the warehouse can be watched.
        Returns the ticket id and the value written, or None without purchases."""
        with self._lock:
            self._load_keys()
            if not self.purchases:
                return None
            ticket_id = self.rng.choice(self.purchases)
            stamp = self._now()
            conn.execute(f"UPDATE {self._table('ticket_activity')} SET updated_at = %s "
                         "WHERE ticket_id = %s", (stamp, ticket_id))
            self.counters.operations["purchase_update"] += 1
            self.counters.transactions += 1
        return ticket_id, stamp

    def _insert_late_customers(self, conn: psycopg.Connection[Any],
                               everything: bool = False) -> None:
        due = [c for at, c in self._late if everything or at <= self._tick]
        if not due:
            return
        self._late = [(at, c) for at, c in self._late if c not in due]
        for customer_id in due:
            self._insert(conn, "customer", self._customer_row(customer_id))
            self.customers.append(customer_id)
            self.counters.operations["late_customer"] += 1
            self.counters.transactions += 1

    def _purchase(self, conn: psycopg.Connection[Any]) -> None:
        self._insert_purchase(conn, self.rng.choice(self.customers))

    def _late_purchase(self, conn: psycopg.Connection[Any]) -> None:
        customer_id = self._new_id("customer")
        self._insert_purchase(conn, customer_id)
        self._late.append((self._tick + self.rng.randrange(1, 6), customer_id))
        self.late_customers.append(customer_id)

    def _purchase_update(self, conn: psycopg.Connection[Any]) -> None:
        if not self.purchases:
            self._purchase(conn)
            return
        ticket_id = self.rng.choice(self.purchases)
        level, price = self.rng.choice(LEVELS)
        with conn.transaction():
            conn.execute(
                f"UPDATE {self._table('ticket')} SET seat_level = %s, ticket_price = %s, "
                "seat_location = %s WHERE ticket_id = %s",
                (level, price, f"{level[0]}-{self.rng.randrange(1, 60)}-{ticket_id}", ticket_id))
            if self.rng.random() < 0.3:  # resold to another customer
                conn.execute(
                    f"UPDATE {self._table('ticket_activity')} SET purchased_by = %s, "
                    "updated_at = %s WHERE ticket_id = %s",
                    (self.rng.choice(self.customers), self._now(), ticket_id))
            else:
                conn.execute(
                    f"UPDATE {self._table('ticket_activity')} SET updated_at = %s "
                    "WHERE ticket_id = %s", (self._now(), ticket_id))

    def _purchase_delete(self, conn: psycopg.Connection[Any]) -> None:
        if len(self.purchases) < 2:
            self._purchase(conn)
            return
        ticket_id = self.purchases.pop(self.rng.randrange(len(self.purchases)))
        with conn.transaction():
            conn.execute(f"DELETE FROM {self._table('ticket_activity')} WHERE ticket_id = %s",
                         (ticket_id,))
            conn.execute(f"DELETE FROM {self._table('ticket')} WHERE ticket_id = %s",
                         (ticket_id,))

    def _customer_change(self, conn: psycopg.Connection[Any]) -> None:
        customer_id = self.rng.choice(self.customers)
        _, _, email, phone = self._customer_row(customer_id)
        choice = self.rng.random()
        if choice < 0.4:
            conn.execute(f"UPDATE {self._table('customer')} SET email = %s "
                         "WHERE customer_id = %s", (email, customer_id))
        elif choice < 0.8:
            conn.execute(f"UPDATE {self._table('customer')} SET phone = %s "
                         "WHERE customer_id = %s", (phone, customer_id))
        else:
            conn.execute(f"UPDATE {self._table('customer')} SET email = %s, phone = %s "
                         "WHERE customer_id = %s", (email, phone, customer_id))

    def _new_customer(self, conn: psycopg.Connection[Any]) -> None:
        customer_id = self._new_id("customer")
        self._insert(conn, "customer", self._customer_row(customer_id))
        self.customers.append(customer_id)

    def _new_event(self, conn: psycopg.Connection[Any]) -> None:
        event_id = self._new_id("sport_event")
        self._insert(conn, "sport_event", self._event_row(event_id))
        self.events.append(event_id)

    def _event_change(self, conn: psycopg.Connection[Any]) -> None:
        event_id = self.rng.choice(self.events)
        conn.execute(
            f"UPDATE {self._table('sport_event')} SET start_date = start_date + %s "
            "WHERE event_id = %s", (self.rng.choice([-7, -1, 1, 2, 14]), event_id))

    def _key_change(self, conn: psycopg.Connection[Any]) -> None:
        """A ticket renumbered: the primary key of ticket and ticket_activity changes."""
        if not self.purchases:
            self._purchase(conn)
            return
        index = self.rng.randrange(len(self.purchases))
        old_id, new_id = self.purchases[index], self._new_id("ticket")
        with conn.transaction():
            conn.execute(f"UPDATE {self._table('ticket')} SET ticket_id = %s "
                         "WHERE ticket_id = %s", (new_id, old_id))
            conn.execute(f"UPDATE {self._table('ticket_activity')} SET ticket_id = %s, "
                         "updated_at = %s WHERE ticket_id = %s", (new_id, self._now(), old_id))
        self.purchases[index] = new_id

    # -- schema and table events -----------------------------------------------------------

    def _event_done(self, name: str) -> None:
        self.counters.operations[name] += 1
        self.counters.transactions += 1

    def truncate_and_reinsert(self, keep_share: float = 0.5) -> list[int]:
        """TRUNCATE sport_event and re-insert a share of its events (same ids, new values) in
        one transaction; the event ids that exist afterwards."""
        self._load_keys()
        with self._lock, self._connect() as conn:
            keep = sorted(self.rng.sample(self.events,
                                          max(1, int(len(self.events) * keep_share))))
            with conn.transaction():
                conn.execute(f"TRUNCATE {self._table('sport_event')}")
                for event_id in keep:
                    self._insert(conn, "sport_event", self._event_row(event_id))
            self.events = keep
            self._event_done("truncate")
        log.info("truncated sport_event, %d events re-inserted", len(keep))
        return keep

    def add_column(self, table: str = "ticket", column: str = "section",
                   sql_type: str = "varchar(16)", rows: int = 20) -> int:
        """ALTER TABLE ... ADD COLUMN (a non-personal column), then set it on up to ``rows``
        purchases' tickets in one transaction; the number of rows given a value."""
        if table not in TABLES or not _SQL_TYPE.match(sql_type):
            raise ValueError("add_column takes a reference table and a plain SQL type")
        self._load_keys()
        target = sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))
        with self._lock, self._connect() as conn:
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                target, sql.Identifier(column), sql.SQL(sql_type)))
            self._event_done("add_column")
            key = self.spec.tables[table].key[0]
            chosen = self.rng.sample(self.purchases, min(rows, len(self.purchases)))
            with conn.transaction():
                for ticket_id in chosen:
                    conn.execute(sql.SQL("UPDATE {} SET {} = %s WHERE {} = %s").format(
                        target, sql.Identifier(column), sql.Identifier(key)),
                        (self.rng.choice(SECTIONS), ticket_id))
            self._event_done("add_column_values")
        log.info("added %s.%s, set on %d rows", table, column, len(chosen))
        return len(chosen)

    def lose_purchases_and_reload(self, dms_state_dir: Path, dms_slot: str,
                                  count: int = 5) -> list[int]:
        """Delete ``count`` purchases' ticket_activity rows in a transaction the local DMS is
        told to leave out of the stream (a TEST DEVICE: the warehouse now holds rows the
        source no longer has), then ask it to reload ticket_activity; the deleted ids."""
        self._load_keys()
        with self._lock, self._connect() as conn:
            lost = self.rng.sample(self.purchases, min(count, len(self.purchases)))
            with conn.transaction():
                row = conn.execute("SELECT txid_current()").fetchone()
                request_skip(dms_state_dir, dms_slot, int(row[0] if row else 0))
                conn.execute(f"DELETE FROM {self._table('ticket_activity')} "
                             "WHERE ticket_id = ANY(%s)", (lost,))
            self.purchases = [p for p in self.purchases if p not in lost]
            self._event_done("lost_deletes")
        request_reload(dms_state_dir, dms_slot, "ticket_activity")
        log.info("%d purchases deleted unseen; reload of ticket_activity requested", len(lost))
        return lost

    def _bad_row(self, conn: psycopg.Connection[Any]) -> None:
        """A new key only, never an update of a good row."""
        if self.rng.random() < 0.5:
            customer_id = self._new_id("customer")
            row = self._customer_row(customer_id)
            digits = "".join(str(self.rng.randrange(10)) for _ in range(BAD_PHONE_LENGTH - 3))
            self._insert(conn, "customer", (*row[:3], f"+1-{digits}"))
            self.bad_rows.append(InvalidSourceRow("customer", (customer_id,), "phone_too_long"))
        else:
            ticket_id = self._new_id("ticket")
            row = self._ticket_row(ticket_id)
            # Beyond decimal(12,2); past 15 digits DMS sends the number as a string.
            price = self.rng.choice([Decimal("12345678901.25"), Decimal("123456789012345.67")])
            self._insert(conn, "ticket", (*row[:4], price))
            self.bad_rows.append(InvalidSourceRow("ticket", (ticket_id,), "price_out_of_range"))
        self.counters.bad_rows += 1


class _RowCountingCursor(psycopg.Cursor[Any]):
    """A cursor that adds the rows each INSERT, UPDATE or DELETE changed to ``tally[0]``."""

    tally: list[int]

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                binary: bool | None = None) -> Self:
        super().execute(query, params, prepare=prepare, binary=binary)
        command = (self.statusmessage or "").split(" ", 1)[0]
        if command in ("INSERT", "UPDATE", "DELETE") and self.rowcount > 0:
            self.tally[0] += self.rowcount
        return self


def _counting_cursor(tally: list[int]) -> type[_RowCountingCursor]:
    return type("RowCountingCursor", (_RowCountingCursor,), {"tally": tally})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.workload", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source-dsn", required=True)
    parser.add_argument("--spec", default=None)
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--create-schema", action="store_true",
                        help="create the source tables (loose types unless --strict-schema)")
    parser.add_argument("--strict-schema", action="store_true",
                        help="exactly the spec's types (no bad rows possible)")
    parser.add_argument("--seed-customers", type=int, default=0)
    parser.add_argument("--seed-events", type=int, default=0)
    parser.add_argument("--seed-purchases", type=int, default=0)
    parser.add_argument("--rate", type=float, default=50.0, help="transactions per second")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds; 0 runs until SIGTERM/SIGINT")
    parser.add_argument("--bad-row-share", type=float, default=0.02)
    parser.add_argument("--bad-rows-file", default=None,
                        help="write the bad rows' tables and keys here (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import signal

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    workload = Workload(args.source_dsn, load_spec(args.spec), args.seed)
    if args.create_schema:
        workload.create_schema(loose=not args.strict_schema)
    if args.seed_customers or args.seed_events or args.seed_purchases:
        workload.seed_data(args.seed_customers, args.seed_events, args.seed_purchases)
    bad_share = 0.0 if args.strict_schema else args.bad_row_share
    counters = workload.run(args.rate, args.duration or None, stop, bad_share)
    if args.bad_rows_file:
        with open(args.bad_rows_file, "w") as out:
            json.dump([asdict(b) for b in workload.bad_rows], out, indent=2)
    print(json.dumps(counters.as_dict(), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
