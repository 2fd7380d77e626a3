"""The main job: the whole pipeline end to end on the local stack, from real source changes to
the warehouse.

    python -m local.cdc demo [--path lambda] [--duration 30] [--rate 40] [--spec FILE]
    python -m local.cdc demo --source DSN --spec FILE [--duration 30]   # your own database
    python -m local.cdc run --source DSN --spec FILE [--duration S]     # until Ctrl-C
    python -m local.cdc consume --stack-dir DIR --state-dir DIR     # consumer (+ applier)
    python -m local.cdc apply --stack-dir DIR --state-dir DIR       # the applier alone
    python -m local.cdc reconcile --stack-dir DIR --state-dir DIR

``demo`` starts a fresh local stack (PostgreSQL with a ``source`` database in logical
replication and the ``warehouse`` database behind the Redshift Data API stand-in, moto for
Kinesis, S3, SQS and Secrets Manager), creates and seeds the source, runs the local DMS (full
load, then CDC), the consumer (the Lambda handler behind a local event source mapping; it
lands each batch, and the single applier, the batch applier function behind a local SQS event
source mapping on the applier's queue, applies every landed batch in one transaction) and a
workload of purchases, updates, deletes, email changes, late dimensions and bad rows, shows
progress, waits until the warehouse has caught up, prints the analyst table and a summary,
reconciles source and warehouse, and stops everything; the handler's own output (EMF metrics,
logs) goes to ``<state-dir>/handler-output.log``. ``--spec`` migrates the warehouse to
that spec and the consumer reads it (the generated workload needs the reference tables).

``run`` (and ``demo --source``) does the same on an existing PostgreSQL database of yours,
with your spec and without the generated workload or seed: it checks the database
(``wal_level = logical``, the spec's tables, a wal2json slot can be created), then full load,
then CDC of whatever your applications commit, for ``--duration`` seconds or until Ctrl-C /
SIGTERM, then catch-up and reconciliation against your database. The local stack (warehouse,
Data API stand-in, moto) runs locally and stays up afterwards for ``cdc status`` and
``cdc sql`` (``--no-keep-stack`` stops it). At the end the replication slot, and the DMS DDL
capture objects if this run created them, are removed from your database.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import boto3
import psycopg
from psycopg import sql

from local.dms import DEFAULT_SLOT, LocalDms
from local.dms.capture import DDL_AUDIT_TABLE, DDL_FUNCTION, DEFAULT_DDL_SCHEMA, OUTPUT_PLUGIN
from local.dms.requests import request_reload
from local.event_source_mapping import LocalEventSourceMapping
from local.event_source_mapping.sqs import LocalSqsEventSourceMapping
from local.postgres import PostgresServer, create_database
from local.stack import StackInfo, ensure_stack, stop_stack
from local.stack.environment import APPLIER_HANDLER, CONSUMER_HANDLER
from local.stack.provision import ensure_stream_consumer
from local.stack.state import APPLIER_VISIBILITY_TIMEOUT_SECONDS
from local.template import applier_batching, consumer_batching, consumer_reads_through_fan_out
from local.workload import TABLES as WORKLOAD_TABLES
from local.workload import Workload
from shared.data_api import DataApiTarget, RedshiftDataApi
from shared.settings import hmac_key_from_secret
from shared.spec import PipelineSpec, SpecError, load_spec
from shared.warehouse_sql import ident
from tools import table_reload
from tools.progress import steps, watch
from tools.reconcile import Reconciliation, reconcile_source, reconcile_steps

SOURCE_DATABASE = "source"
RELOADED_TABLE = "ticket_activity"  # the demo's table reload (workload.lose_purchases_and_reload)
# The table the demo adds a column to, then reloads: DMS sends the add-column control record
# under its own partition key, so a consumer of another shard can apply rows carrying the new
# column's values before the column exists in the warehouse; those rows are reported
# ("rows_written_without_it") and, as docs/source-engines.md says, a reload fills them.
EVOLVED_TABLE = "ticket"
ON_FAILURE_QUEUE = "cdc-on-failure"
USER_SOURCE_SLOT = "cdc_local_run"  # the slot `run` creates on a user's database, and drops
# The enhanced fan-out consumer the Kinesis consumer reads through with KinesisEnhancedFanOut.
STREAM_CONSUMER_NAME = "cdc-local-kinesis-consumer"
HANDLER_OUTPUT = "handler-output.log"  # in the state dir: the handler's EMF metrics and logs
log = logging.getLogger("local.cdc")


def consumer_mapping(kinesis: Any, stream: str, state_dir: Path,
                     on_failure: tuple[Any, str] | None = None,
                     parameters: Mapping[str, str] | None = None) -> LocalEventSourceMapping:
    """The Kinesis consumer function behind an event source mapping on ``stream``.

    The shards' batches run concurrently, each in an execution environment (process) of its
    own as in Lambda: the handler's module state is per environment. Batching and the source
    (the stream, or an enhanced fan-out consumer of it, registered here as
    ``STREAM_CONSUMER_NAME``) as template.yaml has them for its defaults and ``parameters``;
    a polled idle shard is polled once a second as Lambda does ("Using Lambda to process
    records from Amazon Kinesis Data Streams", "Polling and batching streams": a base rate of
    once per second); retries are quicker and more (a local restart takes seconds, Lambda's
    backoff minutes)."""
    batching = consumer_batching(parameters)
    consumer_arn = None
    if consumer_reads_through_fan_out(parameters):
        stream_arn = kinesis.describe_stream_summary(
            StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
        consumer_arn = ensure_stream_consumer(kinesis, stream_arn, STREAM_CONSUMER_NAME)
    return LocalEventSourceMapping(
        kinesis, stream, CONSUMER_HANDLER, batch_size=batching.batch_size,
        batching_window_seconds=batching.batching_window_seconds,
        parallelization_factor=batching.concurrency, maximum_retry_attempts=10,
        bisect_on_error=True, on_failure=on_failure, state_dir=state_dir,
        retry_backoff_seconds=0.2, poll_interval_seconds=1.0, consumer_arn=consumer_arn)


def applier_mapping(sqs: Any, queue_url: str) -> LocalSqsEventSourceMapping:
    """The batch applier function behind an SQS event source mapping on the applier's queue,
    batching as template.yaml's defaults have it (concurrent invocations wait for each other
    on the landing table's LOCK: one applies at a time); the function's timeout as the local
    stack's queue has it. Its pollers long-poll the queue, as Lambda's do: an apply starts
    as soon as a batch lands."""
    batching = applier_batching()
    return LocalSqsEventSourceMapping(
        sqs, queue_url, APPLIER_HANDLER, batch_size=batching.batch_size,
        batching_window_seconds=batching.batching_window_seconds,
        maximum_concurrency=batching.concurrency,
        function_timeout_seconds=APPLIER_VISIBILITY_TIMEOUT_SECONDS, poll_interval_seconds=0.2)


class SourceError(RuntimeError):
    """The user's database cannot be the source as it is; the message says what to do."""


