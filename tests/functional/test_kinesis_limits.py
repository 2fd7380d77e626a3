"""Kinesis's per-shard throughput on the moto server (local.moto_server), and the local parts
that talk to Kinesis under it.

Limits ("Amazon Kinesis Data Streams Quotas and Limits"; Kinesis API Reference, PutRecords and
GetRecords): a shard takes 1,000 records and 1 MiB per second and serves 5 GetRecords calls and
2 MiB per second; over them PutRecords fails the records individually with
``ProvisionedThroughputExceededException`` and "Rate exceeded for shard <shard> in stream
<stream> under account <account>.", PutRecord and GetRecords fail with that error (HTTP 400).
The clients here do not retry, so that the refusals are seen.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from glue_job.kinesis_source import LocalKinesisSource
from local.dms.kinesis import KinesisPutter, PutRetryPolicy
from local.dms.records import KinesisEntry
from local.event_source_mapping.mapping import LocalEventSourceMapping
from shared.glue.arguments import StreamSettings
from tests.functional.source_helpers import create_stream, kinesis_client, read_stream

THROTTLED = "ProvisionedThroughputExceededException"


@pytest.fixture
def kinesis(moto_endpoint: str) -> Any:
    return kinesis_client(moto_endpoint, max_attempts=1)  # no retries of its own


@pytest.fixture
def stream(kinesis: Any) -> Iterator[str]:
    name = create_stream(kinesis, shards=1)
    yield name
    kinesis.delete_stream(StreamName=name)


def put(kinesis: Any, stream: str, count: int, *, size: int = 10, key: str = "k") -> Any:
    return kinesis.put_records(StreamName=stream, Records=[
        {"Data": b"x" * size, "PartitionKey": key} for _ in range(count)])


def put_numbered(kinesis: Any, stream: str, count: int) -> list[bytes]:
    """``count`` records ``r0``, ``r1`` ... of one partition key, put in one call; their data."""
    sent = [f"r{n}".encode() for n in range(count)]
    kinesis.put_records(StreamName=stream, Records=[
        {"Data": data, "PartitionKey": "k"} for data in sent])
    return sent


class Delivered:
    """What a mapping's in-process handler got (each record's data, in delivery order);
    ``everything`` is set once all of ``sent`` has come."""

    def __init__(self, sent: list[bytes]) -> None:
        self.sent = sent
        self.data: list[bytes] = []
        self.everything = threading.Event()
        self._lock = threading.Lock()

    def handler(self, event: dict[str, Any], context: Any) -> None:
        with self._lock:
            self.data.extend(base64.b64decode(r["kinesis"]["data"]) for r in event["Records"])
            if len(self.data) >= len(self.sent):
                self.everything.set()


def test_the_1001st_record_in_a_second_is_refused_and_taken_after_the_window(
        kinesis: Any, stream: str) -> None:
    started = time.monotonic()
    first, second = put(kinesis, stream, 500), put(kinesis, stream, 500)
    refused = put(kinesis, stream, 1)
    assert time.monotonic() - started < 1.0  # all in one second
    assert first["FailedRecordCount"] == second["FailedRecordCount"] == 0
    assert refused["FailedRecordCount"] == 1
    [entry] = refused["Records"]
    assert entry["ErrorCode"] == THROTTLED
    assert entry["ErrorMessage"] == (
        f"Rate exceeded for shard shardId-000000000000 in stream {stream} "
        "under account 123456789012.")
    assert "SequenceNumber" not in entry
    time.sleep(1.0)
    again = put(kinesis, stream, 1)
    assert again["FailedRecordCount"] == 0 and again["Records"][0]["SequenceNumber"]
    assert len(read_stream(kinesis, stream)) == 1001


def test_records_over_1_mib_a_second_fail_alone_and_the_others_are_stored(
        kinesis: Any, stream: str) -> None:
    big = b"b" * (600 * 1024)
    response = kinesis.put_records(StreamName=stream, Records=[
        {"Data": big, "PartitionKey": "k"}, {"Data": big, "PartitionKey": "k"},
        {"Data": b"small", "PartitionKey": "k"}])
    assert response["FailedRecordCount"] == 1
    assert [r.get("ErrorCode") for r in response["Records"]] == [None, THROTTLED, None]
    assert [r.data for r in read_stream(kinesis, stream)] == [big, b"small"]


def test_put_record_over_the_limit_fails_with_http_400(kinesis: Any, stream: str) -> None:
    put(kinesis, stream, 500)
    put(kinesis, stream, 500)
    with pytest.raises(ClientError) as refused:
        kinesis.put_record(StreamName=stream, Data=b"x", PartitionKey="k")
    assert refused.value.response["Error"]["Code"] == THROTTLED
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Rate exceeded for shard shardId-000000000000" in str(refused.value)


def test_the_6th_get_records_in_a_second_is_refused(kinesis: Any, stream: str) -> None:
    put(kinesis, stream, 3)
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000",
        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    started = time.monotonic()
    for _ in range(5):
        kinesis.get_records(ShardIterator=iterator, Limit=1)
    with pytest.raises(ClientError) as refused:
        kinesis.get_records(ShardIterator=iterator, Limit=1)
    assert time.monotonic() - started < 1.0
    assert refused.value.response["Error"]["Code"] == THROTTLED
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert f"/{stream}/shardId-000000000000" in str(refused.value)
    time.sleep(1.0)
    assert len(kinesis.get_records(ShardIterator=iterator)["Records"]) == 3


def test_the_dms_putter_delivers_every_record_in_order_per_key_under_throttling(
        kinesis: Any, stream: str) -> None:
    # 3,000 records, 30 of them large (6 MB): over both write limits of the one shard
    entries = [KinesisEntry(f"{key}:{n}:".encode() + (b"L" * 200_000 if n % 100 == 7 else b""),
                            key)
               for n in range(1_000) for key in ("public.a", "public.b", "public.c")]
    putter = KinesisPutter(kinesis, stream, PutRetryPolicy(max_delay=1.0))
    assert putter.put(entries) == len(entries)
    assert putter.stats.retried_entries > 0  # it was throttled
    stored = read_stream(kinesis, stream)
    assert {r.data for r in stored} == {e.data for e in entries}
    for key in ("public.a", "public.b", "public.c"):
        # a record stored after a refused one of its key is sent again behind it: the last
        # copies are in the order they were put
        last = {r.data: i for i, r in enumerate(stored) if r.partition_key == key}
        assert sorted(last, key=last.__getitem__) == [e.data for e in entries
                                                      if e.partition_key == key]


def test_the_mapping_backs_off_a_throttled_read_and_delivers_everything_in_order(
        kinesis: Any, stream: str, tmp_path: Any) -> None:
    delivered = Delivered(put_numbered(kinesis, stream, 20))
    # batches of 2 want a GetRecords call each, more than the 5 a second a shard serves
    with LocalEventSourceMapping(kinesis, stream, delivered.handler, batch_size=2,
                                 state_dir=tmp_path / f"esm-{uuid.uuid4().hex[:6]}") as mapping:
        # another reader of the shard takes this second's 5 reads: the mapping's first is
        # refused
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId="shardId-000000000000",
            ShardIteratorType="LATEST")["ShardIterator"]
        for _ in range(5):
            kinesis.get_records(ShardIterator=iterator)
        mapping.drain(timeout_seconds=60)
        assert mapping.counters.throttled_reads > 0
    assert delivered.data == delivered.sent


def test_a_running_mapping_held_by_its_read_budget_reads_again_when_it_may_not_after_idling(
        kinesis: Any, stream: str, tmp_path: Any) -> None:
    delivered = Delivered(put_numbered(kinesis, stream, 60))
    # Batches of 2: a GetRecords call each, so the shard's 5 reads a second run out long
    # before its records do. An idle shard rests the poll interval (here 120 s, Lambda's is
    # 1 s); a shard held only by its read budget must not.
    stop = threading.Event()
    with LocalEventSourceMapping(kinesis, stream, delivered.handler, batch_size=2,
                                 poll_interval_seconds=120,
                                 state_dir=tmp_path / f"esm-{uuid.uuid4().hex[:6]}") as mapping:
        runner = threading.Thread(target=mapping.run, args=(stop,), daemon=True)
        runner.start()
        try:
            assert delivered.everything.wait(timeout=60), \
                f"{len(delivered.data)} of {len(delivered.sent)} delivered"
        finally:
            stop.set()
            runner.join(timeout=30)
    assert delivered.data == delivered.sent


def test_a_record_stored_after_a_refused_one_of_its_key_is_sent_again_behind_it(
        kinesis: Any, stream: str) -> None:
    # the shard's 1 MiB a second refuses the second big record and takes the small one after
    # it (PutRecords "doesn't guarantee the ordering of records" when some fail)
    big_1 = KinesisEntry(b"1" * 600_000, "public.a")
    big_2 = KinesisEntry(b"2" * 600_000, "public.a")
    small = KinesisEntry(b"small", "public.a")
    putter = KinesisPutter(kinesis, stream)
    assert putter.put([big_1, big_2, small]) == 3
    stored = [r.data for r in read_stream(kinesis, stream)]
    # each retry within the throttled second stores the small one again: the copies before
    # the last are duplicates, the last copies are in order
    assert stored[0] == big_1.data and stored[-2:] == [big_2.data, small.data]
    assert set(stored[1:-2]) == {small.data}


def test_the_glue_source_ends_a_throttled_shard_s_micro_batch_and_reads_on_later(
        kinesis: Any, stream: str) -> None:
    kinesis.put_records(StreamName=stream, Records=[
        {"Data": str(n).encode(), "PartitionKey": "k"} for n in range(30)])
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamARN"]
    source = LocalKinesisSource(kinesis, StreamSettings(stream_arn=arn,
                                                        max_fetch_records_per_shard=10))
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000",
        ShardIteratorType="LATEST")["ShardIterator"]
    for _ in range(5):  # another reader uses the shard's 5 reads of this second
        kinesis.get_records(ShardIterator=iterator, Limit=1)

    refused = source.fetch({})

    assert refused.records == [] and refused.positions == {}  # nothing read, nothing passed
    positions: dict[str, str] = {}
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 30 and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = source.fetch(positions)
        got += [r["Data"] for r in batch.records]
        positions = batch.positions
    assert got == [str(n).encode() for n in range(30)]  # each once, in order
