"""Capacity of the whole local pipeline (Lambda path), each part's ceiling alone, and latency at
half the capacity, from one run on a fresh local stack.

1. **Backlog.** The source is seeded and fully loaded, then a second replication slot is
   created for the capture ceiling; both slots exist before the backlog, so all of it is CDC.
   The reference workload's mix (``local.workload``: purchases, updates, deletes, email and
   phone changes, new customers and events, renumbered tickets, late customers) commits at
   least ``--backlog`` row changes as fast as the source takes them, with nothing capturing.
   A last change, committed synchronously (which also flushes the WAL before it), is the
   marker.
2. **Drain** (the capacity): the local DMS (full-load task's slot, in a process of its own
   as AWS DMS runs apart from Lambda), the consumer (the
   Lambda handler behind the local event source mapping, landing its batches for the single
   applier) and the applier (the batch applier function behind the local SQS event source
   mapping), as ``make demo`` wires them, start together;
   the time runs until the DMS has captured every committed change, the mapping's
   checkpoints are at the end of every shard, and the warehouse shows the marker and the
   source's row count in every replica.
3. **Ceilings**, each part alone on the same changes (``bench.parts``): capture, moto Kinesis
   put and get, the consumer's transform, the consumer's landing of the pre-transformed
   batches (S3 + the applier's queue), the applier's COPY + MERGE of those landed batches into
   a fresh warehouse database (as many per apply as the drain's applier took on average), and
   the Data API stand-in's round trip.
4. **Latency** at a share of the drained rate for ``--latency-seconds``: the workload at that rate
   (``python -m local.workload``, a process of its own, as the source's applications are:
   in this process it shared one interpreter lock with the pollers and fell behind its rate),
   capture, consumer and applier live, a sampler thread timing commit -> visible
   (``bench.latency``) once the DMS process has started, the consumer has finished a batch
   of every shard (its execution environments are warm) and ``LATENCY_WARMUP_SECONDS`` more
   have passed.
   Four runs (``LATENCY_PLANS``): at half the drained rate the template's default consumer
   (Lambda's standard iterator, each idle shard polled once a second), then with
   ``KinesisEnhancedFanOut=true`` (records pushed to the mapping by SubscribeToShard), the
   mapping going on from the first one's checkpoints; then fan-out at a quarter and at a
   tenth. Each prints the stages of commit -> applied from the functions' metrics
   (``stage_lags``) and where the machine's CPU went meanwhile (``bench.cpu``): the
   stand-ins and the workload share the cores the pipeline runs on, which AWS's services
   do not.

Prints each figure, then as its last line
``ratio=<drain changes/s / the slowest part's ceiling>``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
from psycopg import sql

from bench import cpu, parts
from bench.cpu import CpuUsage
from bench.latency import LatencySampler, summary
from bench.warehouse import fresh_databases, live_replica_counts, source_row_counts
from local.cdc import HANDLER_OUTPUT, LocalPipeline, catch_up, quiet_handler_output
from local.dms import DEFAULT_SLOT
from local.event_source_mapping import LocalEventSourceMapping
from local.event_source_mapping.sqs import LocalSqsEventSourceMapping
from local.stack import stop_stack
from local.workload import Workload
from shared.applier import apply_batches, parse_landed
from shared.consumer import build_consumer, build_writer
from shared.settings import PipelineSettings
from shared.spec import PipelineSpec, load_spec

CAPTURE_SLOT = "bench_capture"
CAPTURE_STREAM = "bench-capture"
PUT_STREAM = "bench-put"
PARTS_APPLIER_QUEUE = "bench-parts-applier"
WAL2JSON = "wal2json"  # the local DMS's output plugin
LATENCY_WARMUP_SECONDS = 5.0
WARM_TIMEOUT_SECONDS = 60.0  # the longest the latency run waits for the consumer to be warm


@contextlib.contextmanager
def stdout_to(path: Path) -> Iterator[None]:
    """This process's stdout, and its children's (the handler's execution environments, which
    inherit file descriptor 1), to ``path`` while the block runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(path, "w") as target:
            os.dup2(target.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def seconds(value: float) -> str:
    return f"{value:.2f}s" if math.isfinite(value) else "unseen"


def to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# The latency run's workload picks its rows with its own seed (the backlog's is Options.seed).
LATENCY_WORKLOAD_SEED = 11


@dataclass(frozen=True)
class Options:
    backlog: int = 100_000
    latency_seconds: float = 30.0
    # Changes each part's ceiling is measured on (at most); 0: the whole backlog. The mix
    # changes along the backlog (its first changes are bigger records), so a prefix would
    # measure other changes than the drain's.
    part_changes: int = 0
    state_dir: Path = Path(".local-stack/bench-e2e")
    seed: int = 3
    customers: int = 1000
    events: int = 50
    purchases: int = 2000
    drain_timeout: float = 1800.0
    progress: Callable[[str], None] = to_stderr


@dataclass
class LatencyRun:
    """One latency run: commit -> visible for sampled changes at ``offered`` changes/s."""

    consumer: str  # how the Kinesis consumer reads the stream
    share: float = 0.5  # of the drained rate the workload offered
    offered: float = 0.0  # changes/s the pipeline took during the run
    latencies: list[float] = field(default_factory=list)
    unseen: int = 0
    superseded: int = 0  # samples whose row the workload deleted before they arrived
    # The functions' own metrics over the run, seconds, by stage (``stage_lags``)
    stage_lags: dict[str, list[float]] = field(default_factory=dict)
    cpu: CpuUsage | None = None  # the machine's CPU while sampling

    def lines(self) -> list[str]:
        # A sample never seen counts as slower than every seen one (not left out).
        p50, p95 = summary(self.latencies + [math.inf] * self.unseen)
        lines = [f"latency commit -> visible, {self.consumer}, at {self.offered:,.0f} "
                 f"changes/s ({self.share:g} of the drain): p50={seconds(p50)} "
                 f"p95={seconds(p95)} (n={len(self.latencies) + self.unseen}, never seen "
                 f"{self.unseen}; {self.superseded} more left out: the workload deleted their "
                 "row in the source before they arrived)"]
        if self.stage_lags:
            lines.append("  the functions' own metrics during it, by stage:")
            lines += [f"    {name}: p50={seconds(summary(v)[0])} p95={seconds(summary(v)[1])} "
                      f"(n={len(v)})" for name, v in self.stage_lags.items()]
        if self.cpu is not None:
            lines.append(f"  {self.cpu.line()}")
        return lines


@dataclass(frozen=True)
class LatencyPlan:
    """A latency run to make: how the consumer reads the stream (its label and template
    parameters) and the share of the drained rate the workload offers."""

    consumer: str
    parameters: dict[str, str]
    share: float


# The target is set at half the capacity, on both consumers; the runs at a quarter and a
# tenth show how the latency falls as the stand-ins and the workload, which share the
# machine's cores with the pipeline, leave it more of them.
FAN_OUT = "enhanced fan-out (KinesisEnhancedFanOut=true: records pushed)"
LATENCY_PLANS: tuple[LatencyPlan, ...] = (
    LatencyPlan("standard iterator (each shard polled once a second; the default)", {}, 0.5),
    LatencyPlan(FAN_OUT, {"KinesisEnhancedFanOut": "true"}, 0.5),
    LatencyPlan(FAN_OUT, {"KinesisEnhancedFanOut": "true"}, 0.25),
    LatencyPlan(FAN_OUT, {"KinesisEnhancedFanOut": "true"}, 0.1),
)


@dataclass
class Report:
    committed: int = 0  # source row changes of the backlog, the marker included
    transactions: int = 0
    commit_seconds: float = 0.0
    drained: int = 0  # CDC records the DMS captured during the drain
    delivered: int = 0  # records the mapping handed to the handler (re-deliveries included)
    redeliveries: int = 0
    drain_seconds: float = 0.0
    # (seconds into the drain, records handed to the handler so far), sampled by the drain
    progress: list[tuple[float, int]] = field(default_factory=list)
    source_rows: dict[str, int] = field(default_factory=dict)
    warehouse_rows: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    consumer_batches: int = 0  # consumer invocations during the drain
    applies: int = 0  # applier invocations during the drain
    apply_seconds: float = 0.0  # their run time, summed
    ceilings: dict[str, float] = field(default_factory=dict)  # part -> changes/s
    part_changes: int = 0  # the changes each ceiling was measured on
    round_trips_per_second: float = 0.0
    submits_per_1000_changes: float = 0.0
    writer_polls_per_submit: float = 0.0
    writer_seconds: float = 0.0
    writer_executed_seconds: float = 0.0  # of writer_seconds: statements running
    applier_batches_per_apply: int = 0
    latency_runs: list[LatencyRun] = field(default_factory=list)

    @property
    def drain_rate(self) -> float:
        return self.drained / self.drain_seconds if self.drain_seconds else 0.0

    def quarter_rates(self) -> tuple[float, float]:
        """Changes/s handed to the handler over the first and the last quarter of the backlog
        (the warehouse grows while it drains; a writer that slows down with it shows here)."""
        quarter = self.committed / 4

        def reached(count: float) -> float:
            return next((t for t, n in self.progress if n >= count), self.drain_seconds)

        first, last_start = reached(quarter), reached(3 * quarter)
        last = self.drain_seconds - last_start
        return (quarter / first if first > 0 else 0.0, quarter / last if last > 0 else 0.0)

    @property
    def slowest(self) -> tuple[str, float]:
        return min(self.ceilings.items(), key=lambda item: item[1])

    @property
    def ratio(self) -> float:
        return self.drain_rate / self.slowest[1] if self.ceilings else 0.0

    def lines(self) -> list[str]:
        lines = [
            f"backlog: {self.committed:,} source row changes in {self.transactions:,} "
            f"transactions committed in {self.commit_seconds:.1f}s, before capture started",
            f"drained {self.drained:,} of {self.committed:,} committed changes in "
            f"{self.drain_seconds:.1f}s; handler got {self.delivered:,} records "
            f"({self.redeliveries} re-delivered); dead-letter queue {self.dead_letters}; "
            f"{self.consumer_batches:,} consumer batches applied by {self.applies:,} applies "
            f"running {self.apply_seconds:.1f}s in all",
            "warehouse live rows = source rows: "
            + ", ".join(f"{t} {self.warehouse_rows.get(t, 0):,}/{n:,}"
                        for t, n in self.source_rows.items()),
            "drain by quarter of the backlog (handed to the handler): first "
            f"{self.quarter_rates()[0]:,.0f} changes/s, last {self.quarter_rates()[1]:,.0f}",
            f"drain (capacity) changes/s={self.drain_rate:,.0f}",
        ]
        lines.append(f"each part alone on the backlog's first {self.part_changes:,} changes:")
        for name, rate in self.ceilings.items():
            lines.append(f"ceiling {name} changes/s={rate:,.0f}  "
                         f"drain/ceiling={self.drain_rate / rate:.3f}")
        lines.append(f"Data API stand-in round trip (SELECT 1) statements/s="
                     f"{self.round_trips_per_second:,.1f}; the applier submits "
                     f"{self.submits_per_1000_changes:.2f} per 1,000 changes and polls "
                     f"{self.writer_polls_per_submit:.1f} times per submission")
        lines.append(f"applier: statements ran in the warehouse for "
                     f"{self.writer_executed_seconds:.1f}s of its {self.writer_seconds:.1f}s "
                     "(the rest: the manifest, Data API calls and waits between polls)")
        for run in self.latency_runs:
            lines += run.lines()
        lines.append(f"slowest part: {self.slowest[0]}")
        lines.append(f"ratio={self.ratio:.3f}")
        return lines


def create_slot(dsn: str, slot: str) -> None:
    """A logical replication slot for the capture ceiling; it keeps every change from now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, WAL2JSON))


def sync_connection(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True, application_name="bench-marker")
    conn.execute("SET synchronous_commit = on")
    return conn


def stream_consumed(kinesis: Any, stream: str, checkpoints: dict[str, str | None]) -> bool:
    """Whether no shard holds a record after the mapping's checkpoint."""
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        after = checkpoints.get(shard["ShardId"])
        position: dict[str, str] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
            if after else {"ShardIteratorType": "TRIM_HORIZON"})
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                              **position)["ShardIterator"]
        if kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"]:
            return False
    return True


