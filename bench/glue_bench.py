"""Throughput of the Glue batch function against the Lambda path, and the Glue driver's memory.

One run, the same DMS records (``bench.core_bench.make_records``), the local stack (started
if needed; moto, the Redshift Data API stand-in and PostgreSQL run in their own processes, so
this process is only the consumer), each path into its own fresh warehouse database:

- **Lambda path**: the handler (``functions.kinesis_consumer.app``) on Kinesis events of
  10,000 records (Lambda's largest batch), one after the other: one shard's consumer.
- **Glue path**: ``GlueBatchJob.process`` on local Spark (``--master``, default ``local[2]``),
  micro-batches read by the executors from Parquet (the Glue Kinesis source reads in the
  executors too), decode/PII/reduce/stage in the executors, one transaction per batch.
- **Glue path in Lambda-sized batches**: the same, in micro-batches of 10,000 records, to
  tell Spark's per-batch overhead from the effect of fewer, larger transactions.
- **Driver memory**: the Glue batch function on a 10,000- and a 100,000-record batch: peak
  Python heap of the driver process (tracemalloc) and growth of its peak RSS over the batch.

Both paths write through the same stand-in, so what is compared is the consumer, not Redshift.
Prints the rates, the memory figures and, last, ``ratio=<glue records/s / lambda records/s>``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import io
import os
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from pyspark.sql import DataFrame, SparkSession

from bench.core_bench import make_records
from bench.warehouse import fresh_databases
from glue_job.kinesis_source import KINESIS_SCHEMA
from glue_job.local_spark import local_spark
from local.record_builders import lambda_event
from local.stack import StackInfo, ensure_stack
from local.stack.environment import CONFLICTING_VARIABLES
from shared.glue.job import GlueBatchJob
from shared.records import StreamRecord
from shared.spec import load_spec

LAMBDA_BATCH = 10_000


# --- the warehouse databases --------------------------------------------------------------------

def replica_rows(info: StackInfo, database: str) -> int:
    dsn = f"host=127.0.0.1 port={info.postgres_port} user=postgres dbname={database}"
    total = 0
    with psycopg.connect(dsn) as conn:
        for table in load_spec().tables:
            row = conn.execute(f"SELECT count(*) FROM cdc_replica.{table}").fetchone()
            total += int(row[0]) if row else 0
    return total


# --- the Lambda path ----------------------------------------------------------------------------

class Context:
    function_name = "cdc-kinesis-consumer-bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000


def lambda_events(records: list[StreamRecord], stream_arn: str) -> list[dict[str, Any]]:
    return [lambda_event(records[i : i + LAMBDA_BATCH], stream_arn=stream_arn)
            for i in range(0, len(records), LAMBDA_BATCH)]


def run_lambda(events: list[dict[str, Any]], database: str) -> float:
    """Seconds the handler takes for all events, one after the other."""
    os.environ["REDSHIFT_DATABASE"] = database
    from functions.kinesis_consumer import app
    from shared import runtime

    runtime.reset()
    app._processors.clear()
    sink = io.StringIO()  # Powertools' EMF metrics and logs go to stdout
    gc.collect()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sink):
        for event in events:
            response = app.lambda_handler(event, Context())
            if response != {"batchItemFailures": []}:
                raise RuntimeError(f"the Lambda path failed a batch: {response}")
    elapsed = time.perf_counter() - started
    sink.truncate(0)
    return elapsed


# --- the Glue path ------------------------------------------------------------------------------

def parquet_batch(spark: SparkSession, records: list[StreamRecord], path: Path) -> DataFrame:
    """The batch as the executors read it (written before anything is measured)."""
    pd.DataFrame({
        "data": [base64.b64decode(r.data) if isinstance(r.data, str) else r.data
                 for r in records],
        "streamName": "cdc-stream",
        "partitionKey": [r.partition_key for r in records],
        "sequenceNumber": [r.sequence_number for r in records],
        "approximateArrivalTimestamp": pd.Timestamp("2021-08-15T10:00:00"),
    }).to_parquet(path)
    return spark.read.schema(KINESIS_SCHEMA).parquet(str(path))


class RssSampler:
    """Peak resident set size of this process while running (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.peak = self.baseline = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_glue(job: GlueBatchJob, batches: list[DataFrame],
             trace: bool = False) -> tuple[float, int, int]:
    """Seconds for the batches; driver tracemalloc peak (if ``trace``) and RSS growth."""
    gc.collect()
    if trace:
        tracemalloc.start()
    try:
        with RssSampler() as rss:
            started = time.perf_counter()
            for batch_id, batch in enumerate(batches):
                outcome = job.process(batch, batch_id)
                if outcome.failure is not None:
                    raise RuntimeError(f"the Glue path failed a batch: {outcome.failure}")
            elapsed = time.perf_counter() - started
        heap = tracemalloc.get_traced_memory()[1] if trace else 0
    finally:
        if trace:
            tracemalloc.stop()
    return elapsed, heap, rss.peak - rss.baseline


def mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--glue-batch", type=int, default=100_000,
                        help="records per Glue micro-batch (shards x MAX_FETCH_RECORDS_PER_SHARD)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--stack-dir", type=Path, default=Path(".local-stack/stack"))
    args = parser.parse_args()

    info = ensure_stack(args.stack_dir)
    for name in CONFLICTING_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(info.environment())
    os.environ["LOG_LEVEL"] = "WARNING"
    spark = local_spark(args.master, shuffle_partitions=8)
    records = make_records(args.records)
    warm_up = make_records(2_000, seed=11)
    events = lambda_events(records, info.resources.stream_arn)

    with tempfile.TemporaryDirectory(prefix="glue-bench-") as tmp, \
            fresh_databases(info, "warmup", "lambda", "glue", "glue10k", "memory") as databases:
        warm_db, lambda_db, glue_db, glue10k_db, memory_db = databases
        folder = Path(tmp)
        glue_batches = [
            parquet_batch(spark, records[i : i + args.glue_batch], folder / f"batch-{i}.parquet")
            for i in range(0, len(records), args.glue_batch)
        ]
        lambda_sized = [
            parquet_batch(spark, records[i : i + LAMBDA_BATCH], folder / f"small-{i}.parquet")
            for i in range(0, len(records), LAMBDA_BATCH)
        ]
        small = lambda_sized[0]
        large = parquet_batch(spark, make_records(100_000, seed=5), folder / "large.parquet")

        def glue_job(database: str) -> GlueBatchJob:
            return GlueBatchJob.from_arguments(
                {**os.environ, "REDSHIFT_DATABASE": database,
                 "STREAM_ARN": info.resources.stream_arn}, spark)

        # Warm-up (imports, Python workers, JIT, connection pools) of both paths.
        run_lambda(lambda_events(warm_up, info.resources.stream_arn), warm_db)
        run_glue(glue_job(warm_db), [parquet_batch(spark, warm_up, folder / "warm.parquet")])

        lambda_seconds = run_lambda(events, lambda_db)
        glue_seconds, _, _ = run_glue(glue_job(glue_db), glue_batches)
        glue10k_seconds, _, _ = run_glue(glue_job(glue10k_db), lambda_sized)
        assert replica_rows(info, lambda_db) == replica_rows(info, glue_db)
        assert replica_rows(info, glue10k_db) == replica_rows(info, glue_db)
        memory_job = glue_job(memory_db)
        _, heap_small, rss_small = run_glue(memory_job, [small], trace=True)
        _, heap_large, rss_large = run_glue(memory_job, [large], trace=True)

    lambda_rate = len(records) / lambda_seconds
    glue_rate = len(records) / glue_seconds
    print(f"records={len(records)} lambda_batches={len(events)}x{LAMBDA_BATCH} "
          f"glue_batches={len(glue_batches)}x{args.glue_batch} spark={args.master} "
          f"cpus={os.cpu_count()}")
    print(f"lambda path (handler, sequential batches) records/s={lambda_rate:,.0f}")
    print(f"glue path (GlueBatchJob.process on Spark) records/s={glue_rate:,.0f}")
    print(f"glue path, {LAMBDA_BATCH:,}-record micro-batches (as Lambda's) "
          f"records/s={len(records) / glue10k_seconds:,.0f}")
    print(f"glue driver, 10,000-record batch: python heap peak {mib(heap_small)}, "
          f"rss growth {mib(rss_small)}")
    print(f"glue driver, 100,000-record batch: python heap peak {mib(heap_large)}, "
          f"rss growth {mib(rss_large)}")
    print(f"ratio={glue_rate / lambda_rate:.2f}")
    spark.stop()


if __name__ == "__main__":
    main()
