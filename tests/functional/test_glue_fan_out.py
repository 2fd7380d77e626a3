"""The local Glue path through an enhanced fan-out consumer (--FANOUT_CONSUMER_ARN, the job's
``fanoutConsumerARN``: "Using enhanced fan-out in Kinesis streaming jobs", AWS Glue Developer
Guide): every shard read with SubscribeToShard against the moto server's fan-out
(``local.kinesis_fan_out``, which enforces the 5-second rule between subscriptions of a consumer
and shard), every change applied once and in order per key, and a restart goes on after its
checkpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from glue_job.kinesis_source import AppliedShardPositions, LocalKinesisSource
from glue_job.local_runner import fan_out_consumer_arn, run
from local.cdc import STREAM_CONSUMER_NAME
from local.record_builders import DmsStream, activity, customer, ticket
from local.stack.provision import ensure_stream_consumer
from shared.glue.arguments import GlueJobSettings, StreamSettings
from shared.glue.job import GlueBatchJob
from shared.pii import tokenizer
from shared.settings import hmac_key_from_secret
from tests.functional.glue_helpers import (  # noqa: F401 (fixtures)
    HMAC_KEY,
    GlueTarget,
    endpoints_fixture,
    glue_target,
    put_records,
    spark_fixture,
)
from tests.functional.source_helpers import create_stream, kinesis_client

# PySpark 3.5 calls pandas APIs that pandas 2 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyspark")
TOKEN = tokenizer(hmac_key_from_secret(HMAC_KEY))  # the job's email rule (tokenize)


@dataclass
class FanOutStream:
    kinesis: Any
    name: str
    arn: str
    consumer_arn: str

    def shards_with_records(self) -> int:
        shards = self.kinesis.list_shards(StreamName=self.name)["Shards"]
        return sum(1 for s in shards
                   if self.kinesis.get_records(ShardIterator=self.kinesis.get_shard_iterator(
                       StreamName=self.name, ShardId=s["ShardId"],
                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"])["Records"])


@pytest.fixture
def stream(endpoints: None, moto_endpoint: str) -> Iterator[FanOutStream]:
    kinesis = kinesis_client(moto_endpoint)
    name = create_stream(kinesis, shards=2)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    yield FanOutStream(kinesis, name, arn, ensure_stream_consumer(kinesis, arn, "glue-job"))
    kinesis.delete_stream(StreamName=name)


@pytest.fixture
def target(endpoints: None, moto_endpoint: str, redshift_api: str, redshift_data: Any,
           warehouse_db: str) -> GlueTarget:
    return glue_target(moto_endpoint, redshift_api, redshift_data, warehouse_db)


def keyed_puts(stream: FanOutStream, keys: int, versions: int) -> list[tuple[str, str]]:
    """``versions`` records per key, key after key round after round: (key, data) in put
    order."""
    put = []
    for version in range(versions):
        for key in range(keys):
            data = f"k{key}-v{version}"
            stream.kinesis.put_record(StreamName=stream.name, Data=data.encode(),
                                      PartitionKey=f"k{key}")
            put.append((f"k{key}", data))
    return put


def test_the_source_reads_every_shard_through_the_consumer_once_and_in_order_per_key(
        stream: FanOutStream) -> None:
    put = keyed_puts(stream, keys=8, versions=5)
    assert stream.shards_with_records() == 2
    settings = StreamSettings(stream.arn, max_fetch_records_per_shard=7,
                              fanout_consumer_arn=stream.consumer_arn)
    positions: dict[str, str] = {}
    read: list[dict[str, Any]] = []
    batches: list[float] = []
    with LocalKinesisSource(stream.kinesis, settings) as source:
        since = time.monotonic()
        while True:
            started = time.monotonic()
            fetched = source.fetch(positions, since)
            batches.append(time.monotonic() - started)
            assert fetched.caught_up
            if not fetched.records:
                break
            assert max(sum(1 for r in fetched.records if r["ShardId"] == shard)
                       for shard in {r["ShardId"] for r in fetched.records}) <= 7
            read += fetched.records
            positions = fetched.positions

    positions_read = [(r["ShardId"], r["SequenceNumber"]) for r in read]
    assert len(positions_read) == len(set(positions_read)) == len(put)  # each once
    per_key: dict[str, list[str]] = {}
    for record in read:
        per_key.setdefault(record["PartitionKey"], []).append(record["Data"].decode())
    assert per_key == {key: [d for k, d in put if k == key] for key, _ in put}
    # The subscriptions are kept from one micro-batch to the next: subscribing anew each time
    # would wait out the 5-second rule (ResourceInUseException) before each one.
    assert len(batches) >= 4 and sum(batches[1:]) < 5.0, batches


def purchases(stream: DmsStream, start: int, count: int) -> None:
    for i in range(start, start + count):
        stream.add("customer", "insert", customer(i, f"Buyer {i}", f"buyer{i}@example.com"))
        stream.add("ticket", "insert", ticket(i, 1))
        stream.add("ticket_activity", "insert", activity(i, i))


def new_emails(stream: DmsStream, customers: range, version: int) -> None:
    for i in customers:
        stream.add("customer", "update",
                   customer(i, f"Buyer {i}", f"buyer{i}.v{version}@example.com"))


def test_the_runner_applies_every_change_through_the_consumer_and_resumes_after_its_checkpoint(
    spark: SparkSession, target: GlueTarget, stream: FanOutStream, tmp_path: Path,
    warehouse_sql: Any,
) -> None:
    args = {**target.args, "STREAM_ARN": stream.arn, "MAX_FETCH_RECORDS_PER_SHARD": "5",
            "FANOUT_CONSUMER_ARN": stream.consumer_arn}
    settings = GlueJobSettings.from_mapping(args)
    job = GlueBatchJob(spark, settings)
    checkpoints = AppliedShardPositions(tmp_path)
    changes = DmsStream()
    purchases(changes, 1, 6)
    for version in (1, 2, 3):  # each customer's email three times, in order
        new_emails(changes, range(1, 7), version)
    put_records(stream.kinesis, stream.arn, changes.take())
    assert stream.shards_with_records() == 2

    with LocalKinesisSource(stream.kinesis, settings.stream) as source:
        first = run(job, source, checkpoints, once=True)
    assert sum(o.records_in for o in first) == 6 * 3 + 6 * 3  # every change once
    assert len(first) >= 2 and all(o.failure is None for o in first)
    emails = warehouse_sql("SELECT customer_id, email FROM cdc_replica.customer ORDER BY 1")
    # the newest email of each customer won: its changes were applied in order
    assert emails == [{"customer_id": i, "email": TOKEN(f"buyer{i}.v3@example.com")}
                      for i in range(1, 7)]
    saved = json.loads((tmp_path / "kinesis-checkpoint.json").read_text())
    assert saved["next_batch_id"] == len(first) and len(saved["positions"]) == 2

    # A restarted runner (new subscriptions, within 5 seconds of the last ones: the reader
    # waits out ResourceInUseException) reads only what came after its checkpoint.
    purchases(changes, 7, 2)
    new_emails(changes, range(1, 3), 4)
    put_records(stream.kinesis, stream.arn, changes.take())
    with LocalKinesisSource(stream.kinesis, settings.stream) as source:
        second = run(job, source, checkpoints, once=True)
    assert sum(o.records_in for o in second) == 2 * 3 + 2
    assert [r["ticket_id"] for r in warehouse_sql(
        "SELECT ticket_id FROM public.sport_event_activity ORDER BY 1")] == list(range(1, 9))
    assert warehouse_sql("SELECT customer_id, email FROM cdc_replica.customer "
                         "WHERE customer_id <= 2 ORDER BY 1") == [
        {"customer_id": i, "email": TOKEN(f"buyer{i}.v4@example.com")} for i in (1, 2)]


def test_the_template_parameter_gives_the_local_job_the_stream_s_consumer(
        stream: FanOutStream) -> None:
    """--FANOUT_CONSUMER_ARN as template.yaml's job has it: empty by default; with
    KinesisEnhancedFanOut=true the ARN of the stream's consumer, registered once."""
    assert fan_out_consumer_arn(stream.kinesis, stream.arn) == ""
    assert fan_out_consumer_arn(stream.kinesis, stream.arn,
                                {"KinesisEnhancedFanOut": "false"}) == ""
    registered = fan_out_consumer_arn(stream.kinesis, stream.arn,
                                      {"KinesisEnhancedFanOut": "true"})
    assert registered.startswith(f"{stream.arn}/consumer/{STREAM_CONSUMER_NAME}")
    assert fan_out_consumer_arn(stream.kinesis, stream.arn,
                                {"KinesisEnhancedFanOut": "true"}) == registered
    consumers = stream.kinesis.list_stream_consumers(StreamARN=stream.arn)["Consumers"]
    assert sorted(c["ConsumerName"] for c in consumers) == sorted(["glue-job",
                                                                   STREAM_CONSUMER_NAME])
    assert StreamSettings.from_mapping({"STREAM_ARN": stream.arn,
                                        "FANOUT_CONSUMER_ARN": registered}).fanout_consumer_arn