def marker_visible(warehouse_dsn: str, spec: PipelineSpec, marker: tuple[int, datetime]) -> bool:
    with psycopg.connect(warehouse_dsn, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT updated_at FROM {}.{} WHERE ticket_id = %s").format(
            sql.Identifier(spec.replica_schema), sql.Identifier("ticket_activity")),
            (marker[0],)).fetchone()
    return row is not None and row[0] is not None and row[0] >= marker[1]


class DmsProcess:
    """The local DMS task (``python -m local.dms run``) in a process of its own, as AWS DMS
    runs apart from the consumer: in this process it would share one interpreter lock with
    the event source mappings' pollers. It continues from the task state the in-process full
    load left (same state directory and slot)."""

    def __init__(self, pipeline: LocalPipeline, log_path: Path) -> None:
        self._log = open(log_path, "a")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.dms", "--log-level", "WARNING", "run",
             "--source-dsn", pipeline.source_dsn,
             "--stream", pipeline.stack.resources.stream_name,
             "--state-dir", str(pipeline.state_dir / "dms"), "--slot", DEFAULT_SLOT],
            stdout=subprocess.PIPE, stderr=self._log, text=True)

    def check(self) -> None:
        """Raise if the task has exited (it runs until stopped)."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the local DMS exited with {self.process.returncode}; see "
                               f"{self._log.name}")

    def stop(self) -> int:
        """Stop the task (SIGTERM: its current poll finishes) and return the CDC records it
        captured."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=120)
        self._log.close()
        if self.process.returncode != 0:
            raise RuntimeError(f"the local DMS exited with {self.process.returncode}; see "
                               f"{self._log.name}")
        return int(json.loads(out.strip().splitlines()[-1])["records_captured"])


