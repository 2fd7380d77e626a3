"""Helpers for the functional tests (their fixtures are in tests/functional/conftest.py): the
pipeline core and writer as a consumer uses them, a Data API client with fast retries, the
Lambda consumer invoked in process, and resetting the consumer module's per-container caches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities import parameters

from functions.kinesis_consumer import app
from local.event_source_mapping.context import LambdaContext
from shared import runtime
from shared.data_api import DataApiTarget, RedshiftDataApi, RetryPolicy
from shared.dead_letter import receive_all
from shared.records import StreamRecord, TransformResult
from shared.redshift_writer import RedshiftWriter, WriteReport
from shared.spec import PipelineSpec
from shared.transform import Transformer

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
    runtime.reset()
    app._processors.clear()
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()
