"""Helpers for the Glue batch function's tests on local Spark: a Spark session, the DataFrame
the Glue Kinesis source hands ``forEachBatch`` (its schema is ``glue_job.kinesis_source``'s),
a migrated warehouse database with a fresh queue and staging bucket in moto and the job
arguments that point at them, and putting records on a Kinesis stream keyed as DMS keys them.

``spark_fixture`` and ``endpoints_fixture`` define the fixtures ``spark`` and ``endpoints``: a
test module imports them to use them (they are not in conftest, so the functional tests that
need no Spark do not import it).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession

from glue_job.kinesis_source import KINESIS_SCHEMA
from glue_job.local_spark import local_spark
from shared.dead_letter import receive_all
from shared.migrations import migrate
from shared.records import StreamRecord
from shared.spec import PipelineSpec, load_spec
from tests.functional.pipeline_helpers import data_api
from tests.stack_helpers import REGION

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/cdc-stream"
HMAC_KEY = "glue-test-hmac-key-0123456789abcdef0123456789"


@pytest.fixture(scope="module", name="spark")
def spark_fixture() -> SparkSession:
    """A local Spark session (``local[2]``) for a test module."""
    return local_spark("local[2]", shuffle_partitions=4)


def record_bytes(record: StreamRecord) -> bytes:
    return record.data if isinstance(record.data, bytes) else base64.b64decode(record.data)


def batch_frame(spark: SparkSession, records: list[StreamRecord],
                stream_name: str = "cdc-stream") -> DataFrame:
    """The DataFrame the Glue Kinesis source hands ``forEachBatch`` for these records."""
    frame = pd.DataFrame({
        "data": [record_bytes(r) for r in records],
        "streamName": [stream_name] * len(records),
        "partitionKey": [r.partition_key for r in records],
        "sequenceNumber": [r.sequence_number for r in records],
        "approximateArrivalTimestamp": pd.to_datetime(["2021-08-15T10:00:00Z"] * len(records)),
    })
    return spark.createDataFrame(frame, KINESIS_SCHEMA)


@dataclass
class GlueTarget:
    """Where one Glue job writes: its warehouse database, queue and staging bucket."""

    args: dict[str, str]
    sqs: Any
    s3: Any
    queue_url: str
    bucket: str

    def dead_letters(self) -> list[dict[str, Any]]:
        return receive_all(self.sqs, self.queue_url)

    def staged_objects(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket)
        return [o["Key"] for o in listed.get("Contents", [])]


def glue_target(moto_endpoint: str, redshift_api: str, redshift_data: Any, database: str,
                secret_arn: str | None = None, spec: PipelineSpec | None = None) -> GlueTarget:
    """A migrated warehouse database plus a fresh queue, bucket (and secret) in moto."""
    name = uuid.uuid4().hex[:8]
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    if secret_arn is None:
        secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
        secret_arn = secrets.create_secret(Name=f"glue-hmac-{name}", SecretString=HMAC_KEY)["ARN"]
    queue_url = sqs.create_queue(QueueName=f"glue-dlq-{name}")["QueueUrl"]
    bucket = f"glue-staging-{name}"
    s3.create_bucket(Bucket=bucket)
    migrate(data_api(redshift_data, database), spec or load_spec())
    args = {
        "JOB_NAME": "cdc-streaming",
        "STREAM_ARN": STREAM_ARN,
        "STARTING_POSITION": "TRIM_HORIZON",
        "MAX_FETCH_RECORDS_PER_SHARD": "10000",
        "WINDOW_SIZE": "1 seconds",
        "CHECKPOINT_LOCATION": "s3://assets/checkpoint/",
        "HMAC_KEY_SECRET_ARN": secret_arn,
        "REDSHIFT_WORKGROUP_NAME": "local-workgroup",
        "REDSHIFT_CLUSTER_IDENTIFIER": "",
        "REDSHIFT_DATABASE": database,
        "REDSHIFT_SECRET_ARN": "",
        "REDSHIFT_DB_USER": "",
        "STAGING_BUCKET": bucket,
        "STAGING_PREFIX": "staging/",
        "COPY_IAM_ROLE_ARN": "arn:aws:iam::123456789012:role/copy",
        "DEAD_LETTER_QUEUE_URL": queue_url,
        "PIPELINE_SPEC_PATH": "",
        "REDSHIFT_RETRY_ATTEMPTS": "2",
    }
    return GlueTarget(args, sqs, s3, queue_url, bucket)


@pytest.fixture(name="endpoints")
def endpoints_fixture(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str,
                      redshift_api: str) -> None:
    """boto3's standard endpoint variables, as the local stack sets them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", redshift_api)


def put_records(kinesis: Any, stream_arn: str, records: list[StreamRecord]) -> list[str]:
    """Put the records in order (one PutRecord each, keyed like DMS: by primary key)."""
    sequence_numbers = []
    for record in records:
        data = record_bytes(record)
        try:
            partition_key = json.loads(data)["metadata"]["partition-key-value"]
        except (ValueError, KeyError, TypeError):
            partition_key = "poison"
        put = kinesis.put_record(StreamARN=stream_arn, Data=data, PartitionKey=partition_key)
        sequence_numbers.append(put["SequenceNumber"])
    return sequence_numbers
