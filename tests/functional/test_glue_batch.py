"""The Glue batch function (``shared.glue``) on local Spark (``local[2]``) against moto
and the Redshift Data API stand-in, and the local runner's Kinesis reader and checkpoint."""

from __future__ import annotations

import json
import runpy
import sys
import types
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from glue_job.kinesis_source import KINESIS_SCHEMA, AppliedShardPositions, LocalKinesisSource
from glue_job.local_runner import run
from local.ports import free_port
from local.record_builders import DmsStream, activity, customer, sport_event, ticket
from shared.glue.arguments import (
    GlueJobSettings,
    StreamSettings,
    for_each_batch_options,
    kinesis_source_options,
    parse_job_arguments,
)
from shared.glue.job import BatchFailed, GlueBatchJob
from shared.glue.steps import decode_batch, newest_changes, summarize
from shared.records import StreamRecord
from shared.settings import SettingsError
from shared.staging import row_json
from shared.transform import Transformer
from tests.functional.glue_helpers import (  # noqa: F401 (fixtures)
    HMAC_KEY,
    STREAM_ARN,
    GlueTarget,
    batch_frame,
    endpoints_fixture,
    glue_target,
    put_records,
    record_bytes,
    spark_fixture,
)
from tests.stack_helpers import REGION

# PySpark 3.5 calls pandas APIs that pandas 2 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyspark")

@pytest.fixture
def target(endpoints: None, moto_endpoint: str, redshift_api: str, redshift_data: Any,
           warehouse_db: str) -> GlueTarget:
    return glue_target(moto_endpoint, redshift_api, redshift_data, warehouse_db)


@pytest.fixture
def make_job(spark: SparkSession) -> Iterator[Callable[..., GlueBatchJob]]:
    def make(args: dict[str, str]) -> GlueBatchJob:
        return GlueBatchJob.from_arguments(args, spark)

    yield make


def purchases(stream: DmsStream, start: int, count: int) -> None:
    for i in range(start, start + count):
        stream.add("customer", "insert", customer(i, f"Buyer {i}", f"Buyer{i}@Example.com"))
        stream.add("ticket", "insert", ticket(i, 1))
        stream.add("ticket_activity", "insert", activity(i, i))


# --- job parameters ---------------------------------------------------------------------------

def test_job_arguments_as_glue_passes_them() -> None:
    argv = ["cdc_streaming_job.py", "--JOB_NAME", "stack-cdc-streaming", "--STREAM_ARN",
            STREAM_ARN, "--REDSHIFT_CLUSTER_IDENTIFIER", "", "--WINDOW_SIZE", "60 seconds",
            "--MAX_FETCH_RECORDS_PER_SHARD=500", "--REDSHIFT_DB_USER", "--STARTING_POSITION",
            "LATEST", "--CHECKPOINT_LOCATION", "s3://assets/checkpoint/job/"]
    args = parse_job_arguments(argv)
    assert args["REDSHIFT_CLUSTER_IDENTIFIER"] == "" and args["REDSHIFT_DB_USER"] == ""
    stream = StreamSettings.from_mapping(args)
    assert stream.stream_name == "cdc-stream"
    assert kinesis_source_options(stream) == {
        "typeOfData": "kinesis", "streamARN": STREAM_ARN, "startingPosition": "latest",
        "maxFetchRecordsPerShard": "500", "inferSchema": "false"}
    assert for_each_batch_options(stream) == {
        "windowSize": "60 seconds", "checkpointLocation": "s3://assets/checkpoint/job/"}
    with pytest.raises(SettingsError, match=r"STARTING_POSITION.*WINDOW_SIZE"):
        StreamSettings.from_mapping({"STREAM_ARN": STREAM_ARN, "STARTING_POSITION": "AT_TIMESTAMP",
                                     "WINDOW_SIZE": "soon"})


def test_the_glue_path_requires_a_staging_bucket(spark: SparkSession, target: GlueTarget) -> None:
    with pytest.raises(SettingsError, match="STAGING_BUCKET"):
        GlueBatchJob.from_arguments({**target.args, "STAGING_BUCKET": ""}, spark)