@dataclass
class LocalPipeline:
    """The parts of the pipeline on one local stack; each part can run in a thread.

    The source is the stack's own ``source`` database, or ``external_source`` (a user's
    database, ``run``). With ``applier`` the Kinesis consumer lands its batches for the single
    applier (``APPLIER_QUEUE_URL``, as template.yaml configures it), and whoever runs the
    consumer runs ``applier_mapping()`` too; without, it applies each batch inline."""

    stack: StackInfo
    spec: PipelineSpec
    state_dir: Path
    external_source: str | None = None
    applier: bool = False
    # template.yaml parameters the local functions' mappings follow instead of the defaults
    parameters: dict[str, str] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def prepare(cls, stack_dir: Path, state_dir: Path, spec: PipelineSpec | None = None, *,
                spec_path: str | None = None, source_dsn: str | None = None,
                applier: bool = False) -> LocalPipeline:
        """Start (or reuse) the stack, migrated to ``spec_path`` when given; ``spec`` defaults
        to the spec the stack follows (the consumer reads that one too). ``applier``: the
        consumer lands for the single applier (see the class)."""
        stack = ensure_stack(stack_dir, spec_path)
        # Plain boto3 clients (and the execution environments, started later) reach the stack.
        os.environ.update(stack.environment(applier))
        if not applier:
            os.environ.pop("APPLIER_QUEUE_URL", None)
        pipeline = cls(stack, spec or load_spec(stack.spec_path or None), state_dir, source_dsn,
                       applier)
        state_dir.mkdir(parents=True, exist_ok=True)
        if source_dsn is None:
            create_database(PostgresServer(stack_dir / "pg", stack.postgres_port),
                            SOURCE_DATABASE)
        boto3.client("sqs").create_queue(QueueName=ON_FAILURE_QUEUE)
        return pipeline

    @property
    def source_dsn(self) -> str:
        if self.external_source is not None:
            return self.external_source
        return (f"host=127.0.0.1 port={self.stack.postgres_port} user=postgres "
                f"dbname={SOURCE_DATABASE}")

    def workload(self, seed: int = 7) -> Workload:
        return Workload(self.source_dsn, self.spec, seed=seed)

    def dms(self) -> LocalDms:
        slot = DEFAULT_SLOT if self.external_source is None else USER_SOURCE_SLOT
        return LocalDms(self.source_dsn, self.spec, boto3.client("kinesis"),
                        self.stack.resources.stream_name, self.state_dir / "dms", slot)

    def consumer(self) -> LocalEventSourceMapping:
        sqs = boto3.client("sqs")
        on_failure = sqs.get_queue_url(QueueName=ON_FAILURE_QUEUE)["QueueUrl"]
        return consumer_mapping(boto3.client("kinesis"), self.stack.resources.stream_name,
                                self.state_dir / "esm", on_failure=(sqs, on_failure),
                                parameters=self.parameters)

    def applier_mapping(self) -> LocalSqsEventSourceMapping:
        return applier_mapping(boto3.client("sqs"), self.stack.resources.applier_queue_url)

    def applier_depth(self) -> int:
        """Landed batches waiting for the applier (visible, in flight or delayed)."""
        counts = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                  "ApproximateNumberOfMessagesDelayed")
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.stack.resources.applier_queue_url,
            AttributeNames=list(counts))["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in counts)

    def consumer_command(self, path: str, once: bool = False,
                         applier: bool = True) -> list[str]:
        """``python -m`` arguments of the consumer process for ``path`` (lambda | glue); on
        the Lambda path it runs the applier too unless ``applier`` is False (then run
        ``applier_command()`` in a process of its own)."""
        if path == "glue":
            return ["glue_job.local_runner", "--stack-dir", str(self.stack.state_dir),
                    "--state-dir", str(self.state_dir / "glue"), "--window-size", "2 seconds",
                    *(f"--parameter={name}={value}"
                      for name, value in sorted(self.parameters.items())),
                    *(["--once"] if once else [])]
        return ["local.cdc", "consume", "--stack-dir", str(self.stack.state_dir),
                "--state-dir", str(self.state_dir), *([] if applier else ["--no-applier"])]

    def applier_command(self) -> list[str]:
        """``python -m`` arguments of a process that runs the applier alone."""
        return ["local.cdc", "apply", "--stack-dir", str(self.stack.state_dir),
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

    def reconcile(self, step: Callable[[str], None] | None = None) -> Reconciliation:
        if step is None:
            return reconcile_source(self.source_dsn, self.spec, self.hmac_key(), self.api())
        return reconcile_source(self.source_dsn, self.spec, self.hmac_key(), self.api(), step)

    def rejected(self) -> int:
        """Records on the dead-letter queue (SQS's approximate count)."""
        attributes = boto3.client("sqs").get_queue_attributes(
            QueueUrl=self.stack.resources.dead_letter_queue_url,
            AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def dead_letters(self) -> Counter[str]:
        """Reasons of the records on the dead-letter queue (read without consuming them)."""
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


def catch_up(dms: LocalDms, consumer: LocalEventSourceMapping, timeout: float = 120.0,
             applier: LocalSqsEventSourceMapping | None = None) -> None:
    """Capture, consume and apply until the source has nothing new, the stream is drained and
    the applier's queue (when there is an applier) is empty.

    The local source commits asynchronously, so its last changes reach the WAL (and logical
    decoding) up to ~0.6 s after they commit: wait that out first.
    """
    deadline = time.monotonic() + timeout
    time.sleep(1.0)
    while True:
        captured = dms.drain()
        consumer.drain(timeout_seconds=max(1.0, deadline - time.monotonic()))
        if applier is not None:
            applier.drain(timeout_seconds=max(1.0, deadline - time.monotonic()))
        if captured == 0 and consumer.pending_records == 0 and (
                applier is None or applier.queue_depth() == 0):
            return
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not catch up in time")


def records_sent(dms: LocalDms) -> int:
    return dms.counters.records_loaded + dms.counters.records_captured


def pipeline_status(dms: LocalDms, consumer: LocalEventSourceMapping, rejected: int,
                    transactions: int | None = None, applier_depth: int | None = None) -> str:
    """One line of counters: what the source did (when a workload runs), what DMS captured,
    what the consumer got, what was dead-lettered, how far the consumer is behind and (with
    an applier) how many landed batches wait on the applier's queue."""
    captured = records_sent(dms)
    delivered = consumer.counters.records_delivered
    behind = max(captured - delivered, 0)
    source = "" if transactions is None else f"source txns {transactions}  "
    applier = "" if applier_depth is None else f"  applier queue {applier_depth}"
    return (f"{source}captured {captured}  consumed {delivered}  rejected {rejected}  "
            f"behind {behind}{applier}")


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


@contextmanager
def handler_output_to(path: Path) -> Iterator[None]:
    """While the block runs, file descriptor 1 goes to ``path``, so the processes started
    meanwhile (the handler's execution environments, which print their EMF metrics and logs)
    write there; this process's own ``print`` keeps going where stdout went before."""
    sys.stdout.flush()
    terminal = os.dup(1)
    saved = sys.stdout
    try:
        with open(path, "ab") as log:
            os.dup2(log.fileno(), 1)
        sys.stdout = open(terminal, "w", buffering=1, encoding=saved.encoding,  # noqa: SIM115
                          errors=saved.errors, closefd=False)
        yield
    finally:
        sys.stdout.flush()
        if sys.stdout is not saved:
            sys.stdout.close()
            sys.stdout = saved
        os.dup2(terminal, 1)
        os.close(terminal)


# -- the user's database as the source -------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _qualified(conn: psycopg.Connection[Any], schema: str, table: str) -> str:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table)).as_string(conn)


def check_source(dsn: str, spec: PipelineSpec) -> list[str]:
    """Check that the local DMS can run on the user's database; raise ``SourceError`` naming
    every problem and what to do. Returns warnings (the run goes on).

    Logical decoding needs ``wal_level = logical`` ("Logical Decoding Concepts" and "wal_level",
    PostgreSQL documentation; "Enabling CDC using a self-managed PostgreSQL database as a
    source", AWS DMS User Guide). Creating a logical slot needs the REPLICATION attribute or a
    superuser ("Replication Slots", PostgreSQL documentation, 49.2.2), the output plugin
    installed on the server, and a free slot (``max_replication_slots``): a temporary wal2json
    slot is created and dropped to find out. DMS's DDL capture is an event trigger, which only
    a superuser may create ("CREATE EVENT TRIGGER", PostgreSQL documentation).
    """
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10,
                               application_name="cdc-run-check")
    except psycopg.Error as exc:
        raise SourceError(
            f"cannot connect to the source database ({_first_line(exc)}): check --source "
            "(host, port, dbname, user; a password goes in PGPASSWORD or ~/.pgpass)") from None
    problems: list[str] = []
    warnings: list[str] = []
    with conn:
        wal_level = str(conn.execute("SHOW wal_level").fetchone()[0])  # type: ignore[index]
        if wal_level != "logical":
            problems.append(
                f"wal_level is {wal_level!r}; change data capture needs logical decoding: set "
                "wal_level = logical (ALTER SYSTEM SET wal_level = logical, or in "
                "postgresql.conf) and restart PostgreSQL; on Amazon RDS or Aurora set "
                "rds.logical_replication = 1 in the DB parameter group and reboot")
        schema = spec.source_schema
        for name in spec.tables:
            found = conn.execute(
                "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE "
                "i.indrelid = c.oid AND i.indisprimary) FROM pg_class c "
                "WHERE c.oid = to_regclass(%s)", (_qualified(conn, schema, name),)).fetchone()
            if found is None:
                problems.append(f"table {schema}.{name} of the spec is not in the database: "
                                "check the spec's source_schema and table names "
                                "(cdc spec check compares a spec with the database)")
            elif found[0] == "n" or (found[0] == "d" and not found[1]):
                warnings.append(
                    f"{schema}.{name} has no primary key and no replica identity: its updates "
                    "and deletes reach the stream without their key; give it a primary key or "
                    f"ALTER TABLE {schema}.{name} REPLICA IDENTITY FULL")
        role = conn.execute("SELECT rolsuper, rolreplication FROM pg_roles "
                            "WHERE rolname = current_user").fetchone()
        superuser, replication = (bool(role[0]), bool(role[1])) if role else (False, False)
        if not (superuser or replication):
            problems.append("the user may not create replication slots: connect as a user "
                            "with the REPLICATION attribute (ALTER ROLE ... REPLICATION) or "
                            "a superuser (on RDS: GRANT rds_replication TO ...)")
        if not superuser and not ddl_capture_exists(conn):
            problems.append(
                "the local DMS captures DDL the way DMS does, with an event trigger "
                f"({DDL_FUNCTION}), and only a superuser can create one: connect as a "
                "superuser (or have one run the DMS guide's DDL capture setup once)")
        if wal_level == "logical" and (superuser or replication):
            problems += _slot_problems(conn)
    if problems:
        raise SourceError("the source database cannot be used as it is:\n  - "
                          + "\n  - ".join(problems))
    return warnings


def _slot_problems(conn: psycopg.Connection[Any]) -> list[str]:
    """Create and drop a temporary wal2json slot; what went wrong, with what to do."""
    slot = f"cdc_check_{os.getpid()}"
    try:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, %s, true)",
                     (slot, OUTPUT_PLUGIN))
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    except psycopg.errors.UndefinedFile:
        return ["wal2json, the logical decoding plugin the local DMS reads (as DMS does on "
                "PostgreSQL), is not installed on the database server: install it there "
                "(Debian/Ubuntu: apt-get install postgresql-<major version>-wal2json; Amazon "
                "RDS and Aurora PostgreSQL include it)"]
    except psycopg.Error as exc:
        return [f"cannot create a logical replication slot ({_first_line(exc)}): with "
                "'all replication slots are in use' raise max_replication_slots and restart; "
                "otherwise check the user's REPLICATION attribute"]
    return []


