"""Batch applier Lambda: applies the batches the Kinesis consumers landed, a thin edge around
``shared.applier``.

The applier queue's SQS event source mapping hands it landed-batch messages (up to 10 at once
without a batching window, the default; up to 10,000 with one); the invocation also takes the
messages waiting on the queue behind them (``shared.applier.WaitingBatches``, up to
``WAITING_LIMIT``), so a backlog is applied in one go without a window's delay. All the landed
batches among them are applied in one transaction (``apply_batches``: one manifest COPY and one
``_cdc_apply_pending`` call), a statement Redshift refuses is bisected down to the one batch
that causes it; the warehouse unavailable or the apply statement cancelled (ABORTED) fails
every message, bisecting nothing. Partial failures use ``ReportBatchItemFailures`` ("Handling
errors for an SQS event source in Lambda", AWS Lambda Developer Guide): only the failed messages
come back after the queue's visibility timeout, and after ``maxReceiveCount`` deliveries SQS
moves them to the applier's dead-letter queue. Logs and metrics hold message ids, counts and
reasons, never a message body or a row.

Freshness is measured here, where the change becomes visible: after an apply commits, the
applier emits ``SourceLag`` (ms since the newest source commit among the batches it applied)
and ``TableFreshness`` per table (dimension ``Table``), from the commit timestamps the
consumers put in their messages (``shared.applier.landed_message``). A batch that failed
reports nothing; a message of an older consumer (without them) is applied and reports nothing.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.applier import (
    WAITING_LIMIT,
    ApplierOutcome,
    LandedBatch,
    NotALandedBatch,
    WaitingBatches,
    WaitingMessage,
    applier_writer,
    apply_batches,
    parse_landed,
)
from shared.data_api import WarehouseUnavailable
from shared.freshness import freshness_metrics
from shared.redshift_writer import RedshiftWriter
from shared.runtime import client
from shared.settings import ApplierSettings
from shared.spec import load_spec

logger = Logger()
metrics = Metrics()
tracer = Tracer()

# A quoted literal in Redshift's error text may be a landed value (a row the procedure could
# not cast); the log keeps the error without it.
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")


@cache
def settings() -> ApplierSettings:
    """The applier's own settings (``ApplierSettings``: no HMAC key, no dead-letter queue),
    validated once per execution environment."""
    return ApplierSettings.from_mapping(os.environ)


@cache
def writer() -> RedshiftWriter:
    """The applier's writer (``shared.applier.applier_writer``) on the spec its settings name."""
    return applier_writer(settings(), load_spec(settings().spec_path), client)


def without_literals(reason: str) -> str:
    """``reason`` with every quoted literal replaced by ``'…'``."""
    return _QUOTED.sub("'…'", reason)


def landed_batches(messages: Iterable[tuple[str, str]], staging_prefix: str,
                   ) -> tuple[list[LandedBatch], dict[str, str]]:
    """The landed batches among ``(message id, body)`` pairs, and the messages that are not
    one, with the reason."""
    batches: list[LandedBatch] = []
    refused: dict[str, str] = {}
    for message_id, body in messages:
        try:
            batches.append(parse_landed(message_id, body, staging_prefix))
        except NotALandedBatch as exc:
            refused[message_id] = str(exc)
    return batches, refused


def record_metrics(outcome: ApplierOutcome, failed: int, started: float) -> None:
    metrics.add_metric("BatchesApplied", MetricUnit.Count, len(outcome.applied))
    metrics.add_metric("ApplyTransactions", MetricUnit.Count, outcome.transactions)
    metrics.add_metric("BatchesFailed", MetricUnit.Count, failed)
    metrics.add_metric("ApplyLatency", MetricUnit.Milliseconds,
                       (time.perf_counter() - started) * 1000)
    record_freshness(outcome)


def record_freshness(outcome: ApplierOutcome) -> None:
    """``SourceLag`` (source commit -> applied in Redshift) and ``TableFreshness`` per table
    (``shared.freshness.freshness_metrics``, as the Kinesis consumer emits them when it applies
    inline, so the dashboard and alarms read both paths alike), each in a metric document of
    its own. Only the batches whose apply committed count."""
    for m in freshness_metrics(outcome.newest_commit_by_table, outcome.newest_commit):
        with single_metric(name=m.name, unit=MetricUnit.Milliseconds, value=m.milliseconds,
                           default_dimensions={**metrics.default_dimensions, **m.dimensions}):
            pass  # the document is written as the block ends


def failures(message_ids: list[str]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": m} for m in message_ids]}


def take_waiting(event: SQSEvent) -> tuple[WaitingBatches | None, list[WaitingMessage]]:
    """The queue of the event and the messages waiting on it (none if SQS refuses: the event
    alone is applied then, and the waiting messages by a later invocation)."""
    first = next(iter(event.records), None)
    if first is None:
        return None, []
    try:
        queue = WaitingBatches.of_event_source(client("sqs"), first.event_source_arn)
        return queue, queue.receive(WAITING_LIMIT)
    except Exception as exc:  # botocore's ClientError and connection errors alike
        logger.warning("could not take the waiting batches; applying the event's alone",
                       extra={"failure": type(exc).__name__})
        return None, []


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.perf_counter()
    sqs_event = SQSEvent(event)
    prefix = settings().staging_prefix
    message_ids = [r.message_id for r in sqs_event.records]
    batches, refused = landed_batches(((r.message_id, r.body) for r in sqs_event.records),
                                      prefix)
    queue, waiting = take_waiting(sqs_event)
    waiting_batches, waiting_refused = landed_batches(
        ((m.message_id, m.body) for m in waiting), prefix)
    for message_id, reason in {**refused, **waiting_refused}.items():
        logger.error("message is not a landed batch; it fails alone",
                     extra={"message_id": message_id, "reason": reason})
    try:
        outcome = apply_batches(writer(), batches + waiting_batches)
    except WarehouseUnavailable as exc:
        record_metrics(ApplierOutcome(), len(message_ids), started)
        logger.warning("warehouse unavailable or the apply cancelled; every message will be "
                       "retried", extra={"messages": len(message_ids) + len(waiting),
                                         "error": type(exc).__name__,
                                         "failure": without_literals(str(exc))})
        return failures(message_ids)
    for message_id, reason in outcome.failed.items():
        logger.error("batch could not be applied; it fails alone",
                     extra={"message_id": message_id, "reason": without_literals(reason)})
    applied = set(outcome.applied)
    if queue is not None:
        # The ones that failed stay on the queue; SQS brings them back.
        not_deleted = queue.delete([m for m in waiting if m.message_id in applied])
        if not_deleted:
            logger.warning("applied batches SQS did not delete will come back (and be "
                           "skipped as applied)", extra={"messages": len(not_deleted)})
    failed = [m for m in message_ids if m in refused or m in outcome.failed]
    record_metrics(outcome, len(failed) + sum(m.message_id not in applied for m in waiting),
                   started)
    logger.info("batches applied", extra={"messages": len(message_ids),
                                          "waiting_taken": len(waiting),
                                          "batches_applied": len(outcome.applied),
                                          "transactions": outcome.transactions,
                                          "batches_failed": len(outcome.failed)})
    return failures(failed)
