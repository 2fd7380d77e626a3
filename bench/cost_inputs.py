"""The measured inputs of docs/cost.md: what one batch costs in requests and warehouse time.

One run on the local stack (started if needed), the reference record mix of the benchmarks
(``bench.core_bench.make_records``: purchases, customer and event updates, new tickets,
deletes), each path into its own fresh warehouse database:

- **Lambda path, consumer**: the consumer's ``BatchConsumer`` with an applier queue (a fresh
  queue on the stack's SQS, ``shared.applier.SqsApplierQueue``): per batch the transform, the
  batch's JSON lines put in S3 and one message sent; no SQL. Batches of the template's default
  ``BatchSize`` (1,000) and of Lambda's largest (10,000);
- **Lambda path, applier**: what the batch applier function does per invocation: the messages
  received (``ReceiveMessage`` of up to 10, as Lambda's SQS poller does, counted as the
  poller's), ``shared.applier.apply_batches`` (``RedshiftWriter.apply_landed``: one manifest
  COPY and one ``_cdc_apply_pending`` call after the LOCK of the landing table), the messages
  deleted (``DeleteMessageBatch`` of up to 10). Applies of one consumer batch of 1,000, of ten
  (10,000 changes) and of all the 10,000-record batches together. The function's own taking
  of the messages waiting behind its event (``shared.applier.WaitingBatches``) is not run
  here: the model (``Model.sqs_per_apply``) prices its short polls and deletes;
- **Glue path**: per micro-batch, what the Glue job does: the executors' reduced rows as
  landing JSON lines in ``--glue-parts`` S3 objects under one prefix, then the driver's
  ``RedshiftWriter.merge_staged`` (LOCK of the landing table, one COPY of the prefix, the end
  row and the apply call in one transaction), then the staged objects deleted.

Counted from botocore events on the boto3 clients each part uses (whatever our adapters do
around the calls), per batch or apply: Data API operations, SQL statements submitted, the
warehouse's execution time of each statement (``Duration`` of a FINISHED DescribeStatement and
of its SubStatements, in nanoseconds: "DescribeStatement" in the Amazon Redshift Data API
reference), S3 and SQS requests; plus the statements the apply procedure runs inside its one
CALL (counted from the procedures' bodies, ``inner_statements``), the records' sizes (Kinesis
bills records rounded up to 1 KB on demand, 25 KB PUT payload units provisioned), the process
time of the transform and the wall time of each part. The warehouse here is PostgreSQL behind
the Data API stand-in: its durations are PostgreSQL's, not Redshift's (docs/cost.md turns
counts into Redshift Serverless RPU-seconds with an assumed time per statement and per change).

Prints one ``key=value`` line per figure (the doc quotes them).
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from bench.core_bench import HMAC_KEY, make_records
from bench.parts import LongPolledStatements
from bench.warehouse import fresh_databases
from local.stack import ensure_stack
from local.stack.environment import CONFLICTING_VARIABLES
from shared import apply_procedures as procedures
from shared.applier import RECEIVE_LIMIT, WAITING_LIMIT, apply_batches, parse_landed
from shared.consumer import BatchConsumer, build_consumer, build_writer
from shared.landing import json_lines
from shared.records import StreamRecord
from shared.redshift_writer import RedshiftWriter
from shared.settings import PipelineSettings
from shared.spec import PipelineSpec, load_spec

KIB = 1024
PUT_PAYLOAD_UNIT = 25 * KIB  # Kinesis provisioned mode: a PUT payload unit is a 25 KB chunk


class Meter:
    """What the boto3 clients did, from botocore's ``before-parameter-build`` (the call's own
    parameters) and ``after-call`` events.

    ``durations`` describes the long-polled statements when it is read
    (``bench.parts.LongPolledStatements``), without counting those calls."""

    def __init__(self, clients: Mapping[str, Any]) -> None:
        self.calls: Counter[str] = Counter()
        self.statements = 0
        self._durations: list[tuple[str, int]] = []  # (first SQL word, ns) of finished ones
        self.keys: list[str] = []  # the S3 keys put
        self._sqls: dict[str, list[str]] = {}
        self._pending: list[str] = []
        self._long_polled = LongPolledStatements(clients["redshift-data"])
        for service, client in clients.items():
            client.meta.events.register(f"before-parameter-build.{service}",
                                        self._before(service))
        data_api = clients["redshift-data"]
        data_api.meta.events.register("after-call.redshift-data.BatchExecuteStatement",
                                      self._submitted)
        data_api.meta.events.register("after-call.redshift-data.ExecuteStatement",
                                      self._submitted)
        data_api.meta.events.register("after-call.redshift-data.DescribeStatement",
                                      self._described)

    def _before(self, service: str) -> Callable[..., None]:
        def count(params: dict[str, Any], model: Any, **_: Any) -> None:
            if self._long_polled.describing:
                return
            self.calls[f"{service}:{model.name}"] += 1
            if model.name == "PutObject":
                self.keys.append(str(params.get("Key")))
            elif model.name == "BatchExecuteStatement":
                self.statements += len(params.get("Sqls", []))
                self._pending = list(params.get("Sqls", []))
            elif model.name == "ExecuteStatement":
                self.statements += 1
                self._pending = [str(params.get("Sql", ""))]
        return count

    def _submitted(self, parsed: dict[str, Any], **_: Any) -> None:
        self._sqls[str(parsed.get("Id"))] = self._pending
        self._long_polled.note(parsed)

    @property
    def durations(self) -> list[tuple[str, int]]:
        self._long_polled.describe_all()
        return self._durations

    def _described(self, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Status") != "FINISHED":
            return
        sqls = self._sqls.pop(str(parsed.get("Id")), [])
        subs = parsed.get("SubStatements") or []
        if subs:
            for sql, sub in zip(sqls, subs, strict=False):
                self._durations.append((_verb(sql), max(0, int(sub.get("Duration", 0)))))
        else:
            self._durations.append((_verb(sqls[0] if sqls else ""), max(0, int(
                parsed.get("Duration", 0)))))

    def reset(self) -> None:
        self.calls.clear()
        self.statements = 0
        self._durations.clear()
        self._long_polled.forget()
        self.keys.clear()


def _verb(sql: str) -> str:
    return sql.split(None, 1)[0].upper() if sql.strip() else "?"


def inner_statements(spec: PipelineSpec, tables: Sequence[str]) -> int:
    """Statements one ``CALL _cdc_apply_pending`` runs in the warehouse for changes
    to ``tables`` with no truncate, counted from the procedures the migration creates
    (``shared.apply_procedures.procedure_statements``): every SQL statement reached, the
    nested CALLs included (PL/pgSQL assignments and RAISE are not statements); the dispatch
    loop runs once per table; a branch is taken as such a batch takes it."""
    bodies = {_procedure_name(text): _parse(_split(_body(text)))
              for text in procedures.procedure_statements(spec)}
    table_procedure = {name: procedures.procedure_name(spec, procedures.TABLE_PROCEDURE_PREFIX,
                                                       name) for name in tables}
    batch = set(tables)

    def taken(condition: str) -> bool:
        if "_cdc_tables" in condition:  # a wide table's procedure: one of its tables touched
            return any(f"',{name},'" in condition for name in batch)
        if (condition in ("_cdc_has_truncates", "_cdc_whole") or "_cdc_truncate" in condition
                or condition.startswith("_cdc_fingerprint <>")):
            return False  # no truncate, the migrated spec
        if condition.startswith("RANDOM() <"):
            return False  # forgetting old applied ids: about one apply in 50, not this one
        raise ValueError(f"inner_statements has no rule for the branch {condition!r} of the "
                         "apply procedures: add one, then run make bench-cost and update "
                         "docs/cost.md")

    def count(nodes: list[Node], table: str | None = None) -> int:
        total = 0
        for node in nodes:
            if isinstance(node, Branch):
                total += count(node.then if taken(node.condition) else node.orelse, table)
            elif isinstance(node, Loop):
                total += sum(count(node.body, name) for name in tables)
            elif node.startswith("EXECUTE ") and table is not None:
                total += 1 + count(bodies[table_procedure[table]])
            elif node.startswith("CALL "):
                total += 1 + count(bodies[_procedure_name(node)])
            elif not (":=" in node.split("(", 1)[0] or node.startswith("RAISE ")):
                total += 1
        return total

    return count(bodies[procedures.procedure_name(spec, "", procedures.APPLY_PENDING)])


@dataclass(frozen=True)
class Branch:
    condition: str
    then: list[Node]
    orelse: list[Node]


@dataclass(frozen=True)
class Loop:
    body: list[Node]


Node = str | Branch | Loop


def _procedure_name(text: str) -> str:
    """The quoted name in ``CREATE OR REPLACE PROCEDURE <name>(`` or ``CALL <name>(``."""
    head = text.split("(", 1)[0]
    return head.split()[-1]


def _body(text: str) -> str:
    """What runs: between the BEGIN after the declarations and the last ``END;``."""
    inner = text[text.index("$$") + 2:text.rindex("$$")]
    return inner[inner.index(" BEGIN ") + len(" BEGIN "):inner.rindex("END;")]


def _split(body: str) -> list[str]:
    """The body's pieces between semicolons outside quotes and identifiers."""
    pieces: list[str] = []
    current: list[str] = []
    quote = ""
    for char in body:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == ";":
            pieces.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        pieces.append("".join(current).strip())
    return [p for p in pieces if p]


def _parse(pieces: list[str]) -> list[Node]:
    """IF cond THEN ... [ELSE ...] END IF and WHILE cond LOOP ... END LOOP, as a tree."""
    queue = list(pieces)

    def block(ends: tuple[str, ...]) -> tuple[list[Node], str]:
        nodes: list[Node] = []
        while queue:
            piece = queue.pop(0)
            if piece in ends or piece.startswith("ELSE "):
                if piece.startswith("ELSE "):
                    queue.insert(0, piece[len("ELSE "):])
                    return nodes, "ELSE"
                return nodes, piece
            if piece.startswith("IF "):
                condition, first = piece[3:].split(" THEN ", 1)
                queue.insert(0, first)
                then, end = block(("END IF",))
                orelse: list[Node] = []
                if end == "ELSE":
                    orelse, _ = block(("END IF",))
                nodes.append(Branch(condition.strip(), then, orelse))
            elif piece.startswith("WHILE "):
                queue.insert(0, piece.split(" LOOP ", 1)[1])
                body, _ = block(("END LOOP",))
                nodes.append(Loop(body))
            else:
                nodes.append(piece)
        return nodes, ""

    return block(())[0]


@dataclass
class PathReport:
    """Per-batch (or, for the applier, per-apply) figures of one part: means over the measured
    batches or applies."""

    name: str
    records_per_batch: int
    unit: str = "batch"
    batches: int = 0
    landed: int = 0  # consumer batches applied (the applier's applies)
    changes: int = 0  # reduced changes written (newest per key)
    tables_per_batch: list[int] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    statements: int = 0
    inner: int = 0
    durations: list[tuple[str, int]] = field(default_factory=list)
    transform_seconds: float = 0.0
    write_seconds: float = 0.0

    def per_batch(self, value: float) -> float:
        return value / self.batches if self.batches else 0.0

    def lines(self) -> list[str]:
        prefix, per = self.name, f"per_{self.unit}"
        lines = [f"{prefix}.records_per_batch={self.records_per_batch}",
                 f"{prefix}.{'batches' if self.unit == 'batch' else 'applies'}={self.batches}",
                 f"{prefix}.changes_{per}={self.per_batch(self.changes):.0f}",
                 f"{prefix}.tables_{per}={statistics.mean(self.tables_per_batch):.1f}"]
        if self.landed:
            lines.append(f"{prefix}.consumer_batches_{per}={self.per_batch(self.landed):.1f}")
        for call in sorted(self.calls):
            lines.append(f"{prefix}.calls_{per}.{call}={self.per_batch(self.calls[call]):.2f}")
        lines.append(f"{prefix}.data_api_submissions_{per}="
                     f"{self.per_batch(self.submissions):.2f}")
        lines.append(f"{prefix}.statements_submitted_{per}="
                     f"{self.per_batch(self.statements):.2f}")
        lines.append(f"{prefix}.statements_inside_call_{per}={self.per_batch(self.inner):.1f}")
        by_verb: dict[str, list[int]] = {}
        for verb, ns in self.durations:
            by_verb.setdefault(verb, []).append(ns)
        for verb, values in sorted(by_verb.items()):
            lines.append(f"{prefix}.postgres_seconds_{per}.{verb}="
                         f"{sum(values) / 1e9 / self.batches:.3f}")
        total = sum(ns for _, ns in self.durations) / 1e9
        lines.append(f"{prefix}.postgres_seconds_{per}={total / self.batches:.3f}")
        lines.append(f"{prefix}.transform_seconds_{per}="
                     f"{self.transform_seconds / self.batches:.3f}")
        lines.append(f"{prefix}.wall_seconds_{per}={self.write_seconds / self.batches:.3f}")
        return lines

    @property
    def submissions(self) -> int:
        return sum(n for call, n in self.calls.items()
                   if call in ("redshift-data:BatchExecuteStatement",
                               "redshift-data:ExecuteStatement"))


def record_sizes(records: Sequence[StreamRecord]) -> list[str]:
    sizes = [len(base64.b64decode(r.data)) if isinstance(r.data, str) else len(r.data)
             for r in records]
    billed_kib = sum(math.ceil(s / KIB) for s in sizes)
    units = sum(math.ceil(s / PUT_PAYLOAD_UNIT) for s in sizes)
    return [f"kinesis.record_bytes_mean={statistics.mean(sizes):.0f}",
            f"kinesis.record_bytes_max={max(sizes)}",
            f"kinesis.billed_kib_per_record={billed_kib / len(sizes):.2f}",
            f"kinesis.put_payload_units_per_record={units / len(sizes):.2f}"]


def run_consumer(processor: BatchConsumer, meter: Meter, spec: PipelineSpec,
                 batches: list[list[StreamRecord]], report: PathReport) -> dict[str, int]:
    """The consumer's transform and write of each batch, one after another; with an applier
    queue the write is the S3 put and the message. Returns each landed batch's changes by the
    S3 key it was put at."""
    landed: dict[str, int] = {}
    for batch in batches:
        meter.reset()
        started = time.process_time()
        wall = time.perf_counter()
        result = processor.transform(batch)
        report.transform_seconds += time.process_time() - started
        written = processor.writer.stage_and_merge(result.changes, result.table_events)
        report.write_seconds += time.perf_counter() - wall
        _collect(report, meter, spec, result.changes, applied=not written.queued_for_applier)
        if written.queued_for_applier:
            if not meter.keys:
                raise RuntimeError("the consumer queued a batch without putting its object")
            landed[meter.keys[-1]] = sum(written.changes.values())
    return landed


def run_applier(writer: RedshiftWriter, meter: Meter, spec: PipelineSpec, sqs: Any,
                queue_url: str, staging_prefix: str, landed: Mapping[str, int],
                groups: Sequence[int], tables: list[str], report: PathReport) -> None:
    """One applier invocation per group: receive that many messages (up to 10 per
    ReceiveMessage, as Lambda's poller does), apply them (``apply_batches``), delete them."""
    for size in groups:
        meter.reset()
        messages: list[dict[str, Any]] = []
        while len(messages) < size:
            got = sqs.receive_message(QueueUrl=queue_url,
                                      MaxNumberOfMessages=min(10, size - len(messages)))
            if not got.get("Messages"):
                raise RuntimeError(f"the applier queue has {len(messages)} messages, "
                                   f"expected {size}")
            messages += got["Messages"]
        batches = [parse_landed(m["MessageId"], m["Body"], staging_prefix) for m in messages]
        started = time.perf_counter()
        outcome = apply_batches(writer, batches)
        report.write_seconds += time.perf_counter() - started
        if outcome.failed:
            raise RuntimeError(f"the applier failed {len(outcome.failed)} batches: "
                               f"{sorted(set(outcome.failed.values()))}")
        for start in range(0, len(messages), 10):
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages[start:start + 10])])
        report.batches += 1
        report.landed += len(batches)
        report.changes += sum(landed[b.key] for b in batches)
        report.tables_per_batch.append(len(tables))
        report.calls.update(meter.calls)
        report.statements += meter.statements
        report.inner += inner_statements(spec, tables)  # every table of the mix: all pending
        report.durations += meter.durations


