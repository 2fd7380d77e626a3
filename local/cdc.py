"""The main job: the whole pipeline end to end on the local stack, from real source changes to
the warehouse.

    python -m local.cdc demo [--path lambda] [--duration 30] [--rate 40]
    python -m local.cdc consume --stack-dir DIR --state-dir DIR     # the consumer process
    python -m local.cdc reconcile --stack-dir DIR

``demo`` starts a fresh local stack (PostgreSQL with a ``source`` database in logical
replication and the ``warehouse`` database behind the Redshift Data API stand-in, moto for
Kinesis, S3, SQS and Secrets Manager), creates and seeds the source, runs the local DMS (full
load, then CDC), the consumer (the Lambda handler behind a local event source mapping) and a
workload of purchases, updates, deletes, email changes, late dimensions and bad rows, shows
progress, waits until the warehouse has caught up, prints the analyst table and a summary,
reconciles source and warehouse, and stops everything.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from local.dms import DEFAULT_SLOT, LocalDms
from local.event_source_mapping import LocalEventSourceMapping
from local.postgres import PostgresServer, create_database
from local.stack import StackInfo, ensure_stack, stop_stack
from local.workload import Workload
from shared.data_api import DataApiTarget, RedshiftDataApi
from shared.settings import hmac_key_from_secret
from shared.spec import PipelineSpec, load_spec
from tools import table_reload
from tools.reconcile import Reconciliation, reconcile_source

SOURCE_DATABASE = "source"
RELOADED_TABLE = "ticket_activity"  # the demo's table reload (workload.lose_purchases_and_reload)
ON_FAILURE_QUEUE = "cdc-on-failure"
log = logging.getLogger("local.cdc")


@dataclass
class LocalPipeline:
    """The parts of the pipeline on one local stack; each part can run in a thread."""

    stack: StackInfo
    spec: PipelineSpec
    state_dir: Path
    threads: list[threading.Thread] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def prepare(cls, stack_dir: Path, state_dir: Path, spec: PipelineSpec) -> LocalPipeline:
        stack = ensure_stack(stack_dir)
        os.environ.update(stack.environment())  # plain boto3 clients now reach the stack
        pipeline = cls(stack, spec, state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        create_database(PostgresServer(stack_dir / "pg", stack.postgres_port), SOURCE_DATABASE)
        boto3.client("sqs").create_queue(QueueName=ON_FAILURE_QUEUE)
        return pipeline

    @property
    def source_dsn(self) -> str:
        return (f"host=127.0.0.1 port={self.stack.postgres_port} user=postgres "
                f"dbname={SOURCE_DATABASE}")

    def workload(self, seed: int = 7) -> Workload:
        return Workload(self.source_dsn, self.spec, seed=seed)

    def dms(self) -> LocalDms:
        return LocalDms(self.source_dsn, self.spec, boto3.client("kinesis"),
                        self.stack.resources.stream_name, self.state_dir / "dms")

    def consumer(self) -> LocalEventSourceMapping:
        from functions.kinesis_consumer import app

        sqs = boto3.client("sqs")
        on_failure = sqs.get_queue_url(QueueName=ON_FAILURE_QUEUE)["QueueUrl"]
        return LocalEventSourceMapping(
            boto3.client("kinesis"), self.stack.resources.stream_name, app.lambda_handler,
            batch_size=500, batching_window_seconds=0.5, maximum_retry_attempts=10,
            bisect_on_error=True, on_failure=(sqs, on_failure),
            state_dir=self.state_dir / "esm", retry_backoff_seconds=0.2,
            poll_interval_seconds=0.2,
        )

    def consumer_command(self, path: str, once: bool = False) -> list[str]:
        """``python -m`` arguments of the consumer process for ``path`` (lambda | glue)."""
        if path == "glue":
            return ["glue_job.local_runner", "--stack-dir", str(self.stack.state_dir),
                    "--state-dir", str(self.state_dir / "glue"), "--window-size", "2 seconds",
                    *(["--once"] if once else [])]
        return ["local.cdc", "consume", "--stack-dir", str(self.stack.state_dir),
                "--state-dir", str(self.state_dir)]

    def start(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=(self.stop,), name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def api(self) -> RedshiftDataApi:
        return RedshiftDataApi(boto3.client("redshift-data"), DataApiTarget(
            database=self.stack.database, workgroup_name=self.stack.workgroup_name,
            secret_arn=self.stack.resources.consumer_secret_arn))

    def hmac_key(self) -> bytes:
        secret = boto3.client("secretsmanager").get_secret_value(
            SecretId=self.stack.resources.hmac_secret_arn)["SecretString"]
        return hmac_key_from_secret(secret)

    def reconcile(self) -> Reconciliation:
        return reconcile_source(self.source_dsn, self.spec, self.hmac_key(), self.api())

    def rejected(self) -> int:
        """Records on the dead-letter queue (SQS's approximate count)."""
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.stack.resources.dead_letter_queue_url,
            AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def dead_letters(self) -> Counter[str]:
        """Reasons of the records on the dead-letter queue (read without consuming them)."""
        import json

        sqs = boto3.client("sqs")
        reasons: Counter[str] = Counter()
        seen: set[str] = set()
        handles: list[str] = []
        while True:
            got = sqs.receive_message(QueueUrl=self.stack.resources.dead_letter_queue_url,
                                      MaxNumberOfMessages=10, VisibilityTimeout=30)
            messages = [m for m in got.get("Messages", []) if m["MessageId"] not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                handles.append(message["ReceiptHandle"])
                reasons[json.loads(message["Body"])["reason"]] += 1
        for start in range(0, len(handles), 10):
            sqs.change_message_visibility_batch(
                QueueUrl=self.stack.resources.dead_letter_queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
                         for i, h in enumerate(handles[start:start + 10])])
        return reasons


def catch_up(dms: LocalDms, consumer: LocalEventSourceMapping, timeout: float = 120.0) -> None:
    """Capture and consume until the source has nothing new and the stream is drained.

    The local source commits asynchronously, so its last changes reach the WAL (and logical
    decoding) up to ~0.6 s after they commit: wait that out first.
    """
    deadline = time.monotonic() + timeout
    time.sleep(1.0)
    while True:
        captured = dms.drain()
        consumer.drain(timeout_seconds=max(1.0, deadline - time.monotonic()))
        if captured == 0 and consumer.pending_records == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not catch up in time")


def progress_line(elapsed: float, duration: float, workload: Workload, dms: LocalDms,
                  consumer: LocalEventSourceMapping, rejected: int, width: int = 24) -> str:
    done = min(1.0, elapsed / duration) if duration else 1.0
    bar = "#" * int(done * width) + "-" * (width - int(done * width))
    captured = dms.counters.records_loaded + dms.counters.records_captured
    behind = max(captured - consumer.counters.records_delivered, 0)
    return (f"\r[{bar}] {elapsed:5.1f}s  source txns {workload.counters.transactions:6d}  "
            f"captured {captured:7d}  consumed {consumer.counters.records_delivered:7d}  "
            f"rejected {rejected:4d}  behind {behind:6d}")


def print_table(rows: list[dict[str, Any]], columns: list[str], width: int = 14) -> None:
    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return text if len(text) <= width else text[: width - 1] + "…"

    print(" | ".join(c[:width].ljust(width) for c in columns))
    print("-+-".join("-" * width for _ in columns))
    for row in rows:
        print(" | ".join(cell(row[c]).ljust(width) for c in columns))


def quiet_handler_output() -> None:
    """In-process runs print a progress bar: keep the handler's INFO logs and EMF metrics
    (one JSON line each per batch) off the terminal. Warnings still show."""
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"


def demo(args: argparse.Namespace) -> int:
    quiet_handler_output()
    spec = load_spec(args.spec)
    state_dir = Path(args.state_dir)
    stop_stack(state_dir / "stack")
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    print("starting the local stack (PostgreSQL source + warehouse, Redshift Data API "
          "stand-in, moto) ...")
    glue: subprocess.Popen[bytes] | None = None
    try:
        pipeline = LocalPipeline.prepare(state_dir / "stack", state_dir / "run", spec)
        workload = pipeline.workload()
        workload.create_schema(loose=True)
        workload.seed_data(customers=args.customers, events=10, purchases=args.purchases)
        dms, consumer = pipeline.dms(), pipeline.consumer()
        print(f"full load of {len(spec.tables)} tables, then CDC through the "
              f"{args.path} path for {args.duration:.0f}s at {args.rate:.0f} txn/s")
        dms.full_load()
        pipeline.start(dms.run, "dms")
        if args.path == "glue":  # the Glue batch function on local Spark, its own process
            glue = _spawn(pipeline.consumer_command("glue"), state_dir / "glue-runner.log")
        else:
            pipeline.start(consumer.run, "consumer")
        started = time.monotonic()
        runner = threading.Thread(target=workload.run, kwargs={
            "rate_per_second": args.rate, "duration_seconds": args.duration,
            "stop_event": pipeline.stop, "bad_row_share": args.bad_rows}, daemon=True)
        runner.start()
        events = table_events(pipeline, workload) if args.table_events else []
        while runner.is_alive():
            elapsed = time.monotonic() - started
            while events and elapsed >= events[0][0] * args.duration:
                events.pop(0)[1]()
            print(progress_line(elapsed, args.duration, workload, dms,
                                consumer, pipeline.rejected()), end="", flush=True)
            runner.join(0.5)
        pipeline.shutdown()
        if glue is not None:
            glue.terminate()
            glue.wait(timeout=60)
            time.sleep(1.0)  # the source's last commits reach the WAL
            dms.drain()
            drain = _spawn(pipeline.consumer_command("glue", once=True),
                           state_dir / "glue-drain.log")
            if drain.wait(timeout=300) != 0:
                raise RuntimeError(f"the Glue runner failed: see {state_dir}/glue-drain.log")
        else:
            catch_up(dms, consumer)
        if args.table_events and not events:  # the reload was requested and has landed
            swept = table_reload.finish(pipeline.api(), pipeline.spec, RELOADED_TABLE)
            print(f"\nreload of {RELOADED_TABLE} finished: {swept} rows the source no longer has "
                  "deleted")
        print(progress_line(args.duration, args.duration, workload, dms, consumer,
                            pipeline.rejected()))
        show_results(pipeline, workload, dms, consumer, args.rows)
        report = pipeline.reconcile()
        print("\nreconciliation (source with the spec's PII rules vs warehouse):")
        for table in report.tables:
            print("  " + table.summary())
        print(f"differences={report.differences}")
        return 0 if report.differences == 0 else 1
    finally:
        if glue is not None and glue.poll() is None:
            glue.kill()
        stop_stack(state_dir / "stack")


def table_events(pipeline: LocalPipeline, workload: Workload
                 ) -> list[tuple[float, Callable[[], object]]]:
    """What the demo does once during its run, at a share of its duration: a truncate, an
    added column, and a reload of ticket_activity after deletes the stream never saw (the
    local DMS's test device) to show the reload repairing the warehouse."""
    dms_state = pipeline.state_dir / "dms"

    def reload() -> None:
        # As a user would: record the load start, then ask DMS for the reload
        # (tools.table_reload); ``finish`` runs once the pipeline has caught up.
        table_reload.start(pipeline.api(), pipeline.spec, RELOADED_TABLE)
        workload.lose_purchases_and_reload(dms_state, DEFAULT_SLOT)

    return [(0.25, workload.truncate_and_reinsert), (0.5, workload.add_column), (0.75, reload)]


def _spawn(module_args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child for its lifetime
    return subprocess.Popen([sys.executable, "-m", *module_args], stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ))


def show_results(pipeline: LocalPipeline, workload: Workload, dms: LocalDms,
                 consumer: LocalEventSourceMapping, rows: int) -> None:
    api = pipeline.api()
    for target in pipeline.spec.targets.values():
        name = f'"{pipeline.spec.target_schema}"."{target.name}"'
        count = api.query(f"SELECT count(*) AS n FROM {name}")[0]["n"]
        first = api.query(f"SELECT * FROM {name} ORDER BY {', '.join(target.key)} LIMIT {rows}")
        print(f"\n{pipeline.spec.target_schema}.{target.name}: first {len(first)} of {count}")
        print_table(first, [c.name for c in target.columns])
    ops = workload.counters.operations
    print(f"\nsummary: {workload.counters.transactions} source transactions "
          f"({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}); "
          f"{dms.counters.records_loaded + dms.counters.records_captured} DMS records; "
          f"{consumer.counters.invocations} handler "
          f"invocations, {consumer.counters.retries} retries")
    letters = pipeline.dead_letters()
    print(f"dead-letter queue: {sum(letters.values())} records "
          f"(bad source rows written: {len(workload.bad_rows)})")
    for reason, count in letters.most_common():
        print(f"  x{count}: {reason}")


def consume(args: argparse.Namespace) -> int:
    """Run the consumer (event source mapping + Lambda handler) until SIGTERM."""
    pipeline = LocalPipeline.prepare(Path(args.stack_dir), Path(args.state_dir),
                                     load_spec(args.spec))
    signal.signal(signal.SIGTERM, lambda *_: pipeline.stop.set())
    pipeline.consumer().run(pipeline.stop)
    return 0


def reconcile_command(args: argparse.Namespace) -> int:
    pipeline = LocalPipeline.prepare(Path(args.stack_dir), Path(args.state_dir),
                                     load_spec(args.spec))
    report = pipeline.reconcile()
    for table in report.tables:
        print(table.summary())
    print(f"differences={report.differences}")
    return 0 if report.differences == 0 else 1


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m local.cdc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", help="pipeline spec (default: the packaged one)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="the pipeline end to end, then reconcile")
    run.add_argument("--path", choices=["lambda", "glue"], default="lambda",
                     help="the consumer: the Lambda handler, or the Glue batch function")
    run.add_argument("--duration", type=float, default=30.0, help="seconds of workload")
    run.add_argument("--rate", type=float, default=40.0, help="source transactions per second")
    run.add_argument("--bad-rows", type=float, default=0.02, help="share of bad source rows")
    run.add_argument("--customers", type=int, default=200)
    run.add_argument("--purchases", type=int, default=1000)
    run.add_argument("--rows", type=int, default=10, help="rows of the analyst table to show")
    run.add_argument("--table-events", action=argparse.BooleanOptionalAction, default=True,
                     help="once during the run: truncate sport_event, add ticket.section, "
                          "reload ticket_activity after unseen deletes")
    run.add_argument("--state-dir", default=".local-stack/demo")
    run.set_defaults(func=demo)
    for name, func in (("consume", consume), ("reconcile", reconcile_command)):
        sub = commands.add_parser(name)
        sub.add_argument("--stack-dir", required=True)
        sub.add_argument("--state-dir", required=True)
        sub.set_defaults(func=func)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