class Running:
    """The local DMS (a process), the consumer and the applier (threads), until ``close``."""

    def __init__(self, pipeline: LocalPipeline, consumer: LocalEventSourceMapping,
                 applier: LocalSqsEventSourceMapping) -> None:
        self.stop = threading.Event()
        self.dms = DmsProcess(pipeline, pipeline.state_dir / "dms.log")
        self.threads = [threading.Thread(target=consumer.run, args=(self.stop,),
                                         name="consumer"),
                        threading.Thread(target=applier.run, args=(self.stop,),
                                         name="applier")]
        for thread in self.threads:
            thread.start()

    def close(self) -> int:
        """Stop everything; the CDC records the DMS captured."""
        self.stop.set()
        try:
            return self.dms.stop()
        finally:
            for thread in self.threads:
                thread.join(timeout=120)


def run_benchmark(options: Options) -> Report:
    """The whole benchmark on a fresh stack in ``options.state_dir`` (stopped at the end)."""
    quiet_handler_output()
    # The functions' EMF metrics go to HANDLER_OUTPUT, unbuffered: the latency run reads
    # its stages from them (``stage_lags``) while the execution environments still run.
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"
    os.environ["PYTHONUNBUFFERED"] = "1"
    say = options.progress
    report = Report()
    state_dir = options.state_dir
    stop_stack(state_dir / "stack")
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    # The handler's metric lines (EMF, on stdout as on Lambda) and the parts' logs (warnings
    # and retried errors) go to files, not into the report.
    log_handler = logging.FileHandler(state_dir / "bench.log")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(log_handler)
    try:
        with stdout_to(state_dir / HANDLER_OUTPUT):
            return _run(options, report, say)
    finally:
        root.removeHandler(log_handler)
        log_handler.close()