def ddl_capture_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = %s)",
                       (DDL_FUNCTION,)).fetchone()
    return bool(row and row[0])


def release_source(dsn: str, dms: LocalDms, drop_ddl_capture: bool) -> None:
    """Drop the run's replication slot (a slot left behind keeps WAL on the server forever)
    and, when this run created them, DMS's DDL capture objects ("Removing AWS DMS artifacts
    from a PostgreSQL source database", AWS DMS User Guide)."""
    try:
        dms.close()
        dms.drop_slot()
        dms.close()
    except psycopg.Error as exc:
        print(f"warning: the replication slot {dms.slot_name} could not be dropped "
              f"({_first_line(exc)}); drop it yourself, or it keeps WAL on the server: "
              f"SELECT pg_drop_replication_slot('{dms.slot_name}')", file=sys.stderr)
    if not drop_ddl_capture:
        return
    schema = sql.Identifier(DEFAULT_DDL_SCHEMA)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(
                sql.Identifier(DDL_FUNCTION)))
            conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}.{}()").format(
                schema, sql.Identifier(DDL_FUNCTION)))
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                schema, sql.Identifier(DDL_AUDIT_TABLE)))
    except psycopg.Error as exc:
        print(f"warning: DMS's DDL capture objects could not be dropped ({_first_line(exc)}): "
              f"DROP EVENT TRIGGER {DDL_FUNCTION}; DROP FUNCTION "
              f"{DEFAULT_DDL_SCHEMA}.{DDL_FUNCTION}(); DROP TABLE "
              f"{DEFAULT_DDL_SCHEMA}.{DDL_AUDIT_TABLE}", file=sys.stderr)


