"""``LocalEventSourceMapping``: Lambda's Kinesis event source mapping, in-process.

See the package docstring for the behaviour and where it differs from AWS.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from local.dms_records import INVOKE_IDENTITY_ARN
from local.event_source_mapping.checkpoints import (
    CheckpointStore,
    MappingState,
    ShardCheckpoint,
    state_file,
)
from local.event_source_mapping.context import LambdaContext
from local.event_source_mapping.events import (
    MAX_PAYLOAD_BYTES,
    KinesisRecord,
    Outcome,
    Verdict,
    build_event,
    fit,
    on_failure_message,
    parse_response,
    read_record,
)

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

DEFAULT_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:cdc-kinesis-consumer-local"
STARTING_POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
GET_RECORDS_LIMIT = 10_000
MAX_GET_RECORDS_PER_FILL = 5


@dataclass
class MappingCounters:
    """What the mapping did since it was constructed (not persisted)."""

    invocations: int = 0
    records_delivered: int = 0  # records in events, re-deliveries included
    retries: int = 0  # invocations that re-deliver records delivered before
    function_errors: int = 0  # invocations that raised or timed out
    partial_failures: int = 0  # responses with usable batchItemFailures
    invalid_responses: int = 0  # responses Lambda treats as a failure of the whole batch
    bisects: int = 0
    batches_discarded: int = 0  # retries exhausted or records too old
    records_discarded: int = 0
    batches_to_destination: int = 0  # of the discarded, those sent to the on-failure queue


@dataclass
class _Batch:
    """A batch that has been formed and not finished yet: the first ``size`` records of the
    shard's buffer. Once formed it keeps its records until it succeeds or is discarded."""

    size: int
    retries: int = 0  # retries counted toward MaximumRetryAttempts
    invokes: int = 0  # approximateInvokeCount
    request_id: str | None = None
    function_error: bool = False


@dataclass(eq=False)
class _Shard:
    shard_id: str
    parents: tuple[str, ...]
    initial: bool  # existed when the mapping was created: starts at the starting position
    checkpoint: str | None = None
    ended: bool = False  # closed and every record of it checkpointed
    ending_sequence: str | None = None  # from ListShards once the shard is closed
    iterator: str | None = None
    read_to: str | None = None  # the last sequence number read into the buffer
    reached_end: bool = False  # no record will ever follow what was read
    buffer: deque[KinesisRecord] = field(default_factory=deque)
    batches: deque[_Batch] = field(default_factory=deque)
    not_before: float = 0.0  # time.monotonic() before which a failed batch is not retried
    delivered_to: int = -1  # highest sequence number delivered (to count re-deliveries)