def _run(options: Options, report: Report, say: Callable[[str], None]) -> Report:
    state_dir = options.state_dir
    consumer: LocalEventSourceMapping | None = None
    applier: LocalSqsEventSourceMapping | None = None
    try:
        spec = load_spec()
        pipeline = LocalPipeline.prepare(state_dir / "stack", state_dir / "run", spec,
                                         applier=True)
        warehouse_dsn = pipeline.stack.postgres_conninfo
        stream = pipeline.stack.resources.stream_name
        kinesis = boto3.client("kinesis")
        workload = pipeline.workload(seed=options.seed)
        workload.create_schema(loose=True)
        workload.seed_data(options.customers, options.events, options.purchases)
        consumer, applier = pipeline.consumer(), pipeline.applier_mapping()
        with pipeline.dms() as dms:
            dms.full_load()
            catch_up(dms, consumer, applier=applier)  # the full load is not part of the drain
        create_slot(pipeline.source_dsn, CAPTURE_SLOT)

        say(f"committing a backlog of {options.backlog:,} changes, nothing capturing ...")
        marker = commit_backlog(workload, pipeline.source_dsn, options.backlog, report)
        report.source_rows = source_row_counts(pipeline.source_dsn, spec)

        say("draining it: local DMS + consumer ...")
        drain(pipeline, consumer, applier, kinesis, stream, marker, report,
              options.drain_timeout)
        report.dead_letters = pipeline.rejected()

        say("each part alone ...")
        measure_parts(pipeline, kinesis, shard_count=parts.shard_count(kinesis, stream),
                      batch_size=consumer.batch_size, limit=options.part_changes or sys.maxsize,
                      report=report)

        for plan in LATENCY_PLANS:
            say(f"latency at {plan.share:g} of the drained rate for "
                f"{options.latency_seconds:.0f}s, {plan.consumer} ...")
            if plan.parameters != pipeline.parameters:
                consumer.close()
                pipeline.parameters = dict(plan.parameters)
                consumer = pipeline.consumer()  # on from the previous mapping's checkpoints
            report.latency_runs.append(measure_latency(
                pipeline, workload, consumer, applier, warehouse_dsn, report,
                options.latency_seconds, plan))
        return report
    finally:
        if consumer is not None:
            consumer.close()
        if applier is not None:
            applier.close()
        stop_stack(state_dir / "stack")