def run_glue(processor: BatchConsumer, meter: Meter, spec: PipelineSpec, s3: Any,
             settings: PipelineSettings, batches: list[list[StreamRecord]], parts: int,
             report: PathReport) -> None:
    """Per micro-batch what the Glue job does after its executors reduced the records
    (``shared.glue.job.GlueBatchJob._stage_and_merge``): the landing rows in ``parts``
    objects under one prefix (one per Spark partition with rows), one ``merge_staged``
    transaction, the objects deleted."""
    writer = processor.writer
    assert writer.stager is not None, "the Glue path needs the staging bucket"
    for number, batch in enumerate(batches):
        meter.reset()
        started = time.process_time()
        result = processor.transform(batch)
        report.transform_seconds += time.process_time() - started
        started = time.perf_counter()
        batch_id = uuid.uuid4().hex
        prefix = f"{settings.staging_prefix.strip('/')}/glue-{number}-{batch_id}/".lstrip("/")
        lines = json_lines(spec, batch_id, result.changes, {}).splitlines(keepends=True)
        keys = []
        for part in range(parts):
            body = b"".join(lines[part::parts])
            if body:
                key = f"{prefix}part-{part:05d}.json"
                s3.put_object(Bucket=settings.staging_bucket, Key=key, Body=body)
                keys.append(key)
        counts = {table: len(rows) for table, rows in result.changes.items() if rows}
        try:
            writer.merge_staged(batch_id, prefix, counts, result.table_events)
        finally:
            writer.stager.delete(keys)
        report.write_seconds += time.perf_counter() - started
        _collect(report, meter, spec, result.changes)


