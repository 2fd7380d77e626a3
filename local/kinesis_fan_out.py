"""Kinesis enhanced fan-out for the moto server: SubscribeToShard, which moto lacks.

moto answers a request with a whole body; SubscribeToShard answers with a stream of events
that lasts up to 5 minutes. ``install`` puts a WSGI front before moto's dispatcher that takes
``X-Amz-Target: Kinesis_20131202.SubscribeToShard`` requests and streams the answer (werkzeug
sends a generator body chunked over HTTP/1.1, one chunk per event, so the client reads each
event when it is sent); every other request goes to moto. The subscription reads moto's
in-process Kinesis backend, and a put wakes it.

From the Kinesis API Reference ("SubscribeToShard", "SubscribeToShardEvent",
"SubscribeToShardEventStream", "StartingPosition", "ChildShard") and "Developing Enhanced
Fan-Out Consumers with the Kinesis Data Streams API":

- the consumer (by ARN) and the shard must exist, else ``ResourceNotFoundException``; a bad
  starting position is ``InvalidArgumentException``. These come before the stream, as JSON
  errors.
- "If you call SubscribeToShard again with the same ConsumerARN and ShardId within 5 seconds
  of a successful call, you'll get a ResourceInUseException. If you call SubscribeToShard 5
  seconds or more after a successful call, the second call takes over the subscription and the
  previous connection expires or fails with a ResourceInUseException": the previous stream
  gets a ``ResourceInUseException`` exception event (one of SubscribeToShardEventStream's
  members) and ends. Its message is the one clients report, "Another active subscription
  exists for this consumer: ..." (daangn/kinesumer issue 16). A stream whose consumer or
  stream is deleted meanwhile ends the same way with ``ResourceNotFoundException`` (another
  member).
- the consumer receives ``SubscribeToShardEvent``s "for up to 5 minutes"
  (``SUBSCRIPTION_SECONDS``), then the stream ends and the client subscribes again from
  ``ContinuationSequenceNumber``.
- each event carries the records in sequence order, ``ContinuationSequenceNumber`` (the last
  record's, or the position when there is none: it "captures your shard progress even when no
  data is written to the shard") and ``MillisBehindLatest`` (0 when caught up).
- ``ChildShards`` come "only at the end of the current shard": once a closed shard's last
  record was sent, an event with the children and no ``ContinuationSequenceNumber`` ends the
  stream (clients take a null continuation as the shard's end: amazon-kinesis-client's
  FanOutRecordsPublisher, Apache Beam's EFO reader).
- "Amazon Kinesis Data Streams Quotas and Limits": each consumer has its own 2 MiB per second
  per shard, apart from GetRecords' 5 calls and 2 MiB per second; events are paced to it.

Not documented, chosen here: an event with no records is sent after ``HEARTBEAT_SECONDS`` (5)
without one; one event holds at most 10,000 records (GetRecords' largest page) and what is
left of the second's 2 MiB; the first event is sent at once, with the records there are or none
(so the client knows it is subscribed and where); timestamps of the 5-second rule are kept per
consumer and shard for the server's life.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

TARGET = "Kinesis_20131202.SubscribeToShard"
SUBSCRIPTION_SECONDS = 300.0
RESUBSCRIBE_SECONDS = 5.0
HEARTBEAT_SECONDS = 5.0
CONSUMER_BYTES_PER_SECOND = 2 * 1024 * 1024
RECORDS_PER_EVENT = 10_000
POSITION_TYPES = ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER", "AT_TIMESTAMP",
                  "TRIM_HORIZON", "LATEST")


# --- event-stream encoding ("Event stream encoding", AWS SDKs; botocore.eventstream) ---

def _header(name: str, value: str) -> bytes:
    name_bytes, value_bytes = name.encode("utf-8"), value.encode("utf-8")
    # type 7 is a string: 2-byte length, then UTF-8
    return (struct.pack("!B", len(name_bytes)) + name_bytes
            + struct.pack("!BH", 7, len(value_bytes)) + value_bytes)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32 of the two),
    headers, payload, CRC32 of all that precedes it."""
    header_bytes = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude += struct.pack("!I", binascii.crc32(prelude))
    message = prelude + header_bytes + payload
    return message + struct.pack("!I", binascii.crc32(message))


