"""Each part of the local pipeline alone, on the records of one backlog: its ceiling in
changes/s (one source row change is one DMS record, so records/s and changes/s are the same
unit until the consumer's reduction).

The parts are measured one after another with nothing else of the pipeline running, on the
same local stack the drain used, through the same public entry points the pipeline uses:
``LocalDms.drain`` (capture), boto3 ``put_records``/``get_records`` on moto (Kinesis),
``BatchConsumer.transform`` (the consumer's decode, PII and newest-per-key reduction, as the
Lambda handler calls it), ``RedshiftDataApi.execute`` (the Data API stand-in's round trip) and
``RedshiftWriter.stage_and_merge`` (the consumer's write of a transformed batch: S3 staging,
COPY and MERGE in one transaction, through the stand-in).
"""

from __future__ import annotations

import base64
import heapq
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from local.dms import LocalDms
from local.dms.kinesis import KinesisPutter
from local.dms.records import KinesisEntry
from local.kinesis_shards import read_whole_shard
from shared.consumer import BatchConsumer
from shared.data_api import RedshiftDataApi
from shared.records import StreamRecord, TransformResult
from shared.spec import PipelineSpec

# The Data API operations that submit work; each one is at least a submit and a describe
# until it is done (the Redshift Data API runs statements asynchronously: "ExecuteStatement",
# "BatchExecuteStatement", "DescribeStatement" in the Amazon Redshift Data API reference).
SUBMITTING_OPERATIONS = ("ExecuteStatement", "BatchExecuteStatement")
CAPTURE_POLL_CHANGES = 5000  # what ``LocalDms.run`` reads per poll


@dataclass(frozen=True)
class Rate:
    """``count`` things in ``seconds``."""

    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def timed(action: Callable[[], int]) -> Rate:
    started = time.perf_counter()
    count = action()
    return Rate(count, time.perf_counter() - started)


def create_stream(kinesis: Any, name: str, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)


def shard_count(kinesis: Any, stream: str) -> int:
    return len(kinesis.list_shards(StreamName=stream)["Shards"])


def capture(source_dsn: str, spec: PipelineSpec, stream: str, state_dir: Path, slot: str,
            limit: int) -> Rate:
    """The local DMS alone: polls of ``slot`` (created before the backlog) put into
    ``stream`` until at least ``limit`` changes are put or the slot holds no more; the slot is
    dropped afterwards (it would keep WAL)."""
    dms = LocalDms(source_dsn, spec, boto3.client("kinesis"), stream, state_dir, slot)

    def run() -> int:
        total = 0
        while total < limit:
            put = dms.capture_once(CAPTURE_POLL_CHANGES)
            if put == 0:
                return total
            total += put
        return total

    try:
        return timed(run)
    finally:
        dms.drop_slot()
        dms.close()


def read_stream(kinesis: Any, stream: str) -> tuple[list[StreamRecord], Rate]:
    """Every record of ``stream`` with GetRecords (10,000 per call, Kinesis's maximum), the
    shards read at once (as the event source mapping reads them), a throttled call
    (``ProvisionedThroughputExceededException``: 5 calls and 2 MiB per shard per second)
    tried again after a second, as the records the Lambda handler would get (base64 text);
    and the read rate. The records come in the order they arrived (each shard's in sequence
    order), as they were put: replayed shard after shard, a put would load one shard at a
    time and measure a single shard's limit."""
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]

    def read(shard_id: str) -> list[tuple[float, StreamRecord]]:
        return [(r["ApproximateArrivalTimestamp"].timestamp(),
                 StreamRecord(base64.b64encode(r["Data"]).decode("ascii"),
                              r["SequenceNumber"], r["PartitionKey"], shard_id))
                for r in read_whole_shard(kinesis, stream, shard_id)]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(shards) or 1) as pool:
        by_shard = list(pool.map(read, shards))
    records = [r for _, r in heapq.merge(*by_shard, key=lambda arrived: arrived[0])]
    return records, Rate(len(records), time.perf_counter() - started)


