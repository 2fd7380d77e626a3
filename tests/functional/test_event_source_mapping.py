"""The local Kinesis event source mapping against moto's Kinesis and SQS: batching, shard
order, ReportBatchItemFailures, bisecting, retries and record age with the on-failure queue,
checkpoints across restarts and starting positions.

The handlers here are small functions that record what they are given: the mapping's
collaborators, as a Lambda function is Lambda's."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

from functions.kinesis_consumer import app
from local.event_source_mapping import (
    DEFAULT_FUNCTION_ARN,
    MAX_PAYLOAD_BYTES,
    LocalEventSourceMapping,
)
from local.event_source_mapping.lanes import lane_of
from local.record_builders import DmsStream, activity, customer, ticket
from tests.functional.pipeline_helpers import Consumer
from tests.stack_helpers import REGION

SHARD_0, SHARD_1 = "shardId-000000000000", "shardId-000000000001"
HASH_KEYS = {SHARD_0: "0", SHARD_1: str(2**127)}  # moto splits the hash range evenly

Batch = list[tuple[str, str, str]]  # (shard id, sequence number, data)


@dataclass
class Stream:
    kinesis: Any
    name: str
    arn: str

    def put(self, shard_id: str, *payloads: str | bytes) -> list[str]:
        """Put records on one shard; returns their sequence numbers."""
        return [
            self.kinesis.put_record(
                StreamName=self.name, Data=p if isinstance(p, bytes) else p.encode(),
                PartitionKey="pk", ExplicitHashKey=HASH_KEYS[shard_id],
            )["SequenceNumber"]
            for p in payloads
        ]


@dataclass
class Recorder:
    """A handler that records every batch; ``respond`` decides the response (or raises)."""

    respond: Callable[[Batch], Any] | None = None
    batches: list[Batch] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    contexts: list[Any] = field(default_factory=list)

    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        batch = [(r["eventID"].split(":")[0], r["kinesis"]["sequenceNumber"],
                  base64.b64decode(r["kinesis"]["data"]).decode()) for r in event["Records"]]
        with self.lock:  # the shards' pollers call it concurrently
            self.batches.append(batch)
            self.events.append(event)
            self.contexts.append(context)
        return self.respond(batch) if self.respond else {"batchItemFailures": []}

    def data(self, shard_id: str | None = None) -> list[str]:
        return [d for b in self.batches for s, _, d in b if shard_id in (None, s)]


class Poison(Exception):
    pass


@pytest.fixture
def kinesis(moto_endpoint: str) -> Any:
    return boto3.client("kinesis", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def stream(kinesis: Any) -> Iterator[Stream]:
    name = f"esm-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    yield Stream(kinesis, name, arn)
    kinesis.delete_stream(StreamName=name)


@dataclass
class Queue:
    sqs: Any
    url: str

    def messages(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while got := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                              VisibilityTimeout=60).get("Messages"):
            found += [json.loads(m["Body"]) for m in got]
        return found


@pytest.fixture
def on_failure(moto_endpoint: str) -> Queue:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    return Queue(sqs, sqs.create_queue(QueueName=f"esm-failures-{uuid.uuid4().hex[:8]}")
                 ["QueueUrl"])


@pytest.fixture
def mapping_for(
    stream: Stream, tmp_path: Path
) -> Callable[..., LocalEventSourceMapping]:
    def make(handler: Any, **options: Any) -> LocalEventSourceMapping:
        options.setdefault("state_dir", tmp_path / "state")
        options.setdefault("retry_backoff_seconds", 0.0)
        options.setdefault("shard_refresh_seconds", 0.0)
        return LocalEventSourceMapping(stream.kinesis, stream.name, handler, **options)

    return make


def test_batches_respect_batch_size_and_shard_order(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    for i in range(7):
        stream.put(SHARD_0, f"a{i}")
        if i < 5:
            stream.put(SHARD_1, f"b{i}")
    handler = Recorder()
    mapping = mapping_for(handler, batch_size=3)

    assert mapping.drain() == 12

    # The shards are served concurrently: each shard's batches in order, the two interleaved.
    assert [len(b) for b in handler.batches if b[0][0] == SHARD_0] == [3, 3, 1]
    assert [len(b) for b in handler.batches if b[0][0] == SHARD_1] == [3, 2]
    assert all(len({s for s, _, _ in b}) == 1 for b in handler.batches)  # one shard per batch
    assert handler.data(SHARD_0) == [f"a{i}" for i in range(7)]
    assert handler.data(SHARD_1) == [f"b{i}" for i in range(5)]
    for batch in handler.batches:
        sequence_numbers = [int(q) for _, q, _ in batch]
        assert sequence_numbers == sorted(sequence_numbers)
    counters = mapping.counters
    assert (counters.invocations, counters.records_delivered, counters.retries) == (5, 12, 0)
    assert mapping.drain() == 0 and len(handler.batches) == 5  # nothing comes twice


def test_the_event_and_context_are_lambdas(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    sequence_number, = stream.put(SHARD_1, b'{"hello": "world"}')
    handler = Recorder()
    before = time.time()
    mapping_for(handler).drain()

    record, = handler.events[0]["Records"]
    assert record == {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "pk",
            "sequenceNumber": sequence_number,
            "data": base64.b64encode(b'{"hello": "world"}').decode(),
            "approximateArrivalTimestamp": record["kinesis"]["approximateArrivalTimestamp"],
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD_1}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/cdc-consumer",
        "awsRegion": REGION,
        "eventSourceARN": stream.arn,
    }
    assert abs(record["kinesis"]["approximateArrivalTimestamp"] - before) < 5
    parsed, = app.stream_records(KinesisStreamEvent(handler.events[0]))[0]
    assert (parsed.shard_id, parsed.sequence_number) == (SHARD_1, sequence_number)
    context = handler.contexts[0]
    assert context.function_name == "cdc-kinesis-consumer-local"
    assert context.invoked_function_arn == DEFAULT_FUNCTION_ARN
    assert context.memory_limit_in_mb == 1024
    assert 0 < context.get_remaining_time_in_millis() <= 300_000
    uuid.UUID(context.aws_request_id)


def test_batch_item_failures_redeliver_from_the_lowest_failed_record(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    sequence = stream.put(SHARD_0, *(f"r{i}" for i in range(6)))
    reports = iter([[sequence[4], sequence[2]], [sequence[4]], []])  # one per invocation

    def respond(batch: Batch) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": q} for q in next(reports)]}

    handler = Recorder(respond)
    mapping = mapping_for(handler, batch_size=10, maximum_retry_attempts=0)

    assert mapping.poll_once() == 2  # r0, r1 checkpointed; r2 and after come again
    assert mapping.checkpoints()[SHARD_0] == sequence[1]
    mapping.drain()

    assert [[d for _, _, d in b] for b in handler.batches] == [
        ["r0", "r1", "r2", "r3", "r4", "r5"],
        ["r2", "r3", "r4", "r5"],  # r4 fails now
        ["r4", "r5"],
    ]
    assert mapping.counters.partial_failures == 2
    assert mapping.counters.batches_discarded == 0  # each failure made progress


@pytest.mark.parametrize("failure", [
    {"itemIdentifier": "99999"},  # not in the batch
    {"itemIdentifier": ""},
    {"itemIdentifier": None},
    {"item": "1"},
])
def test_an_unusable_item_failure_fails_the_whole_batch(
    failure: dict[str, Any], stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    stream.put(SHARD_0, "x", "y")
    calls = iter([{"batchItemFailures": [failure]}, None])
    handler = Recorder(lambda batch: next(calls))
    mapping = mapping_for(handler)

    assert mapping.poll_once() == 0
    assert mapping.poll_once() == 2
    assert [[d for _, _, d in b] for b in handler.batches] == [["x", "y"], ["x", "y"]]
    assert mapping.counters.invalid_responses == 1
    assert mapping.counters.bisects == 0  # not a function error


def test_without_report_batch_item_failures_a_response_is_a_success(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    sequence = stream.put(SHARD_0, "x", "y")
    handler = Recorder(lambda batch: {"batchItemFailures": [{"itemIdentifier": sequence[0]}]})
    mapping = mapping_for(handler, report_batch_item_failures=False)
    assert mapping.drain() == 2
    assert len(handler.batches) == 1


def test_a_handler_that_outlives_its_timeout_has_failed(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    stream.put(SHARD_0, "x", "y")
    delays = iter([0.2, 0.0, 0.0])
    handler = Recorder(lambda batch: time.sleep(next(delays)))
    mapping = mapping_for(handler, function_timeout_seconds=0.1)
    mapping.drain()
    assert [len(b) for b in handler.batches] == [2, 1, 1]  # timed out, then bisected
    assert (mapping.counters.function_errors, mapping.counters.bisects) == (1, 1)


def test_a_function_error_bisects_down_to_the_poison_record(
    stream: Stream, on_failure: Queue, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    sequence = stream.put(SHARD_0, *(f"r{i}" for i in range(8)))

    def respond(batch: Batch) -> None:
        if any(d == "r5" for _, _, d in batch):
            raise Poison("a payload could be in here")

    handler = Recorder(respond)
    mapping = mapping_for(handler, batch_size=8, maximum_retry_attempts=1,
                          on_failure=(on_failure.sqs, on_failure.url))
    mapping.drain()

    assert [[d for _, _, d in b] for b in handler.batches] == [
        [f"r{i}" for i in range(8)],
        ["r0", "r1", "r2", "r3"],
        ["r4", "r5", "r6", "r7"],
        ["r4", "r5"],
        ["r4"],
        ["r5"],
        ["r5"],  # the one retry
        ["r6", "r7"],
    ]
    assert mapping.counters.bisects == 3
    assert mapping.counters.function_errors == 5
    message, = on_failure.messages()
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 2
    assert message["requestContext"]["requestId"] == handler.contexts[6].aws_request_id
    assert message["responseContext"]["functionError"] == "Unhandled"
    info = message["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        sequence[5], sequence[5], 1)
    assert mapping.checkpoints()[SHARD_0] == sequence[7]


def test_exhausted_retries_go_to_the_on_failure_queue_and_the_shard_moves_on(
    stream: Stream, on_failure: Queue, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    sequence = stream.put(SHARD_1, "bad", "also in the batch")
    stream.put(SHARD_0, "other shard")
    poisoned = True

    def respond(batch: Batch) -> None:
        if poisoned and batch[0][0] == SHARD_1:
            raise Poison

    handler = Recorder(respond)
    mapping = mapping_for(handler, bisect_on_error=False, maximum_retry_attempts=2,
                          on_failure=(on_failure.sqs, on_failure.url))
    mapping.drain()
    poisoned = False
    stream.put(SHARD_1, "after")
    mapping.drain()

    assert handler.data(SHARD_1) == ["bad", "also in the batch"] * 3 + ["after"]
    assert handler.data(SHARD_0) == ["other shard"]
    last_failed = [c for b, c in zip(handler.batches, handler.contexts, strict=True)
                   if b[0][2] == "bad"][-1]
    message, = on_failure.messages()
    assert message == {
        "requestContext": {
            "requestId": last_failed.aws_request_id,
            "functionArn": DEFAULT_FUNCTION_ARN,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 3,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": message["timestamp"],
        "KinesisBatchInfo": {
            "shardId": SHARD_1,
            "startSequenceNumber": sequence[0],
            "endSequenceNumber": sequence[1],
            "approximateArrivalOfFirstRecord": message["KinesisBatchInfo"][
                "approximateArrivalOfFirstRecord"],
            "approximateArrivalOfLastRecord": message["KinesisBatchInfo"][
                "approximateArrivalOfLastRecord"],
            "batchSize": 2,
            "streamArn": stream.arn,
        },
    }
    for key in ("approximateArrivalOfFirstRecord", "approximateArrivalOfLastRecord"):
        moment = datetime.strptime(message["KinesisBatchInfo"][key], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert abs(moment.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() < 30
    datetime.strptime(message["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    counters = mapping.counters
    assert (counters.retries, counters.batches_to_destination, counters.records_discarded) == (
        2, 1, 2)


def test_records_too_old_are_not_sent_but_reported(
    stream: Stream, on_failure: Queue, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    stream.put(SHARD_0, "stale")
    time.sleep(1.1)
    stream.put(SHARD_0, "fresh")
    handler = Recorder()
    mapping = mapping_for(handler, maximum_record_age_seconds=1,
                          on_failure=(on_failure.sqs, on_failure.url))

    assert mapping.drain() == 2
    assert handler.data() == ["fresh"]
    message, = on_failure.messages()
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == 0
    assert message["responseContext"] == {}
    assert message["KinesisBatchInfo"]["batchSize"] == 1


def test_a_failing_batch_is_retried_until_its_records_are_too_old(
    stream: Stream, on_failure: Queue, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    stream.put(SHARD_0, "a", "b")

    def respond(batch: Batch) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": batch[0][1]}]}

    handler = Recorder(respond)
    mapping = mapping_for(handler, maximum_record_age_seconds=0.5, retry_backoff_seconds=0.05,
                          on_failure=(on_failure.sqs, on_failure.url))
    mapping.drain(timeout_seconds=5)  # infinite retries: only the age ends it

    assert len(handler.batches) >= 3
    # Usually one message for both records; on a loaded machine "a" can expire a retry
    # before "b" (they arrived milliseconds apart), which gives one message each.
    messages = on_failure.messages()
    assert sum(m["KinesisBatchInfo"]["batchSize"] for m in messages) == 2
    for message in messages:
        assert message["requestContext"]["condition"] == "RecordAgeExceeded"
        assert 1 <= message["requestContext"]["approximateInvokeCount"] <= len(handler.batches)
        assert message["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}


def test_checkpoints_survive_a_restart(
    stream: Stream, tmp_path: Path, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    sequence = stream.put(SHARD_0, *(f"r{i}" for i in range(6)))
    stream.put(SHARD_1, "s0")

    def respond(batch: Batch) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": q} for _, q, _ in batch
                                      if q == sequence[4]]}

    first = Recorder(respond)
    crashed = mapping_for(first, batch_size=10)
    crashed.poll_once()  # r0..r3 and s0 done; r4 failed and waits for its retry
    saved = json.loads(next((tmp_path / "state").glob("*.checkpoints.json")).read_text())
    assert saved["shards"][SHARD_0] == {"sequenceNumber": sequence[3], "ended": False}

    second = Recorder()
    restarted = mapping_for(second, batch_size=10)
    stream.put(SHARD_1, "s1")
    restarted.drain()

    assert second.data(SHARD_0) == ["r4", "r5"]
    assert second.data(SHARD_1) == ["s1"]
    other = Recorder()  # another function on the same stream has checkpoints of its own
    mapping_for(other, function_arn=DEFAULT_FUNCTION_ARN.replace("local", "other")).drain()
    assert len(other.data()) == 8


def test_latest_skips_what_was_there_when_the_mapping_was_created(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    stream.put(SHARD_0, "old")
    stream.put(SHARD_1, "old")
    time.sleep(0.05)
    handler = Recorder()
    mapping = mapping_for(handler, starting_position="LATEST")
    stream.put(SHARD_0, "new")

    mapping.drain()
    assert handler.data() == ["new"]

    stream.put(SHARD_1, "after")
    restarted = Recorder()  # shard 1 has no checkpoint: it resumes where LATEST pointed
    mapping_for(restarted, starting_position="LATEST").drain()
    assert restarted.data() == ["after"]


def test_at_timestamp_starts_at_that_moment(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    stream.put(SHARD_0, "before")
    time.sleep(0.05)
    moment = datetime.now(UTC)
    time.sleep(0.05)
    stream.put(SHARD_0, "after")
    handler = Recorder()
    mapping_for(handler, starting_position="AT_TIMESTAMP",
                starting_position_timestamp=moment).drain()
    assert handler.data() == ["after"]


def test_the_batching_window_gathers_records_until_full_or_elapsed(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    handler = Recorder()
    mapping = mapping_for(handler, batch_size=3, batching_window_seconds=0.3)
    stream.put(SHARD_0, "a", "b")
    assert mapping.poll_once() == 0 and handler.batches == []
    stream.put(SHARD_0, "c", "d")
    assert mapping.poll_once() == 3  # full: sent at once
    assert mapping.poll_once() == 0  # "d" waits for the window
    time.sleep(0.35)
    assert mapping.poll_once() == 1
    assert [[d for _, _, d in b] for b in handler.batches] == [["a", "b", "c"], ["d"]]


def test_batches_stay_under_the_payload_limit(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    assert MAX_PAYLOAD_BYTES == 6 * 1024 * 1024
    stream.put(SHARD_0, *(str(i) * 1000 for i in range(5)))
    handler = Recorder()
    mapping_for(handler, max_payload_bytes=4000).drain()
    assert [len(b) for b in handler.batches] == [2, 2, 1]
    assert all(len(json.dumps(e)) <= 4000 for e in handler.events)


def test_a_closed_shard_ends_and_its_children_are_discovered(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping], tmp_path: Path
) -> None:
    stream.put(SHARD_0, "parent")
    handler = Recorder()
    mapping = mapping_for(handler)
    mapping.drain()
    stream.kinesis.split_shard(StreamName=stream.name, ShardToSplit=SHARD_0,
                               NewStartingHashKey=str(2**126))
    mapping.drain()

    assert handler.data() == ["parent"]
    saved = json.loads(next((tmp_path / "state").glob("*.checkpoints.json")).read_text())
    assert saved["shards"][SHARD_0]["ended"] is True
    assert mapping.ended_shards() == {SHARD_0}
    assert set(mapping.checkpoints()) == {SHARD_0, SHARD_1, "shardId-000000000002",
                                          "shardId-000000000003"}
    late = mapping_for(Recorder(), starting_position="LATEST",
                       function_arn=DEFAULT_FUNCTION_ARN.replace("local", "late"))
    late.drain()  # a closed shard it never read from ends too
    assert late.checkpoints()[SHARD_0] is None
    assert late.ended_shards() == {SHARD_0}


def test_run_polls_until_stopped(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    received = threading.Event()
    handler = Recorder(lambda batch: received.set())
    mapping = mapping_for(handler, poll_interval_seconds=0.02)
    stop = threading.Event()
    worker = threading.Thread(target=mapping.run, args=(stop,), daemon=True)
    worker.start()
    stream.put(SHARD_1, "hello")
    try:
        assert received.wait(5)
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()
    assert handler.data() == ["hello"]


@pytest.mark.parametrize("handler", [
    app.lambda_handler,
    "functions.kinesis_consumer.app.lambda_handler",  # in an execution environment of its own
], ids=["in-process", "environment"])
def test_the_consumer_lambda_behind_the_mapping(
    handler: Any, consumer: Consumer, stream: Stream,
    mapping_for: Callable[..., LocalEventSourceMapping],
) -> None:
    dms = DmsStream()
    for i in (1, 2):
        dms.add("customer", "insert", customer(i, f"Buyer {i}"))
        dms.add("ticket", "insert", ticket(i, 1))
        dms.add("ticket_activity", "insert", activity(i, i))
    dms.add_raw(b"{not json")
    for record in dms.take():
        stream.put(SHARD_0, base64.b64decode(record.data))
    mapping = mapping_for(handler, batch_size=4)

    try:
        assert mapping.drain(timeout_seconds=120) == 7
    finally:
        mapping.close()
    rows = consumer.sql("SELECT ticket_id, name FROM public.sport_event_activity ORDER BY 1")
    assert [(r["ticket_id"], r["name"]) for r in rows] == [(1, "Buyer 1"), (2, "Buyer 2")]
    letter, = consumer.dead_letters()
    assert letter["shardId"] == SHARD_0 and letter["eventSourceARN"] == stream.arn
    assert mapping.counters.invocations == 2 and mapping.counters.retries == 0


# ----------------------------------------------------------------- concurrency
# "How Lambda processes records from Amazon Kinesis Data Streams"
# (https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html): one concurrent invocation
# per shard, up to ParallelizationFactor concurrent batches per shard, in order per partition
# key. The handlers below record when each invocation ran; concurrency is read from those
# intervals, and where it must happen a Meeting holds the first invocations until others are
# in flight (a generous timeout, so a sequential mapping fails the overlap assertions rather
# than hanging).


@dataclass(frozen=True)
class Put:
    key: str
    n: int  # the key's n-th change
    shard_id: str
    sequence_number: str

    @property
    def id(self) -> tuple[str, str]:
        return self.shard_id, self.sequence_number


@dataclass
class Keyed:
    """A stream of four shards with records under many partition keys."""

    stream: Stream
    puts: list[Put] = field(default_factory=list)

    def put(self, keys: int, changes: int, *, prefix: str = "key") -> list[Put]:
        """``changes`` records for each of ``keys`` keys, interleaved (key 0's n-th change, key
        1's, ..., then each key's next)."""
        entries = [(f"{prefix}-{k}", n) for n in range(changes) for k in range(keys)]
        added: list[Put] = []
        for start in range(0, len(entries), 500):
            chunk = entries[start:start + 500]
            result = self.stream.kinesis.put_records(StreamName=self.stream.name, Records=[
                {"PartitionKey": key, "Data": f"{key}:{n}".encode()} for key, n in chunk])
            assert result.get("FailedRecordCount", 0) == 0
            added += [Put(key, n, r["ShardId"], r["SequenceNumber"])
                      for (key, n), r in zip(chunk, result["Records"], strict=True)]
        self.puts += added
        return added

    def last_per_shard(self) -> dict[str, str]:
        last: dict[str, str] = {}
        for put in self.puts:
            if int(put.sequence_number) > int(last.get(put.shard_id, "-1")):
                last[put.shard_id] = put.sequence_number
        return last

    def order_per_key(self) -> dict[str, list[str]]:
        order: dict[str, list[Put]] = {}
        for put in self.puts:
            order.setdefault(put.key, []).append(put)
        return {key: [p.sequence_number for p in sorted(puts, key=lambda p:
                                                        int(p.sequence_number))]
                for key, puts in order.items()}


@pytest.fixture
def keyed(kinesis: Any) -> Iterator[Keyed]:
    name = f"esm-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=4)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    yield Keyed(Stream(kinesis, name, arn))
    kinesis.delete_stream(StreamName=name)


@pytest.fixture
def keyed_mapping(
    keyed: Keyed, tmp_path: Path
) -> Iterator[Callable[..., LocalEventSourceMapping]]:
    made: list[LocalEventSourceMapping] = []

    def make(handler: Any, **options: Any) -> LocalEventSourceMapping:
        options.setdefault("state_dir", tmp_path / "state")
        options.setdefault("retry_backoff_seconds", 0.0)
        options.setdefault("shard_refresh_seconds", 0.0)
        mapping = LocalEventSourceMapping(keyed.stream.kinesis, keyed.stream.name, handler,
                                          **options)
        made.append(mapping)
        return mapping

    yield make
    for mapping in made:
        mapping.close()


class Meeting:
    """Holds the first invocation of each of ``parties`` different groups until all of them
    are in flight at once (or 60 s pass). Later invocations go through."""

    def __init__(self, parties: int, group: Callable[[Call], Any]) -> None:
        self.parties = parties
        self.group = group
        self.entered: set[Any] = set()
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(parties, timeout=60)

    def attend(self, call: Call) -> None:
        group = self.group(call)
        with self.lock:
            if group is None or group in self.entered or len(self.entered) >= self.parties:
                return
            self.entered.add(group)
        with contextlib.suppress(threading.BrokenBarrierError):
            self.barrier.wait()  # broken if nobody came: the intervals will show it


class Crash(BaseException):
    """The consumer process dies (not an error the function reports: it escapes the mapping)."""


@dataclass
class Call:
    shard_id: str
    lane: int
    records: list[tuple[str, str, str]]  # (partition key, sequence number, data)
    started: float = 0.0
    ended: float = 0.0
    succeeded: bool = False

    def overlaps(self, other: Call) -> bool:
        return self.started < other.ended and other.started < self.ended


@dataclass
class Tracker:
    """A thread-safe handler that records every invocation's interval and records.

    ``meetings`` hold early invocations until others run alongside; ``poison`` raises for a
    batch holding that data; ``crash_at`` makes the n-th invocation and all after it raise
    ``Crash``; ``jitter`` sleeps up to that many seconds so lanes finish out of order."""

    factor: int
    meetings: list[Meeting] = field(default_factory=list)
    poison: str | None = None
    crash_at: int | None = None
    jitter: float = 0.0
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    crashed: bool = False

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        started = time.monotonic()
        records = [(r["kinesis"]["partitionKey"], r["kinesis"]["sequenceNumber"],
                    base64.b64decode(r["kinesis"]["data"]).decode()) for r in event["Records"]]
        call = Call(event["Records"][0]["eventID"].split(":")[0],
                    lane_of(records[0][0], self.factor), records, started)
        with self.lock:
            self.calls.append(call)
            crash = self.crashed or (self.crash_at is not None
                                     and len(self.calls) >= self.crash_at)
            self.crashed = crash
            jitter = random.Random(records[0][1]).uniform(0, self.jitter)
        for meeting in self.meetings:
            meeting.attend(call)
        time.sleep(jitter)
        call.ended = time.monotonic()
        if crash:
            raise Crash
        if self.poison is not None and any(d == self.poison for _, _, d in records):
            raise Poison
        call.succeeded = True
        return {"batchItemFailures": []}

    def completed(self) -> list[tuple[str, str]]:
        """(shard, sequence number) of the records in invocations that succeeded (sequence
        numbers are unique within a shard only)."""
        return [(c.shard_id, q) for c in self.calls if c.succeeded for _, q, _ in c.records]

    def per_key(self) -> dict[str, list[str]]:
        """Each key's records as the successful invocations received them, in the order the
        invocations started (a key's invocations never overlap, so this is their order)."""
        order: dict[str, list[str]] = {}
        for call in sorted((c for c in self.calls if c.succeeded), key=lambda c: c.started):
            for key, sequence_number, _ in call.records:
                order.setdefault(key, []).append(sequence_number)
        return order


def saved_checkpoints(state_dir: Path) -> dict[str, str | None]:
    saved = json.loads(next(state_dir.glob("*.checkpoints.json")).read_text())
    return {shard: c["sequenceNumber"] for shard, c in saved["shards"].items()}


@pytest.mark.parametrize("factor", [1, 3])
def test_shards_and_lanes_run_concurrently_and_keep_each_keys_order(
    factor: int, keyed: Keyed, keyed_mapping: Callable[..., LocalEventSourceMapping]
) -> None:
    keyed.put(keys=48, changes=25)  # 1,200 records over 4 shards
    shard_0 = min(p.shard_id for p in keyed.puts)
    meetings = [Meeting(2, lambda call: call.shard_id)]  # two shards' batches at once
    if factor > 1:
        lanes_of_shard_0 = {lane_of(p.key, factor) for p in keyed.puts if p.shard_id == shard_0}
        assert len(lanes_of_shard_0) > 1
        meetings.append(Meeting(2, lambda call: call.lane if call.shard_id == shard_0 else None))
    handler = Tracker(factor, meetings)
    mapping = keyed_mapping(handler, batch_size=10, parallelization_factor=factor)

    assert mapping.drain(timeout_seconds=120) == 1200

    delivered = handler.completed()
    assert sorted(delivered) == sorted(p.id for p in keyed.puts)  # each once
    assert handler.per_key() == keyed.order_per_key()
    calls = handler.calls
    assert any(a.shard_id != b.shard_id and a.overlaps(b) for a in calls for b in calls)
    for a in calls:
        for b in calls:
            if a is not b and a.shard_id == b.shard_id and a.overlaps(b):
                # Within a shard only different lanes overlap: one batch per lane at a time.
                assert factor > 1 and a.lane != b.lane
    if factor > 1:
        assert any(a.shard_id == b.shard_id == shard_0 and a.lane != b.lane and a.overlaps(b)
                   for a in calls for b in calls)
    assert all(len({lane_of(k, factor) for k, _, _ in c.records}) == 1 for c in calls)
    assert mapping.counters.most_concurrent >= 2
    assert mapping.checkpoints() == keyed.last_per_shard()


@pytest.mark.parametrize("factor", [1, 3])
def test_a_restart_loses_nothing_and_repeats_only_what_followed_the_checkpoint(
    factor: int, keyed: Keyed, keyed_mapping: Callable[..., LocalEventSourceMapping],
    tmp_path: Path,
) -> None:
    keyed.put(keys=40, changes=20)  # 800 records
    first = Tracker(factor, crash_at=25, jitter=0.01)
    crashed = keyed_mapping(first, batch_size=8, parallelization_factor=factor)
    with pytest.raises(Crash):
        crashed.drain(timeout_seconds=120)
    crashed.close()

    checkpoints = saved_checkpoints(tmp_path / "state")
    done_before = set(first.completed())
    for put in keyed.puts:
        checkpoint = checkpoints.get(put.shard_id)
        if checkpoint is not None and int(put.sequence_number) <= int(checkpoint):
            # The checkpoint never passes a record that was not finished.
            assert put.id in done_before
    assert len(done_before) < len(keyed.puts)  # it did die mid-run

    second = Tracker(factor)
    keyed_mapping(second, batch_size=8, parallelization_factor=factor).drain(
        timeout_seconds=120)

    again = second.completed()
    assert set(again) | done_before == {p.id for p in keyed.puts}  # none lost
    assert len(again) == len(set(again))
    for shard_id, sequence_number in again:
        # Only what followed the checkpoint comes again.
        checkpoint = checkpoints.get(shard_id)
        assert checkpoint is None or int(sequence_number) > int(checkpoint)
    expected = keyed.order_per_key()
    for key, order in second.per_key().items():
        assert order == expected[key][len(expected[key]) - len(order):]  # each key's tail


def test_a_poison_record_in_one_lane_goes_to_the_destination_and_the_other_lanes_go_on(
    keyed: Keyed, on_failure: Queue, keyed_mapping: Callable[..., LocalEventSourceMapping]
) -> None:
    factor = 3
    keyed.put(keys=36, changes=1)
    poisoned = keyed.put(keys=1, changes=1, prefix="poison")[0]
    keyed.put(keys=36, changes=12)
    shard = poisoned.shard_id
    poison_lane = lane_of(poisoned.key, factor)
    handler = Tracker(factor, poison="poison-0:0")
    mapping = keyed_mapping(handler, batch_size=4, parallelization_factor=factor,
                            maximum_retry_attempts=1, retry_backoff_seconds=0.2,
                            on_failure=(on_failure.sqs, on_failure.url))

    mapping.drain(timeout_seconds=120)

    message, = on_failure.messages()
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    info = message["KinesisBatchInfo"]
    assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"],
            info["batchSize"]) == (shard, poisoned.sequence_number, poisoned.sequence_number, 1)
    others = {p.id for p in keyed.puts} - {poisoned.id}
    assert sorted(handler.completed()) == sorted(others)  # nothing else lost, nothing twice
    expected = keyed.order_per_key()
    assert handler.per_key() == {k: v for k, v in expected.items() if k != poisoned.key}
    assert mapping.checkpoints() == keyed.last_per_shard()
    poison_calls = [c for c in handler.calls if c.shard_id == shard
                    and poisoned.sequence_number in {q for _, q, _ in c.records}]
    assert len(poison_calls) >= 3  # failed, bisected down to it, retried once
    first_failure, last_attempt = poison_calls[0].ended, poison_calls[-1].started
    assert any(c.shard_id == shard and c.lane != poison_lane and c.succeeded
               and first_failure <= c.started <= last_attempt for c in handler.calls)


