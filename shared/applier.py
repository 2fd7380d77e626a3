"""The single applier: consumers hand it landed batches; it applies them all at once.

A consumer with an applier queue puts its batch's landing rows in S3 and sends one message
(``SqsApplierQueue.send``: ``{"batch_id", "key", "newest_commit", "newest_commit_by_table"}``,
``landed_message``); it sends no SQL. The commit timestamps let the applier report freshness
where the change becomes visible (``SourceLag``, ``TableFreshness``) once it committed.

The applier function receives up to thousands of such messages per invocation and applies
them with one manifest COPY and one ``_cdc_apply_pending`` call
(``RedshiftWriter.apply_landed``), so the number of Redshift transactions follows the
applier's pace, not the number of shards, and no table an analyst reads is locked
(docs/warehouse-apply.md).

Failures, as a demanding operator expects them:

- the warehouse unavailable (after the Data API retries), or the apply statement stopped
  (ABORTED: an operator's ``CancelStatement``; ``shared.data_api.StatementAborted``): every
  message fails and comes back after the queue's visibility timeout, nothing is bisected (a
  stopped statement says nothing about its batches), as the Kinesis consumer retries its whole
  batch then;
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.data_api import RedshiftDataApi, RetryPolicy, StatementFailed, WarehouseUnavailable
from shared.freshness import commit_moment, newest_by_table, newest_commit
from shared.redshift_writer import RedshiftWriter, S3Stager, WriteReport
from shared.settings import ApplierSettings
from shared.spec import PipelineSpec

_BATCH_ID = re.compile(r"[0-9a-f]{32}")
# An SQS message body is at most 262,144 bytes (256 KiB) ("Amazon SQS message quotas", Amazon
# SQS Developer Guide); a landed message whose per-table commits would not fit keeps the
# batch's newest commit only.
MAX_MESSAGE_BYTES = 262_144


class ApplierQueueUnavailable(WarehouseUnavailable):
    """The applier's queue refused the message: the consumer's batch is retried."""


@dataclass(frozen=True)
class SqsApplierQueue:
    """``shared.redshift_writer.ApplierQueue`` on SQS."""

    client: Any
    queue_url: str

    def send(self, batch_id: str, key: str,
             newest_commit_by_table: Mapping[str, str] | None = None) -> None:
        body = landed_message(batch_id, key, newest_commit_by_table)
        try:
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=body)
        except Exception as exc:  # botocore's ClientError and connection errors alike
            raise ApplierQueueUnavailable(
                f"the applier queue did not take the batch: {type(exc).__name__}") from None


# ReceiveMessage returns at most 10 messages ("ReceiveMessage", Amazon SQS API Reference,
# MaxNumberOfMessages); DeleteMessageBatch takes at most 10 entries.
RECEIVE_LIMIT = 10
# Waiting messages an applier invocation takes behind its event (``WaitingBatches.receive``):
# with the event's 10 (the mapping's batch without a window), up to 1,000 landed batches, of up
# to 10,000 records each, in one apply.
WAITING_LIMIT = 990


@dataclass(frozen=True)
class WaitingMessage:
    message_id: str
    receipt_handle: str
    body: str


@dataclass(frozen=True)
class WaitingBatches:
    """The landed batches still waiting on the applier queue, taken by the applier itself.

    The applier's event source mapping hands an invocation at most 10 messages when it has
    no batching window (Lambda's rule for SQS: a batch size above 10 needs a window of at
    least a second, which every apply would then wait). So an invocation also takes what is
    waiting (``receive``: short polls until one returns less than a full 10 or ``limit`` is
    reached, so it does not chase batches landing meanwhile) and applies it in the same
    transaction: no delay when the queue is quiet, everything waiting in one apply when it is
    not. It deletes the messages it applied (``delete``); a message it
    took but could not apply is left alone and comes back after the queue's visibility
    timeout, counted towards the dead-letter queue's ``maxReceiveCount`` like any other."""

    client: Any
    queue_url: str

    @classmethod
    def of_event_source(cls, client: Any, queue_arn: str) -> WaitingBatches:
        """The queue of an SQS event's ``eventSourceARN`` (arn:aws:sqs:region:account:name),
        at the client's endpoint."""
        parts = queue_arn.split(":")
        if len(parts) != 6 or parts[2] != "sqs":
            raise ValueError("the event's source is not an SQS queue ARN")
        return cls(client, f"{client.meta.endpoint_url.rstrip('/')}/{parts[4]}/{parts[5]}")

    def receive(self, limit: int) -> list[WaitingMessage]:
        taken: list[WaitingMessage] = []
        while len(taken) < limit:
            got = self.client.receive_message(
                QueueUrl=self.queue_url, WaitTimeSeconds=0,
                MaxNumberOfMessages=min(RECEIVE_LIMIT, limit - len(taken))).get("Messages", [])
            taken += [WaitingMessage(m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in got]
            if len(got) < RECEIVE_LIMIT:
                # Short of a full receive: what waited is taken; the batches landing meanwhile
                # are the next invocation's (chasing them would hold this apply back).
                break
        return taken

    def delete(self, messages: Sequence[WaitingMessage]) -> list[str]:
        """Delete ``messages``; the ids of those SQS did not delete (they come back)."""
        failed: list[str] = []
        for start in range(0, len(messages), RECEIVE_LIMIT):
            chunk = messages[start:start + RECEIVE_LIMIT]
            response = self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m.receipt_handle}
                         for n, m in enumerate(chunk)])
            failed += [chunk[int(f["Id"])].message_id for f in response.get("Failed", [])]
        return failed


