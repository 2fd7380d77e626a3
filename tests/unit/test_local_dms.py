"""The local DMS stand-in's pure parts: wal2json parsing, DMS values and records, DDL diffs,
snapshots, request files, and Kinesis PutRecords chunking and retries (against a scripted
client).

Every expected shape comes from the AWS DMS documentation or a published capture of real DMS
output, never from our consumer:

[K]  AWS DMS User Guide, "Using Amazon Kinesis Data Streams as a target"
     https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.Kinesis.html
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
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local.dms import requests
from local.dms.capture import Snapshot, ddl_changes
from local.dms.kinesis import (
    MAX_BYTES_PER_PUT,
    KinesisPutError,
    KinesisPutter,
    PutRetryPolicy,
    RecordTooLarge,
    chunks,
)
from local.dms.records import (
    ControlChange,
    KinesisEntry,
    TableDef,
    TransactionCursor,
    apply_exceptions_record,
    cdc_records,
    create_table_record,
    dms_value,
    kinesis_partition_key,
    load_record,
)
from local.dms.state import new_task_id
from local.dms.wal2json import (
    Transaction,
    TransactionAssembler,
    Wal2JsonError,
    commit_time_iso,
    format_lsn,
    parse_lsn,
)

TASK = "DZ6OKLFYA5BWVG4RYROQUHXU4E"  # [C2]'s task id


def test_lsns() -> None:
    assert parse_lsn("2/7C007178") == 0x2_7C00_7178
    assert format_lsn(0x2_7C00_7178) == "00000002/7C007178"
    with pytest.raises(Wal2JsonError):
        parse_lsn("nonsense")


def test_commit_time_is_utc_with_microseconds() -> None:
    assert commit_time_iso("2024-07-29 00:58:17.98367+00") == "2024-07-29T00:58:17.983670Z"
    assert commit_time_iso("2024-07-29 02:58:17+02") == "2024-07-29T00:58:17.000000Z"


@pytest.mark.parametrize(("pg_type", "wal2json", "text", "expected"), [
    ("bigint", 42, "42", 42),
    # [K] Limitations: "AWS DMS migrates values of BigInt data type with more than 16 digits
    # in the scientific notation form"
    ("bigint", 1234567890123456, "1234567890123456", 1234567890123456),
    ("bigint", 12345678901234567, "12345678901234567", 1.2345678901234568e16),
    ("bigint", -98765432109876543, "-98765432109876543", -9.876543210987654e16),
    ("integer", 7, "7", 7),
    ("numeric(12,2)", Decimal("12.50"), "12.50", Decimal("12.50")),
    ("numeric", Decimal("123456789012345.67"), "123456789012345.67", "123456789012345.67"),
    ("numeric", None, "NaN", None),  # wal2json writes NaN as null
    ("double precision", Decimal("1.5"), "1.5", 1.5),
    ("boolean", True, "true", True),
    ("boolean", False, "false", False),
    ("date", "2024-01-02", "2024-01-02", "2024-01-02"),
    # [C3]: T, Z, no fraction when it is zero; timestamp = the wall clock the source stored
    ("timestamp without time zone", "2020-01-09 04:13:38", "2020-01-09 04:13:38",
     "2020-01-09T04:13:38Z"),
    ("timestamp without time zone", "2024-01-02 03:04:05.5", "2024-01-02 03:04:05.5",
     "2024-01-02T03:04:05.500000Z"),
    ("timestamp without time zone", "2024-01-02 03:04:05.123456", "2024-01-02 03:04:05.123456",
     "2024-01-02T03:04:05.123456Z"),
    ("timestamp(3) without time zone", "2024-01-02 03:04:05.12", "2024-01-02 03:04:05.12",
     "2024-01-02T03:04:05.120Z"),
    # timestamptz: UTC, same form
    ("timestamp with time zone", "2024-01-02 03:04:05+02", "2024-01-02 03:04:05+02",
     "2024-01-02T01:04:05Z"),
    ("timestamp with time zone", "2024-01-02 01:04:05.25+00", "2024-01-02 01:04:05.25+00",
     "2024-01-02T01:04:05.250000Z"),
    ("character varying(64)", "O'Brien \"x\"\n", "O'Brien \"x\"\n", "O'Brien \"x\"\n"),
])
def test_full_load_text_and_wal2json_values_come_out_in_dms_form(
    pg_type: str, wal2json: Any, text: str, expected: Any
) -> None:
    assert dms_value(pg_type, wal2json) == expected
    assert dms_value(pg_type, text) == expected


def test_a_long_bigint_is_a_json_number_in_scientific_notation() -> None:
    entry = load_record("public", "t", {"id": 1, "big": dms_value("bigint", 12345678901234567)},
                        ["id"])
    assert re.search(rb'"big": 1\.2345678901234568e\+?16\b', entry.data, re.IGNORECASE)
    assert json.loads(entry.data)["data"]["big"] != 12345678901234567  # precision lost


def _rows(*messages: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.pop("_row_lsn", "0/10"), json.dumps(m)) for m in messages]


def parse_transactions(rows: list[tuple[str, str]]) -> list[Transaction]:
    """The whole transactions in ``(lsn, data)`` messages, as the stream hands them over."""
    assembler = TransactionAssembler()
    done = [assembler.add(parse_lsn(lsn), data) for lsn, data in rows]
    return [t for t in done if t is not None]


def _column(name: str, value: Any, pg_type: str = "bigint") -> dict[str, Any]:
    return {"name": name, "type": pg_type, "value": value}


BEGIN = {"action": "B", "xid": 900, "timestamp": "2024-07-29 00:58:17.98367+00",
         "lsn": "0/2000", "nextlsn": "0/2030"}
COMMIT = {"action": "C", "xid": 900, "lsn": "0/2000", "nextlsn": "0/2030", "_row_lsn": "0/2030"}
PK = [{"name": "id"}]


def _transaction(*changes: dict[str, Any]) -> Any:
    [tx] = parse_transactions(_rows(dict(BEGIN), *changes, dict(COMMIT)))
    return tx


def test_logical_messages_and_unfinished_transactions() -> None:
    """The stream's sync point is a transactional logical message (``pg_logical_emit_message``
    with ``true``): it comes in its own transaction, kept in ``messages``; a non-transactional
    one is passed over; a transaction is handed over only at its commit."""
    marker = {"action": "M", "xid": 900, "transactional": True, "prefix": "local-dms-sync",
              "content": "abc", "lsn": "0/2010"}
    loose = {"action": "M", "xid": None, "transactional": False, "prefix": "other",
             "content": "x", "lsn": "0/1F00"}
    change = {"action": "I", "lsn": "0/3010", "schema": "public", "table": "foo",
              "columns": [_column("id", 1)], "pk": PK}
    later = dict(BEGIN, xid=901, lsn="0/3000", nextlsn="0/3030")
    assembler = TransactionAssembler()
    done = [assembler.add(parse_lsn(lsn), data)
            for lsn, data in _rows(loose, dict(BEGIN), marker, dict(COMMIT), later, change)]
    [sync] = [t for t in done if t is not None]
    assert sync.changes == [] and sync.messages == [("local-dms-sync", "abc")]
    assert sync.end_lsn == 0x2030
    assert assembler.in_transaction  # 901 has begun, not committed: not handed over yet
    finished = assembler.add(0x3030, json.dumps(dict(COMMIT, xid=901)))
    assert finished is not None and finished.xid == 901 and len(finished.changes) == 1


def _messages(tx: Any, cursor: TransactionCursor | None = None, **options: Any
              ) -> list[dict[str, Any]]:
    return [json.loads(r.entry.data)
            for r in cdc_records(tx, {}, cursor or TransactionCursor(), TASK, **options)]


def test_insert_update_delete_in_the_shapes_of_the_captures() -> None:
    tx = _transaction(
        {"action": "I", "lsn": "0/1E00", "schema": "public", "table": "foo",
         "columns": [_column("id", 46), _column("name", "Jane", "text")], "pk": PK},
        {"action": "U", "lsn": "0/1E80", "schema": "public", "table": "foo",
         "columns": [_column("id", 46), _column("name", "Joan", "text")],
         "identity": [_column("id", 46), _column("name", "Jane", "text")], "pk": PK},
        {"action": "U", "lsn": "0/1F00", "schema": "public", "table": "foo",
         "columns": [_column("id", 45), _column("name", "Joan", "text")],
         "identity": [_column("id", 46), _column("name", "Joan", "text")], "pk": PK},
        {"action": "D", "lsn": "0/1F80", "schema": "public", "table": "foo",
         "identity": [_column("id", 45), _column("name", "Joan", "text")], "pk": PK},
    )
    assert (tx.xid, tx.commit_lsn, tx.end_lsn) == (900, 0x2000, 0x2030)
    insert, keep_key, move_key, delete = _messages(tx)
    # [C1] MSG_DATA_INSERT: no before image on inserts, counter 3 for an insert; the task's
    # object mapping partitions by primary key with the schema and table in front ([K], [C4])
    assert insert["data"] == {"id": 46, "name": "Jane"} and "before-image" not in insert
    assert insert["metadata"] == {
        "timestamp": insert["metadata"]["timestamp"], "record-type": "data",
        "operation": "insert", "partition-key-type": "primary-key",
        "partition-key-value": "public.foo.46", "schema-name": "public",
        "table-name": "foo", "commit-timestamp": "2024-07-29T00:58:17.983670Z",
        "stream-position": "00000000/00002000.3.00000000/00002000", "transaction-id": 900,
        "transaction-record-id": 1}
    # [C1] MSG_DATA_UPDATE_VALUE: the key stayed, nothing captured
    assert keep_key["before-image"] == {} and keep_key["data"] == {"id": 46, "name": "Joan"}
    # [C1] MSG_DATA_UPDATE_PK: the old key in the before image, the new row in data
    assert move_key["before-image"] == {"id": 46} and move_key["data"]["id"] == 45
    # [C1] MSG_DATA_DELETE: every column, the non-key ones null
    assert delete["data"] == {"id": 45, "name": None} and "before-image" not in delete
    positions = [m["metadata"]["stream-position"] for m in (keep_key, move_key, delete)]
    assert positions == ["00000000/00002000.2.00000000/00002000"] * 3
    assert [m["metadata"]["transaction-record-id"] for m in (insert, keep_key, move_key,
                                                             delete)] == [1, 2, 3, 4]
    assert [(m["metadata"]["prev-transaction-id"], m["metadata"]["prev-transaction-record-id"])
            for m in (keep_key, move_key, delete)] == [(900, 1), (900, 2), (900, 3)]


def test_prev_transaction_fields_continue_from_the_cursor() -> None:
    tx = _transaction({"action": "I", "lsn": "0/1E00", "schema": "public", "table": "foo",
                       "columns": [_column("id", 1)], "pk": PK})
    cursor = TransactionCursor(899, 3)
    [message] = _messages(tx, cursor)
    assert (message["metadata"]["prev-transaction-id"],
            message["metadata"]["prev-transaction-record-id"]) == (899, 3)
    assert (cursor.transaction_id, cursor.record_id) == (900, 1)


def _partitions(tx: Any, key_of: dict[str, list[str]] | None = None
                ) -> list[tuple[str, str, str | None, str]]:
    """(operation, partition-key-type, partition-key-value, Kinesis partition key) of each
    record of ``tx``."""
    result = []
    for record in cdc_records(tx, key_of or {}, TransactionCursor(), TASK):
        meta = json.loads(record.entry.data)["metadata"]
        result.append((meta["operation"], meta["partition-key-type"],
                       meta.get("partition-key-value"), record.entry.partition_key))
    return result


def test_cdc_records_are_partitioned_by_the_primary_key_of_their_row() -> None:
    tx = _transaction(
        {"action": "I", "lsn": "0/1E00", "schema": "public", "table": "foo",
         "columns": [_column("id", 46), _column("name", "Jane", "text")], "pk": PK},
        {"action": "U", "lsn": "0/1E80", "schema": "public", "table": "foo",
         "columns": [_column("id", 46), _column("name", "Joan", "text")],
         "identity": [_column("id", 46)], "pk": PK},
        {"action": "U", "lsn": "0/1F00", "schema": "public", "table": "foo",
         "columns": [_column("id", 45), _column("name", "Joan", "text")],
         "identity": [_column("id", 46)], "pk": PK},
        {"action": "D", "lsn": "0/1F80", "schema": "public", "table": "foo",
         "identity": [_column("id", 45)], "pk": PK},
        {"action": "I", "lsn": "0/1FC0", "schema": "public", "table": "bar",
         "columns": [_column("id", 46)], "pk": PK})
    # [K] object mapping with partition-key-type primary-key, PartitionIncludeSchemaTable
    # ("public.foo.46"; [C4]: "test_db.product.2"); the value is the Kinesis partition key
    # ([C2]: partition-key-value and Kinesis partition "public.demo.393"). A row that moved
    # to a new key goes under its new key (the old one is only in the before image): ours.
    assert _partitions(tx) == [
        ("insert", "primary-key", "public.foo.46", "public.foo.46"),
        ("update", "primary-key", "public.foo.46", "public.foo.46"),
        ("update", "primary-key", "public.foo.45", "public.foo.45"),
        ("delete", "primary-key", "public.foo.45", "public.foo.45"),
        # the same key in another table is another partition key ([K]: "increases data
        # distribution among Kinesis shards")
        ("insert", "primary-key", "public.bar.46", "public.bar.46")]


def test_composite_keys_and_tables_without_a_primary_key() -> None:
    line = [{"name": "order_id"}, {"name": "line_no"}]
    tx = _transaction(
        {"action": "I", "lsn": "0/1E00", "schema": "public", "table": "order_line",
         "columns": [_column("line_no", 2, "integer"), _column("order_id", 7)], "pk": line},
        {"action": "I", "lsn": "0/1E40", "schema": "public", "table": "event_log",
         "columns": [_column("note", "x", "text")]},
        {"action": "I", "lsn": "0/1E80", "schema": "public", "table": "keyed_by_spec",
         "columns": [_column("code", "A-1", "text")]})
    # A composite key's values in key order, joined with "." (as the full load's records);
    # no primary key (DMS sends its inserts only, [P]): DMS's partitioning without an object
    # mapping, schema-table with SchemaName.TableName and no value ([K]), also when the spec
    # names a key for it (DMS knows only the source's primary key). Both are ours.
    assert _partitions(tx, {"keyed_by_spec": ["code"]}) == [
        ("insert", "primary-key", "public.order_line.7.2", "public.order_line.7.2"),
        ("insert", "schema-table", None, "public.event_log"),
        ("insert", "schema-table", None, "public.keyed_by_spec")]


def test_the_kinesis_partition_keys_follow_the_partition_types() -> None:
    tx = _transaction(
        {"action": "I", "lsn": "0/1E00", "schema": "public", "table": "foo",
         "columns": [_column("id", 1)], "pk": PK},
        {"action": "T", "lsn": "0/1E40", "schema": "public", "table": "foo"})
    insert, truncate = cdc_records(tx, {}, TransactionCursor(), TASK)
    assert insert.entry.partition_key == "public.foo.1"  # [K] primary-key, [C2]
    assert truncate.entry.partition_key == f"{TASK}.public.foo"  # [K] note, [C2]
    load = load_record("public", "foo", {"id": 393}, ["id"])
    assert load.partition_key == "public.foo.393"  # [C2] DMS_CDC_INSERT_BASIC
    assert json.loads(load.data)["metadata"]["partition-key-value"] == "public.foo.393"


def test_a_truncate_is_a_control_record_with_the_transaction_details() -> None:
    tx = _transaction(
        {"action": "T", "lsn": "0/1E00", "schema": "public", "table": "foo"},
        {"action": "I", "lsn": "0/1E40", "schema": "public", "table": "foo",
         "columns": [_column("id", 1)], "pk": PK})
    truncate, insert = _messages(tx, TransactionCursor(899, 2))
    # control as [C1] renders a table's drop: an empty control object, task-id partitioning
    assert truncate["control"] == {} and "data" not in truncate
    meta = truncate["metadata"]
    assert {k: meta[k] for k in ("record-type", "operation", "partition-key-type",
                                 "partition-key-value", "schema-name", "table-name")} == {
        "record-type": "control", "operation": "truncate-table",
        "partition-key-type": "task-id", "partition-key-value": TASK,
        "schema-name": "public", "table-name": "foo"}
    assert meta["commit-timestamp"] == insert["metadata"]["commit-timestamp"]
    assert meta["transaction-id"] == 900 and meta["transaction-record-id"] == 1
    assert meta["stream-position"].split(".")[0] == meta["stream-position"].split(".")[-1]
    assert insert["metadata"]["transaction-record-id"] == 2


TICKET = TableDef("public", "ticket", (
    ("ticket_id", "bigint", False), ("event_id", "integer", True),
    ("seat_level", "character varying(64)", True), ("ticket_price", "numeric(12,2)", True),
    ("note", "text", True), ("created_at", "timestamp without time zone", True),
    ("section", "character varying(16)", True)), ("ticket_id",))


def test_create_table_record_as_the_captures_show_it() -> None:
    entry = create_table_record(TICKET, TASK)
    message = json.loads(entry.data)
    # [C1]/[C2] MSG_CONTROL_CREATE_TABLE: table-def with typed columns and the primary key
    assert message["control"]["table-def"] == {
        "columns": {
            "ticket_id": {"type": "INT64", "nullable": False},
            "event_id": {"type": "INT32", "nullable": True},
            "seat_level": {"type": "STRING", "length": 64, "nullable": True},
            "ticket_price": {"type": "NUMERIC", "precision": 12, "scale": 2, "nullable": True},
            "note": {"type": "STRING", "nullable": True},
            "created_at": {"type": "TIMESTAMP", "nullable": True},
            "section": {"type": "STRING", "length": 16, "nullable": True}},
        "primary-key": ["ticket_id"]}
    meta = message["metadata"]
    assert set(meta) == {"timestamp", "record-type", "operation", "partition-key-type",
                         "partition-key-value", "schema-name", "table-name"}
    assert (meta["operation"], meta["partition-key-type"], meta["partition-key-value"]) == (
        "create-table", "task-id", TASK)
    assert entry.partition_key == f"{TASK}.public.ticket"  # [C2]'s Kinesis partition


def test_dms_own_control_table_is_announced_as_the_capture_shows() -> None:
    message = json.loads(apply_exceptions_record(TASK).data)
    # [C1] MSG_CONTROL_AWSDMS
    assert message["metadata"]["schema-name"] == ""
    assert message["metadata"]["table-name"] == "awsdms_apply_exceptions"
    assert message["control"]["table-def"]["columns"]["ERROR_TIME"] == {
        "type": "TIMESTAMP", "nullable": False}
    assert "primary-key" not in message["control"]["table-def"]


def test_add_column_is_a_control_record_in_its_place_in_the_transaction() -> None:
    tx = _transaction(
        {"action": "U", "lsn": "0/1E00", "schema": "public", "table": "ticket",
         "columns": [_column("ticket_id", 1)], "identity": [_column("ticket_id", 1)],
         "pk": [{"name": "ticket_id"}]},
        {"action": "U", "lsn": "0/1E80", "schema": "public", "table": "ticket",
         "columns": [_column("ticket_id", 1), _column("section", "A", "character varying(16)")],
         "identity": [_column("ticket_id", 1)], "pk": [{"name": "ticket_id"}]})
    changes = [tx.changes[0], ControlChange("add-column", "public", "ticket", TICKET),
               tx.changes[1]]
    before, added, after = _messages(tx, changes=changes)
    assert added["metadata"]["operation"] == "add-column"
    assert added["metadata"]["record-type"] == "control"
    assert added["control"]["table-def"]["columns"]["section"] == {
        "type": "STRING", "length": 16, "nullable": True}
    assert [m["metadata"]["transaction-record-id"] for m in (before, added, after)] == [1, 2, 3]
    assert "section" not in before["data"] and after["data"]["section"] == "A"


def test_ddl_changes_compare_the_catalog_with_what_was_described() -> None:
    old = TableDef("public", "ticket", TICKET.columns[:-1], ("ticket_id",))
    known: dict[str, list[list[object]]] = {
        "ticket": [list(c) for c in old.columns],
        "gone": [["id", "bigint", False]]}
    changes = ddl_changes("public", ["ticket", "gone", "fresh"], known, {
        "ticket": TICKET, "gone": None,
        "fresh": TableDef("public", "fresh", (("id", "bigint", False),), ("id",))})
    assert [(c.operation, c.table) for c in changes] == [
        ("add-column", "ticket"), ("drop-table", "gone"), ("create-table", "fresh")]
    assert known["ticket"][-1] == ["section", "character varying(16)", True]
    assert "gone" not in known
    retyped = TableDef("public", "ticket", (("ticket_id", "bigint", False),), ("ticket_id",))
    changes = ddl_changes("public", ["ticket"], known, {"ticket": retyped})
    assert [c.operation for c in changes] == ["drop-column"]
    wider = TableDef("public", "ticket", (("ticket_id", "numeric", False),), ("ticket_id",))
    assert [c.operation for c in ddl_changes("public", ["ticket"], known,
                                             {"ticket": wider})] == ["column-type-change"]
    assert ddl_changes("public", ["ticket"], known, {"ticket": wider}) == []


def test_snapshot_visibility_of_committed_transactions() -> None:
    snapshot = Snapshot.parse("100:105:101,103")
    assert [x for x in range(98, 108) if snapshot.sees(x)] == [98, 99, 100, 102, 104]
    wrapped = Snapshot.parse(f"{(1 << 32) + 5}:{(1 << 32) + 9}:")
    assert wrapped.sees(4) and wrapped.sees(0xFFFFFFF0) and not wrapped.sees(9)


def test_request_files(tmp_path: Path) -> None:
    requests.request_reload(tmp_path, "slot", "ticket")
    requests.request_skip(tmp_path, "slot", (7 << 32) + 42)
    assert list(requests.pending(tmp_path, "slot", requests.RELOAD)) == ["ticket"]
    assert list(requests.pending(tmp_path, "slot", requests.SKIP)) == ["42"]
    assert requests.pending(tmp_path, "other", requests.RELOAD) == {}
    requests.done(requests.pending(tmp_path, "slot", requests.RELOAD)["ticket"])
    assert requests.pending(tmp_path, "slot", requests.RELOAD) == {}
    with pytest.raises(ValueError):
        requests.request_reload(tmp_path, "slot", "x; y")


def test_task_ids_look_like_dms_resource_ids() -> None:
    assert re.fullmatch(r"[A-Z2-7]{26}", new_task_id())


def test_long_partition_keys_are_hashed_for_kinesis() -> None:
    assert kinesis_partition_key("public.t.1") == "public.t.1"
    assert len(kinesis_partition_key("public.t." + "x" * 300)) == 64


def _entry(size: int, key: str = "k") -> KinesisEntry:
    return KinesisEntry(b"x" * size, key)


def test_chunks_respect_count_and_size_limits() -> None:
    small = [_entry(10) for _ in range(1201)]
    assert [len(c) for c in chunks(small)] == [500, 500, 201]
    big = [_entry(900 * 1024) for _ in range(12)]
    sizes = [sum(e.size for e in c) for c in chunks(big)]
    assert all(s <= MAX_BYTES_PER_PUT for s in sizes) and sum(len(c) for c in chunks(big)) == 12
    with pytest.raises(RecordTooLarge):
        list(chunks([_entry(1024 * 1024)]))


class ScriptedKinesis:
    """Fails the listed entries (by data) of the first calls, like a throttled shard."""

    def __init__(self, fail_first: int, error: Exception | None = None) -> None:
        self.fail_first = fail_first
        self.error = error
        self.calls: list[list[bytes]] = []

    def put_records(self, Records: list[dict[str, Any]], **target: Any) -> dict[str, Any]:
        assert target == {"StreamName": "s"}
        self.calls.append([r["Data"] for r in Records])
        if self.error is not None and len(self.calls) == 1:
            raise self.error
        results: list[dict[str, Any]] = []
        for index, _ in enumerate(Records):
            if len(self.calls) <= self.fail_first and index % 2 == 0:
                results.append({"ErrorCode": "ProvisionedThroughputExceededException",
                                "ErrorMessage": "Rate exceeded"})
            else:
                results.append({"SequenceNumber": "1", "ShardId": "shardId-0"})
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedRecordCount": failed, "Records": results}


def test_failed_entries_are_retried_alone() -> None:
    client = ScriptedKinesis(fail_first=2)
    putter = KinesisPutter(client, "s", PutRetryPolicy(base_delay=0), sleep=lambda _: None)
    entries = [KinesisEntry(str(i).encode(), f"k{i}") for i in range(6)]  # a key each
    assert putter.put(entries) == 6
    assert client.calls[0] == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert client.calls[1] == [b"0", b"2", b"4"]  # only the failed ones
    assert client.calls[2] == [b"0", b"4"]
    assert putter.stats.records == 6 and putter.stats.retried_entries == 5


def test_throttling_errors_are_retried_and_others_raised() -> None:
    throttled = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}},
                            "PutRecords")
    client = ScriptedKinesis(fail_first=0, error=throttled)
    putter = KinesisPutter(client, "s", PutRetryPolicy(base_delay=0), sleep=lambda _: None)
    assert putter.put([_entry(1)]) == 1 and len(client.calls) == 2
    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutRecords")
    with pytest.raises(ClientError):
        KinesisPutter(ScriptedKinesis(0, denied), "s", sleep=lambda _: None).put([_entry(1)])


def test_gives_up_after_the_retry_budget() -> None:
    client = ScriptedKinesis(fail_first=100)
    putter = KinesisPutter(client, "s", PutRetryPolicy(attempts=3, base_delay=0),
                           sleep=lambda _: None)
    with pytest.raises(KinesisPutError, match="after 3 attempts"):
        putter.put([_entry(1)])


def test_unchanged_toasted_values_come_from_the_old_row() -> None:
    tx = _transaction(
        {"action": "U", "xid": 900, "lsn": "0/1F00", "schema": "public", "table": "t",
         "columns": [_column("id", 1), _column("n", 2)],
         "identity": [_column("id", 1), _column("big", "x" * 5000, "text"), _column("n", 1)],
         "pk": PK})
    [message] = _messages(tx)
    assert message["data"] == {"id": 1, "big": "x" * 5000, "n": 2}
    assert message["before-image"] == {}
