"""The measured inputs of docs/cost.md: what one batch costs in requests and warehouse time.

One run on the local stack (started if needed), the reference record mix of the benchmarks
(``bench.core_bench.make_records``: purchases, customer and event updates, new tickets,
deletes), each path into its own fresh warehouse database:

- **Lambda path**: the consumer's ``BatchConsumer`` (transform, then
  ``RedshiftWriter.stage_and_merge``) on batches of the template's default ``BatchSize``
  (1,000) and of Lambda's largest (10,000), one after another as one shard's consumer runs
  them, each landed as ``shared.landing.plan_landing`` decides (one INSERT when the batch fits
  one statement, else one COPY from S3);
- **Glue path**: per micro-batch, what the Glue job does: the executors' reduced rows as
  landing JSON lines in ``--glue-parts`` S3 objects under one prefix, then the driver's
  ``RedshiftWriter.merge_staged`` (one COPY of the prefix and the apply call in one
  transaction), then the staged objects deleted.

Counted from botocore events on the boto3 clients the writer uses (whatever our adapters do
around the calls), per batch: Data API operations, SQL statements submitted, the warehouse's
execution time of each statement (``Duration`` of a FINISHED DescribeStatement and of its
SubStatements, in nanoseconds: "DescribeStatement" in the Amazon Redshift Data API
reference), S3 and SQS requests; plus the statements the apply procedure runs inside its one
CALL (counted from the procedures' bodies, ``inner_statements``), the records' sizes (Kinesis
bills records rounded up to 1 KB on demand, 25 KB PUT payload units provisioned) and the
process time of the transform. The warehouse here is PostgreSQL behind the Data API
stand-in: its durations are PostgreSQL's, not Redshift's (docs/cost.md turns counts into
Redshift Serverless RPU-seconds with an assumed per-statement time).

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
from bench.warehouse import fresh_databases
from local.stack import ensure_stack
from local.stack.environment import CONFLICTING_VARIABLES
from shared import apply_procedures as procedures
from shared.consumer import BatchConsumer, build_consumer
from shared.landing import json_lines
from shared.records import StreamRecord
from shared.settings import PipelineSettings
from shared.spec import PipelineSpec, load_spec

KIB = 1024
PUT_PAYLOAD_UNIT = 25 * KIB  # Kinesis provisioned mode: a PUT payload unit is a 25 KB chunk


class Meter:
    """What the boto3 clients did, from botocore's ``before-parameter-build`` (the call's own
    parameters) and ``after-call`` events."""

    def __init__(self, clients: Mapping[str, Any]) -> None:
        self.calls: Counter[str] = Counter()
        self.statements = 0
        self.durations: list[tuple[str, int]] = []  # (first SQL word, ns) of finished statements
        self._sqls: dict[str, list[str]] = {}
        self._pending: list[str] = []
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
            self.calls[f"{service}:{model.name}"] += 1
            if model.name == "BatchExecuteStatement":
                self.statements += len(params.get("Sqls", []))
                self._pending = list(params.get("Sqls", []))
            elif model.name == "ExecuteStatement":
                self.statements += 1
                self._pending = [str(params.get("Sql", ""))]
        return count

    def _submitted(self, parsed: dict[str, Any], **_: Any) -> None:
        self._sqls[str(parsed.get("Id"))] = self._pending

    def _described(self, parsed: dict[str, Any], **_: Any) -> None:
        if parsed.get("Status") != "FINISHED":
            return
        sqls = self._sqls.pop(str(parsed.get("Id")), [])
        subs = parsed.get("SubStatements") or []
        if subs:
            for sql, sub in zip(sqls, subs, strict=False):
                self.durations.append((_verb(sql), max(0, int(sub.get("Duration", 0)))))
        else:
            self.durations.append((_verb(sqls[0] if sqls else ""), max(0, int(
                parsed.get("Duration", 0)))))

    def reset(self) -> None:
        self.calls.clear()
        self.statements = 0
        self.durations.clear()


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
    """Per-batch figures of one path (means over the measured batches)."""

    name: str
    records_per_batch: int
    batches: int = 0
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
        prefix = self.name
        lines = [f"{prefix}.records_per_batch={self.records_per_batch}",
                 f"{prefix}.batches={self.batches}",
                 f"{prefix}.changes_per_batch={self.per_batch(self.changes):.0f}",
                 f"{prefix}.tables_per_batch={statistics.mean(self.tables_per_batch):.1f}"]
        for call in sorted(self.calls):
            lines.append(f"{prefix}.calls_per_batch.{call}={self.per_batch(self.calls[call]):.2f}")
        lines.append(f"{prefix}.data_api_submissions_per_batch="
                     f"{self.per_batch(self.submissions):.2f}")
        lines.append(f"{prefix}.statements_submitted_per_batch="
                     f"{self.per_batch(self.statements):.2f}")
        lines.append(f"{prefix}.statements_inside_call_per_batch={self.per_batch(self.inner):.1f}")
        by_verb: dict[str, list[int]] = {}
        for verb, ns in self.durations:
            by_verb.setdefault(verb, []).append(ns)
        for verb, values in sorted(by_verb.items()):
            lines.append(f"{prefix}.postgres_seconds_per_batch.{verb}="
                         f"{sum(values) / 1e9 / self.batches:.3f}")
        total = sum(ns for _, ns in self.durations) / 1e9
        lines.append(f"{prefix}.postgres_seconds_per_batch={total / self.batches:.3f}")
        lines.append(f"{prefix}.transform_seconds_per_batch="
                     f"{self.transform_seconds / self.batches:.3f}")
        lines.append(f"{prefix}.write_seconds_per_batch={self.write_seconds / self.batches:.3f}")
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


def run_lambda(processor: BatchConsumer, meter: Meter, spec: PipelineSpec,
               batches: list[list[StreamRecord]], report: PathReport) -> None:
    """The consumer's transform and write of each batch, one after another."""
    for batch in batches:
        meter.reset()
        started = time.process_time()
        result = processor.transform(batch)
        report.transform_seconds += time.process_time() - started
        started = time.perf_counter()
        processor.writer.stage_and_merge(result.changes, result.table_events)
        report.write_seconds += time.perf_counter() - started
        _collect(report, meter, spec, result.changes)


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
             changes: Mapping[str, list[Any]]) -> None:
    tables = [t for t in spec.tables if changes.get(t)]
    report.batches += 1
    report.changes += sum(len(changes[t]) for t in tables)
    report.tables_per_batch.append(len(tables))
    report.calls.update(meter.calls)
    report.statements += meter.statements
    report.inner += inner_statements(spec, tables)
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
P_S3_GET = 0.0004 / 1000
P_KINESIS_STREAM_HOUR = 0.04
P_KINESIS_GB_IN = 0.08
P_KINESIS_GB_OUT = 0.04
# The template's defaults the model uses (tests/deploy/test_cost_doc.py checks them).
CONSUMER_MEMORY_MB = 1024
BATCH_SIZE = 1000
BATCHING_WINDOW_S = 30
GLUE_WORKER_DPU = 1.0  # G.1X
GLUE_WORKERS = 2
GLUE_WINDOW_S = 60
RPU_BASE = 8
# Assumed on Redshift (docs/cost.md says why): per statement, per COPY, per inline INSERT.
STATEMENT_S = 0.2
COPY_S = 2.0
INSERT_S = 0.5
INLINE_ROWS = 250  # about what one inline INSERT holds (100,000 bytes) of the reference mix
LAMBDA_OVERHEAD_S = 0.6  # transform, S3 put, the last polling interval
S3_REQUESTS_LAMBDA = (3, 1)  # (PUT-class, GET) per COPY-landed batch
S3_REQUESTS_GLUE = (10, 4)  # 4 objects, LIST, DeleteObjects, 4 checkpoint writes; 4 GETs
BILLED_MINIMUM_S = 60