def landed_message(batch_id: str, key: str,
                   newest_commit_by_table: Mapping[str, str] | None = None) -> str:
    """The applier queue's message for one landed batch: its id, its landing object and, when
    the batch has commit timestamps, its newest source commit overall and per table (ISO
    strings as the transform renders them). Should the per-table map push the body past
    ``MAX_MESSAGE_BYTES`` (about 1,600 tables of 127-character names), it is left out and the
    applier reports ``SourceLag`` only for that batch."""
    fields: dict[str, Any] = {"batch_id": batch_id, "key": key}
    commits = dict(sorted((newest_commit_by_table or {}).items()))
    newest = newest_commit(commits.values())
    if newest is not None:
        fields["newest_commit"] = newest
        fields["newest_commit_by_table"] = commits
    body = json.dumps(fields, separators=(",", ":"))
    if len(body.encode()) > MAX_MESSAGE_BYTES:
        fields["newest_commit_by_table"] = {}
        body = json.dumps(fields, separators=(",", ":"))
    return body


@dataclass(frozen=True)
class LandedBatch:
    """A landed batch the applier is asked to apply. ``newest_commit`` and
    ``newest_commit_by_table`` are absent (None, empty) in a message of a consumer older than
    them (deploys roll: both versions' messages share the queue)."""

    message_id: str
    batch_id: str
    key: str
    newest_commit: str | None = None
    newest_commit_by_table: dict[str, str] = field(default_factory=dict)


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
    by_table = fields.get("newest_commit_by_table", {})
    newest = fields.get("newest_commit")
    if not (isinstance(by_table, dict)
            and all(isinstance(t, str) and t and _is_timestamp(c) for t, c in by_table.items())):
        raise NotALandedBatch("newest_commit_by_table is not an object of table names to ISO "
                              "8601 commit timestamps")
    if newest is not None and not _is_timestamp(newest):
        raise NotALandedBatch("newest_commit is not an ISO 8601 commit timestamp")
    return LandedBatch(message_id, batch_id, key, newest or newest_commit(by_table.values()),
                       by_table)


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        commit_moment(value)
    except ValueError:
        return False
    return True


@dataclass
class ApplierOutcome:
    """What one applier invocation did: the messages that failed (with their reasons, no
    payload), the write reports of the applies that committed, and the newest source commit
    (overall and per table) among the batches those applies made visible."""

    applied: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    reports: list[WriteReport] = field(default_factory=list)
    newest_commit: str | None = None
    newest_commit_by_table: dict[str, str] = field(default_factory=dict)

    @property
    def transactions(self) -> int:
        return sum(r.transactions for r in self.reports)


def applier_writer(settings: ApplierSettings, spec: PipelineSpec, clients: Any,
                   ) -> RedshiftWriter:
    """The applier's writer: the warehouse and the staging bucket, never an applier queue (the
    applier applies; it does not land). ``clients(name)`` returns a boto3 client."""
    api = RedshiftDataApi(clients("redshift-data"), settings.target,
                          retry=RetryPolicy(attempts=settings.retry_attempts))
    stager = S3Stager(clients("s3"), settings.staging_bucket, settings.staging_prefix,
                      settings.copy_iam_role_arn)
    return RedshiftWriter(spec, api, stager)


def apply_batches(writer: RedshiftWriter, batches: Sequence[LandedBatch]) -> ApplierOutcome:
    """Apply ``batches`` in one transaction; on a statement Redshift refuses
    (``StatementFailed``), apply each half on its own (recursively), so a bad batch fails alone.
    ``WarehouseUnavailable`` (``StatementAborted`` among them: a cancelled apply) is raised:
    nothing can be applied now, and no batch is to blame."""
    outcome = ApplierOutcome()
    _apply(writer, list(batches), outcome)
    return outcome


def _apply(writer: RedshiftWriter, batches: list[LandedBatch], outcome: ApplierOutcome) -> None:
    if not batches:
        return
    try:
        outcome.reports.append(writer.apply_landed([b.key for b in batches]))
        outcome.applied += [b.message_id for b in batches]
        outcome.newest_commit = newest_commit(
            c for c in [outcome.newest_commit, *(b.newest_commit for b in batches)] if c)
        outcome.newest_commit_by_table = newest_by_table(
            [outcome.newest_commit_by_table, *(b.newest_commit_by_table for b in batches)])
    except StatementFailed as exc:
        if len(batches) == 1:
            outcome.failed[batches[0].message_id] = str(exc)
            return
        middle = len(batches) // 2
        _apply(writer, batches[:middle], outcome)
        _apply(writer, batches[middle:], outcome)
