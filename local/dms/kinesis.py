"""Kinesis PutRecords the way DMS uses it: chunks within the API limits, failed entries retried.

A PutRecords call takes at most 500 records and 5 MiB (data plus partition keys); a record is
at most 1 MiB. PutRecords is not atomic: some entries of a call can fail (throttling, internal
errors, reported per entry with ``FailedRecordCount``) while the others are stored, so only the
failed ones are sent again, with exponential backoff and full jitter. A retried entry lands
after entries that were sent later, as with DMS; the consumer orders changes by their source
position, not by their place in the stream.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError

from local.dms.records import KinesisEntry

log = logging.getLogger(__name__)

MAX_RECORDS_PER_PUT = 500
MAX_BYTES_PER_PUT = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
RETRYABLE_ERRORS = frozenset((
    "ProvisionedThroughputExceededException", "LimitExceededException", "InternalFailure",
    "InternalFailureException", "ServiceUnavailable", "ServiceUnavailableException",
    "ThrottlingException", "KMSThrottlingException",
))


class KinesisPutError(RuntimeError):
    """Records could not be put within the retry budget."""


class RecordTooLarge(ValueError):
    """A record over Kinesis's 1 MiB limit: it can never be put."""


def chunks(entries: Sequence[KinesisEntry], max_records: int = MAX_RECORDS_PER_PUT,
           max_bytes: int = MAX_BYTES_PER_PUT) -> Iterator[list[KinesisEntry]]:
    """Consecutive runs of ``entries`` that each fit one PutRecords call."""
    chunk: list[KinesisEntry] = []
    size = 0
    for entry in entries:
        if entry.size > MAX_RECORD_BYTES:
            raise RecordTooLarge(f"a record of {entry.size} bytes is over Kinesis's 1 MiB limit")
        if chunk and (len(chunk) >= max_records or size + entry.size > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry.size
    if chunk:
        yield chunk


@dataclass
class PutRetryPolicy:
    attempts: int = 12
    base_delay: float = 0.05
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


@dataclass
class PutStats:
    records: int = 0
    calls: int = 0
    retried_entries: int = 0


class KinesisPutter:
    """Puts ``KinesisEntry`` lists to one stream (by name, or by ARN if it starts ``arn:``)."""

    def __init__(self, client: Any, stream: str, retry: PutRetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self._target = {"StreamARN": stream} if stream.startswith("arn:") else {
            "StreamName": stream}
        self.retry = retry or PutRetryPolicy()
        self.stats = PutStats()
        self._sleep = sleep

    def put(self, entries: Sequence[KinesisEntry]) -> int:
        """Put every entry (in order, chunk by chunk); returns how many were put."""
        for chunk in chunks(entries):
            self._put_chunk(chunk)
        return len(entries)

    def _put_chunk(self, chunk: list[KinesisEntry]) -> None:
        pending = chunk
        attempt = 0
        while True:
            try:
                response = self.client.put_records(
                    Records=[{"Data": e.data, "PartitionKey": e.partition_key} for e in pending],
                    **self._target,
                )
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in RETRYABLE_ERRORS:
                    raise
                failed = pending
                reason = code
            except (EndpointConnectionError, ConnectionError) as exc:
                failed = pending
                reason = type(exc).__name__
            else:
                self.stats.calls += 1
                if not response.get("FailedRecordCount"):
                    self.stats.records += len(pending)
                    return
                results = response["Records"]
                failed = [e for e, r in zip(pending, results, strict=True) if r.get("ErrorCode")]
                self.stats.records += len(pending) - len(failed)
                reason = next(r["ErrorCode"] for r in results if r.get("ErrorCode"))
            attempt += 1
            if attempt >= self.retry.attempts:
                raise KinesisPutError(
                    f"{len(failed)} record(s) not put after {attempt} attempts ({reason})")
            self.stats.retried_entries += len(failed)
            log.info("retrying %d of %d record(s) (%s), attempt %d",
                     len(failed), len(pending), reason, attempt)
            self._sleep(self.retry.delay(attempt))
            pending = failed
