"""A small Kinesis reader standing in for the Glue Kinesis source, with per-shard checkpoints.

Spark's Kinesis source is not available outside Glue, so locally this reads the stream with
boto3 (``local.kinesis_shards``, the shard reader the local event source mapping uses too:
GetRecords, at most ``MAX_FETCH_RECORDS_PER_SHARD`` per shard per micro-batch) and builds
the DataFrame the Glue source hands ``forEachBatch``: ``data`` (binary), ``streamName``,
``partitionKey``, ``sequenceNumber``, ``approximateArrivalTimestamp``.

``AppliedShardPositions`` keeps, per shard, the last sequence number of the last batch that was
applied (a JSON file in the state dir, replaced atomically after each successful batch), so
a restarted runner resumes after it: at-least-once, like the Glue job's Spark checkpoint.

A shard serves 5 GetRecords calls and 2 MiB a second ("Amazon Kinesis Data Streams Quotas and
Limits"; the local moto server enforces it). A read refused with
``ProvisionedThroughputExceededException`` (after botocore's own retries) ends that shard's
part of the micro-batch: what was read goes on, and the next micro-batch reads on from there,
as Glue's Kinesis source retries a throttled read later (``kinesis.client.numRetries``,
``kinesis.client.retryIntervalMs``: "Kinesis connection option reference", AWS Glue Developer
Guide). Nothing is skipped: a shard's position moves only past records read.

With a fan-out consumer (``StreamSettings.fanout_consumer_arn``, the job's
``fanoutConsumerARN``) each shard is read through it instead: a
``local.kinesis_shards.SubscribedShardReader`` holds a subscription (SubscribeToShard) and
buffers what Kinesis pushes. A subscription has rules ("SubscribeToShard", Kinesis API
Reference: another call for the same consumer and shard within 5 seconds of a successful one
is refused with ResourceInUseException; a subscription lasts up to 5 minutes), so the readers
are kept across micro-batches and renewed by the reader itself; ``close()`` ends them. A
micro-batch takes what was pushed until each shard's last event said it is caught up
(``MillisBehindLatest`` 0); given a moment (``fetch(..., since=)``, the runner's start with
``--once``), until an event received after that moment said so, so that an empty micro-batch
means the stream held nothing more then. Checkpoints are the same: a reader that does not
stand at the checkpointed position (a failed batch was not checkpointed) is replaced by one
subscribed after it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import BinaryType, StringType, StructField, StructType, TimestampType

from local.atomic_file import replace_text
from local.kinesis_shards import (
    THROTTLED,
    RecordSource,
    ShardReader,
    StartingPosition,
    SubscribedShardReader,
    list_shards,
)
from shared.glue.arguments import StreamSettings

KINESIS_SCHEMA = StructType([
    StructField("data", BinaryType(), nullable=False),
    StructField("streamName", StringType(), nullable=False),
    StructField("partitionKey", StringType(), nullable=False),
    StructField("sequenceNumber", StringType(), nullable=False),
    StructField("approximateArrivalTimestamp", TimestampType(), nullable=False),
])
CHECKPOINT_FILE = "kinesis-checkpoint.json"
MAX_EMPTY_READS = 3  # GetRecords may return nothing while behind; give up after a few
# How long a micro-batch waits at most for every subscribed shard to say it is caught up:
# longer than a new subscription's wait out of the 5-second rule plus the 5 seconds an idle
# subscription may go without an event (local.kinesis_fan_out.HEARTBEAT_SECONDS).
PUSHED_CATCH_UP_SECONDS = 15.0
PUSHED_WAIT_SECONDS = 0.05  # how long a micro-batch waits for pushed records between looks


@dataclass(frozen=True)
class Checkpoint:
    """Where the next batch starts: the last applied sequence number per shard."""

    stream_arn: str
    stream_created: str  # a recreated stream (new moto) makes old positions meaningless
    next_batch_id: int = 0
    positions: dict[str, str] = field(default_factory=dict)


class AppliedShardPositions:
    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / CHECKPOINT_FILE

    def load(self, stream_arn: str, stream_created: str) -> Checkpoint:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return Checkpoint(stream_arn, stream_created)
        if data.get("stream_arn") != stream_arn or data.get("stream_created") != stream_created:
            return Checkpoint(stream_arn, stream_created)  # another stream: start over
        return Checkpoint(stream_arn, stream_created, int(data["next_batch_id"]),
                          {str(k): str(v) for k, v in data["positions"].items()})

    def commit(self, checkpoint: Checkpoint) -> None:
        replace_text(self.path, json.dumps({
            "stream_arn": checkpoint.stream_arn,
            "stream_created": checkpoint.stream_created,
            "next_batch_id": checkpoint.next_batch_id,
            "positions": checkpoint.positions,
        }, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class FetchedBatch:
    records: list[dict[str, Any]]  # GetRecords entries, each with its "ShardId"
    positions: dict[str, str]  # the last sequence number read per shard (after this batch)
    # False when a pushed shard neither filled its part nor said it is caught up within
    # PUSHED_CATCH_UP_SECONDS: an empty batch then does not mean nothing is left. A polled
    # fetch is always True (its shards stop at GetRecords' caught up, nothing, or throttled).
    caught_up: bool = True


class LocalKinesisSource:
    def __init__(self, client: Any, stream: StreamSettings,
                 started_at: datetime | None = None) -> None:
        self.client = client
        self.stream = stream
        self.started_at = started_at or datetime.now(UTC)  # LATEST = what arrives after this
        self._subscribed: dict[str, RecordSource] = {}  # per shard, kept across micro-batches

    def close(self) -> None:
        """End the subscriptions of a fan-out consumer (nothing to end when polling)."""
        readers, self._subscribed = list(self._subscribed.values()), {}
        for reader in readers:
            reader.close()

    def __enter__(self) -> LocalKinesisSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream_created(self) -> str:
        summary = self.client.describe_stream_summary(StreamName=self.stream.stream_name)
        return str(summary["StreamDescriptionSummary"]["StreamCreationTimestamp"])

    def shard_ids(self) -> list[str]:
        return [s["ShardId"] for s in list_shards(self.client, self.stream.stream_name)]

    def _start(self) -> StartingPosition:
        if self.stream.starting_position == "LATEST":
            return StartingPosition("AT_TIMESTAMP", self.started_at)
        return StartingPosition("TRIM_HORIZON")

    def fetch(self, positions: dict[str, str], since: float | None = None) -> FetchedBatch:
        """The next micro-batch: up to ``max_fetch_records_per_shard`` records per shard,
        after the checkpointed positions. Through a fan-out consumer, with ``since`` (a
        ``time.monotonic()`` moment) each shard is read until an event received after it
        said the shard is caught up: everything stored before ``since`` has been read."""
        if self.stream.fanout_consumer_arn:
            return self._fetch_pushed(positions, since)
        limit = self.stream.max_fetch_records_per_shard
        records: list[dict[str, Any]] = []
        after = dict(positions)
        for shard_id in self.shard_ids():
            reader = ShardReader(self.client, self.stream.stream_name, shard_id,
                                 start=self._start(), after=positions.get(shard_id))
            taken = empty = 0
            while not reader.ended and taken < limit and empty < MAX_EMPTY_READS:
                try:
                    page = reader.read(limit - taken)
                except ClientError as error:
                    if error.response.get("Error", {}).get("Code") != THROTTLED:
                        raise
                    break
                for record in page.records:
                    records.append({**record, "ShardId": shard_id})
                if page.records:
                    taken += len(page.records)
                    after[shard_id] = str(page.records[-1]["SequenceNumber"])
                    empty = 0
                elif page.caught_up:
                    break
                else:
                    empty += 1
        return FetchedBatch(records, after)

    def _fetch_pushed(self, positions: dict[str, str], since: float | None) -> FetchedBatch:
        """The next micro-batch through the fan-out consumer: up to
        ``max_fetch_records_per_shard`` pushed records per shard after the checkpointed
        positions, each shard until it is caught up (see ``fetch``)."""
        deadline = time.monotonic() + PUSHED_CATCH_UP_SECONDS
        limit = self.stream.max_fetch_records_per_shard
        readers = {shard_id: self._subscription(shard_id, positions.get(shard_id))
                   for shard_id in self.shard_ids()}
        records: list[dict[str, Any]] = []
        after = dict(positions)
        taken = dict.fromkeys(readers, 0)
        reading = set(readers)
        while reading:
            for shard_id in sorted(reading):
                reader = readers[shard_id]
                page = reader.read(limit - taken[shard_id])
                records += [{**record, "ShardId": shard_id} for record in page.records]
                if page.records:
                    taken[shard_id] += len(page.records)
                    after[shard_id] = str(page.records[-1]["SequenceNumber"])
                if (taken[shard_id] >= limit or reader.ended or (page.caught_up and (
                        since is None or reader.caught_up_since(since)))):
                    reading.discard(shard_id)
            if reading:
                if time.monotonic() >= deadline:
                    break
                readers[min(reading)].wait_for_records(PUSHED_WAIT_SECONDS)
        return FetchedBatch(records, after, caught_up=not reading)

    def _subscription(self, shard_id: str, after: str | None) -> RecordSource:
        """The shard's subscribed reader, kept from the last micro-batch when it stands at
        ``after``; else (a failed batch, a first read) a new one that subscribes after it."""
        reader = self._subscribed.get(shard_id)
        if reader is not None and reader.last_read == after:
            return reader
        if reader is not None:
            reader.close()
        reader = SubscribedShardReader(self.client, self.stream.fanout_consumer_arn, shard_id,
                                       start=self._start(), after=after)
        self._subscribed[shard_id] = reader
        return reader

    def dataframe(self, spark: SparkSession, records: list[dict[str, Any]]) -> DataFrame:
        """The batch DataFrame the Glue Kinesis source would hand ``forEachBatch``."""
        frame = pd.DataFrame({
            "data": [bytes(r["Data"]) for r in records],
            "streamName": [self.stream.stream_name] * len(records),
            "partitionKey": [str(r["PartitionKey"]) for r in records],
            "sequenceNumber": [str(r["SequenceNumber"]) for r in records],
            "approximateArrivalTimestamp": pd.to_datetime(
                [r["ApproximateArrivalTimestamp"] for r in records], utc=True),
        })
        if not records:
            return spark.createDataFrame([], KINESIS_SCHEMA)
        return spark.createDataFrame(frame, KINESIS_SCHEMA)