def estimated_rows(dsn: str, spec: PipelineSpec) -> int:
    """The spec's tables' rows in the source: the planner's estimate (``pg_class.reltuples``,
    -1 until the table was first analyzed), counted where there is none."""
    total = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in spec.tables:
            qualified = _qualified(conn, spec.source_schema, name)
            row = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = "
                               "to_regclass(%s)", (qualified,)).fetchone()
            if row is None:
                continue
            if row[0] < 0:
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                    sql.SQL(qualified))).fetchone()
            total += int(row[0]) if row else 0
    return total


# -- one run of the pipeline -------------------------------------------------------------------

class StopRequest:
    """Ctrl-C or SIGTERM asks the run to stop its CDC phase (then it catches up and
    reconciles); a second one aborts."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._handle)
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()
        print("\nstopping: catching up, then reconciling (again to abort)", file=sys.stderr,
              flush=True)


@dataclass
class PipelineRun:
    """The local DMS and a consumer (the Lambda handler in threads, or the Glue runner in a
    process of its own) on one ``LocalPipeline``; on the Lambda path of a pipeline with the
    applier, the applier's mapping beside the consumer (the Glue job applies inline)."""

    pipeline: LocalPipeline
    path: str
    dms: LocalDms = field(init=False)
    consumer: LocalEventSourceMapping = field(init=False)
    applier: LocalSqsEventSourceMapping | None = field(init=False)
    glue: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.dms, self.consumer = self.pipeline.dms(), self.pipeline.consumer()
        self.applier = (self.pipeline.applier_mapping()
                        if self.pipeline.applier and self.path != "glue" else None)

    def full_load(self) -> int:
        total = estimated_rows(self.pipeline.source_dsn, self.pipeline.spec)
        with watch("full load", lambda: (self.dms.counters.records_loaded, total, ""),
                   unit="rows"):
            return self.dms.full_load()

    def start(self) -> None:
        self.pipeline.start(self.dms.run, "dms")
        if self.path == "glue":  # the Glue batch function on local Spark, its own process
            self.glue = _spawn(self.pipeline.consumer_command("glue"),
                               self.pipeline.state_dir / "glue-runner.log")
        else:
            self.pipeline.start(self.consumer.run, "consumer")
            if self.applier is not None:
                self.pipeline.start(self.applier.run, "applier")

    def status(self, transactions: int | None = None) -> str:
        return pipeline_status(self.dms, self.consumer, self.pipeline.rejected(), transactions,
                               None if self.applier is None else self.pipeline.applier_depth())

    def stream(self, duration: float | None, until: threading.Event,
               tick: Callable[[float], None] | None = None,
               transactions: Callable[[], int] | None = None) -> None:
        """CDC until ``duration`` seconds passed or ``until`` is set, with a bar of the time
        and the counters; ``tick(elapsed)`` runs every half second."""
        started = time.monotonic()
        note = ""

        def reading() -> tuple[int, int | None, str]:
            return (int(time.monotonic() - started),
                    None if duration is None else int(duration), note)

        with watch("cdc", reading, unit="s"):
            while not until.is_set():
                elapsed = time.monotonic() - started
                if duration is not None and elapsed >= duration:
                    break
                if tick is not None:
                    tick(elapsed)
                note = self.status(transactions() if transactions else None)
                until.wait(0.5)

    def catch_up(self) -> None:
        """Stop the parts' own loops, then capture and consume what is left."""
        self.pipeline.shutdown()
        if self.glue is None:
            with watch("catch-up", lambda: (self.consumer.counters.records_delivered,
                                            records_sent(self.dms), "")):
                catch_up(self.dms, self.consumer, applier=self.applier)
            return
        self.glue.terminate()
        self.glue.wait(timeout=60)
        time.sleep(1.0)  # the source's last commits reach the WAL
        self.dms.drain()
        log_path = self.pipeline.state_dir / "glue-drain.log"
        drain = _spawn(self.pipeline.consumer_command("glue", once=True), log_path)
        if drain.wait(timeout=300) != 0:
            raise RuntimeError(f"the Glue runner failed: see {log_path}")

    def kill(self) -> None:
        """Stop whatever still runs (after an error or a second Ctrl-C)."""
        if self.glue is not None and self.glue.poll() is None:
            self.glue.kill()
        self.pipeline.shutdown()
        self.consumer.close()
        if self.applier is not None:
            self.applier.close()

    def reconcile(self) -> Reconciliation:
        with steps("reconcile", reconcile_steps(self.pipeline.spec)) as step:
            return self.pipeline.reconcile(step)

    def print_outcome(self, rows: int, workload: Workload | None = None) -> int:
        """After ``catch_up``: print the counters and ``rows`` rows of each target, reconcile
        the source with the warehouse and print it; the exit code, 0 when they agree."""
        print(self.status(workload.counters.transactions if workload else None))
        show_results(self.pipeline, self, rows, workload)
        reconciliation = self.reconcile()
        print_reconciliation(reconciliation)
        return 0 if reconciliation.differences == 0 else 1


