"""The local DMS stand-in's pure parts: wal2json parsing, DMS values and records, and Kinesis
PutRecords chunking and retries (against a scripted client)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local.dms.kinesis import (
    MAX_BYTES_PER_PUT,
    KinesisPutError,
    KinesisPutter,
    RecordTooLarge,
    RetryPolicy,
    chunks,
)
from local.dms.records import (
    KinesisEntry,
    TransactionCursor,
    cdc_records,
    dms_value,
    kinesis_partition_key,
)
from local.dms.wal2json import (
    Wal2JsonError,
    commit_time_iso,
    format_lsn,
    parse_lsn,
    parse_transactions,
)
from shared.decode import Metadata
from shared.order_key import order_key


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
    ("numeric(12,2)", Decimal("12.50"), "12.50", Decimal("12.50")),
    ("numeric", Decimal("123456789012345.67"), "123456789012345.67", "123456789012345.67"),
    ("numeric", None, "NaN", None),  # wal2json writes NaN as null
    ("double precision", Decimal("1.5"), "1.5", 1.5),
    ("boolean", True, "true", True),
    ("date", "2024-01-02", "2024-01-02", "2024-01-02"),
    ("timestamp without time zone", "2024-01-02 03:04:05.5", "2024-01-02 03:04:05.5",
     "2024-01-02 03:04:05.500000"),
    ("timestamp without time zone", "2024-01-02 03:04:05", "2024-01-02 03:04:05",
     "2024-01-02 03:04:05"),
    ("timestamp with time zone", "2024-01-02 03:04:05+02", "2024-01-02 03:04:05+02",
     "2024-01-02 01:04:05+00:00"),
    ("character varying(64)", "O'Brien \"x\"\n", "O'Brien \"x\"\n", "O'Brien \"x\"\n"),
])
def test_full_load_text_and_wal2json_values_come_out_alike(
    pg_type: str, wal2json: Any, text: str, expected: Any
) -> None:
    assert dms_value(pg_type, wal2json) == expected
    assert dms_value(pg_type, text) == expected


def _rows(*messages: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m.pop("_row_lsn", "0/10"), json.dumps(m)) for m in messages]


def _column(name: str, value: Any, pg_type: str = "bigint") -> dict[str, Any]:
    return {"name": name, "type": pg_type, "value": value}


BEGIN = {"action": "B", "xid": 900, "timestamp": "2024-07-29 00:58:17.98367+00",
         "lsn": "0/2000", "nextlsn": "0/2030"}


def test_a_key_change_and_a_delete_in_dms_shape() -> None:
    rows = _rows(
        dict(BEGIN),
        {"action": "U", "xid": 900, "lsn": "0/1F00", "schema": "public", "table": "t",
         "columns": [_column("id", 2), _column("v", "new", "text")],
         "identity": [_column("id", 1), _column("v", "old", "text")], "pk": [{"name": "id"}]},
        {"action": "D", "xid": 900, "lsn": "0/1F80", "schema": "public", "table": "t",
         "identity": [_column("id", 5), _column("v", "gone", "text")], "pk": [{"name": "id"}]},
        {"action": "C", "xid": 900, "lsn": "0/2000", "nextlsn": "0/2030", "_row_lsn": "0/2030"},
        {"action": "B", "xid": 901, "timestamp": "2024-07-29 00:58:18+00", "lsn": "0/3000",
         "nextlsn": "0/3030"},  # incomplete: stays in the slot
    )
    [tx] = parse_transactions(rows)
    assert (tx.xid, tx.commit_lsn, tx.end_lsn) == (900, 0x2000, 0x2030)
    cursor = TransactionCursor(899, 3)
    update, delete = (json.loads(e.data) for e in cdc_records(tx, {}, cursor))
    assert update["data"] == {"id": 2, "v": "new"} and update["before-image"] == {"id": 1}
    assert delete["data"] == {"id": 5, "v": None} and "before-image" not in delete
    meta = update["metadata"]
    assert meta["stream-position"] == "00000000/00002000.1.00000000/00001F00"
    assert meta["commit-timestamp"] == "2024-07-29T00:58:17.983670Z"
    assert (meta["prev-transaction-id"], meta["prev-transaction-record-id"]) == (899, 3)
    assert delete["metadata"]["transaction-record-id"] == 2
    assert (delete["metadata"]["prev-transaction-id"],
            delete["metadata"]["prev-transaction-record-id"]) == (900, 1)
    assert (cursor.transaction_id, cursor.record_id) == (900, 2)
    assert delete["metadata"]["partition-key-value"] == "public.t.5"
    # the core's order key reads the position: the second change sorts after the first
    keys = [order_key(Metadata(operation=m["operation"], commit_timestamp=m["commit-timestamp"],
                               stream_position=m["stream-position"],
                               transaction_record_id=m["transaction-record-id"]), "1")
            for m in (meta, delete["metadata"])]
    assert keys[0] < keys[1]


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
    putter = KinesisPutter(client, "s", RetryPolicy(base_delay=0), sleep=lambda _: None)
    entries = [KinesisEntry(str(i).encode(), "k") for i in range(6)]
    assert putter.put(entries) == 6
    assert client.calls[0] == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert client.calls[1] == [b"0", b"2", b"4"]  # only the failed ones
    assert client.calls[2] == [b"0", b"4"]
    assert putter.stats.records == 6 and putter.stats.retried_entries == 5


def test_throttling_errors_are_retried_and_others_raised() -> None:
    throttled = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}},
                            "PutRecords")
    client = ScriptedKinesis(fail_first=0, error=throttled)
    putter = KinesisPutter(client, "s", RetryPolicy(base_delay=0), sleep=lambda _: None)
    assert putter.put([_entry(1)]) == 1 and len(client.calls) == 2
    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutRecords")
    with pytest.raises(ClientError):
        KinesisPutter(ScriptedKinesis(0, denied), "s", sleep=lambda _: None).put([_entry(1)])


def test_gives_up_after_the_retry_budget() -> None:
    client = ScriptedKinesis(fail_first=100)
    putter = KinesisPutter(client, "s", RetryPolicy(attempts=3, base_delay=0),
                           sleep=lambda _: None)
    with pytest.raises(KinesisPutError, match="after 3 attempts"):
        putter.put([_entry(1)])


def test_unchanged_toasted_values_come_from_the_old_row() -> None:
    rows = _rows(
        dict(BEGIN),
        {"action": "U", "xid": 900, "lsn": "0/1F00", "schema": "public", "table": "t",
         "columns": [_column("id", 1), _column("n", 2)],
         "identity": [_column("id", 1), _column("big", "x" * 5000, "text"), _column("n", 1)],
         "pk": [{"name": "id"}]},
        {"action": "C", "xid": 900, "lsn": "0/2000", "nextlsn": "0/2030", "_row_lsn": "0/2030"},
    )
    [tx] = parse_transactions(rows)
    [entry] = cdc_records(tx, {}, TransactionCursor())
    assert json.loads(entry.data)["data"] == {"id": 1, "big": "x" * 5000, "n": 2}