def _collect(report: PathReport, meter: Meter, spec: PipelineSpec,
             changes: Mapping[str, list[Any]], applied: bool = True) -> None:
    """Add one batch; ``applied``: the batch's own transaction ran the apply CALL."""
    tables = [t for t in spec.tables if changes.get(t)]
    report.batches += 1
    report.changes += sum(len(changes[t]) for t in tables)
    report.tables_per_batch.append(len(tables))
    report.calls.update(meter.calls)
    report.statements += meter.statements
    report.inner += inner_statements(spec, tables) if applied else 0
    report.durations += meter.durations


# --- the cost model of docs/cost.md (pure; its tables are printed by --model) ---------------

DAY = 86_400
MONTH_DAYS = 730 / 24  # a month of 730 hours
# us-east-1 list prices, as docs/cost.md quotes them (its "Prices" table says where from).
P_GB_SECOND_ARM = 0.0000133334
P_LAMBDA_REQUEST = 0.20 / 1e6
P_DPU_HOUR = 0.44
P_RPU_HOUR = 0.375
P_S3_PUT = 0.005 / 1000  # PUT, COPY, POST, LIST (DeleteObjects counted here too)
P_S3_GET = 0.0004 / 1000  # GET, HEAD and all other requests
P_SQS_REQUEST = 0.40 / 1e6  # standard queue, past the free million a month
P_KINESIS_STREAM_HOUR = 0.04
P_KINESIS_GB_IN = 0.08
P_KINESIS_GB_OUT = 0.04
# The template's defaults the model uses (tests/deploy/test_cost_doc.py checks them).
CONSUMER_MEMORY_MB = 1024
BATCH_SIZE = 1000
BATCHING_WINDOW_S = 0  # MaximumBatchingWindowSeconds: an invocation per non-empty poll
APPLIER_MEMORY_MB = 512  # BatchApplierFunction's MemorySize
APPLIER_WINDOW_S = 0  # ApplierBatchingWindowSeconds
# ApplierEventSourceMapping's BatchSize (messages per invocation): 10 without a window, 10,000
# with one of 1 s or more ("Lambda parameters for Amazon SQS event source mappings": a batch
# size above 10 needs a window of at least 1 s). Every invocation also takes up to
# shared.applier.WAITING_LIMIT messages waiting behind its event (functions/batch_applier).
APPLIER_BATCH_SIZE = 10
APPLIER_GATHERING_BATCH_SIZE = 10_000
# The windows the doc compares the defaults with (the defaults before 2026-11-30).
GATHERING_WINDOWS_S = (30, 1)
APPLIER_CONCURRENCY = 2  # its MaximumConcurrency
GLUE_WORKER_DPU = 1.0  # G.1X
GLUE_WORKERS = 2
GLUE_WINDOW_S = 60
RPU_BASE = 8
# Assumed on Redshift (docs/cost.md says why): per statement, per manifest or prefix COPY, per
# change landed and merged.
STATEMENT_S = 0.2
COPY_S = 2.0
CHANGE_S = 0.0001
# Measured by make bench-cost (2026-11-30, against moto and the stand-in; docs/cost.md): the
# consumer's wall time per batch with an applier queue, ≈ fixed + per record (transform, one
# HEAD, one PutObject, one SendMessage), and the applier's wall time around its warehouse time
# (receive, manifest put, deletes).
CONSUMER_FIXED_S = 0.02
CONSUMER_PER_RECORD_S = 0.00004
APPLIER_OVERHEAD_S = 0.3
# Lambda polls each shard once per second while it has no backlog, at once while it has ("Using
# Lambda to process records from Amazon Kinesis Data Streams", "Polling and batching streams").
KINESIS_POLL_S = 1.0
# Requests per consumer batch: (PUT-class, GET-class): the object; the marker's HEAD and the
# COPY's read of the object. Per apply: the manifest and two DeleteObjects (the manifest, then
# the objects); the COPY's read of the manifest.
S3_PER_CONSUMER_BATCH = (1, 2)
S3_PER_APPLY = (3, 1)
S3_REQUESTS_GLUE = (10, 5)  # 4 objects, LIST, DeleteObjects, 4 checkpoint writes; HEAD, 4 GETs
# Lambda's SQS poller: five long polls (20 s each, SQS's longest) at all times when
# MaximumConcurrency is set ("Configuring scaling behavior for SQS event source mappings", AWS
# Lambda Developer Guide); the empty ones are billed to the queue's owner (docs/cost.md, "SQS").
SQS_POLLERS = 5
SQS_LONG_POLL_S = 20
SQS_RECEIVE_MAX = RECEIVE_LIMIT  # ReceiveMessage and DeleteMessageBatch: at most 10 each
S3_DELETE_MAX = 1000  # DeleteObjects: at most 1,000 keys
BILLED_MINIMUM_S = 60


