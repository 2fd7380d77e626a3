"""Replay the dead-letter queue through the core once its records are fixable.

Typical use: records were rejected because the spec was too strict (a column too short, a
type too narrow); after the spec is fixed and deployed, replay them. Each message is decoded
again with the current spec; what now passes is written with the usual stage-and-MERGE
transaction (the original order keys travel with it, so a replayed old change cannot
overwrite a newer row) and deleted from the queue; what still fails stays in the queue.
``--dry-run`` only reports what would happen and leaves the queue as it was.

    python -m tools.dlq_replay --dry-run          # configuration from the consumer's variables
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3

from shared.consumer import BatchConsumer, build_consumer
from shared.records import StreamRecord
from shared.settings import hmac_key_from_secret
from tools.cli_settings import add_spec_argument, settings_and_spec


@dataclass
class ReplayReport:
    messages: int = 0
    replayed: int = 0
    still_rejected: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0


def _record(body: dict[str, Any], s3: Any) -> StreamRecord:
    payload = body.get("payload")
    if payload is None and body.get("payloadS3Uri"):
        bucket, _, key = str(body["payloadS3Uri"]).removeprefix("s3://").partition("/")
        payload = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("ascii")
    if not isinstance(payload, str):
        raise ValueError("dead-letter message without a payload")
    return StreamRecord(payload, str(body["sequenceNumber"]), str(body.get("partitionKey", "")),
                        str(body.get("shardId", "")))


def replay(
    sqs: Any, s3: Any, queue_url: str, processor: BatchConsumer, dry_run: bool,
    max_messages: int = 10_000,
) -> ReplayReport:
    report = ReplayReport()
    seen: set[str] = set()
    kept: list[str] = []  # receipt handles of messages that stay in the queue
    while report.messages < max_messages:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                  VisibilityTimeout=120, WaitTimeSeconds=0)
        messages = [m for m in got.get("Messages", []) if m["MessageId"] not in seen]
        if not messages:
            break
        seen.update(m["MessageId"] for m in messages)
        report.messages += len(messages)
        records: dict[str, tuple[StreamRecord, dict[str, Any]]] = {}
        for message in messages:
            try:
                records[message["MessageId"]] = (_record(json.loads(message["Body"]), s3), message)
            except (ValueError, KeyError):
                report.unreadable += 1
        result = processor.transform([r for r, _ in records.values()])
        rejected = {r.sequence_number: r.reason for r in result.rejects}
        report.still_rejected.update(rejected.values())
        fixable = [m for r, m in records.values() if r.sequence_number not in rejected]
        if not dry_run and fixable:
            processor.writer.stage_and_merge(result.changes, result.table_events)
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(fixable)])
        report.replayed += len(fixable)
        deleted = {m["MessageId"] for m in fixable} if not dry_run else set()
        kept += [m["ReceiptHandle"] for m in messages if m["MessageId"] not in deleted]
    _release(sqs, queue_url, kept)
    return report


def _release(sqs: Any, queue_url: str, receipt_handles: list[str]) -> None:
    """Make the messages we keep visible again right away."""
    for start in range(0, len(receipt_handles), 10):
        chunk = receipt_handles[start : start + 10]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(chunk)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queue-url", help="dead-letter queue (default: DEAD_LETTER_QUEUE_URL)")
    add_spec_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    parser.add_argument("--max-messages", type=int, default=10_000)
    args = parser.parse_args(argv)
    overrides = {"DEAD_LETTER_QUEUE_URL": args.queue_url} if args.queue_url else {}
    settings, spec = settings_and_spec(args.spec, overrides)
    secret = boto3.client("secretsmanager").get_secret_value(
        SecretId=settings.hmac_key_secret_arn)["SecretString"]
    processor = build_consumer(settings, spec, hmac_key_from_secret(secret), boto3.client)
    report = replay(boto3.client("sqs"), boto3.client("s3"), settings.dead_letter_queue_url,
                    processor, args.dry_run, args.max_messages)
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{report.messages} messages: {verb} {report.replayed}, "
          f"{sum(report.still_rejected.values())} still rejected, {report.unreadable} unreadable")
    for reason, count in report.still_rejected.most_common():
        print(f"  still rejected x{count}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
