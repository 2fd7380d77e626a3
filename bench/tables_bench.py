"""Batches as wide as a real replication task cost what narrow ones cost.

One run on the local stack (started if needed), two fresh warehouse databases: the shipped
4-table spec and the 200-table spec of ``local.wide_spec`` (three wide targets, every column
type, a composite key, a table without a key). Both get the same number of changes per batch,
spread over all their tables, through the same writer (``RedshiftWriter`` with the staging
bucket: landing + one apply call, ``shared.apply_procedures``). For each: Data API calls per
batch and statements per batch (counted on the client through botocore's events, so what is
counted is what was sent), and changes/s of transform + write. Last line
``ratio=<changes/s with 200 tables / changes/s with 4 tables>``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from bench.warehouse import fresh_databases
from local.record_builders import DmsStream, activity, customer, sport_event, ticket
from local.stack import StackInfo, ensure_stack
from local.stack.environment import CONFLICTING_VARIABLES
from local.wide_spec import many_table_spec, sample_row
from shared.data_api import DataApiTarget, RedshiftDataApi
from shared.records import StreamRecord
from shared.redshift_writer import RedshiftWriter, S3Stager
from shared.spec import PipelineSpec, load_spec
from shared.transform import Transformer

HMAC_KEY = b"benchmark-hmac-key-0123456789abcdef"


def narrow_batches(batches: int, size: int) -> list[list[StreamRecord]]:
    """The reference workload's tables, ``size`` changes per batch."""
    stream, out, n = DmsStream(), [], 0
    for _ in range(batches):
        while len(stream.records) < size:
            n += 1
            stream.add("sport_event", "insert", sport_event(n))
            stream.add("customer", "insert", customer(n, f"Buyer {n}", f"b{n}@example.com"))
            stream.add("ticket", "insert", ticket(n, n))
            stream.add("ticket_activity", "insert", activity(n, n))
        out.append(stream.take()[:size])
    return out


def wide_batches(spec: PipelineSpec, batches: int, size: int) -> list[list[StreamRecord]]:
    """``size`` changes per batch, spread over every table of the 200-table spec."""
    stream, out, n = DmsStream(), [], 0
    for _ in range(batches):
        while len(stream.records) < size:
            n += 1
            for name in spec.tables:
                stream.add(name, "insert", sample_row(name, n))
        out.append(stream.take()[:size])
    return out


class CallCounter:
    """Data API calls and statements sent, from botocore's events on the client."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.statements = 0
        client.meta.events.register("provide-client-params.redshift-data.*", self._count)

    def _count(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls[model.name] += 1
        if model.name == "ExecuteStatement":
            self.statements += 1
        elif model.name == "BatchExecuteStatement":
            self.statements += len(params.get("Sqls", []))


def run(info: StackInfo, database: str, spec: PipelineSpec,
        batches: list[list[StreamRecord]]) -> dict[str, float]:
    client = boto3.client("redshift-data", endpoint_url=info.redshift_data_endpoint,
                          region_name=info.region)
    counter = CallCounter(client)
    api = RedshiftDataApi(client, DataApiTarget(
        database=database, workgroup_name=info.workgroup_name,
        secret_arn=info.resources.admin_secret_arn), poll_interval=(0.005, 0.1))
    s3 = boto3.client("s3", endpoint_url=info.moto_endpoint, region_name=info.region)
    stager = S3Stager(s3, info.resources.staging_bucket, "bench-tables",
                      info.resources.copy_role_arn)
    writer = RedshiftWriter(spec, api, stager)
    writer.load_added_columns()
    core = Transformer(spec, HMAC_KEY)
    counter.calls.clear()
    counter.statements = 0
    changes = 0
    tables: set[str] = set()
    started = time.perf_counter()
    for records in batches:
        result = core.transform(records)
        report = writer.stage_and_merge(result.changes, result.table_events)
        changes += sum(report.changes.values())
        tables |= set(report.changes)
    elapsed = time.perf_counter() - started
    submitted = counter.calls["ExecuteStatement"] + counter.calls["BatchExecuteStatement"]
    return {"tables": len(spec.tables), "changes": changes,
            "tables_touched": len(tables),
            "calls_per_batch": sum(counter.calls.values()) / len(batches),
            "submissions_per_batch": submitted / len(batches),
            "statements_per_batch": counter.statements / len(batches),
            "changes_per_s": changes / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack-dir", default=".local-stack/stack")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=2000)
    args = parser.parse_args(argv)
    info = ensure_stack(Path(args.stack_dir))
    for name in CONFLICTING_VARIABLES:  # the stack's endpoints and credentials, as glue_bench
        os.environ.pop(name, None)
    os.environ.update(info.environment())
    narrow, wide = load_spec(), many_table_spec(200)
    with fresh_databases(info, "narrow", spec=narrow) as [narrow_db], \
            fresh_databases(info, "wide", spec=wide) as [wide_db]:
        results = [run(info, narrow_db, narrow, narrow_batches(args.batches, args.batch_size)),
                   run(info, wide_db, wide, wide_batches(wide, args.batches, args.batch_size))]
    for r in results:
        print(f"{r['tables']:>4.0f}-table spec: {r['tables_touched']:.0f} tables touched, "
              f"{args.batch_size} changes per batch, {r['calls_per_batch']:.1f} Data API calls "
              f"per batch ({r['submissions_per_batch']:.1f} statement submissions, the rest "
              f"polling), {r['statements_per_batch']:.1f} statements per batch, "
              f"{r['changes_per_s']:.0f} changes/s")
    print(f"ratio={results[1]['changes_per_s'] / results[0]['changes_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
