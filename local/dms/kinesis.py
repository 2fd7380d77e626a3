"""Kinesis PutRecords the way DMS uses it: chunks within the API limits, failed entries retried.

A PutRecords call takes at most 500 records and 5 MiB (data plus partition keys); a record is
at most 1 MiB. PutRecords is not atomic: some entries of a call can fail (throttling, internal
errors, reported per entry with ``FailedRecordCount``) while the others are stored ("A single
record failure does not stop the processing of subsequent records", Kinesis API Reference,
PutRecords), so the failed ones are sent again, with exponential backoff and full jitter; the
retry budget counts the calls in a row that stored nothing.

DMS puts the records of one partition key in order (partitioning "keeps every change of one
row on one shard, in order"), but PutRecords "doesn't guarantee the ordering of records" when
some fail: a shard over its 1 MiB per second refuses a large record and may still take a
smaller one after it. So an entry stored after a failed entry of its own partition key is sent
again too, behind the failed one: the last copy of each entry of a key is in order, and the
earlier copies (one per retry that met the same refusal) are duplicates, which the consumer
keeps once (it orders changes by their source position, not by their place in the stream).
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


def again_in_order(entries: Sequence[KinesisEntry], failed: Sequence[bool]) -> list[KinesisEntry]:
    """The entries of a PutRecords call to send again: those that failed, and those stored
    after a failed entry of their own partition key (so that key's last copies are in
    order), in their order."""
    held: set[str] = set()
    again: list[KinesisEntry] = []
    for entry, did_fail in zip(entries, failed, strict=True):
        if did_fail:
            held.add(entry.partition_key)
        if did_fail or entry.partition_key in held:
            again.append(entry)
    return again


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
                failed = again_in_order(pending, [bool(r.get("ErrorCode")) for r in results])
                self.stats.records += len(pending) - len(failed)
                reason = next(r["ErrorCode"] for r in results if r.get("ErrorCode"))
            # the budget counts attempts in a row that stored nothing: a throttled shard that
            # takes part of each call is slow, not failing
            attempt = 1 if len(failed) < len(pending) else attempt + 1
            if attempt >= self.retry.attempts:
                raise KinesisPutError(
                    f"{len(failed)} record(s) not put after {attempt} attempts in a row "
                    f"that stored none ({reason})")
            self.stats.retried_entries += len(failed)
            log.info("retrying %d of %d record(s) (%s), attempt %d",
                     len(failed), len(pending), reason, attempt)
            self._sleep(self.retry.delay(attempt))
            pending = failed
