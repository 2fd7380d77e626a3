"""Warehouse work and analysts' waits as the stream grows: the same offered load through 1, 4
and 16 Kinesis shards, with the single applier (and, for contrast, each consumer applying its
own batch).

For each configuration, on the local stack (started if needed), from one run:

- a fresh Kinesis stream with that many shards, a fresh warehouse database
  (``bench.warehouse.fresh_databases``) and, for the applier, a fresh applier queue;
- the Kinesis consumer behind the local event source mapping (one poller per shard, the
  handler in execution environments of its own, as ``local.cdc`` wires it), with
  ``APPLIER_QUEUE_URL`` set: consumers land each batch in S3 and queue it; the batch applier
  (``functions.batch_applier.app.lambda_handler``) behind the local SQS event source mapping
  applies everything queued with one manifest COPY and one call per invocation. Inline: no
  ``APPLIER_QUEUE_URL``, each consumer applies its own batch;
- the offered load: ``--rate`` source changes/s for ``--seconds``, built from the reference
  workload's tables (inserts of events, customers, tickets and purchases, purchase and ticket
  updates, renamed customers, deleted purchases) with ``local.record_builders.DmsStream``, put
  with DMS's ``primary-key`` partition keys (``schema.table.key``), so a key always goes to the
  same shard;
- a reader thread running ``SELECT count(*)`` on the wide table in a loop through the Data API,
  as an analyst would, on the stack's own Data API stand-in; its longest wait is reported;
- every Data API request of the consumers and the applier goes to a stand-in the benchmark
  runs (``CountingDataApi``, a process of its own), which counts them all, whatever process
  sent them: transactions (each ExecuteStatement or BatchExecuteStatement is one:
  "BatchExecuteStatement", Amazon Redshift Data API reference, ``Sqls``: "By default, the SQL
  statements are run as a single transaction"), statements (a BatchExecuteStatement's
  ``Sqls``) and calls of any operation. The reader's
  requests go to the other stand-in and are not counted.

The run of a configuration ends when the warehouse holds every change sent (each replica's
live rows equal the newest row sent per key) and the applier queue is empty. Per
configuration it prints changes/s drained (changes sent / seconds from the first put until
drained), transactions per minute, statements and Data API calls per 1,000 changes and the
reader's longest wait. Last line: ``ratio=<statements per 1,000 changes at the most shards /
at the fewest>`` of the applier design.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
from psycopg import sql

from bench import parts
from bench.e2e_bench import stdout_to, to_stderr
from bench.warehouse import fresh_databases, live_replica_counts
from local.cdc import HANDLER_OUTPUT, applier_mapping, consumer_mapping, quiet_handler_output
from local.dms.kinesis import KinesisPutter
from local.dms.records import KinesisEntry
from local.event_source_mapping import LambdaContext
from local.record_builders import BASE_TIME, DmsStream, activity, customer, sport_event, ticket
from local.redshift_data_api.auth import AuthSettings
from local.redshift_data_api.operations import Handler
from local.redshift_data_api.server import RedshiftDataApiServer
from local.stack import StackInfo, ensure_stack
from local.stack.environment import CONFLICTING_VARIABLES
from local.stack.state import (
    APPLIER_VISIBILITY_TIMEOUT_SECONDS as VISIBILITY_TIMEOUT,
)
from local.stack.state import CLUSTER_IDENTIFIER, WORKGROUP_NAME
from shared.data_api import DataApiTarget, RedshiftDataApi
from shared.spec import PipelineSpec, load_spec
from shared.staging import DELETED

# Columns compared per table: the key and the columns the load changes (PII columns are
# tokenized or masked in the warehouse, so they are left out).
COMPARED = {"sport_event": ("event_id", "location"),
            "customer": ("customer_id", "name"),
            "ticket": ("ticket_id", "event_id", "seat_location"),
            "ticket_activity": ("ticket_id", "purchased_by", "updated_at")}
APPLIER = "applier"
INLINE = "inline"


@dataclass(frozen=True)
class Options:
    shard_counts: tuple[int, ...] = (1, 4, 16)
    inline_shard_counts: tuple[int, ...] = (1, 16)  # the contrast; () leaves it out
    rate: float = 250.0  # source changes offered per second
    seconds: float = 20.0  # for this long
    stack_dir: Path = Path(".local-stack/stack")
    # The functions' output (EMF metrics, logs) and the benchmark's log; replaced each run.
    state_dir: Path = Path(".local-stack/bench-scale-run")
    drain_timeout: float = 240.0  # seconds after the load stopped
    progress: Callable[[str], None] = to_stderr


@dataclass
class Figures:
    """One configuration's run."""

    design: str
    shards: int
    changes: int = 0  # source changes sent (one DMS record each)
    load_seconds: float = 0.0  # the offered load's duration
    drain_seconds: float = 0.0  # first put -> the warehouse holds every change
    transactions: int = 0
    statements: int = 0
    calls: int = 0
    reader_queries: int = 0
    reader_longest_wait: float = 0.0
    applier_invocations: int = 0
    consumer_invocations: int = 0
    sent_rows: dict[str, int] = field(default_factory=dict)  # live rows per table, as sent
    warehouse_rows: dict[str, int] = field(default_factory=dict)  # live replica rows, drained

    @property
    def changes_per_second(self) -> float:
        return self.changes / self.drain_seconds if self.drain_seconds else 0.0

    @property
    def transactions_per_minute(self) -> float:
        return 60 * self.transactions / self.drain_seconds if self.drain_seconds else 0.0

    def per_1000_changes(self, count: int) -> float:
        return 1000 * count / self.changes if self.changes else 0.0

    def line(self) -> str:
        applier = (f", applier invocations {self.applier_invocations}"
                   if self.design == APPLIER else "")
        return (f"{self.design:<7} {self.shards:>2} shards: {self.changes:,} changes in "
                f"{self.load_seconds:.0f}s, drained {self.drain_seconds - self.load_seconds:.1f}s "
                f"after the load; changes/s drained={self.changes_per_second:,.0f} "
                f"transactions/min={self.transactions_per_minute:,.1f} "
                f"statements/1000 changes={self.per_1000_changes(self.statements):.2f} "
                f"Data API calls/1000 changes={self.per_1000_changes(self.calls):.1f} "
                f"reader longest wait={self.reader_longest_wait:.3f}s "
                f"(reader queries {self.reader_queries}; consumer invocations "
                f"{self.consumer_invocations}{applier})")


