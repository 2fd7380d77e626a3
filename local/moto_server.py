"""moto's server, with the costs real AWS does not have taken out.

Two parts of moto grow with use in ways the services they stand in for do not, and on a
2-core machine they made every local benchmark measure moto:

- **Kinesis.** ``Shard.put_record`` lists every key of the shard to find the last sequence
  number, and ``Shard.get_records`` walks the shard from its first record on every call: a put
  or a get costs time in proportion to the records the stream holds, so a 100,000-change
  backlog drained slower and slower. A Kinesis shard's throughput does not depend on how much
  it retains ("Amazon Kinesis Data Streams Quotas and Limits": a shard takes 1 MiB or 1,000
  records per second and serves 2 MiB per second, whatever its retention holds). Here the
  last and first sequence numbers are read from the ends of the shard's ordered dict and a
  read starts at its position (a shard's sequence numbers are consecutive in moto; when
  they are not, moto's own walk runs).
- **Routing.** For every request moto's dispatcher lists its package directory (``isdir`` on
  every service module) under a lock; the list never changes while it runs, so it is read
  once.
- **SQS.** ``ReceiveMessage`` checks each message it returns against the queue's retention
  period by computing all of the queue's attributes, ``ApproximateNumberOfMessages`` among
  them (a pass over every message), three times: a receive cost time in proportion to the
  messages waiting, 47 ms of the server's CPU for 10 messages out of 300. SQS's receive does
  not slow with the queue's depth ("Amazon SQS quotas": nearly unlimited messages per second
  for standard queues). Here the retention period is read from the queue itself.
- **Request log.** werkzeug writes a line per request to the log (through colorama on a
  terminal); only warnings and errors are logged.

Results are what moto returns, record for record; only the time to produce them changes.

A registered stream consumer's ARN ends with ``:<creation time>``, as Kinesis's does (moto
leaves it out).

Two things are added. **SubscribeToShard** (enhanced fan-out), which moto does not have, is
served by ``local.kinesis_fan_out`` (installed by ``patch``). And **Kinesis's per-shard
throughput**, which moto does not enforce, so that a
producer or consumer that would be throttled on AWS is throttled here too (the developers'
guide: stand-ins enforce the service's limits). From "Amazon Kinesis Data Streams Quotas and
Limits" and the PutRecords / GetRecords pages of the Kinesis API Reference:

- writes: a shard takes up to 1,000 records and 1 MiB (data plus partition key) per second.
  PutRecords is not atomic: a record over the limit fails on its own, with ``ErrorCode``
  ``ProvisionedThroughputExceededException`` and an ``ErrorMessage`` that names the shard,
  stream and account ("Rate exceeded for shard shardId-000000000001 in stream
  exampleStreamName under account 111111111111.", the PutRecords page's example), counted in
  ``FailedRecordCount``, while the others are stored ("A single record failure does not stop
  the processing of subsequent records"). PutRecord over the limit fails as a whole with
  ``ProvisionedThroughputExceededException`` (HTTP 400).
- reads: a shard serves up to 5 GetRecords calls and 2 MiB per second. A call over either
  limit fails with ``ProvisionedThroughputExceededException`` and returns nothing ("You will
  get an error, but not a partial result if the shard's provisioned throughput is
  exceeded"). The bytes a call returns are charged after it: "If a call returns 10 MiB of
  data, subsequent calls made within the next 5 seconds throw
  ProvisionedThroughputExceededException", so what a call reads beyond its second's 2 MiB is
  carried into the following seconds. The message is the one AWS SDKs show for a throttled
  read: "Rate exceeded for Shard - <account>/<stream>/<shard>" (seen in
  awslabs/amazon-kinesis-client issue 1521). A call returns at most 10 MiB ("GetRecords
  can retrieve up to 10 MiB of data per call from a single shard"); moto returned any amount.

AWS does not document how it cuts time into seconds; here a shard counts per one-second window
that opens with its first write (or read) after the previous window closed, and judges all the
records of one PutRecords request at the same instant. The check is a few
integer operations per record under a per-shard lock; no history is kept.

``python -m local.moto_server`` takes moto.server's arguments.
"""

from __future__ import annotations

import calendar
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from local import kinesis_fan_out

_PATCHED = False

WRITE_RECORDS_PER_SECOND = 1_000
WRITE_BYTES_PER_SECOND = 1024 * 1024
READ_CALLS_PER_SECOND = 5
READ_BYTES_PER_SECOND = 2 * 1024 * 1024
READ_BYTES_PER_CALL = 10 * 1024 * 1024
THROTTLED = "ProvisionedThroughputExceededException"