@dataclass(frozen=True)
class Model:
    """One path's cost per day at a steady change rate."""

    inner: int  # statements the apply CALL runs (``inner_statements``)
    statement_s: float = STATEMENT_S
    batch_size: int = BATCH_SIZE

    def batch_seconds(self, changes: float) -> float:
        """``d``: one batch's time in Redshift (landing, then the CALL's statements)."""
        landing = INSERT_S if changes <= INLINE_ROWS else COPY_S
        return landing + self.inner * self.statement_s

    @staticmethod
    def redshift(batches: float, seconds: float) -> float:
        """$ a day: the base RPUs billed at least 60 s from each transaction's start (at most
        the whole day), or the work itself once it fills the day."""
        billed = max(min(DAY, batches * max(BILLED_MINIMUM_S, seconds)), batches * seconds)
        return RPU_BASE * billed / 3600 * P_RPU_HOUR

    def lambda_day(self, changes_a_day: float) -> dict[str, float]:
        rate = changes_a_day / DAY
        size = min(self.batch_size, 1 + BATCHING_WINDOW_S * rate)
        batches = changes_a_day / size
        seconds = self.batch_seconds(size)
        put, get = S3_REQUESTS_LAMBDA if size > INLINE_ROWS else (0, 0)
        invocation = ((seconds + LAMBDA_OVERHEAD_S) * CONSUMER_MEMORY_MB / 1024
                      * P_GB_SECOND_ARM + P_LAMBDA_REQUEST)
        return {"lambda": batches * invocation,
                "s3": batches * (put * P_S3_PUT + get * P_S3_GET),
                "redshift": self.redshift(batches, seconds),
                "batches": batches, "batch_seconds": seconds,
                "saturated": float(batches * seconds > DAY)}

    def glue_day(self, changes_a_day: float) -> dict[str, float]:
        rate = changes_a_day / DAY
        batches = DAY / GLUE_WINDOW_S * (1 - math.exp(-GLUE_WINDOW_S * rate))
        seconds = self.batch_seconds(changes_a_day / batches if batches else 0)
        put, get = S3_REQUESTS_GLUE
        return {"glue": GLUE_WORKER_DPU * GLUE_WORKERS * 24 * P_DPU_HOUR,
                "s3": batches * (put * P_S3_PUT + get * P_S3_GET),
                "redshift": self.redshift(batches, seconds),
                "batches": batches, "batch_seconds": seconds}

    def month(self, path: str, changes_a_day: float) -> float:
        day = self.lambda_day(changes_a_day) if path == "lambda" else self.glue_day(
            changes_a_day)
        return sum(day[k] for k in ("lambda", "glue", "s3", "redshift") if k in day) * MONTH_DAYS

    def ceiling(self) -> float:
        """Changes a day at which the Lambda path's transactions fill the day."""
        return DAY * self.batch_size / self.batch_seconds(self.batch_size)

    def crossover(self) -> float:
        """Changes a day above which the Glue path costs less (bisection)."""
        low, high = 1e3, 1e11
        for _ in range(200):
            middle = math.sqrt(low * high)
            if self.month("lambda", middle) > self.month("glue", middle):
                high = middle
            else:
                low = middle
        return low