def event_message(event_type: str, body: dict[str, Any]) -> bytes:
    return encode_message({":message-type": "event", ":event-type": event_type,
                           ":content-type": "application/json"},
                          json.dumps(body).encode("utf-8"))


def exception_message(exception_type: str, message: str) -> bytes:
    return encode_message({":message-type": "exception", ":exception-type": exception_type,
                           ":content-type": "application/json"},
                          json.dumps({"message": message}).encode("utf-8"))


# --- the request ---

class FanOutError(Exception):
    """An error SubscribeToShard answers before its stream (HTTP 400, JSON)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def start_after(shard: Any, position: Any) -> int:
    """The sequence number the subscription starts after, from ``StartingPosition``
    ("StartingPosition", Kinesis API Reference)."""
    if not isinstance(position, dict) or position.get("Type") not in POSITION_TYPES:
        raise FanOutError("InvalidArgumentException",
                          f"StartingPosition.Type must be one of {', '.join(POSITION_TYPES)}.")
    kind = position["Type"]
    if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        number = position.get("SequenceNumber")
        if not isinstance(number, str) or not number.isdigit():
            raise FanOutError("InvalidArgumentException",
                              f"StartingPosition {kind} needs a SequenceNumber (digits).")
        return int(number) - 1 if kind == "AT_SEQUENCE_NUMBER" else int(number)
    if kind == "AT_TIMESTAMP":
        stamp = position.get("Timestamp")
        if not isinstance(stamp, int | float):
            raise FanOutError("InvalidArgumentException",
                              "StartingPosition AT_TIMESTAMP needs a Timestamp.")
        return int(shard.get_sequence_number_at(float(stamp)))
    if kind == "LATEST":
        return int(shard.get_max_sequence_number())
    return 0


def find_consumer(backends: Any, consumer_arn: Any) -> tuple[Any, Any, Any]:
    """The moto backend, stream and consumer of ``consumer_arn``
    (arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<name>)."""
    parts = consumer_arn.split(":") if isinstance(consumer_arn, str) else []
    if len(parts) >= 6 and parts[2] == "kinesis":
        region, account = parts[3], parts[4]
        if account in backends and region in backends[account]:
            for stream in backends[account][region].streams.values():
                consumer = stream.get_consumer_by_arn(consumer_arn)
                if consumer is not None:
                    return backends[account][region], stream, consumer
    account = parts[4] if len(parts) >= 6 else "unknown"
    raise FanOutError("ResourceNotFoundException",
                      f"Consumer {consumer_arn}, account {account} not found.")


@dataclass
class _Claim:
    started: float
    owner: object


class Subscriptions:
    """The subscriptions of the server process: who holds each (consumer, shard), and a
    condition every put (or reshard) notifies, so that a waiting subscription sends at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.changed = threading.Condition()
        self.changes = 0
        self._claims: dict[tuple[str, str], _Claim] = {}

    def notify(self) -> None:
        with self.changed:
            self.changes += 1
            self.changed.notify_all()

    def claim(self, consumer: Any, stream: Any, shard_id: str) -> object:
        """Take the (consumer, shard) for a new subscription, or raise ResourceInUseException
        within ``RESUBSCRIBE_SECONDS`` of the last successful call."""
        key = (consumer.consumer_arn, shard_id)
        owner = object()
        with self.changed:
            now = self.clock()
            held = self._claims.get(key)
            if held is not None and now - held.started < RESUBSCRIBE_SECONDS:
                raise FanOutError("ResourceInUseException", in_use_message(
                    stream, shard_id, consumer.consumer_name))
            self._claims[key] = _Claim(now, owner)
            self.changes += 1
            self.changed.notify_all()  # a previous holder learns it was taken over
        return owner

    def holds(self, consumer_arn: str, shard_id: str, owner: object) -> bool:
        claim = self._claims.get((consumer_arn, shard_id))
        return claim is not None and claim.owner is owner