class ShardLimits:
    """One shard's write and read throughput, counted in one-second windows.

    ``admit_write`` says whether one more record of ``size`` bytes fits the current write
    window (and counts it if so). ``admit_read`` says whether a GetRecords call may run now
    (and counts it); ``charge_read`` adds the bytes the call returned, which may overdraw the
    window: the excess is paid by the next windows, 2 MiB each, before another read runs.
    ``clock`` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._write_start: float | None = None
        self._write_records = 0
        self._write_bytes = 0
        self._read_start: float | None = None
        self._read_calls = 0
        self._read_bytes = 0

    def admit_write(self, size: int, now: float | None = None) -> bool:
        """``now`` (the clock's time) judges every record of one request at one instant, so a
        request does not straddle two windows."""
        with self._lock:
            now = self._clock() if now is None else now
            if self._write_start is None or now - self._write_start >= 1.0:
                self._write_start, self._write_records, self._write_bytes = now, 0, 0
            if (self._write_records >= WRITE_RECORDS_PER_SECOND
                    or self._write_bytes + size > WRITE_BYTES_PER_SECOND):
                return False
            self._write_records += 1
            self._write_bytes += size
            return True

    def admit_read(self) -> bool:
        with self._lock:
            now = self._clock()
            if self._read_start is None:
                self._read_start = now
            elif now - self._read_start >= 1.0:
                windows = int(now - self._read_start)
                self._read_bytes = max(0, self._read_bytes - windows * READ_BYTES_PER_SECOND)
                self._read_start = now if self._read_bytes == 0 else (
                    self._read_start + windows)
                self._read_calls = 0
            if (self._read_calls >= READ_CALLS_PER_SECOND
                    or self._read_bytes >= READ_BYTES_PER_SECOND):
                return False
            self._read_calls += 1
            return True

    def charge_read(self, size: int) -> None:
        with self._lock:
            self._read_bytes += size


def record_size(data: str, partition_key: str) -> int:
    """Bytes a record counts for: its data (``data`` is base64, as moto keeps it) and its
    partition key ("The record size limit applies to the total size of the partition key and
    data blob", PutRecords)."""
    padding = 2 if data.endswith("==") else 1 if data.endswith("=") else 0
    return len(data) * 3 // 4 - padding + len(partition_key.encode("utf-8"))


def write_throttled_message(shard_id: str, stream_name: str, account_id: str) -> str:
    return f"Rate exceeded for shard {shard_id} in stream {stream_name} under account {account_id}."


def read_throttled_message(shard_id: str, stream_name: str, account_id: str) -> str:
    return f"Rate exceeded for Shard - {account_id}/{stream_name}/{shard_id}"


_LIMITS_GUARD = threading.Lock()


def shard_limits(shard: Any) -> ShardLimits:
    """The limits of a moto ``Shard``, created with it on first use."""
    limits: ShardLimits | None = getattr(shard, "_cdc_limits", None)
    if limits is None:
        with _LIMITS_GUARD:
            limits = getattr(shard, "_cdc_limits", None)
            if limits is None:
                limits = ShardLimits()
                shard._cdc_limits = limits
    return limits


def _last_key(records: Any) -> int:
    return next(reversed(records)) if records else 0


def _first_key(records: Any) -> int:
    return next(iter(records)) if records else 0


def patch() -> None:
    """Apply the patches to this process's moto (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import moto.backends as backends
    from moto.kinesis.models import Shard

    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> Iterable[str]:
        return modules

    backends.list_of_moto_modules = list_of_moto_modules

    walk = Shard.get_records

    def get_records(self: Any, last_sequence_id: str, limit: int | None
                    ) -> tuple[list[Any], int, int]:
        records = self.records
        first, last = _first_key(records), _last_key(records)
        if not records or last - first + 1 != len(records):
            return walk(self, last_sequence_id, limit)
        after = int(last_sequence_id)
        begin = max(after + 1, first)
        end = last if limit is None else min(last, begin + limit - 1)
        results = [records[k] for k in range(begin, end + 1)]
        if not results:
            return [], after, 0
        behind = records[last].created_at - results[-1].created_at
        return results, results[-1].sequence_number, int(behind * 1000)

    Shard.get_records = get_records  # type: ignore[method-assign]
    Shard.get_max_sequence_number = (  # type: ignore[method-assign]
        lambda self: _last_key(self.records))
    Shard.get_min_sequence_number = (  # type: ignore[method-assign]
        lambda self: _first_key(self.records))
    _retention_check_reads_the_queue()
    _consumer_arns_carry_their_creation()
    _limit_throughput()
    kinesis_fan_out.install()
    _PATCHED = True


def _consumer_arns_carry_their_creation() -> None:
    """moto names a registered stream consumer ``.../stream/<stream>/consumer/<name>``;
    Kinesis appends ``:`` and the registration's time in epoch seconds (ConsumerARN's pattern
    in the Kinesis API Reference, "ConsumerDescription": ``...consumer/<name>:[0-9]+``;
    "RegisterStreamConsumer"'s example ends ``consumer/ExampleConsumerName:1519334167``).
    Code that builds or parses a consumer's ARN meets the real form here too."""
    from moto.kinesis.models import Consumer

    register = Consumer.__init__

    def __init__(self: Any, consumer_name: str, account_id: str, region_name: str,
                 stream_arn: str) -> None:
        register(self, consumer_name, account_id, region_name, stream_arn)
        self.consumer_arn += f":{calendar.timegm(self.created.utctimetuple())}"

    Consumer.__init__ = __init__  # type: ignore[method-assign]


def _retention_check_reads_the_queue() -> None:
    """moto's retention check of a received message, without computing every attribute of
    the queue (see the module's docstring): the same comparison, the period read directly."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str,
                                                    message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > unix_time())

    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period)


def _limit_throughput() -> None:
    """Wrap moto's KinesisBackend PutRecord, PutRecords and GetRecords in the shards' limits."""
    from moto.core.exceptions import JsonRESTError
    from moto.kinesis.exceptions import (
        RecordSizeExceedsLimit,
        TooManyRecords,
        TotalRecordsSizeExceedsLimit,
    )
    from moto.kinesis.models import KinesisBackend
    from moto.kinesis.utils import decompose_shard_iterator

    put_record, put_records, get_records = (
        KinesisBackend.put_record, KinesisBackend.put_records, KinesisBackend.get_records)

    def limited_put_record(self: Any, stream_arn: str, stream_name: str, partition_key: str,
                           explicit_hash_key: str, data: str) -> tuple[str, str]:
        stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        shard = stream.get_shard_for_key(partition_key, explicit_hash_key)
        if shard is not None and not shard_limits(shard).admit_write(
                record_size(data or "", partition_key)):
            raise JsonRESTError(THROTTLED, write_throttled_message(
                shard.shard_id, stream.stream_name, self.account_id))
        return put_record(self, stream_arn, stream_name, partition_key,
                          explicit_hash_key, data)

    def limited_put_records(self: Any, stream_arn: str, stream_name: str,
                            records: list[dict[str, Any]]) -> dict[str, Any]:
        stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        # moto's own checks of the request come first, as they do on AWS
        if len(records) > 500:
            raise TooManyRecords
        sizes = [record_size(r.get("Data") or "", r.get("PartitionKey") or "") for r in records]
        if sum(sizes) > 5 * 1024 * 1024:
            raise TotalRecordsSizeExceedsLimit
        over = next((i for i, size in enumerate(sizes) if size > 1024 * 1024), None)
        if over is not None:
            raise RecordSizeExceedsLimit(position=over + 1)
        refused: dict[int, dict[str, str]] = {}
        now = time.monotonic()
        for i, (record, size) in enumerate(zip(records, sizes, strict=True)):
            partition_key = record.get("PartitionKey")
            if not isinstance(partition_key, str):
                continue  # moto's put_records gives the error
            shard = stream.get_shard_for_key(partition_key, record.get("ExplicitHashKey"))
            if shard is not None and not shard_limits(shard).admit_write(size, now):
                refused[i] = {"ErrorCode": THROTTLED, "ErrorMessage": write_throttled_message(
                    shard.shard_id, stream.stream_name, self.account_id)}
        if not refused:
            return put_records(self, stream_arn, stream_name, records)
        admitted = [r for i, r in enumerate(records) if i not in refused]
        stored = iter(put_records(self, stream_arn, stream_name, admitted)["Records"]
                      if admitted else [])
        return {"FailedRecordCount": len(refused),
                "Records": [refused[i] if i in refused else next(stored)
                            for i in range(len(records))]}

    def limited_get_records(self: Any, stream_arn: str | None, shard_iterator: str,
                            limit: int | None) -> tuple[str, list[Any], int]:
        stream_name, shard_id, _ = decompose_shard_iterator(shard_iterator)
        stream = self.describe_stream(stream_arn=stream_arn, stream_name=stream_name)
        limits = shard_limits(stream.get_shard(shard_id))
        if not limits.admit_read():
            raise JsonRESTError(THROTTLED, read_throttled_message(
                shard_id, stream.stream_name, self.account_id))
        result: tuple[str, list[Any], int] = get_records(
            self, stream_arn, shard_iterator, limit)
        sizes = [record_size(r.data, r.partition_key) for r in result[1]]
        total = sum(sizes)
        if total > READ_BYTES_PER_CALL:
            # "GetRecords can retrieve up to 10 MiB of data per call from a single shard"
            # (Quotas and Limits): read again, only the records that fit (at least one)
            fit, total = 0, 0
            while fit < len(sizes) and (fit == 0 or total + sizes[fit] <= READ_BYTES_PER_CALL):
                total += sizes[fit]
                fit += 1
            result = get_records(self, stream_arn, shard_iterator, fit)
        limits.charge_read(total)
        return result

    KinesisBackend.put_record = limited_put_record  # type: ignore[method-assign]
    KinesisBackend.put_records = limited_put_records  # type: ignore[method-assign]
    KinesisBackend.get_records = limited_get_records  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    patch()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