def test_the_parallelization_factor_is_checked(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    for factor in (0, 11):
        with pytest.raises(ValueError, match=r"parallelization_factor must be 1\.\.10"):
            mapping_for(Recorder(), parallelization_factor=factor)


# ----------------------------------------------------------------- execution environments

def test_a_handler_path_runs_in_execution_environments_of_its_own(
    keyed: Keyed, keyed_mapping: Callable[..., LocalEventSourceMapping], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "environments.log"
    monkeypatch.setenv("ESM_TEST_ENVIRONMENT_LOG", str(log))
    keyed.put(keys=24, changes=10)
    mapping = keyed_mapping("tests.functional.esm_environment_handler.handler",
                            batch_size=10)

    assert mapping.drain(timeout_seconds=180) == 240

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(e for line in lines for e in line["event_ids"]) == sorted(
        f"{p.shard_id}:{p.sequence_number}" for p in keyed.puts)
    pids = {line["pid"] for line in lines}
    assert os.getpid() not in pids and len(pids) >= 2
    for pid in pids:  # each environment keeps its own module state across invocations
        assert sorted(line["call"] for line in lines if line["pid"] == pid) == list(
            range(1, sum(line["pid"] == pid for line in lines) + 1))
    assert len(pids) <= 4  # no more environments than concurrent batches (a shard each)
    assert len({line["request_id"] for line in lines}) == len(lines)


def test_a_handler_path_that_does_not_exist_is_refused(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping]
) -> None:
    with pytest.raises(ValueError,
                       match=re.escape("no module 'functions.nowhere' on the Python path")):
        mapping_for("functions.nowhere.lambda_handler")
    with pytest.raises(ValueError, match=re.escape("give it as 'package.module.function'")):
        mapping_for("lambda_handler")


def test_an_environment_that_outlives_its_timeout_is_replaced(
    stream: Stream, mapping_for: Callable[..., LocalEventSourceMapping], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "environments.log"
    monkeypatch.setenv("ESM_TEST_ENVIRONMENT_LOG", str(log))
    sequence_number, = stream.put(SHARD_1, "x")
    mapping = mapping_for("tests.functional.esm_environment_handler.slow_once",
                          function_timeout_seconds=3.0)
    try:
        assert mapping.drain(timeout_seconds=120) == 1
    finally:
        mapping.close()

    hung_pid = int(log.with_suffix(".hung").read_text())
    line, = (json.loads(text) for text in log.read_text().splitlines())
    assert line["event_ids"] == [f"{SHARD_1}:{sequence_number}"]
    assert line["pid"] != hung_pid  # the retry ran in a fresh environment
    with pytest.raises(ProcessLookupError):
        os.kill(hung_pid, 0)  # the hung one was stopped
    assert (mapping.counters.function_errors, mapping.counters.retries) == (1, 1)