def in_use_message(stream: Any, shard_id: str, consumer_name: str) -> str:
    return ("Another active subscription exists for this consumer: "
            f"{stream.account_id}:{stream.stream_name}:{shard_id}:{consumer_name}")


def record_json(record: Any) -> dict[str, Any]:
    """A record as GetRecords gives it (moto keeps ``data`` base64, as the JSON carries it)."""
    return {"SequenceNumber": str(record.sequence_number),
            "ApproximateArrivalTimestamp": record.created_at,
            "Data": record.data, "PartitionKey": record.partition_key}


def record_bytes(record: Any) -> int:
    return len(base64.b64decode(record.data)) + len(record.partition_key.encode("utf-8"))


def child_shards(stream: Any, shard_id: str) -> list[dict[str, Any]]:
    """The children of a closed shard, shaped as "ChildShard" (Kinesis API Reference)."""
    children = []
    for shard in stream.shards.values():
        parents = [p for p in (shard.parent, shard.adjacent_parent) if p]
        if shard_id in parents:
            children.append({"ShardId": shard.shard_id, "ParentShards": parents,
                             "HashKeyRange": {"StartingHashKey": str(shard.starting_hash),
                                              "EndingHashKey": str(shard.ending_hash)}})
    return children


class Subscription:
    """One SubscribeToShard stream: ``events`` yields the encoded messages."""

    def __init__(self, hub: Subscriptions, backend: Any, consumer: Any, stream: Any,
                 shard: Any, after: int, owner: object) -> None:
        self.hub, self.backend = hub, backend
        self.consumer, self.stream, self.shard = consumer, stream, shard
        self.after = after
        self.owner = owner

    def events(self) -> Iterator[bytes]:
        """The initial response, then events until the 5 minutes end, the shard ends or an
        exception event: records as soon as they are stored (a put wakes the wait), paced
        to the consumer's 2 MiB a second, and an event without records after
        ``HEARTBEAT_SECONDS`` without one."""
        clock = self.hub.clock
        yield event_message("initial-response", {})
        ends = clock() + SUBSCRIPTION_SECONDS
        last_event = float("-inf")
        window, window_bytes = clock(), 0
        while True:
            with self.hub.changed:
                seen = self.hub.changes
            now = clock()
            if now >= ends:
                return
            failure = self._failure()
            if failure is not None:
                yield failure
                return
            if now - window >= 1.0:
                window, window_bytes = now, 0
            records, held_back = self._next_records(CONSUMER_BYTES_PER_SECOND - window_bytes)
            if held_back:  # the consumer's 2 MiB of this second are spent; puts need not wake
                time.sleep(max(0.0, window + 1.0 - clock()))
                continue
            newest = int(self.shard.get_max_sequence_number())
            if records:
                window_bytes += sum(record_bytes(r) for r in records)
                self.after = records[-1].sequence_number
                last_event = clock()
                yield event_message("SubscribeToShardEvent", self._body(records, newest))
                continue
            if not self.shard.is_open and self.after >= newest:
                yield event_message("SubscribeToShardEvent", {
                    "Records": [], "MillisBehindLatest": 0,
                    "ChildShards": child_shards(self.stream, self.shard.shard_id)})
                return
            if now - last_event >= HEARTBEAT_SECONDS:
                last_event = clock()
                yield event_message("SubscribeToShardEvent", self._body([], newest))
                continue
            with self.hub.changed:
                if self.hub.changes == seen:
                    self.hub.changed.wait(
                        max(0.0, min(last_event + HEARTBEAT_SECONDS, ends) - clock()))

    def _failure(self) -> bytes | None:
        """The exception event that ends the stream: another call took the subscription over,
        or the consumer or its stream was deleted."""
        if not self.hub.holds(self.consumer.consumer_arn, self.shard.shard_id, self.owner):
            return exception_message("ResourceInUseException", in_use_message(
                self.stream, self.shard.shard_id, self.consumer.consumer_name))
        if (self.backend.streams.get(self.stream.stream_name) is not self.stream
                or self.consumer not in self.stream.consumers):
            return exception_message("ResourceNotFoundException", (
                f"Consumer {self.consumer.consumer_arn}, account {self.stream.account_id} "
                "not found."))
        return None

    def _next_records(self, budget: int) -> tuple[list[Any], bool]:
        """The next records that fit ``budget`` bytes, and whether records wait that do not."""
        try:
            records: list[Any] = self.shard.get_records(str(self.after), RECORDS_PER_EVENT)[0]
        except RuntimeError:  # moto's walk over a shard a put changed meanwhile: next turn
            return [], False
        taken, total = 0, 0
        for record in records:
            size = record_bytes(record)
            if total + size > budget:
                break
            taken, total = taken + 1, total + size
        return records[:taken], taken < len(records) and taken == 0

    def _body(self, records: list[Any], newest: int) -> dict[str, Any]:
        return {"Records": [record_json(r) for r in records],
                "ContinuationSequenceNumber": str(self.after),
                "MillisBehindLatest": self._millis_behind(records, newest)}

    def _millis_behind(self, records: list[Any], newest: int) -> int:
        """0 once every stored record was sent; else from the last record sent (or the next
        one to send) to the newest, at least 1."""
        if self.after >= newest:
            return 0
        latest = self.shard.records.get(newest)
        reference = records[-1] if records else self.shard.records.get(self.after + 1)
        if latest is None or reference is None:
            return 1
        return max(1, int((latest.created_at - reference.created_at) * 1000))


