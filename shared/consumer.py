"""One consumer batch, end to end: transform, write, dead-letter the rejects.

The same steps serve the Lambda handler and the DLQ replay tool. Order matters: the warehouse
write comes first, then the dead-letter queue, so a retry after any failure repeats as little
as possible and loses nothing:

- warehouse unavailable (after the writer's own retries), or the statement aborted
  (``StatementAborted``: cancelled, by an operator or the writer's own statement timeout):
  nothing of the batch is known to be applied, so the batch fails from its lowest sequence
  number and comes again (the MERGE is idempotent and order-guarded, so what did commit is not
  applied twice);
- dead-letter queue unavailable: the batch fails from the lowest rejected record;
- a statement Redshift refuses for another reason raises ``StatementFailed`` (the Lambda then
  fails the invocation, so the event source mapping can bisect the batch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.applier import SqsApplierQueue
from shared.data_api import RedshiftDataApi, RetryPolicy, WarehouseUnavailable
from shared.dead_letter import DeadLetterUnavailable, SqsDeadLetterQueue
from shared.records import ADD_COLUMNS, Reject, StreamRecord, TransformResult
from shared.redshift_writer import (
    AddedColumn,
    RedshiftWriter,
    S3Stager,
    WriteReport,
)
from shared.settings import PipelineSettings
from shared.spec import PipelineSpec
from shared.transform import Transformer


class DeadLetterSink(Protocol):
    def send(self, rejects: Sequence[Reject], source_arn: str) -> None: ...


@dataclass
class BatchOutcome:
    records_in: int = 0
    changes_applied: int = 0
    rejected: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    reject_reasons: Counter[str] = field(default_factory=Counter)
    newest_commit_timestamp: str | None = None
    write_report: WriteReport | None = None
    failed_from: str | None = None  # retry the batch from this sequence number
    failure: str | None = None  # why (no record values in it)
    table_events: Counter[str] = field(default_factory=Counter)  # "TRUNCATE:ticket": 1
    added_columns: list[AddedColumn] = field(default_factory=list)
    newest_commit_by_table: dict[str, str] = field(default_factory=dict)
    # The writer only landed the batch for the batch applier (an applier queue): the change
    # is not visible yet, so freshness (source commit -> applied) is the applier's to report.
    landed_for_applier: bool = False


def lowest_sequence_number(numbers: Sequence[str]) -> str:
    """Kinesis sequence numbers are decimal strings; compare them as numbers."""
    return min(numbers, key=lambda n: (len(n), n))


class BatchConsumer:
    """The core and its writer for one spec and HMAC key (one per Lambda container).

    The decoding spec is the spec plus the source columns schema evolution added, read from
    the warehouse before the first batch and again when another consumer added one
    (``RedshiftWriter.added_columns_stale``).
    """

    def __init__(
        self, spec: PipelineSpec, hmac_key: bytes | None, writer: RedshiftWriter,
        dead_letters: DeadLetterSink,
    ) -> None:
        self._hmac_key = hmac_key
        self.writer = writer
        self.dead_letters = dead_letters
        self.transformer = Transformer(spec, hmac_key)
        self.added_columns: list[AddedColumn] = []  # by this processor, for the batch log

    def _refresh_columns(self) -> None:
        self.transformer = Transformer(self.writer.load_added_columns(), self._hmac_key)

    def transform(self, records: Sequence[StreamRecord]) -> TransformResult:
        """Decode (adding the source columns the batch announces first, then decoding again
        so the records after them keep their values) and reduce the batch."""
        if self.writer.added_columns_stale():
            self._refresh_columns()
        decoded = self.transformer.decode(records)
        if any(e.kind == ADD_COLUMNS for e in decoded.result.table_events):
            added = self.writer.add_columns(decoded.result.table_events)
            self.added_columns.extend(added)
            if added:
                self.transformer = Transformer(self.writer.spec, self._hmac_key)
                decoded = self.transformer.decode(records)
        load_starts = self.writer.load_starts() if decoded.load_tables else {}
        return self.transformer.reduce(decoded, load_starts)

    def process(self, records: Sequence[StreamRecord], source_arn: str) -> BatchOutcome:
        self.added_columns = []
        try:
            result, report = self._transform_and_write(records)
        except WarehouseUnavailable as exc:
            return BatchOutcome(
                records_in=len(records),
                failed_from=lowest_sequence_number([r.sequence_number for r in records]),
                failure=str(exc)) if records else BatchOutcome()
        outcome = BatchOutcome(
            records_in=result.records_in,
            rejected=len(result.rejects),
            skipped=result.skipped,
            reject_reasons=Counter(r.reason for r in result.rejects),
            newest_commit_timestamp=result.newest_commit_timestamp,
            write_report=report,
            changes_applied=result.change_count,
            table_events=Counter(f"{e.kind}:{e.table}" for e in result.table_events),
            added_columns=list(self.added_columns),
            newest_commit_by_table=dict(result.newest_commit_by_table),
            landed_for_applier=self.writer.applier_queue is not None,
        )
        if result.rejects:
            try:
                self.dead_letters.send(result.rejects, source_arn)
            except DeadLetterUnavailable as exc:
                outcome.failed_from = lowest_sequence_number(
                    [r.sequence_number for r in result.rejects])
                outcome.failure = str(exc)
        return outcome

    def _transform_and_write(self, records: Sequence[StreamRecord],
                             ) -> tuple[TransformResult, WriteReport | None]:
        result = self.transform(records)
        if not records:
            return result, None
        return result, self.writer.stage_and_merge(result.changes, result.table_events,
                                                   result.newest_commit_by_table)


def build_writer(settings: PipelineSettings, spec: PipelineSpec, clients: Any,
                 applier_queue: bool = True) -> RedshiftWriter:
    """The writer and its AWS adapters (the applier's queue only when ``applier_queue`` and
    configured); ``clients(name)`` returns a boto3 client."""
    api = RedshiftDataApi(clients("redshift-data"), settings.target,
                          retry=RetryPolicy(attempts=settings.retry_attempts))
    stager = None
    if settings.staging_bucket and settings.copy_iam_role_arn:
        stager = S3Stager(clients("s3"), settings.staging_bucket, settings.staging_prefix,
                          settings.copy_iam_role_arn)
    queue = (SqsApplierQueue(clients("sqs"), settings.applier_queue_url)
             if applier_queue and settings.applier_queue_url else None)
    return RedshiftWriter(spec, api, stager, queue)


def build_consumer(
    settings: PipelineSettings, spec: PipelineSpec, hmac_key: bytes, clients: Any
) -> BatchConsumer:
    """Wire the core to its AWS adapters; ``clients(name)`` returns a boto3 client."""
    dead_letters = SqsDeadLetterQueue(
        clients("sqs"), settings.dead_letter_queue_url,
        overflow_s3=clients("s3") if settings.staging_bucket else None,
        overflow_bucket=settings.staging_bucket,
    )
    return BatchConsumer(spec, hmac_key, build_writer(settings, spec, clients), dead_letters)