@dataclass(frozen=True)
class Model:
    """Both paths' cost per day at a steady change rate, below the warehouse's ceiling."""

    inner: int  # statements the apply CALL runs (``inner_statements``)
    statement_s: float = STATEMENT_S
    change_s: float = CHANGE_S
    batch_size: int = BATCH_SIZE
    consumer_window_s: float = BATCHING_WINDOW_S
    applier_window_s: float = APPLIER_WINDOW_S

    @property
    def event_batch_size(self) -> int:
        """Messages (landed batches) the applier's SQS mapping hands an invocation at most."""
        return APPLIER_GATHERING_BATCH_SIZE if self.applier_window_s >= 1 else APPLIER_BATCH_SIZE

    @property
    def applier_batch_size(self) -> int:
        """Landed batches one apply takes at most: its event's and up to ``WAITING_LIMIT``
        waiting behind them (1,000 without a window)."""
        return self.event_batch_size + WAITING_LIMIT

    def sqs_per_apply(self, messages: float) -> float:
        """SQS requests of one apply of ``messages`` landed batches: the poller's receives of
        the event and Lambda's deletes of it, one each per 10 messages; the applier's short
        polls for the rest (one per 10 and, unless it reached ``WAITING_LIMIT``, the empty one
        that ends them) and its DeleteMessageBatch per 10 it applied. ``messages`` is a mean,
        taken to the nearest whole message."""
        whole = max(1, round(messages))
        event = min(whole, self.event_batch_size)
        waiting = whole - event
        per_request = SQS_RECEIVE_MAX
        empty = 0 if waiting >= WAITING_LIMIT else 1
        return (2 * math.ceil(event / per_request) + 2 * math.ceil(waiting / per_request)
                + empty)

    def consumer_batch(self, rate: float) -> float:
        """Records per consumer invocation at ``rate`` changes/s on one shard: with a window,
        the first record and what comes during the window; without, what a poll finds that
        finds any (Poisson arrivals over ``KINESIS_POLL_S``)."""
        if self.consumer_window_s > 0:
            return min(self.batch_size, 1 + self.consumer_window_s * rate)
        polled = rate * KINESIS_POLL_S
        return min(self.batch_size, polled / -math.expm1(-polled)) if polled > 0 else 1.0

    def apply_seconds(self, changes: float, extra_statements: int = 0) -> float:
        """``d``: one apply's time in Redshift: one COPY, the CALL's statements (and any
        ``extra_statements``), and each change landed and merged."""
        return (COPY_S + (self.inner + extra_statements) * self.statement_s
                + changes * self.change_s)

    def ceiling(self) -> float:
        """Changes a day the warehouse can apply at all: applies back to back, each taking
        everything that arrived during the previous one, keep up while ``rate * c < 1``."""
        return DAY / self.change_s

    @staticmethod
    def redshift(applies: float, seconds: float) -> float:
        """$ a day: the base RPUs billed at least 60 s from each transaction's start (at most
        the whole day), or the work itself once it fills the day."""
        billed = max(min(DAY, applies * max(BILLED_MINIMUM_S, seconds)), applies * seconds)
        return RPU_BASE * billed / 3600 * P_RPU_HOUR

    def applies(self, changes_a_day: float, interval: float, window: float,
                extra_statements: int = 0,
                most: float = math.inf) -> tuple[float, float, bool]:
        """(applies a day, changes per apply, back to back) of one applier that gets work
        every ``interval`` seconds and gathers at least ``window`` seconds: one apply per
        arrival while an apply takes less than the interval, else one per ``window`` or, once
        an apply outlasts the window, back to back, each taking what came during the last.
        An apply takes at most ``most`` changes: an applier that would need more falls behind
        (ValueError)."""
        rate = changes_a_day / DAY
        if rate * self.change_s >= 1:
            raise ValueError(f"{changes_a_day:,.0f} changes a day is past the warehouse's "
                             f"ceiling ({self.ceiling():,.0f} a day at {self.change_s:g} s "
                             "per change)")
        if interval >= max(window, self.apply_seconds(rate * interval, extra_statements)):
            return DAY / interval, rate * interval, False
        busy = self.apply_seconds(0, extra_statements) / (1 - rate * self.change_s)
        period = max(window, busy)
        if rate * period > most:
            raise ValueError(f"at {changes_a_day:,.0f} changes a day the applier falls behind: "
                             f"an apply would need {rate * period:,.0f} changes, it takes at "
                             f"most {most:,.0f}; the warehouse's ceiling is near: raise "
                             "RedshiftBaseCapacity")
        return DAY / period, rate * period, busy > window

    def lambda_ceiling(self) -> float:
        """Changes a day the Lambda path's applier keeps up with (bisection; at most the
        warehouse's ceiling)."""
        high = 0.999 * self.ceiling()
        if self.keeps_up(high):
            return self.ceiling()
        return last_holding(self.keeps_up, 1.0, high)

    def keeps_up(self, changes_a_day: float) -> bool:
        try:
            self.lambda_day(changes_a_day)
        except ValueError:
            return False
        return True

    def lambda_day(self, changes_a_day: float) -> dict[str, float]:
        rate = changes_a_day / DAY
        size = self.consumer_batch(rate)
        batches = changes_a_day / size
        applies, per_apply, back_to_back = self.applies(
            changes_a_day, DAY / batches, self.applier_window_s,
            most=self.applier_batch_size * size)
        seconds = self.apply_seconds(per_apply)
        messages = per_apply / size
        # A second invocation waits on the landing table's LOCK while the first applies; the
        # two invocations MaximumConcurrency allows are then busy all day, and no more.
        wait = max(0.0, seconds - self.applier_window_s) if back_to_back else 0.0
        consumer_s = CONSUMER_FIXED_S + CONSUMER_PER_RECORD_S * size
        applier_s = seconds + APPLIER_OVERHEAD_S + wait
        if back_to_back:
            applier_s = min(applier_s, APPLIER_CONCURRENCY * DAY / applies)
        consumer = batches * (consumer_s * CONSUMER_MEMORY_MB / 1024 * P_GB_SECOND_ARM
                              + P_LAMBDA_REQUEST)
        applier = applies * (applier_s * APPLIER_MEMORY_MB / 1024 * P_GB_SECOND_ARM
                             + P_LAMBDA_REQUEST)
        s3_put = (batches * S3_PER_CONSUMER_BATCH[0] + applies * (
            S3_PER_APPLY[0] - 1 + math.ceil(messages / S3_DELETE_MAX)))
        s3_get = batches * S3_PER_CONSUMER_BATCH[1] + applies * S3_PER_APPLY[1]
        requests = (batches + applies * self.sqs_per_apply(messages)
                    + SQS_POLLERS * DAY / SQS_LONG_POLL_S)
        return {"lambda": consumer + applier, "consumer": consumer, "applier": applier,
                "s3": s3_put * P_S3_PUT + s3_get * P_S3_GET,
                "sqs": requests * P_SQS_REQUEST,
                "redshift": self.redshift(applies, seconds),
                "batches": batches, "batch_records": size, "consumer_seconds": consumer_s,
                "applies": applies, "apply_changes": per_apply, "apply_seconds": seconds,
                "applier_seconds": applier_s, "sqs_requests": requests}

    def glue_day(self, changes_a_day: float) -> dict[str, float]:
        rate = changes_a_day / DAY
        applies, _, _ = self.applies(changes_a_day, 0.0, GLUE_WINDOW_S, extra_statements=1)
        period = DAY / applies
        batches = applies * (1 - math.exp(-period * rate))  # windows with at least one change
        seconds = self.apply_seconds(changes_a_day / batches if batches else 0, 1)
        put, get = S3_REQUESTS_GLUE
        return {"glue": GLUE_WORKER_DPU * GLUE_WORKERS * 24 * P_DPU_HOUR,
                "s3": batches * (put * P_S3_PUT + get * P_S3_GET),
                "redshift": self.redshift(batches, seconds),
                "batches": batches, "apply_seconds": seconds}

    def month(self, path: str, changes_a_day: float) -> float:
        day = self.lambda_day(changes_a_day) if path == "lambda" else self.glue_day(
            changes_a_day)
        return sum(day[k] for k in ("lambda", "glue", "s3", "sqs", "redshift")
                   if k in day) * MONTH_DAYS

    def crossover(self) -> float | None:
        """Changes a day above which the Glue path costs less (bisection below the Lambda
        path's ceiling); None: not below it."""
        high = 0.999 * self.lambda_ceiling()

        def lambda_not_dearer(changes_a_day: float) -> bool:
            return self.month("lambda", changes_a_day) <= self.month("glue", changes_a_day)

        if lambda_not_dearer(high):
            return None
        return last_holding(lambda_not_dearer, 1e3, high)


