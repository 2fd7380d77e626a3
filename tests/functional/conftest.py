"""Fixtures: a real pipeline core and writer against the Redshift Data API stand-in on
PostgreSQL, a staging bucket, the Lambda consumer with its queue and secret in moto. Helpers
that tests import are in ``tests/functional/pipeline_helpers.py``."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from shared.migrations import migrate
from shared.redshift_writer import RedshiftWriter, S3Stager
from shared.spec import PipelineSpec, load_spec
from shared.transform import Transformer
from tests.functional.pipeline_helpers import (
    HMAC_KEY,
    Consumer,
    Pipeline,
    Sql,
    data_api,
    reset_caches,
)
from tests.stack_helpers import REGION


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
    name = f"cdc-staging-{uuid.uuid4().hex[:12]}"  # a test's own: tests count its objects
    s3.create_bucket(Bucket=name)
    yield s3, name


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