def commit_backlog(workload: Workload, source_dsn: str, changes: int,
                   report: Report) -> tuple[int, datetime]:
    before = workload.counters.transactions
    started = time.perf_counter()
    committed = workload.commit_changes(changes)
    with sync_connection(source_dsn) as conn:
        marker = workload.touch_purchase(conn)
    if marker is None:
        raise RuntimeError("the backlog left no purchase to mark its end with")
    report.commit_seconds = time.perf_counter() - started
    report.committed = committed + 1
    report.transactions = workload.counters.transactions - before
    return marker


def drain(pipeline: LocalPipeline, consumer: LocalEventSourceMapping,
          applier: LocalSqsEventSourceMapping, kinesis: Any, stream: str,
          marker: tuple[int, datetime], report: Report, timeout: float) -> None:
    warehouse_dsn = pipeline.stack.postgres_conninfo
    delivered_before = consumer.counters.records_delivered
    retries_before = consumer.counters.retries
    invocations_before = consumer.counters.invocations
    applies_before = applier.counters.invocations
    apply_seconds_before = applier.counters.invocation_seconds
    started = time.perf_counter()
    running = Running(pipeline, consumer, applier)
    captured = 0
    try:
        while True:
            # The in-memory counter first (the end is near once the handler got every
            # change), then the marker, then the stream and the row counts: the checks cost
            # the stack some work, so they run only when they may succeed.
            running.dms.check()
            delivered = consumer.counters.records_delivered - delivered_before
            report.progress.append((time.perf_counter() - started, delivered))
            if (delivered >= report.committed
                    and marker_visible(warehouse_dsn, pipeline.spec, marker)
                    and stream_consumed(kinesis, stream, consumer.checkpoints())):
                report.warehouse_rows = live_replica_counts(warehouse_dsn, pipeline.spec)
                if report.warehouse_rows == report.source_rows:
                    break
            if time.perf_counter() - started > timeout:
                raise TimeoutError(
                    f"the drain did not finish in {timeout:.0f}s: the handler got "
                    f"{delivered:,} of {report.committed:,} changes; the pipeline drains "
                    "slower than the backlog over the timeout: run with a smaller --backlog "
                    "or a larger --drain-timeout")
            time.sleep(0.25)
        report.drain_seconds = time.perf_counter() - started
    finally:
        captured = running.close()
    report.drained = captured
    report.delivered = consumer.counters.records_delivered - delivered_before
    report.redeliveries = consumer.counters.retries - retries_before
    report.consumer_batches = consumer.counters.invocations - invocations_before
    report.applies = applier.counters.invocations - applies_before
    report.apply_seconds = applier.counters.invocation_seconds - apply_seconds_before