@dataclass
class Report:
    rate: float = 0.0  # changes/s offered to every configuration
    seconds: float = 0.0
    runs: list[Figures] = field(default_factory=list)

    def of(self, design: str) -> list[Figures]:
        return sorted((r for r in self.runs if r.design == design), key=lambda r: r.shards)

    @property
    def ratio(self) -> float:
        runs = self.of(APPLIER)
        fewest, most = runs[0], runs[-1]
        return most.per_1000_changes(most.statements) / fewest.per_1000_changes(fewest.statements)

    def lines(self) -> list[str]:
        changes = self.runs[0].changes if self.runs else 0
        lines = [f"offered to each configuration: {changes:,} changes (the reference "
                 f"workload's tables, primary-key partition keys) at {self.rate:,.0f} "
                 f"changes/s for {self.seconds:.0f}s; fresh stream and warehouse each"]
        lines += [r.line() for r in self.of(APPLIER) + self.of(INLINE)]
        runs = self.of(APPLIER)
        lines.append(f"ratio: statements per 1,000 changes at {runs[-1].shards} shards / at "
                     f"{runs[0].shards}, applier design (target <= 1.2)")
        lines.append(f"ratio={self.ratio:.2f}")
        return lines


# -- the offered load ---------------------------------------------------------------------------

@dataclass
class Load:
    """DMS records in source-commit order with their Kinesis partition keys, and the newest
    row sent per table and key (None: deleted)."""

    records: list[tuple[bytes, str]] = field(default_factory=list)
    newest: dict[str, dict[int, tuple[str, ...] | None]] = field(
        default_factory=lambda: {t: {} for t in COMPARED})

    def live_rows(self) -> dict[str, int]:
        return {t: sum(row is not None for row in rows.values())
                for t, rows in self.newest.items()}


def _stamp(unit: int) -> str:
    return (BASE_TIME + timedelta(seconds=unit)).strftime("%Y-%m-%d %H:%M:%S")


