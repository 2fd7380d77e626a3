"""One consumer batch, end to end: transform, write, dead-letter the rejects.

The same steps serve the Lambda handler and the DLQ replay tool. Order matters: the warehouse
write comes first, then the dead-letter queue, so a retry after any failure repeats as little
as possible and loses nothing:

- warehouse unavailable (after the writer's own retries): nothing of the batch is known to be
  applied, so the batch fails from its lowest sequence number and comes again (the MERGE is
  idempotent and order-guarded, so what did commit is not applied twice);
- dead-letter queue unavailable: the batch fails from the lowest rejected record;
- a statement Redshift refuses for another reason raises ``StatementFailed`` (the Lambda then
  fails the invocation, so the event source mapping can bisect the batch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.data_api import RedshiftDataApi, RetryPolicy, WarehouseUnavailable
from shared.dead_letter import DeadLetterUnavailable, SqsDeadLetterQueue
from shared.records import Reject, StreamRecord
from shared.redshift_writer import RedshiftWriter, S3Stager, WriteReport
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


def lowest_sequence_number(numbers: Sequence[str]) -> str:
    """Kinesis sequence numbers are decimal strings; compare them as numbers."""
    return min(numbers, key=lambda n: (len(n), n))


class BatchProcessor:
    def __init__(
        self, transformer: Transformer, writer: RedshiftWriter, dead_letters: DeadLetterSink
    ) -> None:
        self.transformer = transformer
        self.writer = writer
        self.dead_letters = dead_letters

    def process(self, records: Sequence[StreamRecord], source_arn: str) -> BatchOutcome:
        result = self.transformer.transform(records)
        outcome = BatchOutcome(
            records_in=result.records_in,
            rejected=len(result.rejects),
            skipped=result.skipped,
            reject_reasons=Counter(r.reason for r in result.rejects),
            newest_commit_timestamp=result.newest_commit_timestamp,
        )
        if not records:
            return outcome
        try:
            outcome.write_report = self.writer.stage_and_merge(result.changes)
        except WarehouseUnavailable as exc:
            outcome.failed_from = lowest_sequence_number([r.sequence_number for r in records])
            outcome.failure = str(exc)
            return outcome
        outcome.changes_applied = result.change_count
        if result.rejects:
            try:
                self.dead_letters.send(result.rejects, source_arn)
            except DeadLetterUnavailable as exc:
                outcome.failed_from = lowest_sequence_number(
                    [r.sequence_number for r in result.rejects])
                outcome.failure = str(exc)
        return outcome


def build_processor(
    settings: PipelineSettings, spec: PipelineSpec, hmac_key: bytes, clients: Any
) -> BatchProcessor:
    """Wire the core to its AWS adapters; ``clients(name)`` returns a boto3 client."""
    api = RedshiftDataApi(clients("redshift-data"), settings.target,
                          retry=RetryPolicy(attempts=settings.retry_attempts))
    stager = None
    if settings.staging_bucket and settings.copy_iam_role_arn:
        stager = S3Stager(clients("s3"), settings.staging_bucket, settings.staging_prefix,
                          settings.copy_iam_role_arn)
    dead_letters = SqsDeadLetterQueue(
        clients("sqs"), settings.dead_letter_queue_url,
        overflow_s3=clients("s3") if settings.staging_bucket else None,
        overflow_bucket=settings.staging_bucket,
    )
    return BatchProcessor(Transformer(spec, hmac_key), RedshiftWriter(spec, api, stager),
                          dead_letters)



