"""What crosses the boundary between the mapping and the function: the Kinesis event, the
function's response (``ReportBatchItemFailures``) and the on-failure destination message."""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from local.record_builders import kinesis_event_record

# Lambda's limit for a synchronous invocation's payload (the event).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
_ENVELOPE_BYTES = len(json.dumps({"Records": []}))
_SEPARATOR_BYTES = len(", ")


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """A record read from a shard, with its event entry prebuilt (and its size known)."""

    shard_id: str
    sequence_number: str
    arrival: datetime
    read_at: float  # time.monotonic() when the mapping read it (for the batching window)
    event_record: dict[str, Any]
    size: int  # bytes of the event entry as JSON

    @property
    def position(self) -> int:
        """Kinesis sequence numbers are decimal strings that compare as numbers."""
        return int(self.sequence_number)

    @property
    def partition_key(self) -> str:
        return str(self.event_record["kinesis"]["partitionKey"])


def read_record(
    raw: dict[str, Any], *, shard_id: str, stream_arn: str, invoke_identity_arn: str,
    read_at: float,
) -> KinesisRecord:
    """A ``GetRecords`` record (boto3 has already decoded ``Data`` to bytes)."""
    arrival: datetime = raw["ApproximateArrivalTimestamp"]
    if arrival.tzinfo is None:
        arrival = arrival.replace(tzinfo=UTC)
    entry = kinesis_event_record(
        data=base64.b64encode(raw["Data"]).decode("ascii"),
        partition_key=raw["PartitionKey"],
        sequence_number=raw["SequenceNumber"],
        shard_id=shard_id,
        arrival=arrival.timestamp(),
        stream_arn=stream_arn,
        invoke_identity_arn=invoke_identity_arn,
    )
    return KinesisRecord(shard_id, raw["SequenceNumber"], arrival, read_at, entry,
                         len(json.dumps(entry)))


def fit(records: Iterable[KinesisRecord], batch_size: int, max_payload_bytes: int) -> int:
    """How many records from the head of ``records`` make one batch: at most ``batch_size``
    and at most ``max_payload_bytes`` of event, but always at least one record."""
    count, size = 0, _ENVELOPE_BYTES
    for record in records:
        size += record.size + (_SEPARATOR_BYTES if count else 0)
        if count == batch_size or (count and size > max_payload_bytes):
            break
        count += 1
    return count


def build_event(records: Sequence[KinesisRecord]) -> dict[str, Any]:
    # A fresh copy per invocation: a handler that mutates its event cannot change a retry's.
    return {"Records": [json.loads(json.dumps(r.event_record)) for r in records]}


class Verdict(Enum):
    SUCCESS = "success"
    PARTIAL = "partial"  # batchItemFailures named records of the batch
    INVALID = "invalid"  # a response Lambda cannot use: the whole batch failed
    FUNCTION_ERROR = "function_error"  # the handler raised (or timed out)


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    failed_index: int = 0  # PARTIAL: index of the lowest failed record in the batch
    detail: str = ""  # why, for the log (never a payload)

    @property
    def succeeded(self) -> bool:
        return self.verdict is Verdict.SUCCESS


def read_batch_item_failures(response: Any, identifiers: Collection[str],
                             report_batch_item_failures: bool,
                             ) -> tuple[Verdict, str, list[str]]:
    """Read a handler's ``ReportBatchItemFailures`` response the way Lambda does, for any
    event source (Kinesis sequence numbers, SQS message ids): the verdict, why (for the log,
    never a payload) and, when PARTIAL, the failed identifiers.

    Complete success: no ``ReportBatchItemFailures``, a null response, no or a null or an
    empty ``batchItemFailures``. Complete failure: an entry without ``itemIdentifier``, an
    empty or non-string one, or one that names no item of the batch, or a response that is
    not a JSON object.
    """
    try:
        response = json.loads(json.dumps(response))
    except (TypeError, ValueError):
        # Lambda cannot serialize it: the runtime reports a function error.
        return Verdict.FUNCTION_ERROR, "response is not JSON serializable", []
    if not report_batch_item_failures or response is None:
        return Verdict.SUCCESS, "", []
    if not isinstance(response, dict):
        return Verdict.INVALID, "response is not a JSON object", []
    failures = response.get("batchItemFailures")
    if not failures:
        return Verdict.SUCCESS, "", []
    if not isinstance(failures, list):
        return Verdict.INVALID, "batchItemFailures is not a list", []
    failed: list[str] = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in identifiers:
            return Verdict.INVALID, "an itemIdentifier is missing, empty or not in the batch", []
        failed.append(identifier)
    return Verdict.PARTIAL, "", failed


def parse_response(
    response: Any, records: Sequence[KinesisRecord], report_batch_item_failures: bool
) -> Outcome:
    """A Kinesis batch's outcome (``read_batch_item_failures``): on a partial failure Lambda
    checkpoints before the lowest failed sequence number."""
    index = {r.sequence_number: i for i, r in enumerate(records)}
    verdict, detail, failed = read_batch_item_failures(response, index,
                                                       report_batch_item_failures)
    if verdict is Verdict.PARTIAL:
        return Outcome(Verdict.PARTIAL, failed_index=min(index[f] for f in failed))
    return Outcome(verdict, detail=detail)


def iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


def on_failure_message(
    *, condition: str, records: Sequence[KinesisRecord], stream_arn: str, function_arn: str,
    request_id: str, invoke_count: int, function_error: bool, now: datetime,
) -> dict[str, Any]:
    """The record Lambda sends to an on-failure destination for a Kinesis batch: metadata
    only, never the records themselves (they stay readable in the stream until they expire).

    ``responseContext`` describes the last invocation; a batch that was never invoked (all
    records too old on the first attempt) has an empty one.
    """
    response_context: dict[str, Any] = {}
    if invoke_count:
        response_context = {"statusCode": 200, "executedVersion": "$LATEST"}
        if function_error:
            response_context["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": iso_millis(now),
        "KinesisBatchInfo": {
            "shardId": records[0].shard_id,
            "startSequenceNumber": records[0].sequence_number,
            "endSequenceNumber": records[-1].sequence_number,
            "approximateArrivalOfFirstRecord": iso_millis(records[0].arrival),
            "approximateArrivalOfLastRecord": iso_millis(records[-1].arrival),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }
