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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from botocore.exceptions import ClientError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import BinaryType, StringType, StructField, StructType, TimestampType

from local.atomic_file import replace_text
from local.kinesis_shards import THROTTLED, ShardReader, StartingPosition, list_shards
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


class LocalKinesisSource:
    def __init__(self, client: Any, stream: StreamSettings,
                 started_at: datetime | None = None) -> None:
        self.client = client
        self.stream = stream
        self.started_at = started_at or datetime.now(UTC)  # LATEST = what arrives after this

    def stream_created(self) -> str:
        summary = self.client.describe_stream_summary(StreamName=self.stream.stream_name)
        return str(summary["StreamDescriptionSummary"]["StreamCreationTimestamp"])

    def shard_ids(self) -> list[str]:
        return [s["ShardId"] for s in list_shards(self.client, self.stream.stream_name)]

    def _start(self) -> StartingPosition:
        if self.stream.starting_position == "LATEST":
            return StartingPosition("AT_TIMESTAMP", self.started_at)
        return StartingPosition("TRIM_HORIZON")

    def fetch(self, positions: dict[str, str]) -> FetchedBatch:
        """The next micro-batch: up to ``max_fetch_records_per_shard`` records per shard,
        after the checkpointed positions."""
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