def last_holding(holds: Callable[[float], bool], low: float, high: float) -> float:
    """The largest changes a day between ``low`` (where ``holds``) and ``high`` (where it does
    not) at which ``holds`` is still true, by bisection on a log scale (the rates span
    decades)."""
    for _ in range(200):
        middle = math.sqrt(low * high)
        if holds(middle):
            low = middle
        else:
            high = middle
    return low


def kinesis_day(changes_a_day: float) -> float:
    """On demand: the stream-hour, and each change written and read once at 1 KiB."""
    gib = changes_a_day * KIB / 2**30
    return 24 * P_KINESIS_STREAM_HOUR + gib * (P_KINESIS_GB_IN + P_KINESIS_GB_OUT)


MODEL_RATES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 500_000_000)
# (t per statement, c per change): optimistic, assumed, pessimistic
SENSITIVITY = ((0.1, 0.00002), (STATEMENT_S, CHANGE_S), (0.5, 0.0005))


def _rate(changes_a_day: float) -> str:
    return f"{changes_a_day / 1e6:,.1f} M/day ({changes_a_day / DAY:,.0f}/s)"


def model_lines(inner: int) -> list[str]:
    """docs/cost.md's computed tables, as markdown rows."""
    base = Model(inner)
    gathering = Model(inner, consumer_window_s=GATHERING_WINDOWS_S[0],
                      applier_window_s=GATHERING_WINDOWS_S[1])
    consumer_s, applier_s = GATHERING_WINDOWS_S
    lines = ["| changes a day | Lambda path, $/month | Glue path, $/month | "
             "Lambda applies a day | changes per apply | consumer invocations a day | "
             f"Lambda path, windows {consumer_s} s / {applier_s} s: $/month, applies, "
             "consumer invocations a day |", "|---|---|---|---|---|---|---|"]
    for rate in MODEL_RATES:
        if base.keeps_up(rate):
            lam = base.lambda_day(rate)
            row = (f"{base.month('lambda', rate):,.0f} | {base.month('glue', rate):,.0f} | "
                     f"{lam['applies']:,.0f} | {lam['apply_changes']:,.0f} | "
                     f"{lam['batches']:,.0f}")
        else:
            row = f"falls behind | {base.month('glue', rate):,.0f} | — | — | —"
        other = gathering.lambda_day(rate)
        lines.append(f"| {rate:,} | {row} | {gathering.month('lambda', rate):,.0f}, "
                     f"{other['applies']:,.0f}, {other['batches']:,.0f} |")
    lines += ["", "| assumed `t` per statement | assumed `c` per change | apply of 1,000 changes "
              "| apply of 10,000 changes | warehouse ceiling (`1 / c`) | Lambda path keeps up to "
              "| Glue cheaper from |", "|---|---|---|---|---|---|---|"]
    for statement_s, change_s in SENSITIVITY:
        model = Model(inner, statement_s, change_s)
        cells = []
        for changes in (1_000, 10_000):
            seconds = model.apply_seconds(changes)
            cells.append(f"{seconds:.1f} s ({changes / seconds:,.0f}/s)")
        crossover = model.crossover()
        lines.append(f"| {statement_s:g} s | {change_s * 1000:g} ms | {cells[0]} | {cells[1]} | "
                     f"{_rate(model.ceiling())} | {_rate(model.lambda_ceiling())} | "
                     f"{'not below the ceiling' if crossover is None else _rate(crossover)} |")
    return lines


