"""Reading a Kinesis stream's shards with boto3: the one implementation the local consumers
share (the Lambda event source mapping, ``local.event_source_mapping``, and the local Glue
Kinesis source, ``glue_job.kinesis_source``).

``list_shards`` pages through ListShards; a ``ShardReader`` reads one shard in sequence order
with GetShardIterator and GetRecords from a starting position or after a sequence number, and
when its iterator expires (``ExpiredIteratorException``: an iterator lives 5 minutes) it asks
for a new one after the last record it read. Behaviour per the Kinesis API reference:
"GetShardIterator" (ShardIteratorType TRIM_HORIZON, LATEST, AT_TIMESTAMP,
AFTER_SEQUENCE_NUMBER; the iterator expires 5 minutes after it is returned) and "GetRecords"
(at most 10,000 records per call; ``MillisBehindLatest`` 0 means caught up; a null
``NextShardIterator`` means the shard was closed and read to its end),
https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetShardIterator.html and
https://docs.aws.amazon.com/kinesis/latest/APIReference/API_GetRecords.html.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

GET_RECORDS_LIMIT = 10_000  # the GetRecords maximum per call
# The error of a read over a shard's 5 calls or 2 MiB a second ("Amazon Kinesis Data Streams
# Quotas and Limits"); each reader decides how to wait it out.
THROTTLED = "ProvisionedThroughputExceededException"
THROTTLED_READ_BACKOFF_SECONDS = 1.0  # a throttled read is tried again once a second has passed
STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")


def list_shards(client: Any, stream_name: str) -> list[dict[str, Any]]:
    """Every shard of the stream (ListShards, all pages), as ListShards describes them."""
    shards: list[dict[str, Any]] = []
    response = client.list_shards(StreamName=stream_name)
    while True:
        shards += response["Shards"]
        token = response.get("NextToken")
        if not token:
            return shards
        response = client.list_shards(NextToken=token)


@dataclass(frozen=True)
class StartingPosition:
    """Where a shard is read from when no record of it has been read yet."""

    kind: str  # one of STARTING_POSITIONS
    timestamp: datetime | None = None  # with AT_TIMESTAMP, and only with it

    def __post_init__(self) -> None:
        if self.kind not in STARTING_POSITIONS:
            raise ValueError(f"starting position must be one of {STARTING_POSITIONS}, "
                             f"not {self.kind!r}")
        if (self.kind == "AT_TIMESTAMP") != (self.timestamp is not None):
            raise ValueError("a starting position has a timestamp with AT_TIMESTAMP, and only then")


@dataclass(frozen=True)
class ShardPage:
    """What one GetRecords call returned."""

    records: list[dict[str, Any]]  # GetRecords entries, in sequence order
    millis_behind_latest: int

    @property
    def caught_up(self) -> bool:
        return self.millis_behind_latest == 0


class ShardReader:
    """Reads one shard in sequence order: after ``after`` (a sequence number) when given, else
    from ``start``. ``last_read`` is the sequence number of the last record read (or ``after``);
    ``ended`` is set once GetRecords returned no next iterator (the shard is closed and read
    to its end)."""

    def __init__(self, client: Any, stream_name: str, shard_id: str, *,
                 start: StartingPosition, after: str | None = None) -> None:
        self.client = client
        self.stream_name = stream_name
        self.shard_id = shard_id
        self.start = start
        self.last_read = after
        self.ended = False
        self._iterator: str | None = None

    def start_at_latest(self) -> None:
        """Take an iterator at the stream's end now (LATEST), so that what arrives from now on
        is read even if the first read comes later; an expired one falls back to ``start``."""
        self._iterator = self._get_iterator("LATEST")

    def read(self, limit: int) -> ShardPage:
        """One GetRecords call of at most ``limit`` records (capped at the API's 10,000)."""
        if self.ended:
            return ShardPage([], 0)
        expired = False
        while True:
            iterator = self._iterator or self._open()
            if iterator is None:
                self.ended = True
                return ShardPage([], 0)
            try:
                response = self.client.get_records(
                    ShardIterator=iterator, Limit=min(limit, GET_RECORDS_LIMIT))
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code != "ExpiredIteratorException" or expired:
                    raise
                expired = True  # once: a fresh iterator does not expire at once
                self._iterator = None
                continue
            records: list[dict[str, Any]] = response.get("Records", [])
            if records:
                self.last_read = str(records[-1]["SequenceNumber"])
            self._iterator = response.get("NextShardIterator")
            if self._iterator is None:
                self.ended = True
            return ShardPage(records, int(response.get("MillisBehindLatest", 0)))

    def _open(self) -> str | None:
        if self.last_read is not None:
            return self._get_iterator("AFTER_SEQUENCE_NUMBER",
                                      StartingSequenceNumber=self.last_read)
        if self.start.kind == "AT_TIMESTAMP":
            return self._get_iterator("AT_TIMESTAMP", Timestamp=self.start.timestamp)
        return self._get_iterator(self.start.kind)

    def _get_iterator(self, kind: str, **position: Any) -> str | None:
        response = self.client.get_shard_iterator(
            StreamName=self.stream_name, ShardId=self.shard_id, ShardIteratorType=kind,
            **position)
        iterator = response.get("ShardIterator")
        return str(iterator) if iterator else None


def read_whole_shard(client: Any, stream_name: str, shard_id: str) -> list[dict[str, Any]]:
    """Every record of a shard, from its start to the newest (GetRecords entries, in sequence
    order): reading a stream back, in tests and benchmarks. A read refused with ``THROTTLED``
    is tried again from the same iterator after ``THROTTLED_READ_BACKOFF_SECONDS``."""
    reader = ShardReader(client, stream_name, shard_id, start=StartingPosition("TRIM_HORIZON"))
    records: list[dict[str, Any]] = []
    while not reader.ended:
        try:
            page = reader.read(GET_RECORDS_LIMIT)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != THROTTLED:
                raise
            time.sleep(THROTTLED_READ_BACKOFF_SECONDS)
            continue
        if not page.records:
            break  # caught up with the shard
        records += page.records
    return records