class FakeGlueContext:
    """What the job script uses of ``awsglue.context.GlueContext``, on local Spark: the
    Kinesis source yields one batch, ``forEachBatch`` calls the batch function once."""

    calls: ClassVar[dict[str, Any]] = {}
    batch: ClassVar[DataFrame | None] = None

    def __init__(self, spark_context: Any) -> None:
        self.spark_session = SparkSession.builder.getOrCreate()
        self.create_data_frame = self

    def from_options(self, connection_type: str, connection_options: dict[str, str]) -> Any:
        self.calls["source"] = (connection_type, connection_options)
        return self.batch

    def forEachBatch(self, frame: DataFrame, batch_function: Any,
                     options: dict[str, str]) -> None:
        self.calls["forEachBatch"] = options
        batch_function(frame, 0)


def test_the_job_script_wires_the_glue_source_to_the_batch_function(
    spark: SparkSession, target: GlueTarget, warehouse_sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = DmsStream()
    purchases(stream, 1, 2)
    FakeGlueContext.batch = batch_frame(spark, stream.take())
    context_module = types.ModuleType("awsglue.context")
    context_module.GlueContext = FakeGlueContext  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "awsglue", types.ModuleType("awsglue"))
    monkeypatch.setitem(sys.modules, "awsglue.context", context_module)
    argv = ["cdc_streaming_job.py", "--JOB_NAME", "stack-cdc-streaming", "--JOB_RUN_ID", "jr_1"]
    for name, value in target.args.items():
        argv += [f"--{name}", value]
    monkeypatch.setattr(sys, "argv", argv)

    runpy.run_path(str(Path(__file__).parents[2] / "glue_job/cdc_streaming_job.py"))

    assert FakeGlueContext.calls["source"] == ("kinesis", {
        "typeOfData": "kinesis", "streamARN": STREAM_ARN, "startingPosition": "trim_horizon",
        "maxFetchRecordsPerShard": "10000", "inferSchema": "false"})
    assert FakeGlueContext.calls["forEachBatch"] == {
        "windowSize": "1 seconds", "checkpointLocation": "s3://assets/checkpoint/"}
    assert [r["ticket_id"] for r in warehouse_sql(
        "SELECT ticket_id FROM public.sport_event_activity ORDER BY 1")] == [1, 2]


# --- the distributed core equals the Lambda core -----------------------------------------------

def tricky_records() -> list[StreamRecord]:
    """Several changes per key, order-key ties, a primary-key change, deletes, poison."""
    stream = DmsStream()
    stream.add("customer", "load", customer(1, "Loaded"))
    stream.add("customer", "update", customer(1, "Newer", "Teresa@Example.COM "))
    stream.add("customer", "update", customer(1, "Newest", phone="+1 (786) 503-2802 x7"))
    tie = stream.message("customer", "update", customer(2, "First of a tie"))
    stream.add_raw(tie)
    tie["data"] = customer(2, "Second of a tie")
    stream.add_raw(tie)  # same order key, later in the stream: wins
    stream.add("ticket_activity", "insert", activity(10, 1))
    stream.add("ticket_activity", "update", activity(11, 1),
               before={"ticket_id": 10})  # primary-key change: tombstone for 10
    stream.add("ticket", "insert", ticket(5, 1, ticket_price="12.345"))
    stream.add("ticket", "delete", {"ticket_id": 5})
    stream.add("sport_event", "insert", sport_event(3))
    stream.add_raw(b"{not json")
    stream.add_raw({"hello": "world"})
    stream.add("customer", "insert", {"name": "no key"})
    stream.add("ticket", "insert", ticket(6, 1, seat_level="x" * 300))
    stream.add("customer", "insert", customer(4, "Nul\x00Name"))
    stream.control("create-table")
    stream.add("not_in_spec", "insert", {"id": 1})
    return stream.take()