def print_reconciliation(report: Reconciliation) -> None:
    print("\nreconciliation (source with the spec's PII rules vs warehouse):")
    for table in report.tables:
        print("  " + table.summary())
    for reason, count in report.rejected_source_rows.most_common():
        print(f"  source rows the spec rejects (on the dead-letter queue) x{count}: {reason}")
    print(f"differences={report.differences}")


def _fresh(state_dir: Path) -> None:
    stop_stack(state_dir / "stack")
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)


def _spec_path(args: argparse.Namespace) -> str | None:
    return str(Path(args.spec).resolve()) if args.spec else None


def demo(args: argparse.Namespace) -> int:
    if args.source:
        return run_on_source(args)
    quiet_handler_output()
    spec_path = _spec_path(args)
    spec = load_spec(spec_path)
    missing = [t for t in WORKLOAD_TABLES if t not in spec.tables]
    if missing:
        raise SpecError(f"the demo's generated workload writes the reference tables, and the "
                        f"spec has no {', '.join(missing)}: for your own tables give "
                        "--source <dsn> of a database that holds them (or use cdc run)")
    state_dir = Path(args.state_dir)
    _fresh(state_dir)
    outputs = ExitStack()
    outputs.enter_context(handler_output_to(state_dir / HANDLER_OUTPUT))
    print("starting the local stack (PostgreSQL source + warehouse, Redshift Data API "
          "stand-in, moto) ...")
    run: PipelineRun | None = None
    try:
        pipeline = LocalPipeline.prepare(state_dir / "stack", state_dir / "run", spec,
                                         spec_path=spec_path, applier=args.path == "lambda")
        workload = pipeline.workload()
        workload.create_schema(loose=True)
        workload.seed_data(customers=args.customers, events=10, purchases=args.purchases)
        run = PipelineRun(pipeline, args.path)
        print(f"full load of {len(spec.tables)} tables, then CDC through the "
              f"{args.path} path for {args.duration:.0f}s at {args.rate:.0f} txn/s")
        run.full_load()
        run.start()
        done = threading.Event()
        runner = threading.Thread(target=_run_workload, args=(workload, args, pipeline.stop,
                                                               done), daemon=True)
        runner.start()
        events = table_events(pipeline, workload) if args.table_events else []

        def tick(elapsed: float) -> None:
            while events and elapsed >= events[0][0] * args.duration:
                events.pop(0)[1]()

        run.stream(args.duration, done, tick, lambda: workload.counters.transactions)
        runner.join()
        run.catch_up()
        if args.table_events and not events:  # the reloads were requested and have landed
            swept = table_reload.finish(pipeline.api(), pipeline.spec, RELOADED_TABLE)
            print(f"reload of {RELOADED_TABLE} finished: {swept} rows the source no longer has "
                  "deleted")
            table_reload.finish(pipeline.api(), pipeline.spec, EVOLVED_TABLE)
            print(f"reload of {EVOLVED_TABLE} after its added column finished")
        return run.print_outcome(args.rows, workload)
    finally:
        if run is not None:
            run.kill()
        stop_stack(state_dir / "stack")
        outputs.close()


