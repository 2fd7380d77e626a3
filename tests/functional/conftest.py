"""A real pipeline core and writer against the Redshift Data API stand-in on PostgreSQL."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from functions.kinesis_consumer import app
from local.event_source_mapping.context import LambdaContext
from shared.data_api import DataApiTarget, RedshiftDataApi, RetryPolicy
from shared.dead_letter import receive_all
from shared.migrations import migrate
from shared.records import StreamRecord, TransformResult
from shared.redshift_writer import RedshiftWriter, S3Stager, WriteReport
from shared.spec import PipelineSpec, load_spec
from shared.transform import Transformer
from tests.conftest import REGION

HMAC_KEY = b"functional-test-hmac-key-0123456789"
FAST_RETRY = RetryPolicy(attempts=10, base_delay=0.01, max_delay=0.2)

Sql = Callable[..., list[dict[str, Any]]]


@dataclass
class Pipeline:
    """The core plus the writer, as a consumer uses them; ``sql`` reads the warehouse directly."""

    spec: PipelineSpec
    core: Transformer
    writer: RedshiftWriter
    sql: Sql

    def apply(self, records: list[StreamRecord]) -> tuple[TransformResult, WriteReport]:
        result = self.core.transform(records)
        return result, self.writer.stage_and_merge(result.changes)

    def wide(self) -> list[dict[str, Any]]:
        return self.sql('SELECT * FROM "public"."sport_event_activity" ORDER BY ticket_id')

    def replica(self, table: str) -> list[dict[str, Any]]:
        key = ", ".join(self.spec.tables[table].key)
        return self.sql(f'SELECT * FROM "cdc_replica"."{table}" ORDER BY {key}')

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        state = {t: self.replica(t) for t in self.spec.tables}
        state["sport_event_activity"] = self.wide()
        return state


def data_api(redshift_data: Any, database: str) -> RedshiftDataApi:
    return RedshiftDataApi(
        redshift_data, DataApiTarget(database=database, workgroup_name="local-workgroup"),
        retry=FAST_RETRY, poll_interval=(0.005, 0.05),
    )


@pytest.fixture
def make_pipeline(
    redshift_data: Any, warehouse_db: str, warehouse_sql: Sql
) -> Callable[..., Pipeline]:
    def make(
        spec: PipelineSpec | None = None, stager: S3Stager | None = None, client: Any = None
    ) -> Pipeline:
        spec = spec or load_spec()
        api = data_api(client or redshift_data, warehouse_db)
        migrate(api, spec)
        return Pipeline(spec, Transformer(spec, HMAC_KEY), RedshiftWriter(spec, api, stager),
                        warehouse_sql)

    return make


@pytest.fixture
def pipeline(make_pipeline: Callable[..., Pipeline]) -> Pipeline:
    return make_pipeline()


@pytest.fixture
def staging_bucket(moto_endpoint: str) -> Iterator[tuple[Any, str]]:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    name = "cdc-staging-test"
    s3.create_bucket(Bucket=name)
    yield s3, name


@dataclass
class Consumer:
    sql: Any
    sqs: Any
    queue_url: str
    env: dict[str, str]

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        return app.lambda_handler(event, fake_context())  # type: ignore[no-any-return]

    def dead_letters(self) -> list[dict[str, Any]]:
        return receive_all(self.sqs, self.queue_url)


def fake_context() -> LambdaContext:
    return LambdaContext(function_name="cdc-kinesis-consumer",
                         invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:"
                                              "cdc-kinesis-consumer", memory_limit_in_mb=512)


def reset_caches() -> None:
    app.settings.cache_clear()
    app.spec.cache_clear()
    app.client.cache_clear()
    app._processors.clear()
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()


@pytest.fixture
def consumer(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, redshift_api: str, redshift_data: Any,
    warehouse_db: str, warehouse_sql: Any,
) -> Iterator[Consumer]:
    name = uuid.uuid4().hex[:8]
    secrets_client = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    secret_arn = secrets_client.create_secret(Name=f"hmac-{name}",
                                              SecretString=secrets.token_hex(32))["ARN"]
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    queue_url = sqs.create_queue(QueueName=f"dlq-{name}")["QueueUrl"]
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    s3.create_bucket(Bucket=f"staging-{name}")
    migrate(data_api(redshift_data, warehouse_db), load_spec())
    env = {
        "HMAC_KEY_SECRET_ARN": secret_arn,
        "REDSHIFT_WORKGROUP_NAME": "local-workgroup",
        "REDSHIFT_CLUSTER_IDENTIFIER": "",
        "REDSHIFT_DATABASE": warehouse_db,
        "STAGING_BUCKET": f"staging-{name}",
        "STAGING_PREFIX": "staging",
        "COPY_IAM_ROLE_ARN": "arn:aws:iam::123456789012:role/copy",
        "DEAD_LETTER_QUEUE_URL": queue_url,
        "REDSHIFT_RETRY_ATTEMPTS": "2",
        "POWERTOOLS_SERVICE_NAME": "cdc-consumer",
        "POWERTOOLS_METRICS_NAMESPACE": "CdcPipeline",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_ENDPOINT_URL_REDSHIFT_DATA": redshift_api,
        "AWS_ENDPOINT_URL_SQS": moto_endpoint,
        "AWS_ENDPOINT_URL_S3": moto_endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto_endpoint,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_caches()
    yield Consumer(warehouse_sql, sqs, queue_url, env)
    reset_caches()