def subscribe(hub: Subscriptions, backends: Any, request: dict[str, Any]) -> Subscription:
    """Check a SubscribeToShard request and open its subscription (or raise FanOutError)."""
    backend, stream, consumer = find_consumer(backends, request.get("ConsumerARN"))
    shard_id = request.get("ShardId")
    shard = stream.shards.get(shard_id) if isinstance(shard_id, str) else None
    if shard is None:
        raise FanOutError("ResourceNotFoundException",
                          f"Could not find shard {shard_id} in stream {stream.stream_name} "
                          f"under account {stream.account_id}.")
    after = start_after(shard, request.get("StartingPosition"))
    owner = hub.claim(consumer, stream, shard.shard_id)
    return Subscription(hub, backend, consumer, stream, shard, after, owner)


HUB = Subscriptions()
_INSTALLED = False


def _error_response(start_response: Callable[..., Any], error: FanOutError) -> list[bytes]:
    start_response("400 Bad Request", [
        ("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", error.code),
        ("x-amzn-RequestId", str(uuid.uuid4()))])
    return [json.dumps({"__type": error.code, "message": error.message}).encode("utf-8")]


def install() -> None:
    """Serve SubscribeToShard in this process's moto server, and wake subscriptions on every
    put, reshard and deletion (idempotent; call after the other patches of KinesisBackend)."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.kinesis.models import KinesisBackend, kinesis_backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    for name in ("put_record", "put_records", "split_shard", "merge_shards",
                 "update_shard_count", "delete_stream", "deregister_stream_consumer"):
        setattr(KinesisBackend, name, _notifying(getattr(KinesisBackend, name)))

    dispatch = DomainDispatcherApplication.__call__

    def call(self: Any, environ: dict[str, Any], start_response: Callable[..., Any]
             ) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") != TARGET:
            return dispatch(self, environ, start_response)  # type: ignore[no-any-return]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            request = json.loads(environ["wsgi.input"].read(length) or b"{}")
            subscription = subscribe(HUB, kinesis_backends, request)
        except FanOutError as error:
            return _error_response(start_response, error)
        except ValueError:
            return _error_response(start_response, FanOutError(
                "SerializationException", "The request body is not JSON."))
        start_response("200 OK", [("Content-Type", "application/vnd.amazon.eventstream"),
                                  ("x-amzn-RequestId", str(uuid.uuid4()))])
        return subscription.events()

    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]
    _INSTALLED = True


def _notifying(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            HUB.notify()

    return wrapped
