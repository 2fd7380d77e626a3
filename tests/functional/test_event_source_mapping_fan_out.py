"""The local Kinesis event source mapping reading through an enhanced fan-out consumer
(``consumer_arn``; template.yaml's ``KinesisEnhancedFanOut``) against the moto server's
SubscribeToShard: every record once and in order per key, checkpoints across a restart, an
idle shard woken by a pushed record rather than a poll, and the local stack's wiring from the
template.

"For Kinesis enhanced fan-out, Lambda uses an HTTP/2 connection to listen for records being
pushed from Kinesis" ("How Lambda processes records from Amazon Kinesis Data Streams", Lambda
Developer Guide)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local.cdc import STREAM_CONSUMER_NAME, consumer_mapping
from local.event_source_mapping import LocalEventSourceMapping
from local.stack.provision import ensure_stream_consumer
from tests.functional.source_helpers import create_stream, kinesis_client

# Longer than any wait below: a record that arrives in time was pushed, not polled.
IDLE_POLL_SECONDS = 60.0


@dataclass
class Stream:
    kinesis: Any
    name: str
    arn: str
    consumer_arn: str

    def put(self, key: str, *payloads: str) -> None:
        for payload in payloads:
            self.kinesis.put_record(StreamName=self.name, Data=payload.encode(),
                                    PartitionKey=key)


@dataclass
class Collected:
    """A handler that keeps what it is given, in order, and says when it has ``expected``."""

    expected: int = 0
    # (key, data, shard id:sequence number) of each record handed over
    records: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    complete: threading.Event = field(default_factory=threading.Event)

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self.lock:
            self.records += [(r["kinesis"]["partitionKey"],
                              base64.b64decode(r["kinesis"]["data"]).decode(),
                              r["eventID"]) for r in event["Records"]]
            if len(self.records) >= self.expected:
                self.complete.set()
        return {"batchItemFailures": []}

    def per_key(self) -> dict[str, list[str]]:
        ordered: dict[str, list[str]] = {}
        for key, data, _ in self.records:
            ordered.setdefault(key, []).append(data)
        return ordered


@pytest.fixture
def stream(moto_endpoint: str) -> Iterator[Stream]:
    kinesis = kinesis_client(moto_endpoint)
    name = create_stream(kinesis, shards=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    yield Stream(kinesis, name, arn, ensure_stream_consumer(kinesis, arn, "consumer"))
    kinesis.delete_stream(StreamName=name)


def running(mapping: LocalEventSourceMapping) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    worker = threading.Thread(target=mapping.run, args=(stop,), daemon=True)
    worker.start()
    return stop, worker


def stopped(mapping: LocalEventSourceMapping, stop: threading.Event,
            worker: threading.Thread) -> None:
    stop.set()
    worker.join(IDLE_POLL_SECONDS + 10)
    mapping.close()
    assert not worker.is_alive()


def test_every_record_arrives_once_in_order_per_key(stream: Stream, tmp_path: Path) -> None:
    keys = [f"key-{k}" for k in range(8)]
    for key in keys:
        stream.put(key, *(f"{key}/{n}" for n in range(10)))  # before the subscription
    handler = Collected(expected=len(keys) * 20)
    mapping = LocalEventSourceMapping(
        stream.kinesis, stream.name, handler, batch_size=7, parallelization_factor=2,
        state_dir=tmp_path, consumer_arn=stream.consumer_arn)
    stop, worker = running(mapping)
    try:
        for key in keys:
            stream.put(key, *(f"{key}/{n}" for n in range(10, 20)))  # while subscribed
        assert handler.complete.wait(30)
    finally:
        stopped(mapping, stop, worker)

    assert handler.per_key() == {key: [f"{key}/{n}" for n in range(20)] for key in keys}
    assert len({record for _, _, record in handler.records}) == len(keys) * 20
    assert mapping.counters.throttled_reads == 0


def test_a_restarted_mapping_goes_on_after_its_checkpoints(
    stream: Stream, tmp_path: Path
) -> None:
    stream.put("a", "a0", "a1")
    stream.put("b", "b0")
    first = Collected(expected=3)
    mapping = LocalEventSourceMapping(stream.kinesis, stream.name, first, state_dir=tmp_path,
                                      consumer_arn=stream.consumer_arn)
    stop, worker = running(mapping)
    try:
        assert first.complete.wait(30)
    finally:
        stopped(mapping, stop, worker)

    stream.put("a", "a2")
    stream.put("b", "b1")
    second = Collected(expected=2)
    # Subscribing again within 5 s of the first mapping's subscription is refused with
    # ResourceInUseException ("SubscribeToShard", Kinesis API Reference): the reader waits.
    restarted = LocalEventSourceMapping(stream.kinesis, stream.name, second,
                                        state_dir=tmp_path, consumer_arn=stream.consumer_arn)
    stop, worker = running(restarted)
    try:
        assert second.complete.wait(30)
    finally:
        stopped(restarted, stop, worker)
    assert second.per_key() == {"a": ["a2"], "b": ["b1"]}


def test_an_idle_shard_is_woken_by_a_pushed_record_not_a_poll(
    stream: Stream, tmp_path: Path
) -> None:
    handler = Collected(expected=1)
    mapping = LocalEventSourceMapping(
        stream.kinesis, stream.name, handler, state_dir=tmp_path,
        poll_interval_seconds=IDLE_POLL_SECONDS, consumer_arn=stream.consumer_arn)
    stop, worker = running(mapping)
    try:
        stream.put("k", "first")
        assert handler.complete.wait(30)
        handler.expected, handler.complete = 2, threading.Event()
        stream.put("k", "second")  # the pollers went idle after "first"
        assert handler.complete.wait(IDLE_POLL_SECONDS / 2)
    finally:
        stopped(mapping, stop, worker)
    assert handler.per_key() == {"k": ["first", "second"]}


def test_drain_waits_until_the_consumer_is_caught_up(stream: Stream, tmp_path: Path) -> None:
    handler = Collected()
    with LocalEventSourceMapping(stream.kinesis, stream.name, handler, state_dir=tmp_path,
                                 consumer_arn=stream.consumer_arn) as mapping:
        stream.put("k", *(f"r{n}" for n in range(5)))
        mapping.drain()
        assert handler.per_key() == {"k": [f"r{n}" for n in range(5)]}


def test_the_template_parameter_makes_the_local_consumer_read_through_fan_out(
    stream: Stream, tmp_path: Path
) -> None:
    fan_out = consumer_mapping(stream.kinesis, stream.name, tmp_path / "fan-out",
                               parameters={"KinesisEnhancedFanOut": "true"})
    polled = consumer_mapping(stream.kinesis, stream.name, tmp_path / "polled")
    try:
        registered = stream.kinesis.describe_stream_consumer(
            StreamARN=stream.arn, ConsumerName=STREAM_CONSUMER_NAME)["ConsumerDescription"]
        assert fan_out.consumer_arn == registered["ConsumerARN"]
        assert polled.consumer_arn is None
        # Registered once: a second mapping finds the consumer instead of adding a twin.
        again = consumer_mapping(stream.kinesis, stream.name, tmp_path / "again",
                                 parameters={"KinesisEnhancedFanOut": "true"})
        again.close()
        assert again.consumer_arn == fan_out.consumer_arn
        listed = stream.kinesis.list_stream_consumers(StreamARN=stream.arn)["Consumers"]
        assert sorted(c["ConsumerName"] for c in listed) == sorted(
            ["consumer", STREAM_CONSUMER_NAME])
    finally:
        fan_out.close()
        polled.close()
