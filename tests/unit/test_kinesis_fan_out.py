"""local.kinesis_fan_out: the event-stream encoding as botocore decodes it, and a subscription's
time rules on moto's own Kinesis objects with a test clock ("SubscribeToShard",
"SubscribeToShardEvent", Kinesis API Reference; "Amazon Kinesis Data Streams Quotas and
Limits")."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.eventstream import EventStream, EventStreamBuffer
from botocore.exceptions import ClientError
from botocore.parsers import EventStreamJSONParser
from botocore.session import get_session
from moto.kinesis.models import Consumer, Stream

from local.kinesis_fan_out import (
    CONSUMER_BYTES_PER_SECOND,
    HEARTBEAT_SECONDS,
    RESUBSCRIBE_SECONDS,
    SUBSCRIPTION_SECONDS,
    FanOutError,
    Subscriptions,
    encode_message,
    event_message,
    exception_message,
    subscribe,
)
from tests.manual_clock import ManualClock

ACCOUNT, REGION = "123456789012", "us-east-1"


class Raw:
    """What botocore's EventStream reads: the response body, in the chunks it came in."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def stream(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.chunks = []


def decoded(messages: list[bytes]) -> list[dict[str, Any]]:
    """The events botocore's Kinesis client makes of ``messages`` (after the initial
    response, which it reads first)."""
    operation: Any = get_session().get_service_model("kinesis").operation_model(
        "SubscribeToShard")
    shape = operation.output_shape.members["EventStream"]
    stream: Any = EventStream(Raw(messages), shape, EventStreamJSONParser(), "SubscribeToShard")
    assert stream.get_initial_response().headers[":event-type"] == "initial-response"
    return list(stream)


def test_a_message_round_trips_through_botocores_parser() -> None:
    message = encode_message({":message-type": "event", ":event-type": "SubscribeToShardEvent"},
                             b'{"a": 1}')
    buffer = EventStreamBuffer()
    buffer.add_data(message[:7])  # as chunks arrive: nothing until the whole message
    assert list(buffer) == []
    buffer.add_data(message[7:])
    parsed: Any
    [parsed] = list(buffer)
    assert parsed.headers == {":message-type": "event", ":event-type": "SubscribeToShardEvent"}
    assert parsed.payload == b'{"a": 1}'


def test_botocore_reads_records_from_an_event_and_raises_an_exception_event() -> None:
    body = {"Records": [{"SequenceNumber": "7", "ApproximateArrivalTimestamp": 1_700_000_000.5,
                         "Data": base64.b64encode(b"hello").decode(), "PartitionKey": "k"}],
            "ContinuationSequenceNumber": "7", "MillisBehindLatest": 0}
    messages = [event_message("initial-response", {}),
                event_message("SubscribeToShardEvent", body)]
    [event] = decoded(messages)
    record = event["SubscribeToShardEvent"]["Records"][0]
    assert record["Data"] == b"hello"
    assert record["ApproximateArrivalTimestamp"].timestamp() == 1_700_000_000.5
    assert event["SubscribeToShardEvent"]["ContinuationSequenceNumber"] == "7"
    with pytest.raises(ClientError) as raised:
        decoded([event_message("initial-response", {}),
                 exception_message("ResourceInUseException", "taken over")])
    assert raised.value.response["Error"] == {"Code": "ResourceInUseException",
                                              "Message": "taken over"}


def fixture_stream() -> tuple[Any, str, Any]:
    stream = Stream("s", 1, None, None, ACCOUNT, REGION)  # type: ignore[abstract]
    consumer = Consumer("c", ACCOUNT, REGION, stream.arn)
    stream.consumers.append(consumer)
    backends = {ACCOUNT: {REGION: SimpleNamespace(streams={"s": stream})}}
    return stream, consumer.consumer_arn, backends


def request(consumer_arn: str, **position: Any) -> dict[str, Any]:
    return {"ConsumerARN": consumer_arn, "ShardId": "shardId-000000000000",
            "StartingPosition": position or {"Type": "TRIM_HORIZON"}}


