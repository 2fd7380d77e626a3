"""The Glue job: ``GlueBatchJob``, the ``forEachBatch`` function, and ``run_streaming_job``,
the job script's body.

``GlueBatchJob.process`` strings the steps together for one micro-batch: decode
(``shared.glue.steps.decode_batch``, cached in the executors), summarize, apply the batch's
table events (added columns: decode again), reduce (``newest_changes``), stage the reduced
rows to S3 in the executors, ONE transaction through the Data API
(``RedshiftWriter.merge_staged``), then the rejects to the dead-letter queue from the
executors. ``batch_log`` is the JSON line logged per batch.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

import boto3
from pyspark import StorageLevel
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shared.batch_log import batch_fields
from shared.consumer import BatchOutcome
from shared.data_api import RedshiftDataApi, RetryPolicy, WarehouseError
from shared.glue.arguments import GlueJobSettings, for_each_batch_options, kinesis_source_options
from shared.glue.executors import (
    REJECT,
    SENT_SCHEMA,
    STAGED_SCHEMA,
    ExecutorConfig,
    client_environment,
    send_rejects_partition,
    stage_partition,
)
from shared.glue.steps import BatchSummary, decode_batch, newest_changes, summarize, table_events
from shared.records import ADD_COLUMNS, TableEvent
from shared.redshift_writer import RedshiftWriter, S3Stager, WriteReport
from shared.settings import hmac_key_from_secret
from shared.spec import PipelineSpec, load_spec

log = logging.getLogger("cdc.glue")

SECRET_MAX_AGE_SECONDS = 300  # as the Lambda's Parameters cache: a rotated key is picked up


class BatchFailed(Exception):
    """The micro-batch was not (completely) applied; Glue retries it from the checkpoint."""


class GlueBatchJob:
    """The ``forEachBatch`` function of the Glue job (and of the local runner)."""

    def __init__(
        self,
        spark: SparkSession,
        settings: GlueJobSettings,
        spec: PipelineSpec | None = None,
        clients: Callable[[str], Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        pipeline = settings.pipeline
        self.spark = spark
        self.settings = settings
        self.spec = spec or load_spec(pipeline.spec_path)
        self._clients = clients or (lambda name: boto3.client(name))  # type: ignore[call-overload]
        self._environ = os.environ if environ is None else environ
        api = RedshiftDataApi(self._clients("redshift-data"), pipeline.target,
                              retry=RetryPolicy(attempts=pipeline.retry_attempts))
        # GlueJobSettings has checked that the Glue path's staging settings are there.
        self.stager = S3Stager(self._clients("s3"), str(pipeline.staging_bucket),
                               pipeline.staging_prefix, str(pipeline.copy_iam_role_arn))
        self.writer = RedshiftWriter(self.spec, api, self.stager)
        self._broadcast: Broadcast[ExecutorConfig] | None = None
        self._key_read_at = -float("inf")

    @classmethod
    def from_arguments(
        cls, args: Mapping[str, str], spark: SparkSession,
        clients: Callable[[str], Any] | None = None,
    ) -> GlueBatchJob:
        """From the job parameters (``GlueJobSettings.from_mapping`` parses them)."""
        return cls(spark, GlueJobSettings.from_mapping(args), clients=clients)

    # -- configuration for the executors --

    def _hmac_key(self) -> bytes:
        secret = self._clients("secretsmanager").get_secret_value(
            SecretId=self.settings.pipeline.hmac_key_secret_arn)
        return hmac_key_from_secret(str(secret["SecretString"]))

    def executor_config(self) -> Broadcast[ExecutorConfig]:
        """The broadcast configuration; re-read the HMAC key every few minutes (rotation)."""
        now = time.monotonic()
        current = self._broadcast
        same_spec = current is not None and current.value.spec is self.writer.spec
        if current is not None and same_spec and now - self._key_read_at < SECRET_MAX_AGE_SECONDS:
            return current
        key = self._hmac_key()
        self._key_read_at = now
        if current is not None and same_spec and current.value.hmac_key == key:
            return current
        if self._broadcast is not None:
            self._broadcast.unpersist()
        config = ExecutorConfig(
            token=uuid.uuid4().hex, spec=self.writer.spec, hmac_key=key,
            staging_bucket=str(self.settings.pipeline.staging_bucket),
            dead_letter_queue_url=self.settings.pipeline.dead_letter_queue_url,
            source_arn=self.settings.stream.stream_arn,
            client_environment=client_environment(self._environ),
        )
        self._broadcast = self.spark.sparkContext.broadcast(config)
        return self._broadcast

    # -- one micro-batch --

    def process(self, batch: DataFrame, batch_id: int) -> BatchOutcome:
        """Apply one micro-batch; a failure is reported in ``outcome.failure``."""
        try:
            if self.writer.added_columns_stale():
                self.writer.load_added_columns()
            return self._process(batch, batch_id)
        except WarehouseError as exc:
            return BatchOutcome(failure=str(exc))

    def _decode(self, batch: DataFrame) -> tuple[DataFrame, BatchSummary, list[TableEvent]]:
        decoded = decode_batch(batch, self.executor_config(), self.writer.load_starts())
        decoded = decoded.persist(StorageLevel.MEMORY_AND_DISK)
        summary = summarize(decoded)
        return decoded, summary, (table_events(decoded) if summary.events else [])

    def _process(self, batch: DataFrame, batch_id: int) -> BatchOutcome:
        decoded, summary, events = self._decode(batch)
        try:
            added = (self.writer.add_columns(events)
                     if any(e.kind == ADD_COLUMNS for e in events) else [])
            if added:
                decoded.unpersist()  # decode again with the new columns (a new broadcast)
                decoded, summary, events = self._decode(batch)
            outcome = BatchOutcome(
                records_in=summary.records_in, rejected=summary.rejected,
                skipped=summary.skipped, reject_reasons=summary.reject_reasons,
                newest_commit_timestamp=summary.newest_commit_timestamp,
                table_events=Counter(f"{e.kind}:{e.table}" for e in events),
                added_columns=added,
                newest_commit_by_table=summary.newest_commit_by_table,
            )
            if summary.records_in == 0:
                return outcome
            if summary.changes_in or events:
                try:
                    outcome.write_report = self._stage_and_merge(
                        decoded, self.executor_config(), batch_id, events)
                except WarehouseError as exc:
                    outcome.failure = str(exc)
                    return outcome
                outcome.changes_applied = sum(outcome.write_report.changes.values())
            if summary.rejected:
                error = self._send_rejects(decoded, self.executor_config())
                if error:
                    outcome.failure = error
            return outcome
        finally:
            decoded.unpersist()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """``forEachBatch``'s function: process, log, and raise on failure (Glue then retries
        the batch and never checkpoints past it)."""
        started = time.perf_counter()
        outcome = self.process(batch, batch_id)
        log.info(json.dumps(batch_log(outcome, batch_id, started)))
        if outcome.failure is not None:
            raise BatchFailed(outcome.failure)

    def _stage_and_merge(
        self, decoded: DataFrame, config: Broadcast[ExecutorConfig], batch_id: int,
        events: Sequence[TableEvent],
    ) -> WriteReport:
        prefix = self.settings.pipeline.staging_prefix.strip("/")
        landing_batch = uuid.uuid4().hex
        run_prefix = f"{prefix}/glue-{batch_id}-{landing_batch}/".lstrip("/")
        keep = {name: t.keep_when_null for name, t in self.writer.spec.tables.items()}
        staged = newest_changes(decoded, keep).mapInPandas(
            partial(stage_partition, config, run_prefix, landing_batch), STAGED_SCHEMA).collect()
        keys = sorted({row["object_key"] for row in staged})
        counts: Counter[str] = Counter()
        for row in staged:
            counts[row["table"]] += int(row["rows"])
        try:
            return self.writer.merge_staged(landing_batch, run_prefix, counts, events)
        finally:
            self.stager.delete(keys)

    @staticmethod
    def _send_rejects(decoded: DataFrame, config: Broadcast[ExecutorConfig]) -> str | None:
        rejects = decoded.where(F.col("kind") == REJECT).select(
            "table", "detail", "payload", "seq", "partition_key")
        results = rejects.mapInPandas(partial(send_rejects_partition, config),
                                      SENT_SCHEMA).collect()
        errors = [row["error"] for row in results if row["error"]]
        return str(errors[0]) if errors else None


def batch_log(outcome: BatchOutcome, batch_id: int, started: float) -> dict[str, Any]:
    """The JSON line logged per micro-batch: the fields both consumers log
    (``shared.batch_log.batch_fields``) plus the batch id and its latency."""
    return {
        "message": "batch processed" if outcome.failure is None else "batch failed",
        "batch_id": batch_id,
        **batch_fields(outcome),
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
    }


class GlueContextLike(Protocol):
    """What the job uses of ``awsglue.context.GlueContext``."""

    spark_session: SparkSession
    create_data_frame: Any  # its from_options(connection_type=..., connection_options=...)

    def forEachBatch(self, frame: DataFrame, batch_function: Callable[[DataFrame, int], None],
                     options: dict[str, str]) -> None: ...


def run_streaming_job(settings: GlueJobSettings,
                      glue_context: Callable[[], GlueContextLike]) -> None:
    """The job script's body: the Glue Kinesis source's micro-batches into ``GlueBatchJob``.

    The settings are parsed before (``GlueJobSettings.from_argv``), so bad arguments fail
    before Spark starts; ``glue_context`` makes the GlueContext once logging is configured.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.setLevel(settings.log_level)
    context = glue_context()
    job = GlueBatchJob(context.spark_session, settings)
    records = context.create_data_frame.from_options(
        connection_type="kinesis", connection_options=kinesis_source_options(settings.stream))
    context.forEachBatch(frame=records, batch_function=job,
                         options=for_each_batch_options(settings.stream))
