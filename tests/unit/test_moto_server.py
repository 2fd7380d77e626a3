"""local.moto_server: moto's Kinesis answers unchanged, in time that does not grow with the
stream ("Amazon Kinesis Data Streams Quotas and Limits": a shard's throughput does not depend
on what it retains), and the per-shard throughput limits of that page enforced."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws
from moto.core.exceptions import JsonRESTError
from moto.kinesis.models import KinesisBackend, Shard
from moto.sqs.models import sqs_backends

from local.moto_server import ShardLimits, patch, record_size
from tests.manual_clock import ManualClock


def filled_shard(count: int) -> Shard:
    shard = Shard(0, starting_hash=0, ending_hash=2**128 - 1)
    for n in range(count):
        shard.put_record(f"key-{n}", f"data-{n}", "1")
    return shard


def test_reads_give_what_moto_gives() -> None:
    # Given a shard filled by moto's own code, read at many positions with moto's walk
    unpatched = Shard.get_records
    shard = filled_shard(50)
    expected = {(after, limit): unpatched(shard, str(after), limit)
                for after in (0, 1, 17, 49, 50, 60) for limit in (None, 1, 10, 100)}
    # When the patched reader reads at the same positions
    patch()
    got = {key: shard.get_records(str(key[0]), key[1]) for key in expected}
    # Then every answer is the same records, position and lag
    for key, (records, position, behind) in expected.items():
        assert [r.sequence_number for r in got[key][0]] == [r.sequence_number for r in records]
        assert got[key][1:] == (position, behind), key


def test_a_shard_that_is_not_consecutive_falls_back_to_the_walk() -> None:
    patch()
    shard = filled_shard(10)
    del shard.records[5]
    records, position, _ = shard.get_records("3", 3)
    assert [r.sequence_number for r in records] == [4, 6, 7]
    assert position == 7


def test_a_shard_takes_1000_records_a_second_then_refuses_until_the_window_closes() -> None:
    # "Amazon Kinesis Data Streams Quotas and Limits": 1,000 records per second per shard
    clock = ManualClock(100.0)
    limits = ShardLimits(clock)
    assert all(limits.admit_write(10) for _ in range(1_000))
    clock.now += 0.999
    assert not limits.admit_write(10)
    clock.now += 0.001
    assert limits.admit_write(10)


def test_a_shard_takes_1_mib_a_second_and_a_smaller_record_may_still_fit() -> None:
    clock = ManualClock(100.0)
    limits = ShardLimits(clock)
    assert limits.admit_write(1024 * 1024 - 100)
    assert not limits.admit_write(101)
    assert limits.admit_write(100)
    assert not limits.admit_write(1)
    clock.now += 1.0
    assert limits.admit_write(1024 * 1024)


def test_a_shard_serves_5_reads_a_second() -> None:
    clock = ManualClock(100.0)
    limits = ShardLimits(clock)
    assert [limits.admit_read() for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.5
    assert not limits.admit_read()
    clock.now += 0.5
    assert limits.admit_read()


def test_a_read_of_10_mib_holds_the_shard_for_the_next_5_seconds() -> None:
    # GetRecords: "If a call returns 10 MiB of data, subsequent calls made within the next 5
    # seconds throw ProvisionedThroughputExceededException"
    clock = ManualClock(100.0)
    limits = ShardLimits(clock)
    assert limits.admit_read()
    limits.charge_read(10 * 1024 * 1024)
    for _ in range(9):
        clock.now += 0.5
        assert not limits.admit_read(), clock.now
    clock.now += 0.5
    assert limits.admit_read()


def test_small_reads_are_limited_by_calls_not_bytes() -> None:
    clock = ManualClock(100.0)
    limits = ShardLimits(clock)
    for _ in range(5):
        assert limits.admit_read()
        limits.charge_read(400 * 1024)
    clock.now += 1.0
    assert limits.admit_read()


def test_record_size_counts_decoded_data_and_the_key_in_bytes() -> None:
    for raw in (b"", b"a", b"ab", b"abc", b"abcd" * 100):
        assert record_size(base64.b64encode(raw).decode(), "clé") == len(raw) + 4


def test_get_records_returns_at_most_10_mib_and_the_shard_then_rests() -> None:
    # Quotas and Limits: "GetRecords can retrieve up to 10 MiB of data per call from a single
    # shard"; GetRecords: "If a call returns 10 MiB of data, subsequent calls made within the
    # next 5 seconds throw ProvisionedThroughputExceededException"
    patch()
    backend = KinesisBackend("us-east-1", "123456789012")
    stream = backend.create_stream("s", shard_count=1)
    shard = next(iter(stream.shards.values()))
    mib = base64.b64encode(b"m" * (1024 * 1024 - 1)).decode()
    for _ in range(12):
        shard.put_record("k", mib, "")  # moto's shard: no write limit
    iterator = backend.get_shard_iterator(None, "s", shard.shard_id, "TRIM_HORIZON", 0,
                                          datetime.now(UTC))
    after, records, _ = backend.get_records(None, iterator, None)
    assert [r.sequence_number for r in records] == list(range(1, 11))
    with pytest.raises(JsonRESTError) as refused:
        backend.get_records(None, after, None)
    assert refused.value.error_type == "ProvisionedThroughputExceededException"
    assert refused.value.message == f"Rate exceeded for Shard - 123456789012/s/{shard.shard_id}"


def test_a_received_message_is_kept_to_its_queues_retention_period_and_not_after() -> None:
    """The patched retention check reads the queue's own MessageRetentionPeriod and compares as
    moto does: a message older than the period is not delivered (nor kept: "Amazon SQS message
    lifecycle", the retention period), a younger one is."""
    patch()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="retained",
                                     Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody="young")
        sqs.send_message(QueueUrl=queue_url, MessageBody="old")
        backend = sqs_backends["123456789012"]["us-east-1"]
        [young, old] = backend.get_queue("retained")._messages
        now = int(time.time() * 1000)
        young.sent_timestamp = now - 59_000  # type: ignore[assignment]  # moto: None until sent
        old.sent_timestamp = now - 61_000  # type: ignore[assignment]

        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)

        assert [m["Body"] for m in received["Messages"]] == ["young"]


def test_a_registered_consumers_arn_ends_with_its_creation_time_as_on_kinesis() -> None:
    """ConsumerARN's pattern (Kinesis API Reference, "ConsumerDescription") ends
    ``consumer/<name>:[0-9]+``, the registration's epoch seconds; moto leaves them out. The
    ARN it returns is the one the consumer is found by."""
    patch()
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName="fanned", ShardCount=1)
        stream_arn = kinesis.describe_stream_summary(
            StreamName="fanned")["StreamDescriptionSummary"]["StreamARN"]
        before = int(time.time())

        consumer = kinesis.register_stream_consumer(StreamARN=stream_arn,
                                                    ConsumerName="reader")["Consumer"]

        prefix, _, created = consumer["ConsumerARN"].rpartition(":")
        assert prefix == f"{stream_arn}/consumer/reader"
        assert before - 1 <= int(created) <= time.time() + 1
        described = kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])
        assert described["ConsumerDescription"]["ConsumerName"] == "reader"
