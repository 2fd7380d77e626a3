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
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from local.event_source_mapping.checkpoints import (
    CheckpointStore,
    MappingState,
    ShardCheckpoint,
    state_file,
)
from local.event_source_mapping.context import LambdaContext
from local.event_source_mapping.environments import (
    FunctionEnvironments,
    Handler,
    InProcess,
    IsolatedProcesses,
)
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
from local.event_source_mapping.lanes import MAX_PARALLELIZATION_FACTOR, ShardProgress, lane_of
from local.kinesis_shards import (
    GET_RECORDS_LIMIT,
    STARTING_POSITIONS,
    THROTTLED,
    THROTTLED_READ_BACKOFF_SECONDS,
    RecordSource,
    ShardReader,
    StartingPosition,
    SubscribedShardReader,
    list_shards,
)
from local.record_builders import INVOKE_IDENTITY_ARN

logger = logging.getLogger(__name__)

DEFAULT_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:cdc-kinesis-consumer-local"
RETRY_ATTEMPTS_EXHAUSTED = "RetryAttemptsExhausted"
RECORD_AGE_EXCEEDED = "RecordAgeExceeded"
MAX_GET_RECORDS_PER_FILL = 5
# How far a shard reads ahead of its checkpoint: two batches per lane, and at least 1,000
# records. A lane stuck on a failing record holds the checkpoint; the other lanes go on until
# the shard is this far ahead (what they finished comes again after a restart).
READ_AHEAD_BATCHES_PER_LANE = 2
READ_AHEAD_RECORDS_MIN = 1_000
# A shard serves 5 GetRecords calls a second ("Amazon Kinesis Data Streams Quotas and Limits"):
# a shard's poller makes at most that many in any second, and a read refused anyway with
# ProvisionedThroughputExceededException (another reader of the shard used its share; after
# the SDK's own retries) is tried again from the same iterator once a second has passed, so
# nothing is skipped or read twice. Lambda backs off on a throttled shard and reads it again
# later; AWS does not document by how much.
READS_PER_SECOND = 5
# A pushed shard's idle poller wakes when records arrive; it looks at ``stop`` this often.
PUSHED_WAIT_SECONDS = 0.5

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
    most_concurrent: int = 0  # the most invocations that were running at one moment
    throttled_reads: int = 0  # GetRecords calls refused with ProvisionedThroughputExceeded


@dataclass
class _Batch:
    """A batch that has been formed and not finished yet: the first ``size`` records of its
    lane's queue. Once formed it keeps its records until it succeeds or is discarded."""

    size: int
    retries: int = 0  # retries counted toward MaximumRetryAttempts
    invokes: int = 0  # approximateInvokeCount
    request_id: str | None = None
    function_error: bool = False


@dataclass(eq=False)
class _Lane:
    """One of a shard's ``ParallelizationFactor`` concurrent batches: the shard's unfinished
    records whose partition keys hash to it, in sequence order. Its queue is shared with the
    shard's reader (under the shard's lock); its batches only its own runner touches."""

    index: int
    queue: deque[KinesisRecord] = field(default_factory=deque)
    batches: deque[_Batch] = field(default_factory=deque)
    not_before: float = 0.0  # time.monotonic() before which a failed batch is not retried
    delivered_to: int = -1  # highest sequence number delivered (to count re-deliveries)


@dataclass(eq=False)
class _Shard:
    shard_id: str
    parents: tuple[str, ...]
    initial: bool  # existed when the mapping was created: starts at the starting position
    lanes: list[_Lane]
    reader: RecordSource  # its last_read starts at the checkpoint
    checkpoint: str | None = None
    ended: bool = False  # closed and every record of it checkpointed
    ending_sequence: str | None = None  # from ListShards once the shard is closed
    reached_end: bool = False  # no record will ever follow what was read
    progress: ShardProgress = field(default_factory=ShardProgress)
    lock: threading.Lock = field(default_factory=threading.Lock)  # queues, progress, checkpoint
    serving: threading.Lock = field(default_factory=threading.Lock)  # one poller at a time
    executor: ThreadPoolExecutor | None = None  # the lanes' threads (factor > 1)
    read_not_before: float = 0.0  # time.monotonic() before which the shard is not read
    recent_reads: deque[float] = field(  # when its last READS_PER_SECOND reads were made
        default_factory=lambda: deque(maxlen=READS_PER_SECOND))


