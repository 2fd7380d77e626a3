"""The local DMS stand-in on a real PostgreSQL source (logical decoding with wal2json) and moto
Kinesis: full load and CDC in DMS's record format, decoded by the core, truncates, DDL capture
and table reloads, and restarts that neither skip nor lose changes (in-process and as a
separate process killed with SIGKILL).

The expected shapes come from the DMS documentation and published captures of real DMS output:

[K]  AWS DMS User Guide, "Using Amazon Kinesis Data Streams as a target"
     https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.Kinesis.html
[P]  AWS DMS User Guide, "Using a PostgreSQL database as an AWS DMS source" (DDL capture with
     awsdms_ddl_audit / awsdms_intercept_ddl; "doesn't support change processing of TRUNCATE")
     https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html
[C1] DMS captures (PostgreSQL source, Kinesis target): crate/commons-codec,
     tests/transform/test_aws_dms.py
[C2] DMS captures "from RDS PostgreSQL via Kinesis": crate/cratedb-toolkit,
     tests/io/kinesis/data.py
[C3] a MySQL-source capture (kingshark8848.gitbook.io "AWS DMS"): "2020-01-09T04:13:38Z"
[C4] a capture of a task partitioning by primary key (yhyyz/kafka-cdc-redshift, README.md): an
     update with "partition-key-type": "primary-key", "partition-key-value": "test_db.product.2"
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.dms import LocalDms, request_reload, request_skip
from local.postgres import PostgresServer
from local.source_db import schema_statements
from shared.records import StreamRecord
from shared.spec import load_spec
from shared.transform import Transformer
from tests.functional.source_helpers import (
    assert_core_matches_source,
    create_stream,
    drop_slot,
    fresh_source,
    kinesis_client,
    messages,
    read_stream,
    unique_slot,
    wait_for,
)

SPEC = load_spec()
HMAC_KEY = b"local-dms-test-hmac-key-0123456789ab"
COMMIT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
# [C1]: the same LSN on both sides, a small number between them
POSITION = re.compile(r"^([0-9A-F]{8}/[0-9A-F]{8})\.([23])\.\1$")
# [C3]: T, Z, no fraction when it is zero
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")
TASK_ID = re.compile(r"^[A-Z2-7]{26}$")  # [C2]: DZ6OKLFYA5BWVG4RYROQUHXU4E
CDC_DETAILS = ("commit-timestamp", "stream-position", "transaction-id", "transaction-record-id",
               "prev-transaction-id", "prev-transaction-record-id")


@dataclass
class Source:
    dsn: str
    slot: str

    def transaction(self, *statements: str | tuple[str, tuple[Any, ...]]) -> int:
        """Run the statements in one transaction; its (32-bit) transaction id.

        The test server commits asynchronously and logical decoding reads only flushed WAL,
        so these commits wait for the flush: a poll right after sees them.
        """
        with psycopg.connect(self.dsn) as conn:
            conn.execute("SET LOCAL synchronous_commit = on")
            for statement in statements:
                sql, params = statement if isinstance(statement, tuple) else (statement, ())
                conn.execute(sql, params)
            row = conn.execute("SELECT txid_current() & 4294967295").fetchone()
            assert row is not None
            return int(row[0])


@pytest.fixture
def source(pg_server: PostgresServer) -> Iterator[Source]:
    dsn = fresh_source(pg_server)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in schema_statements(SPEC):
            conn.execute(statement)
    src = Source(dsn, unique_slot())
    yield src
    drop_slot(dsn, src.slot)  # a slot keeps WAL until dropped


@pytest.fixture
def kinesis(moto_endpoint: str) -> Any:
    return kinesis_client(moto_endpoint)


@pytest.fixture
def stream(kinesis: Any) -> str:
    return create_stream(kinesis, shards=2)


def make_dms(source: Source, kinesis: Any, stream: str, state_dir: Path,
             **options: Any) -> LocalDms:
    return LocalDms(source.dsn, SPEC, kinesis, stream, state_dir, slot_name=source.slot,
                    **options)


def seed(source: Source) -> None:
    source.transaction(
        "INSERT INTO sport_event VALUES (1, 'Baseball', '2024-09-01', 'Seattle, US'), "
        "(2, 'Hockey', '2024-10-02', 'Zürich, CH')",
        "INSERT INTO customer VALUES (1, 'Teresa O''Brien', 'teresa@example.com', "
        "'+1-296-605-8486'), (2, E'Zoë \"Z\" Müller\\nline two', 'zoe@example.com', NULL)",
        "INSERT INTO ticket VALUES (1, 1, 'Standard', 'S-1', 100.50), "
        "(2, 2, 'Premium', 'P-2', 300)",
        "INSERT INTO ticket_activity VALUES (1, 1, '2024-08-15 10:00:00', "
        "'2024-08-15 10:00:00.123456'), (2, 2, '2024-08-16 11:30:00.5', '2024-08-16 11:30:00.5')",
    )


def by_kind(records: list[StreamRecord]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                   list[dict[str, Any]]]:
    control, load, cdc = [], [], []
    for message in messages(records):
        meta = message["metadata"]
        if meta["record-type"] == "control":
            control.append(message)
        elif meta["operation"] == "load":
            load.append(message)
        else:
            cdc.append(message)
    return control, load, cdc


def source_order(message: dict[str, Any]) -> tuple[str, int]:
    meta = message["metadata"]
    match = POSITION.match(meta["stream-position"])
    assert match, meta["stream-position"]
    return match.group(1), meta["transaction-record-id"]


def test_full_load_and_cdc_reach_kinesis_in_dms_format(
    source: Source, kinesis: Any, stream: str, tmp_path: Path
) -> None:
    seed(source)
    dms = make_dms(source, kinesis, stream, tmp_path)
    assert dms.full_load() == 8
    assert dms.full_load() == 0  # runs once

    new_purchase = source.transaction(
        "INSERT INTO ticket VALUES (3, 1, 'VIP', 'V-3', 950.5)",
        "INSERT INTO ticket_activity VALUES (3, 2, '2024-08-20 09:00:00', '2024-08-20 09:00:00')",
    )
    email_change = source.transaction(
        "UPDATE customer SET email = 'teresa.new@example.com' WHERE customer_id = 1")
    key_change = source.transaction(
        "UPDATE ticket SET ticket_id = 10 WHERE ticket_id = 1",
        "UPDATE ticket_activity SET ticket_id = 10 WHERE ticket_id = 1",
    )
    deletion = source.transaction("DELETE FROM ticket_activity WHERE ticket_id = 2",
                                  "DELETE FROM ticket WHERE ticket_id = 2")
    twice = source.transaction("UPDATE ticket SET ticket_price = 1000 WHERE ticket_id = 3",
                               "UPDATE ticket SET ticket_price = 1200.25 WHERE ticket_id = 3")
    assert dms.capture_once() == 9
    assert dms.capture_once() == 0
    assert dms.counters.records_captured == 9 and dms.counters.transactions == 5
    assert dms.counters.last_commit_time and COMMIT_TIME.match(dms.counters.last_commit_time)
    dms.close()

    records = read_stream(kinesis, stream)
    control, load, cdc = by_kind(records)

    # create-table control records, at the start of the full load: DMS's own
    # awsdms_apply_exceptions table first ([C1] MSG_CONTROL_AWSDMS), then every table
    [own] = [m for m in control if m["metadata"]["table-name"] == "awsdms_apply_exceptions"]
    assert own["metadata"]["schema-name"] == ""
    control = [m for m in control if m is not own]
    assert sorted(m["metadata"]["table-name"] for m in control) == sorted(SPEC.tables)
    assert TASK_ID.match(dms.state.task_id)
    for message in control:
        meta = message["metadata"]
        assert meta["operation"] == "create-table" and meta["partition-key-type"] == "task-id"
        assert meta["partition-key-value"] == dms.state.task_id
        table_def = message["control"]["table-def"]
        assert table_def["primary-key"] == list(SPEC.tables[meta["table-name"]].key)
        assert set(table_def["columns"]) == set(SPEC.tables[meta["table-name"]].column_names)
    ticket_def = next(m for m in control if m["metadata"]["table-name"] == "ticket")
    assert ticket_def["control"]["table-def"]["columns"]["ticket_id"] == {
        "type": "INT64", "nullable": False}
    assert ticket_def["control"]["table-def"]["columns"]["ticket_price"] == {
        "type": "NUMERIC", "precision": 12, "scale": 2, "nullable": True}

    # full load ([C1] MSG_DATA_LOAD, [C2]): operation load, no transaction details,
    # primary-key partitioning with the value schema.table.key
    assert Counter(m["metadata"]["table-name"] for m in load) == dict.fromkeys(SPEC.tables, 2)
    for message in load:
        meta = message["metadata"]
        assert not set(CDC_DETAILS) & set(meta)
        key = message["data"][SPEC.tables[meta["table-name"]].key[0]]
        assert meta["partition-key-value"] == f"public.{meta['table-name']}.{key}"
        assert meta["partition-key-type"] == "primary-key" and meta["record-type"] == "data"
        assert COMMIT_TIME.match(meta["timestamp"])
    loaded = {(m["metadata"]["table-name"], m["data"][SPEC.tables[m["metadata"]["table-name"]]
                                                      .key[0]]): m["data"] for m in load}
    assert loaded[("customer", 2)]["name"] == 'Zoë "Z" Müller\nline two'
    assert loaded[("customer", 2)]["phone"] is None  # IncludeNullAndEmpty: nulls are sent
    assert loaded[("ticket", 1)]["ticket_price"] == 100.5
    assert loaded[("ticket_activity", 1)]["created_at"] == "2024-08-15T10:00:00Z"
    assert loaded[("ticket_activity", 1)]["updated_at"] == "2024-08-15T10:00:00.123456Z"
    assert loaded[("ticket_activity", 2)]["created_at"] == "2024-08-16T11:30:00.500000Z"
    assert loaded[("sport_event", 2)]["start_date"] == "2024-10-02"

    # CDC: transaction details on every record, in source order
    cdc.sort(key=source_order)
    assert [m["metadata"]["transaction-id"] for m in cdc] == (
        [new_purchase] * 2 + [email_change] + [key_change] * 2 + [deletion] * 2 + [twice] * 2)
    previous = None
    for message in cdc:
        meta = message["metadata"]
        assert COMMIT_TIME.match(meta["commit-timestamp"])
        assert POSITION.match(meta["stream-position"])
        # The task's object mapping partitions by primary key ([K], [C4]): schema.table.key
        # of the row in data (a moved row under its new key)
        key = message["data"][SPEC.tables[meta["table-name"]].key[0]]
        assert meta["partition-key-type"] == "primary-key"
        assert meta["partition-key-value"] == f"public.{meta['table-name']}.{key}"
        counter = POSITION.match(meta["stream-position"]).group(2)  # type: ignore[union-attr]
        assert counter == ("3" if meta["operation"] == "insert" else "2")
        if previous is None:
            assert "prev-transaction-id" not in meta  # [C1] MSG_DATA_INSERT: the first one
        else:
            prev_meta = previous["metadata"]
            assert (meta["prev-transaction-id"], meta["prev-transaction-record-id"]) == (
                prev_meta["transaction-id"], prev_meta["transaction-record-id"])
            assert meta["commit-timestamp"] >= prev_meta["commit-timestamp"]
        previous = message
    per_tx: dict[int, list[int]] = defaultdict(list)
    for message in cdc:
        per_tx[message["metadata"]["transaction-id"]].append(
            message["metadata"]["transaction-record-id"])
    assert all(ids == list(range(1, len(ids) + 1)) for ids in per_tx.values())
    ops = [(m["metadata"]["table-name"], m["metadata"]["operation"]) for m in cdc]
    assert ops == [("ticket", "insert"), ("ticket_activity", "insert"), ("customer", "update"),
                   ("ticket", "update"), ("ticket_activity", "update"),
                   ("ticket_activity", "delete"), ("ticket", "delete"),
                   ("ticket", "update"), ("ticket", "update")]
    # Kinesis partition keys ([K], [C2]): the partition value of load and CDC records, the
    # task id and the table for a table's control record, the task id for DMS's own table
    for record, message in zip(records, messages(records), strict=True):
        meta = message["metadata"]
        expected = {"primary-key": meta.get("partition-key-value"),
                    "task-id": f"{dms.state.task_id}.public.{meta['table-name']}"
                    if meta["schema-name"] else dms.state.task_id}[meta["partition-key-type"]]
        assert record.partition_key == expected

    # an update that keeps the key ([C1] MSG_DATA_UPDATE_VALUE): "before-image": {}
    update = cdc[2]
    assert update["before-image"] == {}
    assert update["data"]["email"] == "teresa.new@example.com"
    # a primary-key change: new row in data, old key in the before image
    moved = cdc[4]
    assert moved["data"]["ticket_id"] == 10 and moved["before-image"] == {"ticket_id": 1}
    assert TIMESTAMP.match(moved["data"]["created_at"])
    # a delete: the key set, every other column null
    assert cdc[5]["data"] == {"ticket_id": 2, "purchased_by": None, "created_at": None,
                              "updated_at": None}
    assert "before-image" not in cdc[5]
    assert cdc[8]["data"]["ticket_price"] == 1200.25

    # the core decodes everything, rejects nothing and ends where the source is
    core = Transformer(SPEC, HMAC_KEY)
    result = core.transform(records)
    assert result.rejects == []
    assert_core_matches_source(result, source.dsn, SPEC)
    tombstones = {(c.table, c.key) for t in result.changes.values() for c in t if c.deleted}
    assert tombstones == {("ticket", (1,)), ("ticket_activity", (1,)), ("ticket", (2,)),
                          ("ticket_activity", (2,))}
    # order keys: a later change of a row has a larger key; the full load sorts first
    changes = [core._decoder.decode(r) for r in records
               if json.loads(r.data)["metadata"]["record-type"] == "data"]
    flat = [c for d in changes for c in (d if isinstance(d, list) else [d])]
    ticket3 = sorted((c for c in flat if c.table == "ticket" and c.key == (3,)),
                     key=lambda c: c.order_key)
    assert [str(c.values["ticket_price"]) for c in ticket3] == ["950.50", "1000.00", "1200.25"]
    customer1 = sorted((c for c in flat if c.table == "customer" and c.key == (1,)),
                       key=lambda c: c.order_key)
    assert [c.operation for c in customer1] == ["load", "update"]


class Crash(Exception):
    """Stands for the process dying at this point."""


def test_restart_neither_skips_nor_loses_changes(
    source: Source, kinesis: Any, stream: str, tmp_path: Path
) -> None:
    seed(source)
    first = make_dms(source, kinesis, stream, tmp_path)
    assert first.full_load() == 8
    before = [source.transaction(
        f"UPDATE sport_event SET location = 'before {i}' WHERE event_id = 1") for i in range(3)]
    assert first.capture_once() == 3

    # Put, then die before the position is confirmed: these must come again.
    unconfirmed = [source.transaction(
        f"INSERT INTO customer VALUES ({100 + i}, 'n', 'e@example.com', NULL)")
        for i in range(4)]
    real_put = first._put

    def put_then_crash(entries: Any) -> None:
        real_put(entries)
        raise Crash

    first._put = put_then_crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.capture_once()
    first.close()

    after = [source.transaction(
        f"UPDATE customer SET name = 'after {i}' WHERE customer_id = 1") for i in range(2)]
    second = make_dms(source, kinesis, stream, tmp_path)  # same state dir and slot
    assert not second.full_load_needed and second.full_load() == 0
    assert second.capture_once() == 6
    assert second.capture_once() == 0
    second.close()

    _, load, cdc = by_kind(read_stream(kinesis, stream))
    assert len(load) == 8  # the full load ran once
    seen = Counter(m["metadata"]["transaction-id"] for m in cdc)
    assert all(seen[x] == 1 for x in before)  # confirmed: not sent again
    assert all(seen[x] == 2 for x in unconfirmed)  # put but not confirmed: sent again
    assert all(seen[x] == 1 for x in after)
    # The restarted task carries on the prev-transaction chain from where it confirmed.
    resent = [m for m in cdc if m["metadata"]["transaction-id"] == unconfirmed[0]]
    assert [m["metadata"]["prev-transaction-id"] for m in resent] == [before[-1]] * 2
    result = Transformer(SPEC, HMAC_KEY).transform(read_stream(kinesis, stream))
    assert result.rejects == []
    assert_core_matches_source(result, source.dsn, SPEC)


def test_the_slot_is_dropped_right_after_streaming_from_it(
    source: Source, kinesis: Any, stream: str, tmp_path: Path
) -> None:
    """The stream's walsender lets go of the slot a moment after its connection closes; a
    drop in that moment failed with "replication slot ... is active for PID" (seen in
    bench-e2e's capture part under load)."""
    seed(source)
    for round_ in range(5):
        dms = make_dms(source, kinesis, stream, tmp_path / str(round_))
        dms.full_load()
        source.transaction(f"UPDATE sport_event SET location = 'round {round_}' "
                           "WHERE event_id = 1")
        assert dms.capture_once() == 1
        assert dms.drop_slot() is True
        dms.close()
        with psycopg.connect(source.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                                (source.slot,)).fetchone() == (0,)


def test_full_load_runs_again_after_a_crash_in_it_or_a_lost_slot(
    source: Source, kinesis: Any, stream: str, tmp_path: Path
) -> None:
    seed(source)
    first = make_dms(source, kinesis, stream, tmp_path)
    calls = 0
    real_put = first._put

    def crash_on_third_put(entries: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Crash
        real_put(entries)

    first._put = crash_on_third_put  # type: ignore[method-assign]
    with pytest.raises(Crash):
        first.full_load()
    first.close()

    second = make_dms(source, kinesis, stream, tmp_path)
    assert second.full_load_needed
    assert second.full_load() == 8
    assert not make_dms(source, kinesis, stream, tmp_path).full_load_needed
    assert second.drop_slot()
    second.close()
    # Without its slot the position is gone: the next task loads everything again.
    third = make_dms(source, kinesis, stream, tmp_path)
    assert third.full_load_needed and third.full_load() == 8
    third.close()
    _, load, _ = by_kind(read_stream(kinesis, stream))
    assert len(load) == 2 + 8 + 8  # sport_event of the crashed load, then two whole loads


def test_cli_process_survives_sigkill_and_stops_cleanly_on_sigterm(
    source: Source, kinesis: Any, stream: str, tmp_path: Path, moto_endpoint: str
) -> None:
    seed(source)
    env = {**os.environ, "AWS_ENDPOINT_URL_KINESIS": moto_endpoint}
    command = [sys.executable, "-m", "local.dms", "run", "--source-dsn", source.dsn,
               "--stream", stream, "--state-dir", str(tmp_path), "--slot", source.slot,
               "--poll-interval", "0.05"]

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def arrived() -> Counter[int]:
        _, _, cdc = by_kind(read_stream(kinesis, stream))
        return Counter(m["metadata"]["transaction-id"] for m in cdc)

    process = start()
    try:
        wait_for(lambda: len(by_kind(read_stream(kinesis, stream))[1]) == 8)
        first = [source.transaction(
            f"UPDATE ticket SET seat_location = 'A-{i}' WHERE ticket_id = 1") for i in range(5)]
        wait_for(lambda: all(arrived()[x] for x in first))
    finally:
        process.kill()  # SIGKILL: no chance to clean up
        process.wait(10)
    second = [source.transaction(
        f"INSERT INTO customer VALUES ({200 + i}, 'k', 'k@example.com', NULL)")
        for i in range(5)]
    process = start()
    try:
        third = [source.transaction(
            f"UPDATE customer SET phone = '+1-{i}' WHERE customer_id = 200") for i in range(3)]
        wait_for(lambda: all(arrived()[x] for x in second + third))
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, err
    counters = json.loads(out.strip().splitlines()[-1])
    assert counters["records_loaded"] == 0  # the full load ran once, in the first process
    assert counters["last_commit_time"]
    _, load, _ = by_kind(read_stream(kinesis, stream))
    assert len(load) == 8
    result = Transformer(SPEC, HMAC_KEY).transform(read_stream(kinesis, stream))
    assert result.rejects == []
    assert_core_matches_source(result, source.dsn, SPEC)


def cdc_in_source_order(records: list[StreamRecord]) -> list[dict[str, Any]]:
    """The CDC records (data and control, those with transaction details) in source order."""
    found = [m for m in messages(records) if "stream-position" in m["metadata"]]
    return sorted(found, key=source_order)


def test_truncate_and_add_column_arrive_as_control_records_in_commit_order(
    source: Source, kinesis: Any, stream: str, tmp_path: Path
) -> None:
    seed(source)
    dms = make_dms(source, kinesis, stream, tmp_path)
    dms.full_load()
    truncation = source.transaction(
        "TRUNCATE sport_event",
        "INSERT INTO sport_event VALUES (3, 'Tennis', '2024-11-01', 'Paris, FR')")
    ddl = source.transaction(
        "UPDATE ticket SET seat_level = 'Gold' WHERE ticket_id = 1",
        "ALTER TABLE ticket ADD COLUMN section varchar(16)",
        "UPDATE ticket SET section = 'North' WHERE ticket_id = 2")
    after = source.transaction("INSERT INTO ticket VALUES (5, 1, 'Standard', 'S-5', 10, 'East')")
    dms.drain()
    dms.close()
    records = read_stream(kinesis, stream)
    cdc = cdc_in_source_order(records)
    assert [(m["metadata"]["table-name"], m["metadata"]["operation"],
             m["metadata"]["transaction-id"], m["metadata"]["transaction-record-id"])
            for m in cdc] == [
        ("sport_event", "truncate-table", truncation, 1), ("sport_event", "insert", truncation, 2),
        ("ticket", "update", ddl, 1), ("ticket", "add-column", ddl, 2),
        ("ticket", "update", ddl, 3), ("ticket", "insert", after, 1)]
    truncate, _, before, added, filled, inserted = cdc
    # a control record with the transaction details of a CDC record; control as [C1] shows a
    # table-level control record without a definition: {}
    assert truncate["control"] == {} and "data" not in truncate
    assert truncate["metadata"]["record-type"] == "control"
    assert truncate["metadata"]["partition-key-type"] == "task-id"
    assert truncate["metadata"]["partition-key-value"] == dms.state.task_id
    assert COMMIT_TIME.match(truncate["metadata"]["commit-timestamp"])
    # add-column: the table's definition after the DDL, in the DDL's place in its transaction
    table_def = added["control"]["table-def"]
    assert list(table_def["columns"]) == [*SPEC.tables["ticket"].column_names, "section"]
    assert table_def["columns"]["section"] == {"type": "STRING", "length": 16, "nullable": True}
    assert table_def["primary-key"] == ["ticket_id"]
    assert "section" not in before["data"]
    assert filled["data"]["section"] == "North" and inserted["data"]["section"] == "East"
    # DMS's DDL audit rows are its own: never sent as data ([P])
    assert not [m for m in messages(records) if m["metadata"]["table-name"] == "awsdms_ddl_audit"]
    assert dms.state.table_columns["ticket"][-1] == ["section", "character varying(16)", True]

    # a wider type, then the column dropped: column-type-change, then drop-column (the
    # stand-in reads the catalog when it decodes a DDL, so each is captured before the next)
    retyped = source.transaction("ALTER TABLE ticket ALTER COLUMN section TYPE varchar(32)")
    dms.drain()
    dropped = source.transaction("ALTER TABLE ticket DROP COLUMN section")
    dms.drain()
    dms.close()
    later = [m for m in cdc_in_source_order(read_stream(kinesis, stream))
             if m["metadata"]["transaction-id"] in (retyped, dropped)]
    assert [m["metadata"]["operation"] for m in later] == ["column-type-change", "drop-column"]
    assert later[0]["control"]["table-def"]["columns"]["section"]["length"] == 32
    assert "section" not in later[1]["control"]["table-def"]["columns"]


def test_without_truncate_records_a_truncate_is_left_out_as_dms_documents_for_postgresql(
    source: Source, kinesis: Any, stream: str, tmp_path: Path
) -> None:
    seed(source)
    dms = make_dms(source, kinesis, stream, tmp_path, truncate_records=False)
    dms.full_load()
    source.transaction("TRUNCATE sport_event",
                       "INSERT INTO sport_event VALUES (3, 'Tennis', '2024-11-01', 'Paris, FR')")
    assert dms.drain() == 1
    dms.close()
    cdc = cdc_in_source_order(read_stream(kinesis, stream))
    assert [m["metadata"]["operation"] for m in cdc] == ["insert"]
    assert dms.counters.truncates_skipped == 1


def test_a_reload_sends_the_table_again_and_holds_its_changes_until_the_load_is_out(
    source: Source, kinesis: Any, tmp_path: Path, moto_endpoint: str
) -> None:
    stream = create_stream(kinesis, shards=1)  # one shard: the stream keeps the put order
    seed(source)
    dms = make_dms(source, kinesis, stream, tmp_path)
    dms.full_load()
    # Drift, with the stand-in's test device (not DMS behaviour): a delete the stream never
    # carries.
    with psycopg.connect(source.dsn) as conn:
        conn.execute("SET LOCAL synchronous_commit = on")
        row = conn.execute("SELECT txid_current()").fetchone()
        assert row is not None
        request_skip(tmp_path, source.slot, int(row[0]))
        conn.execute("DELETE FROM customer WHERE customer_id = 2")
    seen_before = source.transaction("UPDATE customer SET name = 'Before' WHERE customer_id = 1")
    dms.capture_once()
    assert dms.counters.transactions_skipped_on_request == 1
    done = subprocess.run(
        [sys.executable, "-m", "local.dms", "reload", "--state-dir", str(tmp_path),
         "--table", "customer", "--slot", source.slot],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert dms.step_reloads(5000) and dms.reloading == "customer"  # create-table is out
    during = source.transaction(
        "UPDATE customer SET name = 'During' WHERE customer_id = 1",
        "UPDATE ticket SET seat_level = 'Other table' WHERE ticket_id = 1")
    assert dms.capture_once() == 1  # the ticket change goes on; customer's is held back
    assert dms.step_reloads(5000)  # the rows, then the held-back change
    assert dms.reloading is None and dms.counters.reloads == 1
    assert not list(tmp_path.glob("*.request"))

    # A second reload, interrupted by a crash after a change was held back: the request
    # stays and the change is still in the slot.
    request_reload(tmp_path, source.slot, "customer")
    assert dms.step_reloads(5000)
    interrupted = source.transaction("UPDATE customer SET name = 'Lost?' WHERE customer_id = 1")
    assert dms.capture_once() == 0
    dms.close()
    restarted = make_dms(source, kinesis, stream, tmp_path)
    restarted.drain()
    assert restarted.counters.reloads == 1 and not list(tmp_path.glob("*.request"))
    restarted.close()

    stream_order = messages(read_stream(kinesis, stream))
    customer = [(m["metadata"]["operation"], m.get("data", {}).get("customer_id"),
                 m.get("data", {}).get("name"), m["metadata"].get("transaction-id"))
                for m in stream_order if m["metadata"]["table-name"] == "customer"]
    starts = [i for i, c in enumerate(customer) if c[0] == "create-table"]
    assert len(starts) == 4  # the full load, two reloads, the second one's restart
    # the full load, then the update seen before the reload; the skipped delete never
    # appears
    assert customer[:starts[1]] == [("create-table", None, None, None),
                                    ("load", 1, "Teresa O'Brien", None),
                                    ("load", 2, 'Zoë "Z" Müller\nline two', None),
                                    ("update", 1, "Before", seen_before)]
    # the reload: create-table, every row of its snapshot (customer 2 is gone), then the
    # change committed during it
    assert customer[starts[1]:starts[2]] == [("create-table", None, None, None),
                                             ("load", 1, "Before", None),
                                             ("update", 1, "During", during)]
    ticket_during = [i for i, m in enumerate(stream_order)
                     if m["metadata"].get("transaction-id") == during
                     and m["metadata"]["table-name"] == "ticket"]
    customer_loads = [i for i, m in enumerate(stream_order)
                      if m["metadata"]["operation"] in ("create-table", "load")
                      and m["metadata"]["table-name"] == "customer"]
    assert customer_loads[3] < ticket_during[0] < customer_loads[4]  # CDC went on meanwhile
    # the interrupted reload sent only its create-table; after the restart the slot gave the
    # held-back change again, then the reload ran whole
    assert customer[starts[2]:] == [("create-table", None, None, None),
                                    ("update", 1, "Lost?", interrupted),
                                    ("create-table", None, None, None),
                                    ("load", 1, "Lost?", None)]