def kinesis_put(kinesis: Any, stream: str, records: Sequence[StreamRecord]) -> Rate:
    """The captured records (same data and partition keys) put as the local DMS puts them
    (``KinesisPutter``: 500 per PutRecords, what a shard over its 1,000 records or 1 MiB per
    second refuses sent again)."""
    entries = [KinesisEntry(base64.b64decode(r.data), r.partition_key) for r in records]
    putter = KinesisPutter(kinesis, stream)
    return timed(lambda: putter.put(entries))


def batches(records: Sequence[StreamRecord], size: int) -> list[list[StreamRecord]]:
    """Per shard, in sequence order, ``size`` records at a time (the mapping's BatchSize)."""
    by_shard: dict[str, list[StreamRecord]] = {}
    for record in records:
        by_shard.setdefault(record.shard_id, []).append(record)
    return [rows[start:start + size] for rows in by_shard.values()
            for start in range(0, len(rows), size)]


def transform(processor: BatchConsumer, records: Sequence[StreamRecord],
              batch_size: int) -> tuple[list[TransformResult], Rate]:
    """The consumer's transform alone (no warehouse write) on every batch."""
    processor.transform([])  # reads the added columns once, as a container's first batch does
    results: list[TransformResult] = []

    def run() -> int:
        for batch in batches(records, batch_size):
            results.append(processor.transform(batch))
        return len(records)

    return results, timed(run)


def data_api_round_trip(api: RedshiftDataApi, seconds: float = 3.0) -> Rate:
    """Trivial statements (``SELECT 1``) one after another, each submitted and waited for as
    the consumer's adapter does, for about ``seconds``."""
    api.execute("SELECT 1")

    def run() -> int:
        count = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            api.execute("SELECT 1")
            count += 1
        return count

    return timed(run)


class LongPolledStatements:
    """Statements whose long-polled submit saw them finish, so nobody described them: a
    statement's ``Duration`` is only in DescribeStatement's answer ("DescribeStatement" in the
    Amazon Redshift Data API reference). A meter notes each submit's answer and calls
    ``describe_all`` after the measured work; while it runs, ``describing`` is set, so the
    meter can leave those DescribeStatement calls uncounted."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.describing = False
        self._ids: list[str] = []

    def note(self, submitted: dict[str, Any]) -> None:
        if submitted.get("Status") == "FINISHED":
            self._ids.append(str(submitted["Id"]))

    def forget(self) -> None:
        self._ids.clear()

    def describe_all(self) -> None:
        self.describing = True
        try:
            while self._ids:
                self.client.describe_statement(Id=self._ids.pop())
        finally:
            self.describing = False


class DataApiMeter:
    """What a boto3 ``redshift-data`` client did, from botocore's ``before-call`` and
    ``after-call`` events (whatever our adapter does around the calls): submissions, polls,
    and the time the statements ran in the warehouse (``Duration`` of a FINISHED
    DescribeStatement, in nanoseconds). ``executed_ns`` describes the long-polled statements
    when it is read (``LongPolledStatements``)."""

    def __init__(self, client: Any) -> None:
        self.submits = 0
        self.polls = 0
        self._executed_ns = 0
        self._long_polled = LongPolledStatements(client)
        for operation in SUBMITTING_OPERATIONS:
            client.meta.events.register(f"before-call.redshift-data.{operation}", self._submit)
            client.meta.events.register(f"after-call.redshift-data.{operation}",
                                        self._submitted)
        client.meta.events.register("after-call.redshift-data.DescribeStatement",
                                    self._described)

    @property
    def executed_ns(self) -> int:
        self._long_polled.describe_all()
        return self._executed_ns

    def _submit(self, **_: Any) -> None:
        self.submits += 1

    def _submitted(self, parsed: dict[str, Any], **_: Any) -> None:
        self._long_polled.note(parsed)

    def _described(self, parsed: dict[str, Any], **_: Any) -> None:
        self.polls += 0 if self._long_polled.describing else 1
        if parsed.get("Status") == "FINISHED":
            self._executed_ns += max(0, int(parsed.get("Duration", 0)))


def write(processor: BatchConsumer, results: Sequence[TransformResult],
          records: int) -> Rate:
    """The consumer's write of pre-transformed batches, one after another; the rate is of
    the source changes (records) the batches came from."""

    def run() -> int:
        for result in results:
            processor.writer.stage_and_merge(result.changes, result.table_events)
        return records

    return timed(run)