def build_load(changes: int) -> Load:
    """At least ``changes`` records of the reference workload's tables (about six per unit:
    a purchase with its ticket and customer, an event every tenth unit, an update of the
    purchase five units back, a seat move, a renamed customer, a deleted purchase)."""
    stream, load = DmsStream(), Load()

    def add(table: str, operation: str, row: dict[str, Any]) -> None:
        key = int(row[COMPARED[table][0]])
        record = stream.add(table, operation, row)
        load.records.append((base64.b64decode(record.data), f"public.{table}.{key}"))
        load.newest[table][key] = (None if operation == "delete" else
                                   tuple(str(row[c]) for c in COMPARED[table]))

    unit = 0
    while len(load.records) < changes:
        unit += 1
        event_id = (unit - 1) // 10 + 1
        if (unit - 1) % 10 == 0:
            add("sport_event", "insert", sport_event(event_id, location=f"Arena {event_id}"))
        add("customer", "insert", customer(unit, f"Buyer {unit}"))
        add("ticket", "insert", ticket(unit, event_id, seat_location=f"S-{unit}"))
        add("ticket_activity", "insert", activity(unit, unit, created_at=_stamp(unit)))
        if unit > 5:
            add("ticket_activity", "update",
                activity(unit - 5, unit - 5, created_at=_stamp(unit - 5),
                         updated_at=_stamp(unit)))
        if unit > 2 and unit % 4 == 0:
            add("ticket", "update", ticket(unit - 2, (unit - 3) // 10 + 1,
                                           seat_location=f"M-{unit}"))
        if unit > 3 and unit % 3 == 0:
            add("customer", "update", customer(unit - 3, f"Renamed {unit}"))
        if unit > 7 and unit % 10 == 0:
            gone = unit - 7
            add("ticket_activity", "delete",
                activity(gone, gone, created_at=_stamp(gone), updated_at=_stamp(gone + 5)))
    return load


def offer(kinesis: Any, stream: str, load: Load, rate: float, stop: threading.Event) -> None:
    """Put the load's records at ``rate`` records/s, in order, as the local DMS puts them
    (``KinesisPutter``: 500 per call at most, what a throttled shard refuses sent again)."""
    putter = KinesisPutter(kinesis, stream)
    started, sent = time.perf_counter(), 0
    while sent < len(load.records) and not stop.is_set():
        due = min(len(load.records), int(rate * (time.perf_counter() - started)) + 1)
        putter.put([KinesisEntry(data, key) for data, key in load.records[sent:due]])
        sent = max(sent, due)
        time.sleep(0.05)


def warehouse_holds(dsn: str, spec: PipelineSpec, load: Load) -> bool:
    """Whether every replica's live rows are exactly the newest rows sent."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, columns in COMPARED.items():
            rows = conn.execute(sql.SQL("SELECT {} FROM {}.{} WHERE NOT {}").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c))
                                   for c in columns),
                sql.Identifier(spec.replica_schema), sql.Identifier(table),
                sql.Identifier(DELETED))).fetchall()
            expected = {row for row in load.newest[table].values() if row is not None}
            if len(rows) != len(expected) or set(rows) != expected:
                return False
    return True


# -- counting the warehouse's work --------------------------------------------------------------

@dataclass
class Counts:
    transactions: int = 0
    statements: int = 0
    calls: int = 0


def _serve_counting(info_json: str, counts: Any, ready: Any, stop: Any) -> None:
    """The counting stand-in's process: serve until ``stop`` is set; every request adds to
    ``counts`` (transactions, statements, calls)."""
    info = StackInfo.from_dict(json.loads(info_json))
    server = RedshiftDataApiServer(
        pg_conninfo=f"host=127.0.0.1 port={info.postgres_port} user=postgres",
        s3_endpoint_url=info.moto_endpoint,
        auth=AuthSettings(secrets_endpoint_url=info.moto_endpoint,
                          sts_endpoint_url=info.moto_endpoint, region=info.region),
        workgroups=(WORKGROUP_NAME,), clusters=(CLUSTER_IDENTIFIER,))
    handlers = server.operations.handlers

    def counted(operation: str, handler: Handler) -> Handler:
        def run(body: dict[str, Any], caller: Any) -> dict[str, Any]:
            with counts.get_lock():
                counts[2] += 1
                if operation == "ExecuteStatement":
                    counts[0] += 1
                    counts[1] += 1
                elif operation == "BatchExecuteStatement":
                    counts[0] += 1
                    counts[1] += len(body.get("Sqls") or [])
            return handler(body, caller)

        return run

    for name, handler in list(handlers.items()):
        handlers[name] = counted(name, handler)
    server.start()
    ready.put(server.endpoint_url)
    stop.wait()
    server.stop()


class CountingDataApi:
    """A Data API stand-in of the benchmark's own, over the stack's PostgreSQL and
    authenticating as the stack's does, counting every request it serves whatever process
    sent it. It runs in a process of its own, as the stack's stand-in does, so the
    benchmark's pollers do not slow it down."""

    def __init__(self, info: StackInfo) -> None:
        self._info = info
        spawn = multiprocessing.get_context("spawn")
        self._counts = spawn.Array("q", 3)
        self._ready = spawn.Queue()
        self._stop = spawn.Event()
        self._process = spawn.Process(target=_serve_counting, name="counting-data-api",
                                      args=(info.to_json(), self._counts, self._ready,
                                            self._stop), daemon=True)

    def snapshot(self) -> Counts:
        with self._counts.get_lock():
            return Counts(*self._counts[:])

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        self._process.start()
        try:
            yield str(self._ready.get(timeout=120))
        finally:
            self._stop.set()
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.kill()


