"""Source commit -> visible in the warehouse, for sampled changes while the pipeline runs.

A sampler thread commits a change every ``interval`` seconds (``Workload.touch_purchase``:
a purchase's ``updated_at`` set to a new value) and polls the warehouse replica directly
(PostgreSQL, not the Data API: what an analyst's query would see) until the row carries that
value or a newer one. The latency of a sample is from the moment its COMMIT returned to the
first poll that sees it; polls are ``poll_interval`` apart, which bounds the error.

The sampler's session commits synchronously (``SET synchronous_commit = on``): the local
source server runs with ``synchronous_commit = off`` for speed, which lets a commit return
before its WAL is flushed, and logical decoding only reads flushed WAL (PostgreSQL
documentation, "Asynchronous Commit" and "Logical Decoding Concepts"), so without it the
wait for the WAL writer would be counted too. A production source commits synchronously
(``synchronous_commit`` defaults to ``on``).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from local.workload import Workload
from shared.spec import PipelineSpec


@dataclass
class _Sample:
    ticket_id: int
    written: datetime
    committed_at: float  # time.monotonic() when the COMMIT returned


@dataclass
class LatencySampler:
    """Run ``run(stop)`` in a thread; after ``stop`` it keeps polling for ``grace_seconds``
    so the last samples can land (those that never do are counted in ``unseen``)."""

    workload: Workload
    source_dsn: str
    warehouse_dsn: str
    spec: PipelineSpec
    interval: float = 0.2
    poll_interval: float = 0.05
    grace_seconds: float = 15.0
    latencies: list[float] = field(default_factory=list)
    unseen: int = 0
    # Samples whose row the workload deleted in the source before the change arrived: they can
    # never be seen, and say nothing about latency (the delete's arrival is not sampled).
    superseded: int = 0

    def run(self, stop: threading.Event) -> None:
        pending: list[_Sample] = []
        query = sql.SQL("SELECT ticket_id, updated_at FROM {}.{} WHERE ticket_id = ANY(%s)"
                        ).format(sql.Identifier(self.spec.replica_schema),
                                 sql.Identifier("ticket_activity"))
        with psycopg.connect(self.source_dsn, autocommit=True,
                             application_name="bench-sampler") as source, \
                psycopg.connect(self.warehouse_dsn, autocommit=True) as warehouse:
            source.execute("SET synchronous_commit = on")
            next_sample = time.monotonic()
            give_up: float | None = None
            while True:
                now = time.monotonic()
                if stop.is_set():
                    give_up = give_up or now + self.grace_seconds
                    if not pending or now > give_up:
                        break
                elif now >= next_sample:
                    touched = self.workload.touch_purchase(source)
                    if touched is not None:
                        pending.append(_Sample(touched[0], touched[1], time.monotonic()))
                    next_sample += self.interval
                if pending:
                    pending = self._resolve(warehouse, query, pending)
                if pending and stop.is_set():
                    pending = self._drop_deleted(source, pending)
                time.sleep(self.poll_interval)
        self.unseen += len(pending)

    def _resolve(self, warehouse: psycopg.Connection[Any], query: sql.Composed,
                 pending: list[_Sample]) -> list[_Sample]:
        keys = sorted({s.ticket_id for s in pending})
        rows = dict(warehouse.execute(query, (keys,)).fetchall())
        seen_at = time.monotonic()
        waiting = []
        for sample in pending:
            value = rows.get(sample.ticket_id)
            if value is not None and value >= sample.written:
                self.latencies.append(seen_at - sample.committed_at)
            else:
                waiting.append(sample)
        return waiting


    def _drop_deleted(self, source: psycopg.Connection[Any],
                      pending: list[_Sample]) -> list[_Sample]:
        query = sql.SQL("SELECT ticket_id FROM {}.{} WHERE ticket_id = ANY(%s)").format(
            sql.Identifier(self.spec.source_schema), sql.Identifier("ticket_activity"))
        present = {row[0] for row in source.execute(
            query, (sorted({s.ticket_id for s in pending}),)).fetchall()}
        kept = [s for s in pending if s.ticket_id in present]
        self.superseded += len(pending) - len(kept)
        return kept


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(share * len(ordered)))) - 1]


def summary(values: list[float]) -> tuple[float, float]:
    """(p50, p95) in seconds, nearest rank (``math.inf`` stays infinite); zeros without
    samples."""
    if not values:
        return 0.0, 0.0
    return percentile(values, 0.5), percentile(values, 0.95)