def bodies(messages: Iterator[bytes], count: int) -> list[dict[str, Any]]:
    """The next ``count`` messages' JSON payloads."""
    found = []
    for _ in range(count):
        buffer = EventStreamBuffer()
        buffer.add_data(next(messages))
        message: Any
        [message] = list(buffer)
        found.append({"type": message.headers.get(":event-type")
                      or message.headers[":exception-type"], **json.loads(message.payload)})
    return found


def test_a_subscription_lasts_5_minutes() -> None:
    assert SUBSCRIPTION_SECONDS == 300
    _, consumer, backends = fixture_stream()
    clock = ManualClock()
    messages = subscribe(Subscriptions(clock), backends, request(consumer)).events()
    first, empty = bodies(messages, 2)
    assert first["type"] == "initial-response"
    assert empty == {"type": "SubscribeToShardEvent", "Records": [],
                     "ContinuationSequenceNumber": "0", "MillisBehindLatest": 0}
    clock.now += SUBSCRIPTION_SECONDS
    assert list(messages) == []  # the stream ends; the client subscribes again


def test_an_idle_shard_gets_an_event_without_records_every_5_seconds() -> None:
    stream, consumer, backends = fixture_stream()
    stream.shards["shardId-000000000000"].put_record("k", base64.b64encode(b"a").decode(), None)
    clock = ManualClock()
    messages = subscribe(Subscriptions(clock), backends, request(consumer)).events()
    _, first = bodies(messages, 2)
    assert len(first["Records"]) == 1
    clock.now += HEARTBEAT_SECONDS
    [beat] = bodies(messages, 1)
    assert beat["Records"] == []
    assert beat["ContinuationSequenceNumber"] == "1"
    assert beat["MillisBehindLatest"] == 0


def test_a_second_call_within_5_seconds_is_refused_and_a_later_one_takes_over() -> None:
    _, consumer, backends = fixture_stream()
    clock = ManualClock()
    hub = Subscriptions(clock)
    messages = subscribe(hub, backends, request(consumer)).events()
    bodies(messages, 2)
    clock.now += RESUBSCRIBE_SECONDS - 0.01
    with pytest.raises(FanOutError) as raised:
        subscribe(hub, backends, request(consumer))
    assert raised.value.code == "ResourceInUseException"
    assert raised.value.message == (
        f"Another active subscription exists for this consumer: {ACCOUNT}:s:"
        "shardId-000000000000:c")
    clock.now += 0.01
    subscribe(hub, backends, request(consumer))
    [taken] = bodies(messages, 1)
    assert taken["type"] == "ResourceInUseException"
    assert list(messages) == []


def test_events_are_paced_to_the_consumers_2_mib_a_second() -> None:
    stream, consumer, backends = fixture_stream()
    shard = stream.shards["shardId-000000000000"]
    size = 700 * 1024
    for n in range(3):
        shard.put_record(f"k{n}", base64.b64encode(b"x" * size).decode(), None)
    clock = ManualClock()
    messages = subscribe(Subscriptions(clock), backends, request(consumer)).events()
    _, first = bodies(messages, 2)
    assert [r["SequenceNumber"] for r in first["Records"]] == ["1", "2"]
    assert first["MillisBehindLatest"] >= 1  # the third waits
    assert 2 * (size + 2) <= CONSUMER_BYTES_PER_SECOND < 3 * (size + 2)
    clock.now += 1.0  # the next second: the third record
    [second] = bodies(messages, 1)
    assert [r["SequenceNumber"] for r in second["Records"]] == ["3"]
    assert second["MillisBehindLatest"] == 0


@pytest.mark.parametrize("position", [{"Type": "SOMEWHERE"}, {"Type": "AFTER_SEQUENCE_NUMBER"},
                                      {"Type": "AT_TIMESTAMP"}])
def test_a_bad_starting_position_is_an_invalid_argument(position: dict[str, Any]) -> None:
    _, consumer, backends = fixture_stream()
    with pytest.raises(FanOutError) as raised:
        subscribe(Subscriptions(ManualClock()), backends, request(consumer, **position))
    assert raised.value.code == "InvalidArgumentException"
