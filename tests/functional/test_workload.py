"""The workload generator on a real PostgreSQL source: consistent seed data, every operation
kind in a short run, and bad rows that the core rejects with a reason (through the local DMS
stand-in and moto Kinesis)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.dms import LocalDms
from local.postgres import PostgresServer
from local.workload import OPERATIONS, Workload
from shared.spec import load_spec
from shared.transform import Transformer
from tests.functional.source_helpers import (
    assert_core_matches_source,
    create_stream,
    drop_slot,
    flush_wal,
    fresh_source,
    kinesis_client,
    messages,
    read_stream,
    unique_slot,
)

SPEC = load_spec()
HMAC_KEY = b"workload-test-hmac-key-0123456789abcd"


@pytest.fixture
def source_dsn(pg_server: PostgresServer) -> str:
    return fresh_source(pg_server)


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return int(row[0])


def test_seed_data_is_consistent(source_dsn: str) -> None:
    workload = Workload(source_dsn, SPEC, seed=7)
    workload.create_schema()
    workload.seed_data(customers=30, events=5, purchases=80)
    assert count(source_dsn, "SELECT count(*) FROM sport_event") == 5
    assert count(source_dsn, "SELECT count(*) FROM customer") == 30
    assert count(source_dsn, "SELECT count(*) FROM ticket") == 80
    assert count(source_dsn, "SELECT count(*) FROM ticket_activity") == 80
    # every purchase has its ticket, event and customer
    assert count(source_dsn, "SELECT count(*) FROM ticket_activity a "
                             "JOIN ticket t USING (ticket_id) JOIN sport_event e USING (event_id) "
                             "JOIN customer c ON c.customer_id = a.purchased_by") == 80
    # the loose schema takes values the spec rejects; the strict one would not
    with psycopg.connect(source_dsn) as conn:
        types: dict[str, str] = dict(conn.execute(
            "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public'").fetchall())
    assert types["customer.phone"] == "text" and types["ticket.ticket_price"] == "numeric"
    assert types["customer.email"] == "character varying"
    # a second generator on the same database carries on with new keys
    again = Workload(source_dsn, SPEC, seed=8)
    again.seed_data(customers=1, events=1, purchases=1)
    assert count(source_dsn, "SELECT max(customer_id) FROM customer") == 31
    assert count(source_dsn, "SELECT count(*) FROM ticket_activity") == 81


def test_bad_rows_need_the_loose_schema(source_dsn: str) -> None:
    workload = Workload(source_dsn, SPEC, seed=1)
    workload.create_schema(loose=False)
    workload.seed_data(customers=2, events=1, purchases=2)
    with pytest.raises(ValueError, match="loose"):
        workload.run(100, 1, bad_row_share=0.5)
    assert workload.run(1000, None, bad_row_share=0, max_operations=5).transactions >= 5


@pytest.fixture
def dms_setup(source_dsn: str, moto_endpoint: str,
              tmp_path: Path) -> Iterator[tuple[LocalDms, Any, str]]:
    kinesis = kinesis_client(moto_endpoint)
    stream = create_stream(kinesis, shards=4)
    slot = unique_slot()
    dms = LocalDms(source_dsn, SPEC, kinesis, stream, tmp_path, slot_name=slot)
    yield dms, kinesis, stream
    dms.close()
    drop_slot(source_dsn, slot)


def test_a_short_run_makes_every_change_kind_and_the_core_rejects_only_bad_rows(
    source_dsn: str, dms_setup: tuple[LocalDms, Any, str]
) -> None:
    dms, kinesis, stream = dms_setup
    workload = Workload(source_dsn, SPEC, seed=2024)
    workload.create_schema()
    workload.seed_data(customers=40, events=6, purchases=120)
    assert dms.full_load() == 6 + 40 + 120 * 2
    counters = workload.run(rate_per_second=2000, duration_seconds=20, bad_row_share=0.05,
                            max_operations=500)
    for operation in (*OPERATIONS, "late_customer", "bad_row"):
        assert counters.operations[operation] > 0, operation
    assert counters.bad_rows == len(workload.bad_rows) > 0
    assert {b.table for b in workload.bad_rows} == {"customer", "ticket"}
    flush_wal(source_dsn)
    assert dms.drain() > 0
    records = read_stream(kinesis, stream)
    cdc = [m for m in messages(records) if m["metadata"].get("operation") in
           ("insert", "update", "delete")]
    kinds = Counter((m["metadata"]["table-name"], m["metadata"]["operation"]) for m in cdc)
    for table in SPEC.tables:
        assert kinds[(table, "insert")] and kinds[(table, "update")], table
    assert kinds[("ticket", "delete")] and kinds[("ticket_activity", "delete")]

    def key_changed(message: dict[str, Any]) -> bool:
        # pk-only before images: the old key when the key changed, {} when it stayed
        # (DMS captures in crate/commons-codec, tests/transform/test_aws_dms.py)
        key = SPEC.tables[message["metadata"]["table-name"]].key[0]
        before = message["before-image"]
        return bool(before) and bool(before[key] != message["data"][key])

    moved = [m for m in cdc if m["metadata"]["operation"] == "update" and key_changed(m)]
    assert {m["metadata"]["table-name"] for m in moved} == {"ticket", "ticket_activity"}

    # late-arriving dimension: the purchase commits before its customer row
    def commit_of(table: str, column: str, value: int) -> str:
        return str(min(m["metadata"]["commit-timestamp"] for m in cdc
                       if m["metadata"]["table-name"] == table
                       and m["metadata"]["operation"] == "insert" and m["data"][column] == value))

    for customer_id in workload.late_customers:
        assert (commit_of("ticket_activity", "purchased_by", customer_id)
                < commit_of("customer", "customer_id", customer_id))

    # the core rejects exactly the bad rows, with a reason naming the column, never the value
    result = Transformer(SPEC, HMAC_KEY).transform(records)
    def rejected_key(payload: str) -> tuple[str, int]:
        raw = json.loads(base64.b64decode(payload))
        table = raw["metadata"]["table-name"]
        return table, raw["data"][SPEC.tables[table].key[0]]

    rejected = Counter(rejected_key(r.payload) for r in result.rejects)
    assert rejected == Counter((b.table, b.key[0]) for b in workload.bad_rows)
    for reject in result.rejects:
        column = "phone" if reject.table == "customer" else "ticket_price"
        assert f"column {column!r}" in reject.reason
        raw = json.loads(base64.b64decode(reject.payload))
        assert str(raw["data"][column]) not in reject.reason
    excluded = {(b.table, b.key) for b in workload.bad_rows}
    assert_core_matches_source(result, source_dsn, SPEC, excluded)


def test_cli_runs_a_workload(source_dsn: str, tmp_path: Path) -> None:
    bad_rows = tmp_path / "bad.json"
    done = subprocess.run(
        [sys.executable, "-m", "local.workload", "--source-dsn", source_dsn, "--create-schema",
         "--seed-customers", "10", "--seed-events", "3", "--seed-purchases", "20",
         "--rate", "200", "--duration", "1", "--bad-row-share", "0.1",
         "--bad-rows-file", str(bad_rows)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    counters = json.loads(done.stdout.strip().splitlines()[-1])
    assert counters["transactions"] > 20
    assert len(json.loads(bad_rows.read_text())) == counters["bad_rows"]
    assert count(source_dsn, "SELECT count(*) FROM ticket_activity") > 20


def test_schema_and_table_events_reach_the_stream_and_a_reload_repairs_lost_deletes(
    source_dsn: str, moto_endpoint: str, tmp_path: Path
) -> None:
    kinesis = kinesis_client(moto_endpoint)
    stream = create_stream(kinesis, shards=1)  # one shard: the stream keeps the put order
    slot = unique_slot()
    dms = LocalDms(source_dsn, SPEC, kinesis, stream, tmp_path, slot_name=slot)
    try:
        workload = Workload(source_dsn, SPEC, seed=11)
        workload.create_schema(loose=False)
        workload.seed_data(customers=20, events=6, purchases=60)
        dms.full_load()
        workload.run(1000, None, bad_row_share=0, max_operations=30)
        events = workload.truncate_and_reinsert(keep_share=0.5)
        workload.run(1000, None, bad_row_share=0, max_operations=30)
        assert workload.add_column(rows=10) == 10
        workload.run(1000, None, bad_row_share=0, max_operations=30)
        lost = workload.lose_purchases_and_reload(tmp_path, slot, count=4)
        workload.run(1000, None, bad_row_share=0, max_operations=30)
        flush_wal(source_dsn)
        dms.drain()
    finally:
        dms.close()
        drop_slot(source_dsn, slot)
    in_order = messages(read_stream(kinesis, stream))
    controls = [(m["metadata"]["table-name"], m["metadata"]["operation"]) for m in in_order
                if m["metadata"]["record-type"] == "control"]
    assert ("sport_event", "truncate-table") in controls
    assert ("ticket", "add-column") in controls
    assert controls.count(("ticket_activity", "create-table")) == 2  # full load and reload
    assert count(source_dsn, "SELECT count(*) FROM sport_event") == len(events)
    sections = [m["data"]["section"] for m in in_order if m["metadata"]["table-name"] == "ticket"
                and m["metadata"]["operation"] == "update" and m["data"].get("section")]
    assert len(sections) == 10
    # the lost deletes never reach the stream (the test device) ...
    assert not [m for m in in_order if m["metadata"]["table-name"] == "ticket_activity"
                and m["metadata"]["operation"] == "delete" and m["data"]["ticket_id"] in lost]
    # ... and the reload's rows, then the changes after it, are exactly the source's keys
    # (DMS semantics: a load row is the row; inserts add a key; deletes remove one; an
    # update with a before image moves a key)
    reload_at = max(i for i, m in enumerate(in_order)
                    if m["metadata"]["table-name"] == "ticket_activity"
                    and m["metadata"]["operation"] == "create-table")
    keys: set[int] = set()
    for message in in_order[reload_at + 1:]:
        meta = message["metadata"]
        if meta["table-name"] != "ticket_activity" or meta["record-type"] != "data":
            continue
        ticket_id = message["data"]["ticket_id"]
        if meta["operation"] == "delete":
            keys.discard(ticket_id)
        else:
            keys -= {message.get("before-image", {}).get("ticket_id")}
            keys.add(ticket_id)
    with psycopg.connect(source_dsn) as conn:
        source_keys = {r[0] for r in conn.execute("SELECT ticket_id FROM ticket_activity")}
    assert keys == source_keys and not keys & set(lost)