def kinesis_day(changes_a_day: float) -> float:
    """On demand: the stream-hour, and each change written and read once at 1 KiB."""
    gib = changes_a_day * KIB / 2**30
    return 24 * P_KINESIS_STREAM_HOUR + gib * (P_KINESIS_GB_IN + P_KINESIS_GB_OUT)


MODEL_RATES = (1_000, 10_000, 100_000, 1_000_000, 5_000_000, 10_000_000, 20_000_000)


def model_lines(inner: int) -> list[str]:
    """docs/cost.md's computed tables, as markdown rows."""
    base = Model(inner)
    lines = ["| changes a day | Lambda path, $/month | Glue path, $/month |", "|---|---|---|"]
    for rate in MODEL_RATES:
        past = " (past its ceiling)" if base.lambda_day(rate)["saturated"] else ""
        lines.append(f"| {rate:,} | {base.month('lambda', rate):,.0f}{past} | "
                     f"{base.month('glue', rate):,.0f} |")
    lines += ["", "| assumed `t` per statement | `d` per batch | RPU-seconds per batch | "
              "Lambda path's warehouse ceiling | Glue cheaper from |", "|---|---|---|---|---|"]
    for statement_s in (0.1, STATEMENT_S, 0.5):
        model = Model(inner, statement_s)
        seconds = model.batch_seconds(BATCH_SIZE)
        ceiling, crossover = model.ceiling(), model.crossover()
        lines.append(f"| {statement_s:g} s | {seconds:.1f} s | {RPU_BASE * seconds:.0f} | "
                     f"{ceiling / 1e6:.1f} M/day ({ceiling / DAY:,.0f}/s) | "
                     f"{crossover / 1e6:.1f} M/day ({crossover / DAY:,.0f}/s) |")
    return lines


