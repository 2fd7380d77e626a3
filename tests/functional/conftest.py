"""A real pipeline core and writer against the Redshift Data API stand-in on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from shared.data_api import DataApiTarget, RedshiftDataApi, RetryPolicy
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