class Reader:
    """An analyst: ``SELECT count(*)`` of the wide table in a loop, each query timed from its
    submission to its result."""

    def __init__(self, info: StackInfo, database: str, spec: PipelineSpec) -> None:
        client = boto3.client("redshift-data", endpoint_url=info.redshift_data_endpoint,
                              region_name=info.region)
        self.api = RedshiftDataApi(client, DataApiTarget(
            database=database, workgroup_name=info.workgroup_name,
            secret_arn=info.resources.admin_secret_arn), poll_interval=(0.005, 0.05))
        target = next(iter(spec.targets))
        self.query = (f'SELECT count(*) FROM "{spec.target_schema}"."{target}"')
        self.waits: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.api.query(self.query)
            self.waits.append(time.perf_counter() - started)
            self.stop.wait(0.05)

    def __enter__(self) -> Reader:
        self.api.query(self.query)  # the connection and session exist before the run
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


# -- one configuration --------------------------------------------------------------------------

def warm_up(environments: Any, count: int, event: dict[str, Any], attempts: int = 3) -> None:
    """Start ``count`` execution environments and let each build its clients and writer (an
    empty event), so the run measures warm functions, as a stream in steady state has. On a
    busy machine a fresh interpreter may miss its init time; the pool discards it and the next
    attempt starts another (the warm ones are reused)."""
    context = LambdaContext(function_name="warm-up",
                            invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:"
                                                 "function:warm-up")
    failed: list[str] = []
    for _ in range(attempts):
        with ThreadPoolExecutor(max_workers=count) as pool:
            answers = list(pool.map(lambda _: environments.invoke(event, context, 300.0),
                                    range(count)))
        failed = [a.error for a in answers if a.error is not None]
        if not failed:
            return
    raise RuntimeError(f"the function failed its warm-up invocation {attempts} times: "
                       f"{failed[0]}")


def run_configuration(info: StackInfo, spec: PipelineSpec, counter: CountingDataApi,
                      endpoint: str, design: str, shards: int, load: Load, options: Options,
                      state_dir: Path) -> Figures:
    figures = Figures(design, shards, changes=len(load.records))
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    name = f"bench-scale-{design}-{shards}-{uuid.uuid4().hex[:6]}"
    parts.create_stream(kinesis, name, shards)
    queue_url = None
    if design == APPLIER:
        queue_url = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(VISIBILITY_TIMEOUT)})["QueueUrl"]
    try:
        with fresh_databases(info, f"scale_{design}_{shards}", spec=spec) as [database]:
            os.environ.update({"REDSHIFT_DATABASE": database,
                               "AWS_ENDPOINT_URL_REDSHIFT_DATA": endpoint})
            os.environ.pop("APPLIER_QUEUE_URL", None)
            if queue_url:
                os.environ["APPLIER_QUEUE_URL"] = queue_url
            _measure(info, spec, counter, figures, name, queue_url, database, load, options,
                     state_dir / name)
    finally:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        if queue_url:
            sqs.delete_queue(QueueUrl=queue_url)
    return figures