def test_decode_and_reduce_are_the_lambda_core(spark: SparkSession, target: GlueTarget) -> None:
    records = tricky_records()
    job = GlueBatchJob.from_arguments(target.args, spark)
    decoded = decode_batch(batch_frame(spark, records), job.executor_config())

    expected = Transformer(job.spec, HMAC_KEY.encode()).transform(records)
    reduced = {(row["table"], bytes(row["row"])) for row in newest_changes(decoded).collect()}
    assert reduced == {
        (table, row_json(change)) for table, changes in expected.changes.items()
        for change in changes
    }
    assert any(b"Second of a tie" in row for _, row in reduced)
    summary = summarize(decoded)
    assert summary.records_in == expected.records_in == len(records)
    assert summary.changes_in == expected.changes_in
    assert summary.skipped == expected.skipped
    assert summary.reject_reasons == Counter(r.reason for r in expected.rejects)
    assert summary.newest_commit_timestamp == expected.newest_commit_timestamp
    rejects = decoded.where("kind = 'reject'").select(
        "detail", "payload", "seq", "partition_key", "table").collect()
    assert sorted(tuple(r) for r in rejects) == sorted(
        (r.reason, r.payload, r.sequence_number, r.partition_key, r.table)
        for r in expected.rejects)


def test_a_batch_is_staged_in_s3_merged_in_one_transaction_and_rejects_dead_lettered(
    spark: SparkSession, target: GlueTarget, warehouse_sql: Any
) -> None:
    stream = DmsStream()
    purchases(stream, 1, 3)
    bad = stream.add("ticket", "insert", ticket(9, 1, ticket_price="lots"))
    stream.control("create-table")
    records = stream.take()
    job = GlueBatchJob.from_arguments(target.args, spark)
    outcome = job.process(batch_frame(spark, records), 0)

    assert outcome.failure is None
    assert (outcome.records_in, outcome.changes_applied, outcome.rejected) == (11, 9, 1)
    assert outcome.skipped == Counter({"control:create-table:ticket_activity": 1})
    assert outcome.write_report is not None and outcome.write_report.transactions == 1
    assert outcome.write_report.staged_through_s3  # one COPY of the landing prefix
    assert outcome.write_report.data_api_calls == 1
    rows = warehouse_sql("SELECT ticket_id, name, email_address, phone_number "
                         "FROM public.sport_event_activity ORDER BY ticket_id")
    assert [(r["ticket_id"], r["name"]) for r in rows] == [(i, f"Buyer {i}") for i in (1, 2, 3)]
    assert all(len(r["email_address"]) == 64 for r in rows)
    assert target.staged_objects() == []  # deleted after the COPY
    (letter,) = target.dead_letters()
    assert letter["reason"].startswith("ticket: column 'ticket_price'")
    assert (letter["payload"], letter["sequenceNumber"], letter["partitionKey"]) == (
        bad.data, bad.sequence_number, bad.partition_key)
    assert letter["eventSourceARN"] == STREAM_ARN and letter["table"] == "ticket"

    again = job.process(batch_frame(spark, records), 1)  # a replayed batch changes nothing
    assert again.failure is None
    assert warehouse_sql("SELECT ticket_id, name, email_address, phone_number "
                         "FROM public.sport_event_activity ORDER BY ticket_id") == rows


