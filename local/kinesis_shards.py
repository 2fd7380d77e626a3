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

A ``SubscribedShardReader`` reads one shard through an enhanced fan-out consumer instead: the
records are pushed to it (SubscribeToShard), so it has no per-second read budget and no poll
to wait for. Both readers are ``RecordSource``s.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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


class RecordSource(Protocol):
    """One shard's records in sequence order, however they are fetched."""

    shard_id: str
    last_read: str | None  # the sequence number of the last record handed out
    ended: bool  # the shard is closed and every record of it was handed out
    polled: bool  # read with GetRecords (5 calls a second per shard); else pushed

    def read(self, limit: int) -> ShardPage: ...

    def start_at_latest(self) -> None: ...

    def wait_for_records(self, timeout: float) -> None: ...

    def caught_up_since(self, moment: float) -> bool: ...

    def close(self) -> None: ...


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
        self.polled = True
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

    def wait_for_records(self, timeout: float) -> None:
        """A polled shard tells nobody when records arrive: wait the whole ``timeout``."""
        time.sleep(timeout)

    def caught_up_since(self, moment: float) -> bool:
        """A GetRecords call returns what was stored before it: a read is never behind."""
        return True

    def close(self) -> None:
        """Nothing to release: an iterator expires by itself."""

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


# A consumer that subscribes to a shard again within 5 seconds of a successful call gets
# ResourceInUseException ("SubscribeToShard", Kinesis API Reference): wait, then try again.
RESUBSCRIBE_WAIT_SECONDS = 1.0
FIRST_EVENT_TIMEOUT_SECONDS = 10.0


class SubscribedShardReader:
    """Reads one shard through the enhanced fan-out consumer ``consumer_arn``: a thread holds a
    subscription (SubscribeToShard) and buffers the records Kinesis pushes; ``read`` hands out
    what has arrived without a call to the service, and ``wait_for_records`` returns as soon as
    something arrives. Per "SubscribeToShard" and "SubscribeToShardEvent" (Kinesis API
    Reference): a subscription lives up to 5 minutes, then the reader subscribes again after
    the last record it received (or after the event's ``ContinuationSequenceNumber`` when none
    came, which keeps the place of a shard that stays empty); an event with ``ChildShards``
    is the shard's last, so the shard has ended once its records are handed out. An error of
    the subscription is raised by the next ``read``, which subscribes again.
    "Developing Enhanced Fan-Out Consumers with the Kinesis Data Streams API",
    https://docs.aws.amazon.com/streams/latest/dev/building-enhanced-consumers-api.html."""

    def __init__(self, client: Any, consumer_arn: str, shard_id: str, *,
                 start: StartingPosition, after: str | None = None) -> None:
        self.client = client
        self.consumer_arn = consumer_arn
        self.shard_id = shard_id
        self.start = start
        self.last_read = after
        self.ended = False
        self.polled = False
        self._received = after  # the last record put into the buffer
        self._continuation: str | None = None
        self._latest = False
        self._buffer: deque[dict[str, Any]] = deque()
        self._millis_behind = 1  # not known to be caught up before the first event
        self._caught_up_at = float("-inf")  # time.monotonic() of the last caught-up event
        self._end_reached = False
        self._error: BaseException | None = None
        self._subscribed = threading.Event()
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start_at_latest(self) -> None:
        """Subscribe at the stream's end now (LATEST), so that what arrives from now on is
        read even if the first ``read`` comes later."""
        self._latest = True
        self._ensure_subscribed()
        self._subscribed.wait(FIRST_EVENT_TIMEOUT_SECONDS)

    def read(self, limit: int) -> ShardPage:
        """Up to ``limit`` records of those pushed so far (no call to the service)."""
        if self.ended:
            return ShardPage([], 0)
        self._ensure_subscribed()
        with self._changed:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            records = [self._buffer.popleft() for _ in range(min(limit, len(self._buffer)))]
            if records:
                self.last_read = str(records[-1]["SequenceNumber"])
            if self._end_reached and not self._buffer:
                self.ended = True
            behind = self._millis_behind if not self._buffer else max(self._millis_behind, 1)
        return ShardPage(records, behind)

    def wait_for_records(self, timeout: float) -> None:
        """Return when records (or the shard's end, or an error) arrive, or after ``timeout``."""
        self._ensure_subscribed()
        with self._changed:
            if not (self._buffer or self._end_reached or self._error):
                self._changed.wait(timeout)

    def caught_up_since(self, moment: float) -> bool:
        """Whether an event received after ``moment`` (``time.monotonic()``) was caught up
        with the shard (``MillisBehindLatest`` 0), so that every record stored before
        ``moment`` has been received."""
        self._ensure_subscribed()
        with self._changed:
            return self._end_reached or self._caught_up_at >= moment

    def close(self) -> None:
        """End the subscription: its thread stops at its next event (a subscription sends
        one every few seconds) and drops the connection. Closing the stream from here would
        wait for the thread's read to return anyway."""
        self._closed.set()

    def _ensure_subscribed(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            if self._end_reached or self._closed.is_set():
                return
            self._thread = threading.Thread(target=self._subscribe, daemon=True,
                                            name=f"subscription-{self.shard_id}")
            self._thread.start()

    def _position(self) -> dict[str, Any]:
        after = self._received or self._continuation
        if after is not None:
            return {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
        if self._latest:
            return {"Type": "LATEST"}
        if self.start.kind == "AT_TIMESTAMP":
            return {"Type": "AT_TIMESTAMP", "Timestamp": self.start.timestamp}
        return {"Type": self.start.kind}

    def _subscribe(self) -> None:
        """The subscription thread: subscribe, buffer what is pushed, subscribe again when a
        subscription ends, until the shard ends, the reader is closed or an error (kept for
        ``read``)."""
        while not self._closed.is_set():
            try:
                response = self.client.subscribe_to_shard(
                    ConsumerARN=self.consumer_arn, ShardId=self.shard_id,
                    StartingPosition=self._position())
                stream = response["EventStream"]
                for event in stream:
                    self._subscribed.set()
                    body = event.get("SubscribeToShardEvent")
                    if body is not None and self._take(body):
                        return
                    if self._closed.is_set():
                        stream.close()
                        return
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "ResourceInUseException":
                    self._closed.wait(RESUBSCRIBE_WAIT_SECONDS)
                    continue
                self._fail(error)
                return
            except Exception as error:
                self._fail(error)
                return

    def _take(self, body: dict[str, Any]) -> bool:
        """Buffer one SubscribeToShardEvent's records; True once the shard has ended."""
        newest = int(self._received) if self._received is not None else -1
        records = [r for r in body.get("Records", []) if int(r["SequenceNumber"]) > newest]
        with self._changed:
            self._buffer.extend(records)
            if records:
                self._received = str(records[-1]["SequenceNumber"])
            self._continuation = body.get("ContinuationSequenceNumber") or self._continuation
            self._millis_behind = int(body.get("MillisBehindLatest", 0))
            if self._millis_behind == 0:
                self._caught_up_at = time.monotonic()
            # ChildShards come "only at the end of the current shard" (SubscribeToShardEvent).
            self._end_reached = bool(body.get("ChildShards"))
            self._changed.notify_all()
            return self._end_reached

    def _fail(self, error: BaseException) -> None:
        with self._changed:
            self._error = error
            self._changed.notify_all()


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