def _run_workload(workload: Workload, args: argparse.Namespace, stop: threading.Event,
                  done: threading.Event) -> None:
    try:
        workload.run(rate_per_second=args.rate, duration_seconds=args.duration,
                     stop_event=stop, bad_row_share=args.bad_rows)
    finally:
        done.set()


def run_on_source(args: argparse.Namespace) -> int:
    """``run``: the pipeline on the user's own database (see the module docstring)."""
    quiet_handler_output()
    if not args.spec:
        raise SpecError("give your pipeline spec with --spec FILE (cdc spec init writes one "
                        "from your database)")
    spec_path = _spec_path(args)
    spec = load_spec(spec_path)
    warnings = check_source(args.source, spec)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    with psycopg.connect(args.source, autocommit=True) as conn:
        ddl_capture_existed = ddl_capture_exists(conn)
    state_dir = Path(args.state_dir)
    _fresh(state_dir)
    stop = StopRequest()
    stop.install()
    keep_stack = args.keep_stack is not False
    outputs = ExitStack()
    outputs.enter_context(handler_output_to(state_dir / HANDLER_OUTPUT))
    print("starting the local stack (warehouse, Redshift Data API stand-in, moto) ...")
    run: PipelineRun | None = None
    try:
        pipeline = LocalPipeline.prepare(state_dir / "stack", state_dir / "run", spec,
                                         spec_path=spec_path, source_dsn=args.source,
                                         applier=args.path == "lambda")
        run = PipelineRun(pipeline, args.path)
        until = "until Ctrl-C" if args.duration is None else f"for {args.duration:.0f}s"
        print(f"full load of {len(spec.tables)} tables from your database, then CDC through "
              f"the {args.path} path {until}")
        loaded = run.full_load()
        print(f"full load: {loaded} rows")
        run.start()
        run.stream(args.duration, stop.event)
        run.catch_up()
        return run.print_outcome(args.rows)
    finally:
        if run is not None:
            run.kill()
            release_source(args.source, run.dms, drop_ddl_capture=not ddl_capture_existed)
        if keep_stack:
            stack_dir = state_dir / "stack"
            print(f"\nthe local stack keeps running: cdc status --stack-dir {stack_dir}; "
                  f"cdc sql --state-dir {stack_dir} \"SELECT ...\"; "
                  f"make stack-stop STACK_DIR={stack_dir}")
        else:
            stop_stack(state_dir / "stack")
        outputs.close()


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

    def reload_evolved() -> None:
        # The runbook after a source ADD COLUMN whose values were set right away: once the
        # warehouse has the column (the consumer reports the rows written without it), reload
        # the table, so those rows are filled too.
        api = pipeline.api()
        added = (f"SELECT 1 AS n FROM {ident(pipeline.spec.replica_schema)}.\"_cdc_columns\" "
                 f"WHERE table_name = '{EVOLVED_TABLE}' AND column_name = 'section'")
        deadline = time.monotonic() + 120
        while not api.query(added) and time.monotonic() < deadline:
            time.sleep(0.5)
        table_reload.start(api, pipeline.spec, EVOLVED_TABLE)
        request_reload(dms_state, DEFAULT_SLOT, EVOLVED_TABLE)

    return [(0.25, workload.truncate_and_reinsert), (0.5, workload.add_column),
            (0.6, reload_evolved), (0.75, reload)]