def test_warehouse_unavailable_fails_the_batch_before_any_dead_letter(
    spark: SparkSession, target: GlueTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    job = GlueBatchJob.from_arguments(target.args, spark)
    stream = DmsStream()
    purchases(stream, 1, 1)
    stream.add_raw(b"not json")
    frame = batch_frame(spark, stream.take())

    outcome = job.process(frame, 0)
    assert outcome.failure is not None and "kept failing" in outcome.failure
    assert target.dead_letters() == []  # sent once the retried batch is applied
    assert target.staged_objects() == []
    with pytest.raises(BatchFailed):
        job(frame, 0)


# --- the work happens in the executors ----------------------------------------------------------

def generated_records(count: int, start: int = 0) -> list[StreamRecord]:
    stream = DmsStream()
    for i in range(start, start + count):
        stream.add("ticket_activity", "insert", activity(i, i % 500))
    return stream.take()


def parquet_batch(spark: SparkSession, path: Path, count: int) -> DataFrame:
    """A batch DataFrame read by the executors from Parquet (not built from driver data)."""
    records = generated_records(count)
    frame = pd.DataFrame({
        "data": [record_bytes(r) for r in records],
        "streamName": "cdc-stream",
        "partitionKey": [r.partition_key for r in records],
        "sequenceNumber": [r.sequence_number for r in records],
        "approximateArrivalTimestamp": pd.Timestamp("2021-08-15T10:00:00"),
    })
    frame.to_parquet(path)
    return spark.read.schema(KINESIS_SCHEMA).parquet(str(path))


def test_the_driver_receives_only_small_aggregates(
    spark: SparkSession, target: GlueTarget, tmp_path: Path, warehouse_sql: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the batch size, the driver gets a few summary rows and the staged object keys;
    no other way of bringing rows to the driver is used. (Its memory, measured with the stack
    out of process: ``make bench-glue``.)"""
    job = GlueBatchJob.from_arguments(target.args, spark)
    collected: list[list[Any]] = []
    real_collect = DataFrame.collect

    def counting_collect(self: DataFrame) -> list[Any]:
        rows = real_collect(self)
        collected[-1].append(rows)
        return rows

    def forbidden(self: DataFrame, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the batch function brought rows to the driver")

    monkeypatch.setattr(DataFrame, "collect", counting_collect)
    for name in ("toPandas", "toLocalIterator", "take", "head", "first", "tail", "toJSON"):
        monkeypatch.setattr(DataFrame, name, forbidden)
    for count in (2_000, 20_000):
        collected.append([])
        outcome = job.process(parquet_batch(spark, tmp_path / f"{count}.parquet", count), 0)
        assert outcome.failure is None and outcome.changes_applied == count
    monkeypatch.undo()
    assert warehouse_sql("SELECT count(*) AS n FROM cdc_replica.ticket_activity")[0]["n"] == 20_000
    for results in collected:
        rows = [row for result in results for row in result]
        # one summary row (all changes), one staged object per shuffle partition
        assert len(rows) <= 1 + 4, rows
        assert sum(len(str(row)) for row in rows) < 2_000


# --- the local runner: Kinesis reader and checkpoint ---------------------------------------------

@pytest.fixture
def kinesis_stream(endpoints: None, moto_endpoint: str) -> tuple[Any, str]:
    kinesis = boto3.client("kinesis", endpoint_url=moto_endpoint, region_name=REGION)
    name = f"glue-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=name,
                                             WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    return kinesis, str(arn)


def test_local_runner_checkpoints_and_resumes(
    spark: SparkSession, target: GlueTarget, kinesis_stream: tuple[Any, str], tmp_path: Path,
    warehouse_sql: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    kinesis, stream_arn = kinesis_stream
    args = {**target.args, "STREAM_ARN": stream_arn, "MAX_FETCH_RECORDS_PER_SHARD": "4"}
    settings = GlueJobSettings.from_mapping(args)
    job = GlueBatchJob(spark, settings)
    source = LocalKinesisSource(kinesis, settings.stream)
    checkpoints = AppliedShardPositions(tmp_path)
    stream = DmsStream()
    purchases(stream, 1, 3)
    put_records(kinesis, stream_arn, stream.take())

    first = run(job, source, checkpoints, once=True)
    assert sum(o.records_in for o in first) == 9  # at most 4 per shard per batch:
    assert len(first) >= 2 and all(o.records_in <= 8 for o in first)
    saved = json.loads((tmp_path / "kinesis-checkpoint.json").read_text())
    assert saved["next_batch_id"] == len(first) and len(saved["positions"]) >= 1

    purchases(stream, 4, 2)
    put_records(kinesis, stream_arn, stream.take())
    second = run(job, source, checkpoints, once=True)  # a restart: only what is new
    assert sum(o.records_in for o in second) == 6
    assert [r["ticket_id"] for r in warehouse_sql(
        "SELECT ticket_id FROM public.sport_event_activity ORDER BY 1")] == [1, 2, 3, 4, 5]

    # A batch that fails leaves the checkpoint where it was, so the restart reads it again.
    purchases(stream, 6, 1)
    put_records(kinesis, stream_arn, stream.take())
    before = (tmp_path / "kinesis-checkpoint.json").read_text()
    with monkeypatch.context() as patched:
        patched.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", f"http://127.0.0.1:{free_port()}")
        patched.setenv("AWS_MAX_ATTEMPTS", "1")
        broken = GlueBatchJob.from_arguments(args, spark)
        with pytest.raises(RuntimeError, match="failed"):
            run(broken, source, checkpoints, once=True)
    assert (tmp_path / "kinesis-checkpoint.json").read_text() == before
    third = run(job, source, checkpoints, once=True)
    assert sum(o.records_in for o in third) == 3
