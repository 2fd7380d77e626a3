"""End-to-end benchmark on the local stack, with the raw ceilings of its parts measured in the
same run.

Prints: end-to-end changes/s (source commit to visible in the warehouse), p50/p95 latency from
source commit to visible, the local parts' ceilings (moto Kinesis put and get records/s, a
direct COPY + MERGE of the same rows into PostgreSQL) with the pipeline's ratio to each, and
as its last line ``ratio=<pipeline changes/s / the slowest part's ceiling>``.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg

from local.cdc import LocalPipeline, catch_up, quiet_handler_output
from local.stack import stop_stack
from shared.spec import load_spec


def kinesis_ceiling(records: int, payload: bytes) -> tuple[float, float]:
    """moto Kinesis: PutRecords and GetRecords records/s on a fresh 4-shard stream."""
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="bench-ceiling", ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName="bench-ceiling")
    started = time.perf_counter()
    for start in range(0, records, 500):
        entries = [{"Data": payload, "PartitionKey": f"public.ticket_activity.{i}"}
                   for i in range(start, min(records, start + 500))]
        kinesis.put_records(StreamName="bench-ceiling", Records=entries)
    put_rate = records / (time.perf_counter() - started)
    started = time.perf_counter()
    got = 0
    for shard in kinesis.list_shards(StreamName="bench-ceiling")["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName="bench-ceiling",
                                              ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            got += len(page["Records"])
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return put_rate, got / (time.perf_counter() - started)


def copy_merge_ceiling(dsn: str, rows: int) -> float:
    """Rows/s of a direct COPY into a staging table + MERGE into a replica-shaped table."""
    body = io.StringIO()
    for i in range(rows):
        body.write(f"{i}\t{i % 500}\t2021-08-15 10:00:00\t2021-08-15 10:00:00\t"
                   f"12021-08-15T10:00:00.000000Z{i:044d}0000000001\tf\n")
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_replica (ticket_id bigint PRIMARY KEY, "
                     "purchased_by bigint, created_at timestamp, updated_at timestamp, "
                     "_cdc_order_key varchar(142), _cdc_deleted boolean)")
        conn.commit()
        started = time.perf_counter()
        conn.execute("CREATE TEMP TABLE bench_stage (LIKE bench_replica)")
        with conn.cursor().copy("COPY bench_stage FROM STDIN") as copy:
            copy.write(body.getvalue())
        conn.execute(
            "MERGE INTO bench_replica t USING bench_stage s ON t.ticket_id = s.ticket_id "
            "WHEN MATCHED THEN UPDATE SET purchased_by = s.purchased_by, "
            "updated_at = s.updated_at, _cdc_order_key = s._cdc_order_key, "
            "_cdc_deleted = s._cdc_deleted WHEN NOT MATCHED THEN INSERT VALUES (s.ticket_id, "
            "s.purchased_by, s.created_at, s.updated_at, s._cdc_order_key, s._cdc_deleted)")
        conn.commit()
        return rows / (time.perf_counter() - started)


class VisibilityProbe:
    """Polls the warehouse replicas and records, per change that became visible, the time
    from its source commit (read from its order key) to now."""

    TABLES = ("ticket_activity", "customer", "ticket", "sport_event")

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.latencies: list[float] = []
        self.last_seen = dict.fromkeys(self.TABLES, "1")  # CDC keys only (phase 1)

    def run(self, stop: threading.Event) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not stop.is_set():
                for table in self.TABLES:
                    rows = conn.execute(
                        f"SELECT _cdc_order_key FROM cdc_replica.{table} "
                        "WHERE _cdc_order_key > %s", (self.last_seen[table],)).fetchall()
                    now = datetime.now(UTC)
                    for (key,) in rows:
                        committed = datetime.fromisoformat(key[1:28].replace("Z", "+00:00"))
                        self.latencies.append((now - committed).total_seconds())
                        self.last_seen[table] = max(self.last_seen[table], key)
                stop.wait(0.05)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of workload")
    parser.add_argument("--rate", type=float, default=400.0, help="source transactions/s")
    parser.add_argument("--state-dir", default=".local-stack/bench-e2e")
    args = parser.parse_args()

    quiet_handler_output()
    state_dir = Path(args.state_dir)
    stop_stack(state_dir / "stack")
    shutil.rmtree(state_dir, ignore_errors=True)
    try:
        pipeline = LocalPipeline.prepare(state_dir / "stack", state_dir / "run", load_spec())
        warehouse_dsn = pipeline.stack.postgres_conninfo
        workload = pipeline.workload(seed=3)
        workload.create_schema(loose=True)
        workload.seed_data(customers=300, events=20, purchases=500)
        dms, consumer = pipeline.dms(), pipeline.consumer()
        dms.full_load()
        catch_up(dms, consumer)  # the full load is not part of the measured CDC run

        probe = VisibilityProbe(warehouse_dsn)
        probe_stop = threading.Event()  # the probe outlives the pipeline threads
        probe_thread = threading.Thread(target=probe.run, args=(probe_stop,), daemon=True)
        probe_thread.start()
        pipeline.start(dms.run, "dms")
        pipeline.start(consumer.run, "consumer")
        captured_before = dms.counters.records_captured
        started = time.monotonic()
        workload.run(rate_per_second=args.rate, duration_seconds=args.duration,
                     bad_row_share=0.0)
        source_done = time.monotonic()
        pipeline.shutdown()  # stop the threads before catch_up drives dms and consumer itself
        catch_up(dms, consumer)
        finished = time.monotonic()
        time.sleep(0.2)  # one more probe pass sees the last changes
        probe_stop.set()
        probe_thread.join(timeout=10)
        changes = dms.counters.records_captured - captured_before
        pipeline_rate = changes / (finished - started)

        payload = b'{"data": {"ticket_id": 1}, "metadata": {}}'.ljust(450, b" ")
        put_rate, get_rate = kinesis_ceiling(max(changes, 5000), payload)
        merge_rate = copy_merge_ceiling(warehouse_dsn, max(changes, 5000))
    finally:
        stop_stack(state_dir / "stack")

    latencies: list[Any] = probe.latencies
    print(f"workload: {workload.counters.transactions} source transactions, {changes} changes "
          f"in {source_done - started:.1f}s; pipeline caught up {finished - source_done:.1f}s "
          "after the source stopped")
    print(f"pipeline end-to-end changes/s={pipeline_rate:,.0f}")
    if latencies:
        print(f"latency source commit -> visible: p50={statistics.median(latencies):.2f}s "
              f"p95={percentile(latencies, 0.95):.2f}s (n={len(latencies)})")
    ceilings = {"moto Kinesis put": put_rate, "moto Kinesis get": get_rate,
                "direct COPY+MERGE into PostgreSQL": merge_rate}
    for name, rate in ceilings.items():
        print(f"ceiling {name} records/s={rate:,.0f}  pipeline/ceiling={pipeline_rate / rate:.3f}")
    slowest = min(ceilings.values())
    print(f"ratio={pipeline_rate / slowest:.3f}")


if __name__ == "__main__":
    main()