def _spawn(module_args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child for its lifetime
    return subprocess.Popen([sys.executable, "-m", *module_args], stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ))


def show_results(pipeline: LocalPipeline, run: PipelineRun, rows: int,
                 workload: Workload | None = None) -> None:
    api = pipeline.api()
    for target in pipeline.spec.targets.values():
        name = f'"{pipeline.spec.target_schema}"."{target.name}"'
        count = api.query(f"SELECT count(*) AS n FROM {name}")[0]["n"]
        first = api.query(f"SELECT * FROM {name} ORDER BY {', '.join(target.key)} LIMIT {rows}")
        print(f"\n{pipeline.spec.target_schema}.{target.name}: first {len(first)} of {count}")
        print_table(first, [c.name for c in target.columns])
    dms, consumer = run.dms, run.consumer
    source = ""
    if workload is not None:
        ops = workload.counters.operations
        source = (f"{workload.counters.transactions} source transactions "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))}); ")
    print(f"\nsummary: {source}{records_sent(dms)} DMS records "
          f"({dms.counters.records_loaded} loaded, {dms.counters.records_captured} captured); "
          f"{consumer.counters.invocations} handler invocations, "
          f"{consumer.counters.retries} retries")
    if run.applier is not None:
        applier = run.applier.counters
        print(f"applier: {applier.invocations} invocations applied {applier.messages_deleted} "
              f"landed batches ({applier.messages_failed} failed and retried, "
              f"{applier.redeliveries} redelivered)")
    letters = pipeline.dead_letters()
    bad = "" if workload is None else f" (bad source rows written: {len(workload.bad_rows)})"
    print(f"dead-letter queue: {sum(letters.values())} records{bad}")
    for reason, count in letters.most_common():
        print(f"  x{count}: {reason}")