def answer_lines(inner: int, changes_a_day: float = 1e6) -> list[str]:
    """$ a day per part at ``changes_a_day`` (docs/cost.md's first table), with the template's
    defaults."""
    model = Model(inner)
    lam, glue = model.lambda_day(changes_a_day), model.glue_day(changes_a_day)
    kinesis = kinesis_day(changes_a_day)
    lambda_total = kinesis + lam["lambda"] + lam["s3"] + lam["sqs"] + lam["redshift"]
    gathering = Model(inner, applier_window_s=GATHERING_WINDOWS_S[1])
    return [f"model.lambda_ceiling_defaults={model.lambda_ceiling():,.0f}",
            f"model.lambda_ceiling_applier_window_{GATHERING_WINDOWS_S[1]}s="
            f"{gathering.lambda_ceiling():,.0f}",
            f"model.applier_batches_per_apply={model.applier_batch_size:,}",
            f"model.day.kinesis={kinesis:.2f}",
            f"model.day.lambda.consumer_invocations={lam['batches']:,.0f}",
            f"model.day.lambda.consumer_seconds={lam['consumer_seconds']:.2f}",
            f"model.day.lambda.consumer={lam['consumer']:.3f}",
            f"model.day.lambda.applier_invocations={lam['applies']:,.0f}",
            f"model.day.lambda.applier_seconds={lam['applier_seconds']:.1f}",
            f"model.day.lambda.applier={lam['applier']:.3f}",
            f"model.day.lambda.apply_changes={lam['apply_changes']:,.0f}",
            f"model.day.lambda.apply_seconds={lam['apply_seconds']:.1f}",
            f"model.day.lambda.sqs_requests={lam['sqs_requests']:,.0f}",
            f"model.day.lambda.sqs={lam['sqs']:.3f}",
            f"model.day.lambda.s3={lam['s3']:.2f}",
            f"model.day.lambda.redshift={lam['redshift']:.2f}",
            f"model.day.lambda.total={lambda_total:.2f}",
            f"model.day.glue.apply_seconds={glue['apply_seconds']:.1f}",
            f"model.day.glue.glue={glue['glue']:.2f}",
            f"model.day.glue.s3={glue['s3']:.2f}",
            f"model.day.glue.redshift={glue['redshift']:.2f}",
            f"model.day.glue.total={kinesis + glue['glue'] + glue['s3'] + glue['redshift']:.2f}"]