def queued_messages(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message on the queue (each hidden for 10 minutes)."""
    messages: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                  VisibilityTimeout=600).get("Messages", [])
        if not got:
            return messages
        messages += got


def measure_parts(pipeline: LocalPipeline, kinesis: Any, shard_count: int, batch_size: int,
                  limit: int, report: Report) -> None:
    """Each part alone on the first ``limit`` changes of the backlog (its rate is steady well
    before that; the whole backlog would take minutes per part)."""
    state_dir = pipeline.state_dir
    parts.create_stream(kinesis, CAPTURE_STREAM, shard_count)
    captured = parts.capture(pipeline.source_dsn, pipeline.spec, CAPTURE_STREAM,
                             state_dir / "dms-capture", CAPTURE_SLOT, limit)
    if captured.count < min(limit, report.committed):
        raise RuntimeError(f"the capture ceiling's slot gave {captured.count:,} changes, "
                           f"{min(limit, report.committed):,} expected")
    report.part_changes = captured.count
    report.ceilings["capture (local DMS: slot -> Kinesis)"] = captured.per_second
    records, got = parts.read_stream(kinesis, CAPTURE_STREAM)
    parts.create_stream(kinesis, PUT_STREAM, shard_count)
    put = parts.kinesis_put(kinesis, PUT_STREAM, records)
    report.ceilings["Kinesis put (moto PutRecords)"] = put.per_second
    report.ceilings["Kinesis get (moto GetRecords)"] = got.per_second

    info = pipeline.stack
    with fresh_databases(info, "writer") as (database,):
        environment = {**info.environment(), "REDSHIFT_DATABASE": database}
        clients: dict[str, Any] = {}

        def client(name: str) -> Any:
            return clients.setdefault(name, boto3.client(name))  # type: ignore[call-overload]

        meter = parts.DataApiMeter(client("redshift-data"))
        sqs = client("sqs")
        queue_url = sqs.create_queue(QueueName=PARTS_APPLIER_QUEUE,
                                     Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
        settings = PipelineSettings.from_mapping(
            {**environment, "APPLIER_QUEUE_URL": queue_url})
        processor = build_consumer(settings, pipeline.spec, pipeline.hmac_key(), client)
        results, transformed = parts.transform(processor, records, batch_size)
        report.ceilings["consumer transform (decode, PII, reduce)"] = transformed.per_second
        landed = parts.write(processor, results, len(records))
        report.ceilings["consumer landing (S3 object + applier queue message)"] = \
            landed.per_second
        batches = [parse_landed(m["MessageId"], m["Body"], settings.staging_prefix)
                   for m in queued_messages(sqs, queue_url)]
        per_apply = max(1, round(report.consumer_batches / max(report.applies, 1)))
        writer = build_writer(settings, pipeline.spec, client, applier_queue=False)
        submits, polls, executed = meter.submits, meter.polls, meter.executed_ns
        started = time.perf_counter()
        for start in range(0, len(batches), per_apply):
            outcome = apply_batches(writer, batches[start:start + per_apply])
            if outcome.failed:
                raise RuntimeError(f"the applier ceiling's apply failed: {outcome.failed}")
        applied = time.perf_counter() - started
        report.applier_batches_per_apply = per_apply
        report.ceilings[f"applier (manifest COPY + MERGE, {per_apply} batches per apply)"] = \
            len(records) / applied
        report.submits_per_1000_changes = 1000 * (meter.submits - submits) / len(records)
        report.writer_polls_per_submit = (meter.polls - polls) / max(meter.submits - submits, 1)
        report.writer_seconds = applied
        report.writer_executed_seconds = (meter.executed_ns - executed) / 1e9
    round_trip = parts.data_api_round_trip(pipeline.api())
    report.round_trips_per_second = round_trip.per_second
    # Every write is at least one Data API round trip per submission: at the writer's
    # submissions per change, the round trips alone allow this many changes/s.
    report.ceilings["Data API round trips (at the applier's submits/change)"] = (
        round_trip.per_second * 1000 / report.submits_per_1000_changes
        if report.submits_per_1000_changes else float("inf"))


def measure_latency(pipeline: LocalPipeline, workload: Workload,
                    consumer: LocalEventSourceMapping, applier: LocalSqsEventSourceMapping,
                    warehouse_dsn: str, report: Report, seconds: float,
                    plan: LatencyPlan) -> LatencyRun:
    changes_per_transaction = report.committed / max(report.transactions, 1)
    rate = max(1.0, report.drain_rate * plan.share / changes_per_transaction)
    sampler = LatencySampler(workload, pipeline.source_dsn, warehouse_dsn, pipeline.spec)
    sampler_stop = threading.Event()
    sampler_thread = threading.Thread(target=sampler.run, args=(sampler_stop,), name="sampler")
    # The workload runs LATENCY_WARMUP_SECONDS before the first sample, on until the consumer
    # has finished a batch of every shard (each shard's first invocation waits for an
    # execution environment to start), and LATENCY_WARMUP_SECONDS more while the pipeline
    # works off what queued meanwhile: the DMS process and cold starts are not the latency of
    # a running pipeline. The sampler then runs ``seconds``, and the workload is stopped.
    log = pipeline.state_dir / "latency-workload.log"
    checkpoints_before = consumer.checkpoints()
    running = Running(pipeline, consumer, applier)
    captured = 0
    try:
        started = time.perf_counter()
        with log.open("w") as errors, subprocess.Popen(
                [sys.executable, "-m", "local.workload", "--source-dsn", pipeline.source_dsn,
                 "--seed", str(LATENCY_WORKLOAD_SEED), "--rate", f"{rate:.3f}",
                 "--duration",
                 f"{2 * LATENCY_WARMUP_SECONDS + WARM_TIMEOUT_SECONDS + seconds:.3f}",
                 "--bad-row-share", "0"],
                stdout=subprocess.DEVNULL, stderr=errors) as load:
            try:
                time.sleep(LATENCY_WARMUP_SECONDS)
                deadline = time.monotonic() + WARM_TIMEOUT_SECONDS
                while time.monotonic() < deadline and any(
                        consumer.checkpoints().get(shard) == checkpoint
                        for shard, checkpoint in checkpoints_before.items()):
                    time.sleep(0.1)
                time.sleep(LATENCY_WARMUP_SECONDS)
                sampling_since = time.time()
                cpu_before, cpu_since = cpu.snapshot(), time.perf_counter()
                sampler_thread.start()
                try:
                    load.wait(timeout=seconds)
                except subprocess.TimeoutExpired:
                    pass  # it ran for the whole run
                else:
                    raise RuntimeError(f"the latency workload exited with {load.returncode} "
                                       f"before the run ended; see {log}")
                usage = CpuUsage.of(cpu_before, cpu.snapshot(), time.perf_counter() - cpu_since)
            finally:
                if load.poll() is None:
                    load.terminate()
        elapsed = time.perf_counter() - started
        sampler_stop.set()
        sampler_thread.join()
    finally:
        sampler_stop.set()
        captured = running.close()
    return LatencyRun(
        plan.consumer, plan.share, offered=captured / elapsed, latencies=sampler.latencies,
        unseen=sampler.unseen, superseded=sampler.superseded,
        stage_lags=stage_lags(pipeline.state_dir.parent / HANDLER_OUTPUT, since=sampling_since),
        cpu=usage)


def _values(document: dict[str, Any], metric: str) -> list[float]:
    value = document.get(metric)
    return [] if value is None else value if isinstance(value, list) else [value]


def stage_lags(emf_log: Path, since: float) -> dict[str, list[float]]:
    """The stages of commit -> applied, seconds, from the functions' EMF lines in ``emf_log``
    from ``since`` (epoch seconds) on. The consumer's document of a batch holds its
    ``CaptureLag``, ``BatchLatency`` and ``LandingLag`` together, so the wait between arrival
    and the handler's start is ``LandingLag - CaptureLag - BatchLatency`` of the same batch."""
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    if not emf_log.exists():
        return {}
    for line in emf_log.read_text(errors="replace").splitlines():
        if '"_aws"' not in line:
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if document["_aws"].get("Timestamp", 0) / 1000 < since:
            continue
        captured, handled, landed = (_values(document, m) for m in
                                     ("CaptureLag", "BatchLatency", "LandingLag"))
        if len(captured) == len(handled) == len(landed) == 1:
            stages[CAPTURED] += [captured[0] / 1000]
            stages[WAITED] += [(landed[0] - captured[0] - handled[0]) / 1000]
            stages[HANDLED] += [handled[0] / 1000]
            stages[LANDED] += [landed[0] / 1000]
        stages[APPLYING] += [v / 1000 for v in _values(document, "ApplyLatency")]
        stages[APPLIED] += [v / 1000 for v in _values(document, "SourceLag")]
    return {name: values for name, values in stages.items() if values}


CAPTURED = "newest commit of a batch -> its last record in the stream (DMS; CaptureLag)"
WAITED = "-> the handler started (the event source mapping)"
HANDLED = "-> landed (the handler; BatchLatency)"
LANDED = "newest commit of a batch -> landed (LandingLag)"
APPLYING = "an apply (the applier; ApplyLatency)"
APPLIED = "newest commit of an apply -> applied (SourceLag)"
STAGES = (CAPTURED, WAITED, HANDLED, LANDED, APPLYING, APPLIED)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=Options.backlog,
                        help="source row changes committed before capture starts")
    parser.add_argument("--latency-seconds", type=float, default=Options.latency_seconds,
                        help="seconds of workload in each latency run")
    parser.add_argument("--part-changes", type=int, default=Options.part_changes,
                        help="changes each part's ceiling is measured on (at most; 0, the "
                             "default: all of the backlog)")
    parser.add_argument("--drain-timeout", type=float, default=Options.drain_timeout,
                        help="seconds the drain may take before the run fails")
    parser.add_argument("--state-dir", type=Path, default=Options.state_dir)
    args = parser.parse_args()
    if args.backlog < 1 or args.part_changes < 0 or args.latency_seconds <= 0:
        parser.error("--backlog must be at least 1, --part-changes at least 0, "
                     "--latency-seconds positive")
    report = run_benchmark(Options(backlog=args.backlog, latency_seconds=args.latency_seconds,
                                   part_changes=args.part_changes, state_dir=args.state_dir,
                                   drain_timeout=args.drain_timeout))
    for line in report.lines():
        print(line)


if __name__ == "__main__":
    main()
