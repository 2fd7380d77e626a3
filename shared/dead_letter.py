"""The dead-letter queue: rejected records with their reason and original payload.

One SQS message per reject; the body keeps the original base64 data so the replay tool can
send it back through the core once it is fixable. A payload too big for SQS (256 KiB) goes to
S3 and the message points at it. Bodies are never logged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.records import Reject

SQS_MAX_BODY = 256 * 1024
SQS_BATCH = 10


class DeadLetterUnavailable(Exception):
    """Rejects could not be stored; the batch must be retried so nothing is lost."""


def reject_message(reject: Reject, source_arn: str, rejected_at: str) -> dict[str, Any]:
    return {
        "reason": reject.reason,
        "table": reject.table,
        "sequenceNumber": reject.sequence_number,
        "partitionKey": reject.partition_key,
        "shardId": reject.shard_id,
        "eventSourceARN": source_arn,
        "payload": reject.payload,
        "rejectedAt": rejected_at,
    }


@dataclass(frozen=True)
class SqsDeadLetterQueue:
    sqs: Any
    queue_url: str
    overflow_s3: Any = None  # S3 client for payloads over the SQS limit
    overflow_bucket: str | None = None
    overflow_prefix: str = "dead-letter"

    def send(self, rejects: Sequence[Reject], source_arn: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        bodies = [self._body(reject_message(r, source_arn, now)) for r in rejects]
        for start in range(0, len(bodies), SQS_BATCH):
            chunk = bodies[start : start + SQS_BATCH]
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            try:
                response = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:
                raise DeadLetterUnavailable(
                    f"could not send rejects to the dead-letter queue: {type(exc).__name__}"
                ) from None
            failed = response.get("Failed") or []
            if failed:
                codes = sorted({f.get("Code", "?") for f in failed})
                raise DeadLetterUnavailable(
                    f"{len(failed)} rejects were refused by the dead-letter queue: {codes}"
                )

    def _body(self, message: dict[str, Any]) -> str:
        body = json.dumps(message)
        if len(body.encode("utf-8")) <= SQS_MAX_BODY:
            return body
        if self.overflow_s3 is None or not self.overflow_bucket:
            raise DeadLetterUnavailable(
                "a rejected record is larger than an SQS message and no overflow bucket is set"
            )
        key = (f"{self.overflow_prefix.strip('/')}/{message['shardId'] or 'shard'}/"
               f"{message['sequenceNumber']}.b64")
        self.overflow_s3.put_object(Bucket=self.overflow_bucket, Key=key,
                                    Body=message.pop("payload").encode("ascii"))
        message["payloadS3Uri"] = f"s3://{self.overflow_bucket}/{key}"
        return json.dumps(message)


def receive_all(sqs: Any, queue_url: str, visibility_timeout: int = 60) -> list[dict[str, Any]]:
    """Every message now on the queue, bodies parsed, each hidden for ``visibility_timeout``
    seconds (for tools and tests that inspect the dead letters)."""
    bodies: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                  VisibilityTimeout=visibility_timeout)
        if not got.get("Messages"):
            return bodies
        bodies += [json.loads(m["Body"]) for m in got["Messages"]]