class LocalEventSourceMapping:
    """Polls the shards of a Kinesis stream and invokes ``handler(event, context)`` in this
    process, with the batching, checkpointing and error handling of a Lambda Kinesis event
    source mapping (``FunctionResponseTypes: [ReportBatchItemFailures]`` by default).

    ``poll_once()`` does one pass over the shards and returns the number of records it
    finished (checkpointed: processed, or given up and sent to the on-failure destination);
    ``drain()`` polls until nothing is left to do; ``run(stop)`` polls until ``stop`` is set.
    """

    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        handler: Handler,
        *,
        batch_size: int = 100,
        batching_window_seconds: float = 0.0,
        starting_position: str = "TRIM_HORIZON",
        starting_position_timestamp: datetime | None = None,
        bisect_on_error: bool = True,
        maximum_retry_attempts: int = -1,
        maximum_record_age_seconds: float = -1,
        report_batch_item_failures: bool = True,
        on_failure: tuple[Any, str] | None = None,
        state_dir: Path,
        function_arn: str = DEFAULT_FUNCTION_ARN,
        invoke_identity_arn: str = INVOKE_IDENTITY_ARN,
        memory_limit_in_mb: int = 1024,
        function_timeout_seconds: float = 300.0,
        retry_backoff_seconds: float = 1.0,
        poll_interval_seconds: float = 1.0,
        shard_refresh_seconds: float = 10.0,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be 1..10000")
        if not 0 <= batching_window_seconds <= 300:
            raise ValueError("batching_window_seconds must be 0..300")
        if starting_position not in STARTING_POSITIONS:
            raise ValueError(f"starting_position must be one of {STARTING_POSITIONS}")
        if (starting_position == "AT_TIMESTAMP") != (starting_position_timestamp is not None):
            raise ValueError("starting_position_timestamp goes with AT_TIMESTAMP, and only it")
        if not -1 <= maximum_retry_attempts <= 10_000:
            raise ValueError("maximum_retry_attempts must be -1 (infinite) or 0..10000")
        if maximum_record_age_seconds != -1 and not 0 <= maximum_record_age_seconds <= 604_800:
            raise ValueError("maximum_record_age_seconds must be -1 (infinite) or 0..604800")
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.handler = handler
        self.batch_size = batch_size
        self.batching_window_seconds = batching_window_seconds
        self.bisect_on_error = bisect_on_error
        self.maximum_retry_attempts = maximum_retry_attempts
        self.maximum_record_age_seconds = maximum_record_age_seconds
        self.report_batch_item_failures = report_batch_item_failures
        self.on_failure = on_failure
        self.function_arn = function_arn
        self.function_name = function_arn.split(":")[6]
        self.invoke_identity_arn = invoke_identity_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.function_timeout_seconds = function_timeout_seconds
        self.retry_backoff_seconds = retry_backoff_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.shard_refresh_seconds = shard_refresh_seconds
        self.max_payload_bytes = max_payload_bytes
        self.counters = MappingCounters()
        self._lock = threading.RLock()
        self._shards: dict[str, _Shard] = {}
        self._last_refresh = float("-inf")

        summary = kinesis.describe_stream_summary(StreamName=stream_name)
        self.stream_arn: str = summary["StreamDescriptionSummary"]["StreamARN"]
        self._store = CheckpointStore(state_file(state_dir, stream_name, self.function_name))
        loaded = self._store.load()
        created = loaded is None
        self._state = loaded or MappingState(
            stream_arn=self.stream_arn,
            function_arn=function_arn,
            created_at=(starting_position_timestamp.timestamp() if starting_position_timestamp
                        else time.time()),
            starting_position=starting_position,
        )
        self.starting_position = self._state.starting_position
        listed = self._list_shards()
        if created:
            self._state.initial_shards = [s["ShardId"] for s in listed]
            self._store.save(self._state)
        self._merge_shards(listed)
        if created and self.starting_position == "LATEST":
            # LATEST is where the stream ends now, when the mapping is created.
            for shard in self._shards.values():
                shard.iterator = self._get_iterator(shard.shard_id, "LATEST")

    # ----------------------------------------------------------------- public API

    def poll_once(self) -> int:
        """One pass: every shard that is ready gets invocations until it has nothing ready
        (caught up, waiting for its batching window, or a failed batch waiting to be
        retried). Shards take turns, one batch each, like concurrent pollers would."""
        with self._lock:
            self._refresh_shards()
            handled = 0
            resting: set[str] = set()
            while True:
                progressed = False
                for shard in list(self._shards.values()):
                    if shard.shard_id in resting:
                        continue
                    was_ended = shard.ended
                    done, more = self._step(shard)
                    handled += done
                    if more:
                        progressed = True
                    else:
                        resting.add(shard.shard_id)
                    if shard.ended and not was_ended:
                        # Its children may start now.
                        resting -= {s.shard_id for s in self._shards.values()
                                    if shard.shard_id in s.parents}
                        progressed = True
                if not progressed:
                    return handled

    def drain(self, timeout_seconds: float = 30.0) -> int:
        """Poll until every record in the stream is finished; returns the records finished.
        Raises ``TimeoutError`` if that takes longer than ``timeout_seconds`` (a batch that
        fails forever with infinite retries never finishes)."""
        deadline = time.monotonic() + timeout_seconds
        total = 0
        while True:
            handled = self.poll_once()
            total += handled
            if handled == 0 and self.pending_records == 0:
                return total
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.pending_records} records still pending")
            if handled == 0:
                time.sleep(0.005)

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set, resting ``poll_interval_seconds`` when idle. Errors of
        the stream or the destination are logged and retried on the next poll."""
        while not stop.is_set():
            try:
                handled = self.poll_once()
            except Exception:
                logger.exception("event source mapping poll failed")
                handled = 0
            if handled == 0:
                stop.wait(self.poll_interval_seconds)

    @property
    def pending_records(self) -> int:
        """Records read from the stream and not finished yet."""
        with self._lock:
            return sum(len(s.buffer) for s in self._shards.values())

    def checkpoints(self) -> dict[str, str | None]:
        """The last finished sequence number per shard."""
        with self._lock:
            return {s.shard_id: s.checkpoint for s in self._shards.values()}

    def ended_shards(self) -> set[str]:
        """Shards that are closed and finished (their children may be processed)."""
        with self._lock:
            return {s.shard_id for s in self._shards.values() if s.ended}

    # ----------------------------------------------------------------- shards

    def _list_shards(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        response = self.kinesis.list_shards(StreamName=self.stream_name)
        while True:
            shards += response["Shards"]
            token = response.get("NextToken")
            if not token:
                return shards
            response = self.kinesis.list_shards(NextToken=token)

    def _refresh_shards(self) -> None:
        if time.monotonic() - self._last_refresh >= self.shard_refresh_seconds:
            self._merge_shards(self._list_shards())

    def _merge_shards(self, listed: list[dict[str, Any]]) -> None:
        self._last_refresh = time.monotonic()
        for description in listed:
            shard_id = description["ShardId"]
            shard = self._shards.get(shard_id)
            if shard is None:
                saved = self._state.shards.get(shard_id, ShardCheckpoint())
                parents = tuple(p for p in (description.get("ParentShardId"),
                                            description.get("AdjacentParentShardId")) if p)
                shard = _Shard(shard_id, parents, shard_id in self._state.initial_shards,
                               checkpoint=saved.sequence_number, ended=saved.ended)
                self._shards[shard_id] = shard
                logger.info("shard discovered", extra={"shard_id": shard_id,
                                                       "parents": list(parents)})
            shard.ending_sequence = description["SequenceNumberRange"].get("EndingSequenceNumber")

    def _parents_done(self, shard: _Shard) -> bool:
        """Lambda finishes a parent shard before it starts its children (a parent that is no
        longer listed has expired and does not block)."""
        return all(self._shards[p].ended for p in shard.parents if p in self._shards)

    def _get_iterator(self, shard_id: str, kind: str, **position: Any) -> str:
        response = self.kinesis.get_shard_iterator(
            StreamName=self.stream_name, ShardId=shard_id, ShardIteratorType=kind, **position)
        return str(response["ShardIterator"])

    def _iterator(self, shard: _Shard) -> str:
        if shard.iterator is None:
            after = shard.read_to or shard.checkpoint
            if after is not None:
                shard.iterator = self._get_iterator(
                    shard.shard_id, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=after)
            elif not shard.initial or self.starting_position == "TRIM_HORIZON":
                # Shards created after the mapping (by resharding) are read from the start.
                shard.iterator = self._get_iterator(shard.shard_id, "TRIM_HORIZON")
            else:
                # AT_TIMESTAMP, or LATEST after a restart before the shard's first checkpoint:
                # the stream's end when the mapping was created.
                shard.iterator = self._get_iterator(
                    shard.shard_id, "AT_TIMESTAMP",
                    Timestamp=datetime.fromtimestamp(self._state.created_at, UTC))
        return shard.iterator

    def _fill(self, shard: _Shard) -> None:
        """Read until the buffer holds a batch or the shard is caught up."""
        for _ in range(MAX_GET_RECORDS_PER_FILL):
            want = self.batch_size - len(shard.buffer)
            if want <= 0 or shard.reached_end:
                return
            try:
                response = self.kinesis.get_records(ShardIterator=self._iterator(shard),
                                                    Limit=min(want, GET_RECORDS_LIMIT))
            except self.kinesis.exceptions.ExpiredIteratorException:
                shard.iterator = None
                continue
            now = time.monotonic()
            for raw in response["Records"]:
                record = read_record(raw, shard_id=shard.shard_id, stream_arn=self.stream_arn,
                                     invoke_identity_arn=self.invoke_identity_arn, read_at=now)
                shard.buffer.append(record)
                shard.read_to = record.sequence_number
            shard.iterator = response.get("NextShardIterator")
            if shard.iterator is None:
                shard.reached_end = True
                return
            if not response["Records"]:
                # Real Kinesis ends a closed shard with a null NextShardIterator; moto never
                # does, so a closed shard read up to its EndingSequenceNumber (or from LATEST
                # or a timestamp, to nothing) has ended too.
                position = shard.read_to or shard.checkpoint
                if shard.ending_sequence is not None and not response.get("MillisBehindLatest") \
                        and (position is None or int(position) >= int(shard.ending_sequence)):
                    shard.reached_end = True
                return
            if not response.get("MillisBehindLatest"):
                return

    # ----------------------------------------------------------------- batches

    def _step(self, shard: _Shard) -> tuple[int, bool]:
        """At most one invocation for ``shard``: (records finished, whether the shard may
        have more ready in this pass)."""
        if shard.ended or time.monotonic() < shard.not_before or not self._parents_done(shard):
            return 0, False
        if not shard.batches:
            self._fill(shard)
            if not shard.buffer:
                if shard.reached_end:
                    shard.ended = True
                    self._save(shard)
                    logger.info("shard finished", extra={"shard_id": shard.shard_id})
                return 0, False
            size = fit(shard.buffer, self.batch_size, self.max_payload_bytes)
            full = size == self.batch_size or size < len(shard.buffer)
            waited = time.monotonic() - shard.buffer[0].read_at
            if not (full or shard.reached_end or waited >= self.batching_window_seconds):
                return 0, False
            shard.batches.append(_Batch(size))
        batch = shard.batches[0]
        handled = self._expire(shard, batch)
        if batch.size == 0:
            shard.batches.popleft()
            return handled, True
        records = list(islice(shard.buffer, batch.size))
        outcome = self._invoke(shard, batch, records)
        if outcome.succeeded:
            shard.batches.popleft()
            return handled + self._checkpoint(shard, batch.size), True
        done, more = self._failed(shard, batch, records, outcome)
        return handled + done, more

    def _failed(self, shard: _Shard, batch: _Batch, records: Sequence[KinesisRecord],
                outcome: Outcome) -> tuple[int, bool]:
        shard.not_before = time.monotonic() + self.retry_backoff_seconds
        if outcome.verdict is Verdict.PARTIAL and outcome.failed_index > 0:
            # Checkpoint before the lowest failed record; the rest of the batch is retried
            # as a batch of its own. It starts at a new checkpoint, so its retry budget is new.
            shard.batches[0] = _Batch(batch.size - outcome.failed_index)
            return self._checkpoint(shard, outcome.failed_index), False
        if outcome.verdict is Verdict.FUNCTION_ERROR and self.bisect_on_error and batch.size > 1:
            # Bisecting is not a retry attempt: each half inherits the batch's count.
            first = (batch.size + 1) // 2
            shard.batches.popleft()
            shard.batches.extendleft([_Batch(batch.size - first, retries=batch.retries),
                                      _Batch(first, retries=batch.retries)])
            self.counters.bisects += 1
            logger.info("batch bisected", extra={"shard_id": shard.shard_id,
                                                 "records": batch.size})
            return 0, False
        if 0 <= self.maximum_retry_attempts <= batch.retries:
            shard.not_before = 0.0
            shard.batches.popleft()
            return self._discard(shard, batch, records, RETRY_ATTEMPTS_EXHAUSTED), True
        batch.retries += 1
        return 0, False

    def _expire(self, shard: _Shard, batch: _Batch) -> int:
        """Records older than MaximumRecordAgeInSeconds are not sent to the function: the
        too-old head of the batch is discarded, the rest is invoked."""
        if self.maximum_record_age_seconds < 0:
            return 0
        cutoff = time.time() - self.maximum_record_age_seconds
        expired = 0
        for record in islice(shard.buffer, batch.size):
            if record.arrival.timestamp() >= cutoff:
                break
            expired += 1
        if not expired:
            return 0
        handled = self._discard(shard, batch, list(islice(shard.buffer, expired)),
                                RECORD_AGE_EXCEEDED)
        batch.size -= expired
        return handled

    def _invoke(self, shard: _Shard, batch: _Batch, records: Sequence[KinesisRecord]) -> Outcome:
        context = LambdaContext(
            function_name=self.function_name, invoked_function_arn=self.function_arn,
            memory_limit_in_mb=self.memory_limit_in_mb,
            timeout_seconds=self.function_timeout_seconds)
        batch.invokes += 1
        batch.request_id = context.aws_request_id
        self.counters.invocations += 1
        self.counters.records_delivered += len(records)
        if records[0].position <= shard.delivered_to:
            self.counters.retries += 1
        shard.delivered_to = max(shard.delivered_to, records[-1].position)
        log = {"shard_id": shard.shard_id, "request_id": context.aws_request_id,
               "first_sequence_number": records[0].sequence_number,
               "last_sequence_number": records[-1].sequence_number, "records": len(records),
               "attempt": batch.invokes}
        started = time.monotonic()
        try:
            response = self.handler(build_event(records), context)
        except Exception as error:
            # The error's type only: its message may quote record data.
            outcome = Outcome(Verdict.FUNCTION_ERROR, detail=type(error).__name__)
        else:
            outcome = parse_response(response, records, self.report_batch_item_failures)
            if time.monotonic() - started > self.function_timeout_seconds:
                outcome = Outcome(Verdict.FUNCTION_ERROR, detail="timed out")
        batch.function_error = outcome.verdict is Verdict.FUNCTION_ERROR
        if batch.function_error:
            self.counters.function_errors += 1
        elif outcome.verdict is Verdict.PARTIAL:
            self.counters.partial_failures += 1
        elif outcome.verdict is Verdict.INVALID:
            self.counters.invalid_responses += 1
        if outcome.succeeded:
            logger.info("batch succeeded", extra=log)
        else:
            logger.warning("batch failed", extra={**log, "outcome": outcome.verdict.value,
                                                  "detail": outcome.detail,
                                                  "failed_index": outcome.failed_index})
        return outcome

    def _discard(self, shard: _Shard, batch: _Batch, records: Sequence[KinesisRecord],
                 condition: str) -> int:
        """Give up on ``records``: their metadata to the on-failure destination (before the
        checkpoint, so a crash in between sends it again rather than never), then move on."""
        message = on_failure_message(
            condition=condition, records=records, stream_arn=self.stream_arn,
            function_arn=self.function_arn, request_id=batch.request_id or str(uuid.uuid4()),
            invoke_count=batch.invokes, function_error=batch.function_error,
            now=datetime.now(UTC))
        if self.on_failure is not None:
            sqs, queue_url = self.on_failure
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
            self.counters.batches_to_destination += 1
        self.counters.batches_discarded += 1
        self.counters.records_discarded += len(records)
        logger.warning("batch discarded", extra={
            "shard_id": shard.shard_id, "condition": condition,
            "first_sequence_number": records[0].sequence_number,
            "last_sequence_number": records[-1].sequence_number, "records": len(records),
            "sent_to_destination": self.on_failure is not None})
        return self._checkpoint(shard, len(records))

    def _checkpoint(self, shard: _Shard, count: int) -> int:
        """The first ``count`` buffered records are done: drop them, persist the position."""
        for _ in range(count):
            shard.checkpoint = shard.buffer.popleft().sequence_number
        self._save(shard)
        return count

    def _save(self, shard: _Shard) -> None:
        self._state.shards[shard.shard_id] = ShardCheckpoint(shard.checkpoint, shard.ended)
        self._store.save(self._state)