def answer_lines(inner: int, changes_a_day: float = 1e6) -> list[str]:
    """$ a day per part at ``changes_a_day`` (docs/cost.md's first table)."""
    model = Model(inner)
    lam, glue = model.lambda_day(changes_a_day), model.glue_day(changes_a_day)
    kinesis = kinesis_day(changes_a_day)
    return [f"model.day.kinesis={kinesis:.2f}",
            f"model.day.lambda.invocations={lam['batches']:,.0f}",
            f"model.day.lambda.batch_seconds={lam['batch_seconds']:.1f}",
            f"model.day.lambda.lambda={lam['lambda']:.2f}",
            f"model.day.lambda.s3={lam['s3']:.2f}",
            f"model.day.lambda.redshift={lam['redshift']:.2f}",
            f"model.day.lambda.total={kinesis + lam['lambda'] + lam['s3'] + lam['redshift']:.2f}",
            f"model.day.glue.glue={glue['glue']:.2f}",
            f"model.day.glue.s3={glue['s3']:.2f}",
            f"model.day.glue.redshift={glue['redshift']:.2f}",
            f"model.day.glue.total={kinesis + glue['glue'] + glue['s3'] + glue['redshift']:.2f}"]


def chunks(records: list[StreamRecord], size: int) -> list[list[StreamRecord]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-batches", type=int, default=10,
                        help="Lambda batches of the template's default BatchSize (1,000)")
    parser.add_argument("--large-batches", type=int, default=3,
                        help="Lambda batches and Glue micro-batches of 10,000 records")
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

    reports = [PathReport("lambda_1000", small), PathReport("lambda_10000", large),
               PathReport("glue_10000", large)]
    with fresh_databases(info, "cost_lambda", "cost_glue") as (lambda_db, glue_db):
        for database, runs in ((lambda_db, ("lambda_1000", "lambda_10000")),
                               (glue_db, ("glue_10000",))):
            settings = PipelineSettings.from_mapping(
                {**info.environment(), "REDSHIFT_DATABASE": database})
            clients = {name: boto3.client(name)
                       for name in ("redshift-data", "s3", "sqs")}
            meter = Meter(clients)
            processor = build_consumer(settings, spec, HMAC_KEY, clients.__getitem__)
            # A container's first batch also reads the added columns: not part of a batch's
            # steady cost.
            run_lambda(processor, meter, spec, [warm_up], PathReport("warm_up", small))
            for report in reports:
                if report.name not in runs:
                    continue
                if report.name == "lambda_1000":
                    run_lambda(processor, meter, spec, small_batches, report)
                elif report.name == "lambda_10000":
                    run_lambda(processor, meter, spec, large_batches, report)
                else:
                    run_glue(processor, meter, spec, clients["s3"], settings, glue_batches,
                             args.glue_parts, report)

    print(f"spec.tables={len(spec.tables)} spec.targets={len(spec.targets)} "
          f"records={len(records)} cpus={os.cpu_count()}")
    for line in record_sizes(records):
        print(line)
    for report in reports:
        for line in report.lines():
            print(line)
    print("\n".join([*answer_lines(inner), *model_lines(inner)]))


if __name__ == "__main__":
    main()
