"""SubscribeToShard on the moto server (local.kinesis_fan_out), through boto3's
``subscribe_to_shard`` as a consumer calls it.

Kinesis API Reference: "SubscribeToShard", "SubscribeToShardEvent", "StartingPosition",
"ChildShard"; "Amazon Kinesis Data Streams Quotas and Limits" (a consumer's 2 MiB per second
per shard is its own, apart from GetRecords' 5 calls a second).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.functional.source_helpers import create_stream, kinesis_client


@pytest.fixture
def kinesis(moto_endpoint: str) -> Any:
    return kinesis_client(moto_endpoint, max_attempts=1)  # no retries of its own


@pytest.fixture
def stream(kinesis: Any) -> Iterator[str]:
    name = create_stream(kinesis, shards=1)
    yield name
    kinesis.delete_stream(StreamName=name)


def register(kinesis: Any, stream: str) -> str:
    stream_arn = kinesis.describe_stream_summary(
        StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    return str(kinesis.register_stream_consumer(
        StreamARN=stream_arn, ConsumerName=f"c-{uuid.uuid4().hex[:8]}")["Consumer"]["ConsumerARN"])


def put(kinesis: Any, stream: str, *data: bytes) -> list[str]:
    """Put records of one key (one call); their sequence numbers."""
    response = kinesis.put_records(StreamName=stream, Records=[
        {"Data": d, "PartitionKey": "k"} for d in data])
    return [r["SequenceNumber"] for r in response["Records"]]


def shard_of(kinesis: Any, stream: str) -> str:
    return str(kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"])


def subscribe(kinesis: Any, consumer: str, shard: str, **position: Any) -> Any:
    response = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId=shard,
                                          StartingPosition=position)
    return response["EventStream"]


def next_event(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    return dict(next(events)["SubscribeToShardEvent"])


def data_until(events: Iterator[dict[str, Any]], count: int) -> list[bytes]:
    received: list[bytes] = []
    while len(received) < count:
        received += [r["Data"] for r in next_event(events)["Records"]]
    return received


def test_records_put_before_and_after_subscribing_arrive_once_in_order(
        kinesis: Any, stream: str) -> None:
    before = put(kinesis, stream, b"r0", b"r1", b"r2")
    shard = shard_of(kinesis, stream)
    events_stream = subscribe(kinesis, register(kinesis, stream), shard, Type="TRIM_HORIZON")
    events = iter(events_stream)
    first = next_event(events)
    assert [r["Data"] for r in first["Records"]] == [b"r0", b"r1", b"r2"]
    assert [r["SequenceNumber"] for r in first["Records"]] == before
    assert first["ContinuationSequenceNumber"] == before[-1]
    assert first["MillisBehindLatest"] == 0
    record = first["Records"][0]
    assert record["PartitionKey"] == "k"
    assert isinstance(record["ApproximateArrivalTimestamp"], datetime)
    put(kinesis, stream, b"r3", b"r4")
    assert data_until(events, 2) == [b"r3", b"r4"]
    events_stream.close()


@pytest.mark.parametrize(("position", "expected"), [
    ("TRIM_HORIZON", [b"r0", b"r1", b"r2", b"r3"]),
    ("AT_SEQUENCE_NUMBER", [b"r2", b"r3"]),
    ("AFTER_SEQUENCE_NUMBER", [b"r3"]),
    ("AT_TIMESTAMP", [b"r2", b"r3"]),
    ("LATEST", []),
])
def test_each_starting_position_starts_where_the_reference_says(
        kinesis: Any, stream: str, position: str, expected: list[bytes]) -> None:
    sequence = put(kinesis, stream, b"r0", b"r1")
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    sequence += put(kinesis, stream, b"r2", b"r3")
    arguments: dict[str, Any] = {"Type": position}
    if position.endswith("SEQUENCE_NUMBER"):
        arguments["SequenceNumber"] = sequence[2]
    if position == "AT_TIMESTAMP":
        arguments["Timestamp"] = between
    events_stream = subscribe(kinesis, register(kinesis, stream), shard_of(kinesis, stream),
                              **arguments)
    events = iter(events_stream)
    first = next_event(events)
    # the first event comes at once, with what there is from the position (LATEST: nothing)
    assert [r["Data"] for r in first["Records"]] == expected
    assert first["ContinuationSequenceNumber"] == sequence[-1]
    put(kinesis, stream, b"r4")
    assert data_until(events, 1) == [b"r4"]
    events_stream.close()


def test_a_record_put_while_subscribed_arrives_in_the_next_event(
        kinesis: Any, stream: str) -> None:
    events_stream = subscribe(kinesis, register(kinesis, stream), shard_of(kinesis, stream),
                              Type="LATEST")
    events = iter(events_stream)
    idle = next_event(events)
    assert idle["Records"] == []
    assert idle["ContinuationSequenceNumber"] == "0"
    put(kinesis, stream, b"now")
    # the next event carries it: pushed when stored, not at the next heartbeat (5 s)
    arrived = next_event(events)
    assert [r["Data"] for r in arrived["Records"]] == [b"now"]
    events_stream.close()


def test_subscribing_again_within_5_seconds_is_resource_in_use(
        kinesis: Any, stream: str) -> None:
    consumer, shard = register(kinesis, stream), shard_of(kinesis, stream)
    events_stream = subscribe(kinesis, consumer, shard, Type="LATEST")
    with pytest.raises(ClientError) as raised:
        subscribe(kinesis, consumer, shard, Type="LATEST")
    error = raised.value.response["Error"]
    assert error["Code"] == "ResourceInUseException"
    assert error["Message"].startswith("Another active subscription exists for this consumer: ")
    name = consumer.rsplit("/", 1)[-1].partition(":")[0]  # ARN: .../consumer/<name>:<created>
    assert error["Message"].endswith(f":{stream}:{shard}:{name}")
    events_stream.close()


def test_an_unknown_consumer_or_shard_is_resource_not_found(kinesis: Any, stream: str) -> None:
    consumer = register(kinesis, stream)
    with pytest.raises(ClientError) as raised:
        subscribe(kinesis, consumer + "-gone", shard_of(kinesis, stream), Type="LATEST")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "not found" in raised.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as raised:
        subscribe(kinesis, consumer, "shardId-000000000099", Type="LATEST")
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert "shardId-000000000099" in raised.value.response["Error"]["Message"]


def test_deregistering_the_consumer_ends_its_subscription_with_resource_not_found(
        kinesis: Any, stream: str) -> None:
    consumer = register(kinesis, stream)
    events_stream = subscribe(kinesis, consumer, shard_of(kinesis, stream), Type="LATEST")
    events = iter(events_stream)
    next_event(events)
    kinesis.deregister_stream_consumer(ConsumerARN=consumer)
    with pytest.raises(ClientError) as raised:
        next_event(events)
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert consumer in raised.value.response["Error"]["Message"]


def test_a_starting_position_without_its_sequence_number_is_invalid(
        kinesis: Any, stream: str) -> None:
    with pytest.raises(ClientError) as raised:
        subscribe(kinesis, register(kinesis, stream), shard_of(kinesis, stream),
                  Type="AT_SEQUENCE_NUMBER")
    assert raised.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert "SequenceNumber" in raised.value.response["Error"]["Message"]


def test_a_split_shard_ends_its_subscription_with_its_child_shards(
        kinesis: Any, stream: str) -> None:
    shard = shard_of(kinesis, stream)
    put(kinesis, stream, b"r0")
    events_stream = subscribe(kinesis, register(kinesis, stream), shard, Type="TRIM_HORIZON")
    events = iter(events_stream)
    assert [r["Data"] for r in next_event(events)["Records"]] == [b"r0"]
    kinesis.split_shard(StreamName=stream, ShardToSplit=shard,
                        NewStartingHashKey=str(2**127))
    last = next_event(events)
    while not last.get("ChildShards"):
        last = next_event(events)
    assert "ContinuationSequenceNumber" not in last
    assert sorted(last["ChildShards"], key=lambda c: c["ShardId"]) == [
        {"ShardId": "shardId-000000000001", "ParentShards": [shard],
         "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**127 - 1)}},
        {"ShardId": "shardId-000000000002", "ParentShards": [shard],
         "HashKeyRange": {"StartingHashKey": str(2**127), "EndingHashKey": str(2**128 - 1)}},
    ]
    assert list(events) == []  # the stream ends


def test_a_merged_shard_sends_its_last_records_then_the_child_of_both_parents(
        kinesis: Any) -> None:
    stream = create_stream(kinesis, shards=2)
    try:
        first, second = (s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"])
        consumer = register(kinesis, stream)
        events_stream = subscribe(kinesis, consumer, first, Type="LATEST")
        events = iter(events_stream)
        assert next_event(events)["Records"] == []
        kinesis.put_record(StreamName=stream, Data=b"last", PartitionKey="k",
                           ExplicitHashKey="0")
        kinesis.merge_shards(StreamName=stream, ShardToMerge=first,
                             AdjacentShardToMerge=second)
        events_list: list[dict[str, Any]] = []
        while not (events_list and events_list[-1].get("ChildShards")):
            events_list.append(next_event(events))
        assert [r["Data"] for e in events_list for r in e["Records"]] == [b"last"]
        [child] = events_list[-1]["ChildShards"]
        assert child["ParentShards"] == [first, second]
        assert child["HashKeyRange"] == {"StartingHashKey": "0",
                                         "EndingHashKey": str(2**128 - 1)}
        assert list(events) == []
    finally:
        kinesis.delete_stream(StreamName=stream)


def test_a_subscription_leaves_the_shards_getrecords_budget_untouched(
        kinesis: Any, stream: str) -> None:
    put(kinesis, stream, *[b"x" * 1000 for _ in range(50)])
    shard = shard_of(kinesis, stream)
    events_stream = subscribe(kinesis, register(kinesis, stream), shard, Type="TRIM_HORIZON")
    assert len(data_until(iter(events_stream), 50)) == 50
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    # 5 GetRecords a second, all served although the subscription read the shard meanwhile
    for _ in range(5):
        assert len(kinesis.get_records(ShardIterator=iterator)["Records"]) == 50
    events_stream.close()
