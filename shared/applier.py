"""The single applier: consumers hand it landed batches; it applies them all at once.

A consumer with an applier queue puts its batch's landing rows in S3 and sends one message
(``SqsApplierQueue.send``: ``{"batch_id", "key"}``); it sends no SQL. The applier function
receives up to thousands of such messages per invocation and applies them with one manifest
COPY and one ``_cdc_apply_pending`` call (``RedshiftWriter.apply_landed``), so the number of
Redshift transactions follows the applier's pace, not the number of shards, and no table an
analyst reads is locked (docs/warehouse-apply.md).

Failures, as a demanding operator expects them:

- the warehouse unavailable (after the Data API retries): every message fails and comes back
  after the queue's visibility timeout;
- a statement Redshift refuses: the messages are split in halves and each half applied on its
  own, down to single batches, so only the batch that cannot be applied fails (and after the
  queue's ``maxReceiveCount`` deliveries goes to the applier's dead-letter queue with the
  error); its neighbours are applied;
- a message that is not a landed batch fails alone with its reason (never retried into the
  warehouse);
- a message delivered twice, or an applier that died after its transaction committed: the
  batch id is in ``_cdc_applied``, so the procedure skips it (applied once).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.data_api import StatementFailed, WarehouseUnavailable
from shared.redshift_writer import RedshiftWriter, WriteReport

_BATCH_ID = re.compile(r"[0-9a-f]{32}")


class ApplierQueueUnavailable(WarehouseUnavailable):
    """The applier's queue refused the message: the consumer's batch is retried."""


@dataclass(frozen=True)
class SqsApplierQueue:
    """``shared.redshift_writer.ApplierQueue`` on SQS."""

    client: Any
    queue_url: str

    def send(self, batch_id: str, key: str) -> None:
        try:
            self.client.send_message(QueueUrl=self.queue_url,
                                     MessageBody=landed_message(batch_id, key))
        except Exception as exc:  # botocore's ClientError and connection errors alike
            raise ApplierQueueUnavailable(
                f"the applier queue did not take the batch: {type(exc).__name__}") from None


def landed_message(batch_id: str, key: str) -> str:
    return json.dumps({"batch_id": batch_id, "key": key}, separators=(",", ":"))


@dataclass(frozen=True)
class LandedBatch:
    message_id: str
    batch_id: str
    key: str


class NotALandedBatch(ValueError):
    """A message on the applier queue that no consumer wrote."""


def parse_landed(message_id: str, body: str, staging_prefix: str) -> LandedBatch:
    """A message of ``SqsApplierQueue``; its key must be a landing object under the staging
    prefix (the applier COPYs what the key names, with the COPY role)."""
    try:
        fields = json.loads(body)
        batch_id, key = fields["batch_id"], fields["key"]
    except (ValueError, TypeError, KeyError):
        raise NotALandedBatch("not a landed batch message (JSON with batch_id and key)") from None
    prefix = staging_prefix.strip("/")
    if not (isinstance(batch_id, str) and _BATCH_ID.fullmatch(batch_id)):
        raise NotALandedBatch("batch_id is not a 32-character hex batch id")
    if key != f"{prefix}/{batch_id}.json".lstrip("/"):
        raise NotALandedBatch("key is not the batch's landing object under the staging prefix")
    return LandedBatch(message_id, batch_id, key)


@dataclass
class ApplierOutcome:
    """What one applier invocation did: the messages that failed (with their reasons, no
    payload) and the write reports of the applies that committed."""

    applied: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    reports: list[WriteReport] = field(default_factory=list)

    @property
    def transactions(self) -> int:
        return sum(r.transactions for r in self.reports)


def apply_batches(writer: RedshiftWriter, batches: Sequence[LandedBatch]) -> ApplierOutcome:
    """Apply ``batches`` in one transaction; on a statement Redshift refuses, apply each half
    on its own (recursively), so a bad batch fails alone. ``WarehouseUnavailable`` is raised:
    nothing can be applied now."""
    outcome = ApplierOutcome()
    _apply(writer, list(batches), outcome)
    return outcome


def _apply(writer: RedshiftWriter, batches: list[LandedBatch], outcome: ApplierOutcome) -> None:
    if not batches:
        return
    try:
        outcome.reports.append(writer.apply_landed([b.key for b in batches]))
        outcome.applied += [b.message_id for b in batches]
    except StatementFailed as exc:
        if len(batches) == 1:
            outcome.failed[batches[0].message_id] = str(exc)
            return
        middle = len(batches) // 2
        _apply(writer, batches[:middle], outcome)
        _apply(writer, batches[middle:], outcome)