def chunks(records: list[StreamRecord], size: int) -> list[list[StreamRecord]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-batches", type=int, default=20,
                        help="consumer batches of the template's default BatchSize (1,000): "
                             "the first half applied one per apply, the rest ten per apply")
    parser.add_argument("--large-batches", type=int, default=3,
                        help="consumer batches (applied together in one apply) and Glue "
                             "micro-batches of 10,000 records")
    parser.add_argument("--glue-parts", type=int, default=4,
                        help="S3 objects the executors write per micro-batch (Spark "
                             "partitions with rows)")
    parser.add_argument("--stack-dir", type=Path, default=Path(".local-stack/stack"))
    parser.add_argument("--model", action="store_true",
                        help="only print docs/cost.md's computed tables (no stack needed)")
    args = parser.parse_args()
    if min(args.small_batches, args.large_batches, args.glue_parts) < 1:
        parser.error("--small-batches, --large-batches and --glue-parts must be at least 1")

    spec = load_spec()
    inner = inner_statements(spec, list(spec.tables))
    if args.model:
        print("\n".join([*answer_lines(inner), *model_lines(inner)]))
        return
    info = ensure_stack(args.stack_dir)
    for name in CONFLICTING_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(info.environment())
    os.environ["LOG_LEVEL"] = "WARNING"
    small, large = 1_000, 10_000
    records = make_records(args.small_batches * small + 2 * args.large_batches * large + small)
    warm_up, records = records[:small], records[small:]
    small_batches = chunks(records[:args.small_batches * small], small)
    rest = records[args.small_batches * small:]
    large_batches = chunks(rest[:args.large_batches * large], large)
    glue_batches = chunks(rest[args.large_batches * large:], large)
    alone = max(1, args.small_batches // 2)
    together = args.small_batches - alone
    groups_small = [1] * alone + [10] * (together // 10) + (
        [together % 10] if together % 10 else [])

    consumer_reports = [PathReport("consumer_1000", small), PathReport("consumer_10000", large)]
    applier_reports = [PathReport("applier_1x1000", small, "apply"),
                       PathReport(f"applier_{min(10, together)}x1000", small, "apply"),
                       PathReport(f"applier_{args.large_batches}x10000", large, "apply")]
    glue = PathReport("glue_10000", large)
    sqs_admin = boto3.client("sqs")
    queue_url = sqs_admin.create_queue(QueueName=f"cost-applier-{uuid.uuid4().hex[:8]}",
                                       Attributes={"VisibilityTimeout": "1800"})["QueueUrl"]
    try:
        with fresh_databases(info, "cost_lambda", "cost_glue") as (lambda_db, glue_db):
            settings = PipelineSettings.from_mapping(
                {**info.environment(), "REDSHIFT_DATABASE": lambda_db,
                 "APPLIER_QUEUE_URL": queue_url})
            consumer_clients = {name: boto3.client(name) for name in ("redshift-data", "s3", "sqs")}
            consumer_meter = Meter(consumer_clients)
            consumer = build_consumer(settings, spec, HMAC_KEY, consumer_clients.__getitem__)
            applier_clients = {name: boto3.client(name) for name in ("redshift-data", "s3", "sqs")}
            applier_meter = Meter(applier_clients)
            applier = build_writer(settings, spec, applier_clients.__getitem__,
                                   applier_queue=False)
            applier_sqs = applier_clients["sqs"]

            def apply(landed: Mapping[str, int], groups: list[int], report: PathReport) -> None:
                run_applier(applier, applier_meter, spec, applier_sqs, queue_url,
                            settings.staging_prefix, landed, groups, list(spec.tables), report)

            # A container's first batch also reads the added columns: not part of a batch's
            # steady cost; nor is the applier's first apply.
            apply(run_consumer(consumer, consumer_meter, spec, [warm_up],
                               PathReport("warm_up", small)), [1],
                  PathReport("warm_up", small, "apply"))
            landed = run_consumer(consumer, consumer_meter, spec, small_batches,
                                  consumer_reports[0])
            apply(landed, groups_small[:alone], applier_reports[0])
            apply(landed, groups_small[alone:], applier_reports[1])
            landed = run_consumer(consumer, consumer_meter, spec, large_batches,
                                  consumer_reports[1])
            apply(landed, [len(large_batches)], applier_reports[2])

            glue_settings = PipelineSettings.from_mapping(
                {**info.environment(), "REDSHIFT_DATABASE": glue_db})
            clients = {name: boto3.client(name) for name in ("redshift-data", "s3", "sqs")}
            meter = Meter(clients)
            processor = build_consumer(glue_settings, spec, HMAC_KEY, clients.__getitem__)
            run_consumer(processor, meter, spec, [warm_up], PathReport("warm_up", small))
            run_glue(processor, meter, spec, clients["s3"], glue_settings, glue_batches,
                     args.glue_parts, glue)
    finally:
        sqs_admin.delete_queue(QueueUrl=queue_url)

    print(f"spec.tables={len(spec.tables)} spec.targets={len(spec.targets)} "
          f"records={len(records)} cpus={os.cpu_count()}")
    for line in record_sizes(records):
        print(line)
    for report in [*consumer_reports, *applier_reports, glue]:
        if report.batches:
            for line in report.lines():
                print(line)
    print("\n".join([*answer_lines(inner), *model_lines(inner)]))


if __name__ == "__main__":
    main()
