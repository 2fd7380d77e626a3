"""Benchmark of the shared core against the floor of merely parsing the records.

Prints, from one run on the same records: records/s of the full core (decode, validate, PII,
reduce, staging encode) and of the floor ``json.loads(base64.b64decode(data))`` with the
standard library, the core's peak memory for a 10,000-record batch, and as its last line
``ratio=<core records/s / floor records/s>``.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable

from local.record_builders import DmsStream, activity, customer, sport_event, ticket
from shared.landing import newest_truncates, plan_landing
from shared.records import StreamRecord
from shared.spec import load_spec
from shared.transform import Transformer

HMAC_KEY = b"benchmark-hmac-key-0123456789abcdef"


def make_records(count: int, seed: int = 7) -> list[StreamRecord]:
    """A realistic mix: mostly purchases, some dimension changes, a few deletes."""
    rng = random.Random(seed)
    stream = DmsStream()
    for i in range(count):
        roll = rng.random()
        if roll < 0.70:
            stream.add("ticket_activity", "insert",
                       activity(i, rng.randrange(1, 5000), "2021-08-15 10:00:00"))
        elif roll < 0.82:
            cid = rng.randrange(1, 5000)
            stream.add("customer", "update",
                       customer(cid, name=f"Customer {cid}", email=f"c{cid}@example.com",
                                phone=f"+1-206-555-{cid:04d}"))
        elif roll < 0.92:
            stream.add("ticket", "insert", ticket(i, rng.randrange(1, 300), "Premium", f"P-{i}",
                                                  f"{rng.randrange(50, 500)}.00"))
        elif roll < 0.97:
            stream.add("sport_event", "update", sport_event(rng.randrange(1, 300)))
        else:
            stream.add("ticket_activity", "delete", {"ticket_id": rng.randrange(0, i + 1)})
    return stream.take()


def floor(records: list[StreamRecord]) -> None:
    loads, decode = json.loads, base64.b64decode
    for record in records:
        loads(decode(record.data))


def full_core(core: Transformer, batch_size: int) -> Callable[[list[StreamRecord]], None]:
    """The core as a consumer runs it: one transform + staging plan per batch."""
    spec = core.spec

    def run(records: list[StreamRecord]) -> None:
        for start in range(0, len(records), batch_size):
            result = core.transform(records[start : start + batch_size])
            plan_landing(spec, "0" * 32, result.changes,  # what the writer sends
                         newest_truncates(spec, result.table_events), copy_available=True)

    return run


def timed_rate(fn: Callable[[list[StreamRecord]], None], records: list[StreamRecord]) -> float:
    """Records/s of one run, each side starting from a freshly collected heap."""
    gc.collect()
    start = time.perf_counter()
    fn(records)
    return len(records) / (time.perf_counter() - start)


def peak_memory(fn: Callable[[list[StreamRecord]], None], records: list[StreamRecord]) -> int:
    tracemalloc.start()
    fn(records)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--batch-size", type=int, default=10_000,
                        help="records per consumer batch (Lambda's maximum is 10,000)")
    args = parser.parse_args()

    records = make_records(args.records)
    core = Transformer(load_spec(), HMAC_KEY)
    run_core = full_core(core, args.batch_size)
    run_core(records[:1000])  # warm up caches the same way for both
    floor(records[:1000])
    floor_rates: list[float] = []
    core_rates: list[float] = []
    for _ in range(args.repeats):  # interleaved, so both sides see the same machine state
        floor_rates.append(timed_rate(floor, records))
        core_rates.append(timed_rate(run_core, records))
    floor_rate, core_rate = statistics.median(floor_rates), statistics.median(core_rates)
    peak = peak_memory(run_core, records[:10_000])
    print(f"records={len(records)} batch_size={args.batch_size} repeats={args.repeats}")
    print(f"floor json.loads(base64.b64decode) records/s={floor_rate:,.0f} (median)")
    print(f"core decode+validate+pii+reduce+stage records/s={core_rate:,.0f} (median)")
    print(f"core peak memory for a 10,000-record batch: {peak / 1e6:.1f} MB")
    print(f"ratio={core_rate / floor_rate:.2f}")


if __name__ == "__main__":
    main()