class LocalEventSourceMapping:
    """Polls the shards of a Kinesis stream and invokes the function, with the batching,
    concurrency, checkpointing and error handling of a Lambda Kinesis event source mapping
    (``FunctionResponseTypes: [ReportBatchItemFailures]`` by default).

    ``handler`` is a callable ``handler(event, context)`` run in this process (called from
    several threads at once when there are several shards or lanes: it must be thread-safe),
    or ``"package.module.function"``: run in execution environments of their own, one process
    each (``environments.IsolatedProcesses``), as Lambda does.

    With ``consumer_arn`` (an enhanced fan-out consumer of the stream, as the mapping's
    EventSourceArn) the shards' records are pushed to it (SubscribeToShard) instead of polled:
    no GetRecords budget, and an idle shard's poller wakes when records arrive rather than
    after ``poll_interval_seconds``.

    ``poll_once()`` serves every shard once, the shards concurrently, and returns the number
    of records it finished (processed, or given up and sent to the on-failure destination);
    ``drain()`` polls until nothing is left to do; ``run(stop)`` runs one poller thread per
    shard until ``stop`` is set. ``close()`` stops the execution environments.
    """

    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        handler: Handler | str,
        *,
        batch_size: int = 100,
        batching_window_seconds: float = 0.0,
        parallelization_factor: int = 1,
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
        consumer_arn: str | None = None,
    ) -> None:
        if not 1 <= batch_size <= 10_000:
            raise ValueError("batch_size must be 1..10000")
        if not 0 <= batching_window_seconds <= 300:
            raise ValueError("batching_window_seconds must be 0..300")
        if not 1 <= parallelization_factor <= MAX_PARALLELIZATION_FACTOR:
            raise ValueError(
                f"parallelization_factor must be 1..{MAX_PARALLELIZATION_FACTOR}")
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
        self.environments: FunctionEnvironments = (
            IsolatedProcesses(handler) if isinstance(handler, str) else InProcess(handler))
        self.batch_size = batch_size
        self.batching_window_seconds = batching_window_seconds
        self.parallelization_factor = parallelization_factor
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
        self.consumer_arn = consumer_arn
        self.counters = MappingCounters()
        self._lock = threading.RLock()  # the shard map, the saved state, the counters
        self._shards: dict[str, _Shard] = {}
        self._last_refresh = float("-inf")
        self._running = 0  # invocations running now
        self._write_lock = threading.Lock()  # one checkpoint file write at a time
        self._state_version = 0  # checkpoint updates so far
        self._written_version = 0  # the newest update the file holds

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
        listed = list_shards(kinesis, stream_name)
        if created:
            self._state.initial_shards = [s["ShardId"] for s in listed]
            self._store.save(self._state)
        self._merge_shards(listed)
        if created and self.starting_position == "LATEST":
            # LATEST is where the stream ends now, when the mapping is created.
            for shard in self._shards.values():
                shard.reader.start_at_latest()

    # ----------------------------------------------------------------- public API

    def poll_once(self) -> int:
        """Serve every shard that is ready, the shards concurrently (a thread each), each
        until it has nothing ready (caught up, waiting for its batching window, or its failed
        batches waiting to be retried); then the children of shards that ended."""
        with self._lock:
            self._refresh_shards()
        handled = 0
        served: set[str] = set()
        while True:
            with self._lock:
                ready = [s for s in self._shards.values() if s.shard_id not in served
                         and not s.ended and self._parents_done(s)]
            if not ready:
                return handled
            served |= {s.shard_id for s in ready}
            handled += self._serve_concurrently(ready)

    def drain(self, timeout_seconds: float = 30.0) -> int:
        """Poll until every record in the stream is finished; returns the records finished.
        Raises ``TimeoutError`` if that takes longer than ``timeout_seconds`` (a batch that
        fails forever with infinite retries never finishes)."""
        began = time.monotonic()
        deadline = began + timeout_seconds
        total = 0
        while True:
            started = time.monotonic()
            handled = self.poll_once()
            total += handled
            if handled == 0 and self.pending_records == 0 \
                    and not self._reads_held(started, began):
                return total
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.pending_records} records still pending")
            if handled == 0:
                time.sleep(0.005)

    def run(self, stop: threading.Event) -> None:
        """One poller thread per shard, as Lambda has, until ``stop`` is set; shards that
        appear by resharding get theirs at the next listing (every ``shard_refresh_seconds``).
        A poller rests ``poll_interval_seconds`` when its shard is idle. Errors of the stream
        or the destination are logged and retried on the poller's next pass."""
        pollers: dict[str, threading.Thread] = {}
        try:
            while not stop.is_set():
                try:
                    with self._lock:
                        self._refresh_shards()
                except Exception:
                    logger.exception("event source mapping could not list the shards")
                with self._lock:
                    shards = list(self._shards.values())
                for shard in shards:
                    poller = pollers.get(shard.shard_id)
                    if not shard.ended and (poller is None or not poller.is_alive()):
                        poller = threading.Thread(
                            target=self._poll_shard, args=(shard, stop), daemon=True,
                            name=f"esm-poller-{shard.shard_id}")
                        poller.start()
                        pollers[shard.shard_id] = poller
                stop.wait(self.poll_interval_seconds)
        finally:
            stop.set()
            for poller in pollers.values():
                poller.join()

    def close(self) -> None:
        """Stop the execution environments and the lanes' threads (``poll_once``, ``drain``
        and ``run`` must have returned)."""
        self.environments.close()
        with self._lock:
            executors = [s.executor for s in self._shards.values() if s.executor is not None]
            readers = [s.reader for s in self._shards.values()]
            for shard in self._shards.values():
                shard.executor = None
        for reader in readers:
            reader.close()
        for executor in executors:
            executor.shutdown(wait=True)

    def __enter__(self) -> LocalEventSourceMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending_records(self) -> int:
        """Records read from the stream and not checkpointed yet."""
        with self._lock:
            shards = list(self._shards.values())
        total = 0
        for shard in shards:
            with shard.lock:
                total += len(shard.progress)
        return total

    def checkpoints(self) -> dict[str, str | None]:
        """The last finished sequence number per shard."""
        with self._lock:
            return {s.shard_id: s.checkpoint for s in self._shards.values()}

    def ended_shards(self) -> set[str]:
        """Shards that are closed and finished (their children may be processed)."""
        with self._lock:
            return {s.shard_id for s in self._shards.values() if s.ended}

    # ----------------------------------------------------------------- shards

    def _refresh_shards(self) -> None:
        if time.monotonic() - self._last_refresh >= self.shard_refresh_seconds:
            self._merge_shards(list_shards(self.kinesis, self.stream_name))

    def _merge_shards(self, listed: list[dict[str, Any]]) -> None:
        self._last_refresh = time.monotonic()
        for description in listed:
            shard_id = description["ShardId"]
            shard = self._shards.get(shard_id)
            if shard is None:
                saved = self._state.shards.get(shard_id, ShardCheckpoint())
                parents = tuple(p for p in (description.get("ParentShardId"),
                                            description.get("AdjacentParentShardId")) if p)
                initial = shard_id in self._state.initial_shards
                reader: RecordSource
                if self.consumer_arn is None:
                    reader = ShardReader(self.kinesis, self.stream_name, shard_id,
                                         start=self._start(initial),
                                         after=saved.sequence_number)
                else:
                    reader = SubscribedShardReader(self.kinesis, self.consumer_arn, shard_id,
                                                   start=self._start(initial),
                                                   after=saved.sequence_number)
                shard = _Shard(shard_id, parents, initial,
                               [_Lane(i) for i in range(self.parallelization_factor)], reader,
                               checkpoint=saved.sequence_number, ended=saved.ended)
                self._shards[shard_id] = shard
                logger.info("shard discovered", extra={"shard_id": shard_id,
                                                       "parents": list(parents)})
            shard.ending_sequence = description["SequenceNumberRange"].get("EndingSequenceNumber")

    def _reads_held(self, since: float, began: float) -> bool:
        """Whether a polled shard was held from reading at some time after ``since`` (by its
        reads of the last second, or a throttled GetRecords), or a pushed one has not been
        told since ``began`` that it is caught up: what it has not read yet is not known to
        be finished."""
        with self._lock:
            return any(not s.ended and (s.read_not_before > since
                                        or not s.reader.caught_up_since(began))
                       for s in self._shards.values() if self._parents_done(s))

    def _parents_done(self, shard: _Shard) -> bool:
        """Lambda finishes a parent shard before it starts its children (a parent that is no
        longer listed has expired and does not block)."""
        return all(self._shards[p].ended for p in shard.parents if p in self._shards)

    def _start(self, initial: bool) -> StartingPosition:
        """Where a shard with no checkpoint is read from. Shards created after the mapping (by
        resharding) are read from the start; the others from the mapping's starting position:
        TRIM_HORIZON, or the stream's end when the mapping was created (AT_TIMESTAMP, or LATEST
        read again after a restart before the shard's first checkpoint)."""
        if not initial or self.starting_position == "TRIM_HORIZON":
            return StartingPosition("TRIM_HORIZON")
        return StartingPosition("AT_TIMESTAMP",
                                datetime.fromtimestamp(self._state.created_at, UTC))

    def _fill(self, shard: _Shard, idle: Sequence[_Lane]) -> None:
        """Read until each idle lane holds a batch, the shard is caught up, or the shard is
        far enough ahead of its checkpoint (``READ_AHEAD_*``). Records go to the lane of their
        partition key. Only the shard's poller reads."""
        read_ahead = max(self.batch_size * len(shard.lanes) * READ_AHEAD_BATCHES_PER_LANE,
                         READ_AHEAD_RECORDS_MIN)
        for _ in range(MAX_GET_RECORDS_PER_FILL):
            with shard.lock:
                lacking = sum(max(0, self.batch_size - len(lane.queue)) for lane in idle)
                room = read_ahead - len(shard.progress)
            if lacking <= 0 or room <= 0 or shard.reached_end:
                return
            # One lane reads what its batch lacks, as Lambda does; lanes sharing a shard read
            # ahead in one call what the others will want too (a GetRecords call is the
            # costly part, and one lane's batch is a fraction of what is read).
            want = min(lacking if len(shard.lanes) == 1 else room, GET_RECORDS_LIMIT)
            if shard.reader.polled:
                now = time.monotonic()
                if len(shard.recent_reads) == READS_PER_SECOND:
                    shard.read_not_before = max(shard.read_not_before,
                                                shard.recent_reads[0] + 1.0)
                if now < shard.read_not_before:
                    return
                shard.recent_reads.append(now)
            try:
                page = shard.reader.read(want)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != THROTTLED:
                    raise
                shard.read_not_before = time.monotonic() + THROTTLED_READ_BACKOFF_SECONDS
                with self._lock:
                    self.counters.throttled_reads += 1
                logger.info("GetRecords throttled, backing off",
                            extra={"shard_id": shard.shard_id})
                return
            now = time.monotonic()
            records = [read_record(raw, shard_id=shard.shard_id, stream_arn=self.stream_arn,
                                   invoke_identity_arn=self.invoke_identity_arn, read_at=now)
                       for raw in page.records]
            with shard.lock:
                for record in records:
                    shard.progress.read(record.sequence_number)
                    lane = lane_of(record.partition_key, len(shard.lanes))
                    shard.lanes[lane].queue.append(record)
            if shard.reader.ended:
                shard.reached_end = True
                return
            if not records:
                # Real Kinesis ends a closed shard with a null NextShardIterator; moto never
                # does, so a closed shard read up to its EndingSequenceNumber (or from LATEST
                # or a timestamp, to nothing) has ended too.
                position = shard.reader.last_read
                if shard.ending_sequence is not None and page.caught_up \
                        and (position is None or int(position) >= int(shard.ending_sequence)):
                    shard.reached_end = True
                return
            if page.caught_up:
                return

    # ----------------------------------------------------------------- pollers

    def _serve_concurrently(self, shards: Sequence[_Shard]) -> int:
        """Serve the shards, each in a thread of its own; returns the records finished. An
        error of one shard is raised after every shard's pass has returned."""
        if len(shards) == 1:
            return self._serve(shards[0])
        results: dict[str, int] = {}
        errors: list[BaseException] = []

        def serve(shard: _Shard) -> None:
            try:
                results[shard.shard_id] = self._serve(shard)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=serve, args=(s,), daemon=True,
                                    name=f"esm-poller-{s.shard_id}") for s in shards]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return sum(results.values())

    def _poll_shard(self, shard: _Shard, stop: threading.Event) -> None:
        """A shard's poller for ``run``: until the shard has ended (or ``stop``)."""
        while not stop.is_set() and not shard.ended:
            try:
                handled = self._serve(shard)
            except Exception:
                logger.exception("event source mapping poll failed",
                                 extra={"shard_id": shard.shard_id})
                stop.wait(self.poll_interval_seconds)
                continue
            if handled == 0 and shard.reader.polled:
                stop.wait(self._rest_seconds(shard))
            elif handled == 0:
                shard.reader.wait_for_records(PUSHED_WAIT_SECONDS)

    def _rest_seconds(self, shard: _Shard) -> float:
        """How long a poller whose pass finished nothing rests: an idle shard
        ``poll_interval_seconds`` (Lambda polls it once a second), a shard held back only by
        its read budget (5 GetRecords a second) or a throttled read until it may be read
        again. Resting a whole second for the budget delayed records that were waiting."""
        held = shard.read_not_before - time.monotonic()
        return min(held, self.poll_interval_seconds) if held > 0 else self.poll_interval_seconds

    def _serve(self, shard: _Shard) -> int:
        """One pass over a shard: read, form a batch for every idle lane that has one ready
        and run the lanes (concurrently when the factor is above 1) until none has anything
        ready. A lane whose batch failed rests until the next pass (and its backoff)."""
        with shard.serving:
            if shard.ended:
                return 0
            with self._lock:
                if not self._parents_done(shard):
                    return 0
            handled = 0
            resting: set[int] = set()
            running: dict[Future[tuple[int, bool]], _Lane] = {}
            try:
                while True:
                    busy = set(running.values())
                    idle = [lane for lane in shard.lanes
                            if lane not in busy and lane.index not in resting]
                    if idle:
                        self._fill(shard, idle)
                    if not running and shard.reached_end:
                        with shard.lock:
                            finished = not shard.progress
                        if finished:
                            self._end(shard)
                            return handled
                    started = False
                    for lane in idle:
                        if not self._ready(shard, lane):
                            continue
                        started = True
                        if len(shard.lanes) == 1:
                            done, more = self._run_lane(shard, lane)
                            handled += done
                            if not more:
                                resting.add(lane.index)
                        else:
                            running[self._executor(shard).submit(
                                self._run_lane, shard, lane)] = lane
                    if not running:
                        if not started:
                            return handled
                        continue
                    complete, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in complete:
                        lane = running.pop(future)
                        done, more = future.result()
                        handled += done
                        if not more:
                            resting.add(lane.index)
            finally:
                # A lane that raised (the destination was unreachable, say) leaves the others
                # to finish: their lane state stays consistent for the next pass.
                wait(running)

    def _executor(self, shard: _Shard) -> ThreadPoolExecutor:
        if shard.executor is None:
            shard.executor = ThreadPoolExecutor(max_workers=len(shard.lanes),
                                                thread_name_prefix=f"esm-{shard.shard_id}")
        return shard.executor

    def _end(self, shard: _Shard) -> None:
        shard.ended = True
        self._save(shard)
        logger.info("shard finished", extra={"shard_id": shard.shard_id})

    # ----------------------------------------------------------------- batches

    def _ready(self, shard: _Shard, lane: _Lane) -> bool:
        """Whether ``lane`` has a batch to invoke now (forming one from its queue if it is
        full, the shard has ended or its first record has waited the batching window)."""
        now = time.monotonic()
        if now < lane.not_before:
            return False
        if lane.batches:
            return True
        with shard.lock:
            if not lane.queue:
                return False
            size = fit(lane.queue, self.batch_size, self.max_payload_bytes)
            full = size == self.batch_size or size < len(lane.queue)
            waited = now - lane.queue[0].read_at
        if not (full or shard.reached_end or waited >= self.batching_window_seconds):
            return False
        lane.batches.append(_Batch(size))
        return True

    def _run_lane(self, shard: _Shard, lane: _Lane) -> tuple[int, bool]:
        """One invocation of the lane's first batch: (records finished, whether the lane may
        have more ready in this pass)."""
        batch = lane.batches[0]
        handled = self._expire(shard, lane, batch)
        if batch.size == 0:
            lane.batches.popleft()
            return handled, True
        with shard.lock:
            records = list(islice(lane.queue, batch.size))
        outcome = self._invoke(lane, batch, records)
        if outcome.succeeded:
            lane.batches.popleft()
            return handled + self._finish(shard, lane, batch.size), True
        done, more = self._failed(shard, lane, batch, records, outcome)
        return handled + done, more

    def _failed(self, shard: _Shard, lane: _Lane, batch: _Batch,
                records: Sequence[KinesisRecord], outcome: Outcome) -> tuple[int, bool]:
        lane.not_before = time.monotonic() + self.retry_backoff_seconds
        if outcome.verdict is Verdict.PARTIAL and outcome.failed_index > 0:
            # Checkpoint before the lowest failed record; the rest of the batch is retried
            # as a batch of its own. It starts at a new checkpoint, so its retry budget is new.
            lane.batches[0] = _Batch(batch.size - outcome.failed_index)
            return self._finish(shard, lane, outcome.failed_index), False
        if outcome.verdict is Verdict.FUNCTION_ERROR and self.bisect_on_error and batch.size > 1:
            # Bisecting is not a retry attempt: each half inherits the batch's count.
            first = (batch.size + 1) // 2
            lane.batches.popleft()
            lane.batches.extendleft([_Batch(batch.size - first, retries=batch.retries),
                                     _Batch(first, retries=batch.retries)])
            self._count(bisects=1)
            logger.info("batch bisected", extra={"shard_id": shard.shard_id, "lane": lane.index,
                                                 "records": batch.size})
            return 0, False
        if 0 <= self.maximum_retry_attempts <= batch.retries:
            lane.not_before = 0.0
            lane.batches.popleft()
            return self._discard(shard, lane, batch, records, RETRY_ATTEMPTS_EXHAUSTED), True
        batch.retries += 1
        return 0, False

    def _expire(self, shard: _Shard, lane: _Lane, batch: _Batch) -> int:
        """Records older than MaximumRecordAgeInSeconds are not sent to the function: the
        too-old head of the batch is discarded, the rest is invoked."""
        if self.maximum_record_age_seconds < 0:
            return 0
        cutoff = time.time() - self.maximum_record_age_seconds
        with shard.lock:
            head = list(islice(lane.queue, batch.size))
        expired = 0
        for record in head:
            if record.arrival.timestamp() >= cutoff:
                break
            expired += 1
        if not expired:
            return 0
        handled = self._discard(shard, lane, batch, head[:expired], RECORD_AGE_EXCEEDED)
        batch.size -= expired
        return handled

    def _invoke(self, lane: _Lane, batch: _Batch, records: Sequence[KinesisRecord]) -> Outcome:
        context = LambdaContext(
            function_name=self.function_name, invoked_function_arn=self.function_arn,
            memory_limit_in_mb=self.memory_limit_in_mb,
            timeout_seconds=self.function_timeout_seconds)
        batch.invokes += 1
        batch.request_id = context.aws_request_id
        redelivery = records[0].position <= lane.delivered_to
        lane.delivered_to = max(lane.delivered_to, records[-1].position)
        self._count(invocations=1, records_delivered=len(records), retries=int(redelivery))
        log = {"shard_id": records[0].shard_id, "lane": lane.index,
               "request_id": context.aws_request_id,
               "first_sequence_number": records[0].sequence_number,
               "last_sequence_number": records[-1].sequence_number, "records": len(records),
               "attempt": batch.invokes}
        with self._lock:
            self._running += 1
            self.counters.most_concurrent = max(self.counters.most_concurrent, self._running)
        started = time.monotonic()
        try:
            invocation = self.environments.invoke(build_event(records), context,
                                                  self.function_timeout_seconds)
        finally:
            with self._lock:
                self._running -= 1
        if invocation.error is not None:
            outcome = Outcome(Verdict.FUNCTION_ERROR, detail=invocation.error)
        else:
            outcome = parse_response(invocation.response, records,
                                     self.report_batch_item_failures)
            if time.monotonic() - started > self.function_timeout_seconds:
                outcome = Outcome(Verdict.FUNCTION_ERROR, detail="timed out")
        batch.function_error = outcome.verdict is Verdict.FUNCTION_ERROR
        if batch.function_error:
            self._count(function_errors=1)
        elif outcome.verdict is Verdict.PARTIAL:
            self._count(partial_failures=1)
        elif outcome.verdict is Verdict.INVALID:
            self._count(invalid_responses=1)
        if outcome.succeeded:
            logger.info("batch succeeded", extra=log)
        else:
            logger.warning("batch failed", extra={**log, "outcome": outcome.verdict.value,
                                                  "detail": outcome.detail,
                                                  "failed_index": outcome.failed_index})
        return outcome

    def _discard(self, shard: _Shard, lane: _Lane, batch: _Batch,
                 records: Sequence[KinesisRecord], condition: str) -> int:
        """Give up on ``records`` (the head of the lane's queue): their metadata to the
        on-failure destination (before the checkpoint, so a crash in between sends it again
        rather than never), then move on."""
        message = on_failure_message(
            condition=condition, records=records, stream_arn=self.stream_arn,
            function_arn=self.function_arn, request_id=batch.request_id or str(uuid.uuid4()),
            invoke_count=batch.invokes, function_error=batch.function_error,
            now=datetime.now(UTC))
        if self.on_failure is not None:
            sqs, queue_url = self.on_failure
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
            self._count(batches_to_destination=1)
        self._count(batches_discarded=1, records_discarded=len(records))
        logger.warning("batch discarded", extra={
            "shard_id": shard.shard_id, "lane": lane.index, "condition": condition,
            "first_sequence_number": records[0].sequence_number,
            "last_sequence_number": records[-1].sequence_number, "records": len(records),
            "sent_to_destination": self.on_failure is not None})
        return self._finish(shard, lane, len(records))

    def _finish(self, shard: _Shard, lane: _Lane, count: int) -> int:
        """The first ``count`` records of the lane's queue are done: the shard's checkpoint
        moves to the highest record all of whose predecessors (in every lane) are done."""
        with shard.lock:
            done = [lane.queue.popleft().sequence_number for _ in range(count)]
            checkpoint = shard.progress.finish(done)
            if checkpoint is not None:
                shard.checkpoint = checkpoint
        if checkpoint is not None:
            self._save(shard)
        return count

    def _save(self, shard: _Shard) -> None:
        """Persist the shard's current checkpoint; when this returns, the file holds it (or a
        newer one). Saves of concurrent pollers coalesce: the file write (an fsync, ~10 ms)
        happens outside the mapping's lock, one at a time, and a save whose update a newer
        snapshot already wrote skips its own."""
        with self._lock:
            with shard.lock:
                saved = ShardCheckpoint(shard.checkpoint, shard.ended)
            self._state.shards[shard.shard_id] = saved
            self._state_version += 1
            version = self._state_version
        with self._write_lock:
            if self._written_version >= version:
                return
            with self._lock:
                snapshot = self._state.to_json()
                version = self._state_version
            self._store.write(snapshot)
            self._written_version = version

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + value)