def _measure(info: StackInfo, spec: PipelineSpec, counter: CountingDataApi, figures: Figures,
             stream: str, queue_url: str | None, database: str, load: Load, options: Options,
             state_dir: Path) -> None:
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    # The mappings local.cdc runs (batching as template.yaml's defaults have it); no
    # on-failure destination: the bench sends no bad records.
    consumer = consumer_mapping(kinesis, stream, state_dir / "esm")
    applier = applier_mapping(sqs, queue_url) if queue_url else None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        warm_up(consumer.environments, figures.shards, {"Records": []})
        if applier is not None:
            warm_up(applier.environments, 1, {"Records": []})
        threads = [threading.Thread(target=consumer.run, args=(stop,), name="consumer")]
        if applier is not None:
            threads.append(threading.Thread(target=applier.run, args=(stop,), name="applier"))
        with Reader(info, database, spec) as reader:
            before = counter.snapshot()
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            offer(kinesis, stream, load, options.rate, stop)
            figures.load_seconds = time.perf_counter() - started
            deadline = time.perf_counter() + options.drain_timeout
            dsn = (f"host=127.0.0.1 port={info.postgres_port} user=postgres "
                   f"dbname={database}")
            while not (consumer.counters.records_delivered >= figures.changes
                       and (applier is None or applier.queue_depth() == 0)
                       and warehouse_holds(dsn, spec, load)):
                if time.perf_counter() > deadline:
                    raise TimeoutError(
                        f"{figures.design} with {figures.shards} shards did not drain "
                        f"{options.drain_timeout:.0f}s after the load: the handler got "
                        f"{consumer.counters.records_delivered:,} of {figures.changes:,} "
                        "records; offer less (--rate, --seconds) or wait longer "
                        "(--drain-timeout)")
                time.sleep(0.2)
            figures.drain_seconds = time.perf_counter() - started
            after = counter.snapshot()
        figures.sent_rows = load.live_rows()
        figures.warehouse_rows = live_replica_counts(dsn, spec)
        figures.transactions = after.transactions - before.transactions
        figures.statements = after.statements - before.statements
        figures.calls = after.calls - before.calls
        figures.reader_queries = len(reader.waits)
        figures.reader_longest_wait = max(reader.waits, default=0.0)
        figures.consumer_invocations = consumer.counters.invocations
        if applier is not None:
            figures.applier_invocations = applier.counters.invocations
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        consumer.close()
        if applier is not None:
            applier.close()


# -- the whole run ------------------------------------------------------------------------------

def run_benchmark(options: Options) -> Report:
    """Every configuration on the stack in ``options.stack_dir`` (started if needed; left
    running). This process's environment is restored afterwards."""
    say = options.progress
    state_dir = options.state_dir
    stack, run = options.stack_dir.resolve(), state_dir.resolve()
    if run == stack or run in stack.parents or stack in run.parents:
        raise ValueError(f"the benchmark's state dir {state_dir} would replace the stack's "
                         f"files in {options.stack_dir}: give them separate directories")
    saved = dict(os.environ)
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    log_handler = logging.FileHandler(state_dir / "bench.log")
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(log_handler)
    report = Report(rate=options.rate, seconds=options.seconds)
    try:
        info = ensure_stack(options.stack_dir)
        for name in CONFLICTING_VARIABLES:
            os.environ.pop(name, None)
        os.environ.update(info.environment())
        quiet_handler_output()
        spec = load_spec(info.spec_path or None)
        load = build_load(int(options.rate * options.seconds))
        counter = CountingDataApi(info)
        configurations = ([(APPLIER, n) for n in options.shard_counts]
                          + [(INLINE, n) for n in options.inline_shard_counts])
        # The functions' EMF metrics and logs (fd 1 of their processes) go to a file.
        with counter.running() as endpoint, stdout_to(state_dir / HANDLER_OUTPUT):
            for design, shards in configurations:
                say(f"{design}, {shards} shards: {len(load.records):,} changes at "
                    f"{options.rate:,.0f}/s ...")
                figures = run_configuration(info, spec, counter, endpoint, design, shards, load,
                                            options, state_dir)
                report.runs.append(figures)
                say(figures.line())
        return report
    finally:
        root.removeHandler(log_handler)
        log_handler.close()
        os.environ.clear()
        os.environ.update(saved)


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split(",") if n.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=_counts, default=Options.shard_counts,
                        help="shard counts of the applier design, comma-separated")
    parser.add_argument("--inline-shards", type=_counts, default=Options.inline_shard_counts,
                        help="shard counts of the inline design (the contrast); '' for none")
    parser.add_argument("--rate", type=float, default=Options.rate,
                        help="source changes offered per second")
    parser.add_argument("--seconds", type=float, default=Options.seconds,
                        help="how long the load is offered")
    parser.add_argument("--drain-timeout", type=float, default=Options.drain_timeout,
                        help="seconds after the load the warehouse may take to hold it all")
    parser.add_argument("--stack-dir", type=Path, default=Options.stack_dir)
    parser.add_argument("--state-dir", type=Path, default=Options.state_dir,
                        help="where the functions' output and the benchmark's log go")
    args = parser.parse_args(argv)
    if len(args.shards) < 2 or min(args.shards + args.inline_shards, default=1) < 1:
        parser.error("--shards needs at least two shard counts, each at least 1")
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    report = run_benchmark(Options(
        shard_counts=tuple(sorted(args.shards)), inline_shard_counts=args.inline_shards,
        rate=args.rate, seconds=args.seconds, stack_dir=args.stack_dir, state_dir=args.state_dir,
        drain_timeout=args.drain_timeout))
    for line in report.lines():
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
