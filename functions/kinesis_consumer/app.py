"""Kinesis consumer Lambda: a thin edge around the shared core.

Parse the event, log and measure, delegate to ``shared.consumer.BatchConsumer``. Partial
failures use ``ReportBatchItemFailures``: rejects go to the dead-letter queue and never block
the shard; a transient failure reports the lowest unapplied sequence number so Lambda retries
from there; a statement Redshift refuses raises, so the event source mapping can bisect.
Logs and metrics never hold record payloads or personal data.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.batch_log import added_column_fields, batch_fields
from shared.consumer import BatchConsumer, BatchOutcome, build_consumer
from shared.decode import DROP_TABLE_REASON
from shared.freshness import freshness_metrics, milliseconds_since
from shared.records import StreamRecord
from shared.runtime import client, settings, spec
from shared.settings import hmac_key_from_secret

SECRET_MAX_AGE_SECONDS = 300

logger = Logger()
metrics = Metrics()
tracer = Tracer()


_processors: dict[bytes, BatchConsumer] = {}


def processor() -> BatchConsumer:
    """The processor for the current HMAC key (cached; a rotated key builds a new one)."""
    secret = parameters.get_secret(settings().hmac_key_secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
    key = hmac_key_from_secret(str(secret))
    if key not in _processors:
        _processors.clear()
        _processors[key] = build_consumer(settings(), spec(), key, client)
    return _processors[key]


def stream_records(event: KinesisStreamEvent) -> tuple[list[StreamRecord], str]:
    records = [
        StreamRecord(
            data=r.kinesis.data,
            sequence_number=r.kinesis.sequence_number,
            partition_key=r.kinesis.partition_key,
            shard_id=r.event_id.split(":", 1)[0],
        )
        for r in event.records
    ]
    source = next((r.event_source_arn for r in event.records), "")
    return records, source


def record_freshness(newest_commit_by_table: dict[str, str]) -> None:
    """``SourceLag`` (source commit -> applied in Redshift) and ``TableFreshness`` per table
    (``shared.freshness.freshness_metrics``, as the batch applier emits them) for a batch this
    function made visible in the warehouse."""
    for m in freshness_metrics(newest_commit_by_table):
        with single_metric(name=m.name, unit=MetricUnit.Milliseconds, value=m.milliseconds,
                           default_dimensions={**metrics.default_dimensions, **m.dimensions}):
            pass  # the document is written as the block ends


def last_arrival(event: KinesisStreamEvent) -> datetime | None:
    """When the batch's last record arrived in the stream (its ApproximateArrivalTimestamp,
    epoch seconds in the Lambda event); None for an empty batch."""
    arrivals = [r.kinesis.approximate_arrival_timestamp for r in event.records]
    return datetime.fromtimestamp(max(arrivals), UTC) if arrivals else None


def record_metrics(outcome: BatchOutcome, started: float,
                   arrived: datetime | None = None) -> None:
    """The batch's metrics. ``CaptureLag`` splits commit -> landed: the batch's newest
    source commit to its last record's arrival in the stream (``arrived``) is the capture's
    part (AWS DMS and Kinesis); from there to the handler's start is the event source
    mapping's (what Lambda reports as IteratorAge), then ``BatchLatency`` is the handler's."""
    metrics.add_metric("RecordsIn", MetricUnit.Count, outcome.records_in)
    metrics.add_metric("ChangesApplied", MetricUnit.Count, outcome.changes_applied)
    metrics.add_metric("RecordsRejected", MetricUnit.Count, outcome.rejected)
    metrics.add_metric("RecordsSkipped", MetricUnit.Count, sum(outcome.skipped.values()))
    metrics.add_metric("BatchLatency", MetricUnit.Milliseconds,
                       (time.perf_counter() - started) * 1000)
    if outcome.newest_commit_timestamp and arrived is not None:
        metrics.add_metric("CaptureLag", MetricUnit.Milliseconds,
                           milliseconds_since(outcome.newest_commit_timestamp, arrived))
    if outcome.newest_commit_timestamp and outcome.failed_from is None:
        if outcome.landed_for_applier:
            # Landed, not yet visible: the batch applier reports SourceLag/TableFreshness
            # once its transaction commits (functions/batch_applier).
            metrics.add_metric("LandingLag", MetricUnit.Milliseconds,
                               milliseconds_since(outcome.newest_commit_timestamp))
        else:
            record_freshness(outcome.newest_commit_by_table)
    if outcome.failed_from is not None:
        metrics.add_metric("BatchRetries", MetricUnit.Count, 1)
    dropped = dropped_tables(outcome)
    if dropped:
        metrics.add_metric("SourceTablesDropped", MetricUnit.Count, len(dropped))
    if outcome.table_events:
        metrics.add_metric("TableEventsApplied", MetricUnit.Count,
                           sum(outcome.table_events.values()))


def dropped_tables(outcome: BatchOutcome) -> list[str]:
    """Spec tables the source dropped in this batch (their records are on the DLQ)."""
    return sorted(reason.split(":", 1)[0] for reason in outcome.reject_reasons
                  if reason.endswith(DROP_TABLE_REASON))


def log_outcome(outcome: BatchOutcome) -> None:
    """The batch's log lines: its fields (``shared.batch_log``, as the Glue job logs them), an
    added source column and a dropped spec table each on a line of their own."""
    logger.info("batch processed", extra=batch_fields(outcome))
    for added in outcome.added_columns:
        extra = added_column_fields(added)
        if added.written_without:
            logger.warning("source column added; rows changed since were written without it: "
                           "reload the table (tools.table_reload) to fill them", extra=extra)
        else:
            logger.info("source column added to the replica", extra=extra)
    for table in dropped_tables(outcome):
        logger.error("the source dropped a spec table; the warehouse keeps it",
                     extra={"table": table})


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    stream_event = KinesisStreamEvent(event)
    records, source = stream_records(stream_event)
    if records:
        logger.set_correlation_id(f"{records[0].shard_id}:{records[0].sequence_number}")
        logger.append_keys(shard_id=records[0].shard_id,
                           first_sequence_number=records[0].sequence_number,
                           last_sequence_number=records[-1].sequence_number)
    outcome = processor().process(records, source)
    record_metrics(outcome, started, last_arrival(stream_event))
    log_outcome(outcome)
    if outcome.failed_from is None:
        return {"batchItemFailures": []}
    logger.warning("batch will be retried", extra={"failed_from": outcome.failed_from,
                                                   "failure": outcome.failure})
    return {"batchItemFailures": [{"itemIdentifier": outcome.failed_from}]}