def consume(args: argparse.Namespace) -> int:
    """Run the consumer (event source mapping + Lambda handler, landing for the applier) and,
    unless ``--no-applier``, the applier beside it, until SIGTERM."""
    pipeline = LocalPipeline.prepare(Path(args.stack_dir), Path(args.state_dir),
                                     spec_path=_spec_path(args), applier=True)
    signal.signal(signal.SIGTERM, lambda *_: pipeline.stop.set())
    consumer = pipeline.consumer()
    applier = pipeline.applier_mapping() if args.applier else None
    try:
        if applier is not None:
            pipeline.start(applier.run, "applier")
        consumer.run(pipeline.stop)
    finally:
        pipeline.shutdown()
        consumer.close()
        if applier is not None:
            applier.close()
    return 0


def apply(args: argparse.Namespace) -> int:
    """Run the applier alone (its SQS event source mapping + the batch applier) until
    SIGTERM."""
    pipeline = LocalPipeline.prepare(Path(args.stack_dir), Path(args.state_dir),
                                     spec_path=_spec_path(args), applier=True)
    signal.signal(signal.SIGTERM, lambda *_: pipeline.stop.set())
    applier = pipeline.applier_mapping()
    try:
        applier.run(pipeline.stop)
    finally:
        applier.close()
    return 0


def reconcile_command(args: argparse.Namespace) -> int:
    pipeline = LocalPipeline.prepare(Path(args.stack_dir), Path(args.state_dir),
                                     spec_path=_spec_path(args))
    with steps("reconcile", reconcile_steps(pipeline.spec)) as step:
        report = pipeline.reconcile(step)
    for table in report.tables:
        print(table.summary())
    print(f"differences={report.differences}")
    return 0 if report.differences == 0 else 1


def _add_run_options(parser: argparse.ArgumentParser, duration: float | None,
                     state_dir: str) -> None:
    parser.add_argument("--spec", help="pipeline spec file: the warehouse is migrated to it and "
                                       "the consumer reads it (default: the packaged spec)")
    parser.add_argument("--path", choices=["lambda", "glue"], default="lambda",
                        help="the consumer: the Lambda handler, or the Glue batch function")
    parser.add_argument("--duration", type=float, default=duration,
                        help="seconds of CDC" + (" (default: until Ctrl-C)"
                                                  if duration is None else " (default: 30)"))
    parser.add_argument("--rows", type=int, default=10,
                        help="rows of each wide table to show at the end")
    parser.add_argument("--state-dir", default=state_dir,
                        help="the run's state and its local stack (<state-dir>/stack), made "
                             "anew (default: %(default)s)")


def _add_source_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--source", required=required, metavar="DSN",
                        help="your PostgreSQL database (libpq DSN or URL; wal_level=logical, "
                             "wal2json on the server)" + ("" if required else
                                                          ": run on it instead of the "
                                                          "generated workload"))
    parser.add_argument("--keep-stack", action=argparse.BooleanOptionalAction, default=None,
                        help="with --source: leave the local stack running at the end "
                             "(default: yes)")


def main(argv: list[str] | None = None, prog: str = "python -m local.cdc") -> int:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="the pipeline end to end, then reconcile")
    _add_run_options(demo_parser, 30.0, ".local-stack/demo")
    _add_source_options(demo_parser, required=False)
    demo_parser.add_argument("--rate", type=float, default=40.0,
                             help="source transactions per second")
    demo_parser.add_argument("--bad-rows", type=float, default=0.02,
                             help="share of bad source rows")
    demo_parser.add_argument("--customers", type=int, default=200)
    demo_parser.add_argument("--purchases", type=int, default=1000)
    demo_parser.add_argument("--table-events", action=argparse.BooleanOptionalAction,
                             default=True,
                             help="once during the run: truncate sport_event, add "
                                  "ticket.section, reload ticket_activity after unseen deletes")
    demo_parser.set_defaults(func=demo)
    run_parser = commands.add_parser("run", help="the pipeline on your own database")
    _add_run_options(run_parser, None, ".local-stack/run")
    _add_source_options(run_parser, required=True)
    run_parser.set_defaults(func=run_on_source)
    for name, func in (("consume", consume), ("apply", apply),
                       ("reconcile", reconcile_command)):
        sub = commands.add_parser(name)
        sub.add_argument("--stack-dir", required=True)
        sub.add_argument("--state-dir", required=True)
        sub.add_argument("--spec", help="pipeline spec (default: the one the stack follows)")
        if name == "consume":
            sub.add_argument("--applier", action=argparse.BooleanOptionalAction, default=True,
                             help="run the applier in this process too (default: yes)")
        sub.set_defaults(func=func)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (SpecError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
