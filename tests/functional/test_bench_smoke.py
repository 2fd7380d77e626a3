"""``make bench-e2e`` on a tiny backlog: the benchmark code runs end to end on its own fresh
local stack, drains exactly what it committed, and reports every figure. Correctness only:
no figure is compared with a threshold (the machine decides those)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.e2e_bench import Options, Report, run_benchmark
from local.stack import stop_stack

PARTS = ("capture", "Kinesis put", "Kinesis get", "consumer transform", "writer",
         "Data API round trips")


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    root = Path(tempfile.mkdtemp(prefix="cdc-bench-test-"))
    root.chmod(0o755)  # PostgreSQL runs as the postgres OS user when we are root
    # The benchmark points this process's boto3 at its own stack (local.cdc.LocalPipeline
    # sets the endpoint variables); the tests after this module must not inherit them.
    saved = dict(os.environ)
    try:
        yield run_benchmark(Options(backlog=400, latency_seconds=3.0, state_dir=root / "bench",
                                    customers=40, events=5, purchases=60,
                                    progress=lambda _: None))
    finally:
        stop_stack(root / "bench" / "stack")
        shutil.rmtree(root, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)


def test_the_drain_applies_every_committed_change(report: Report) -> None:
    assert report.committed >= 400
    assert report.drained == report.committed
    assert report.delivered >= report.drained  # at least once
    assert report.dead_letters == 0
    assert report.warehouse_rows == report.source_rows
    assert set(report.source_rows) == {"sport_event", "ticket", "customer", "ticket_activity"}


def test_every_figure_is_measured(report: Report) -> None:
    assert report.drain_seconds > 0 and report.drain_rate > 0
    assert all(rate > 0 for rate in report.quarter_rates())
    assert [next(p for p in PARTS if name.startswith(p)) for name in report.ceilings] == \
        list(PARTS)
    assert all(rate > 0 for rate in report.ceilings.values())
    assert report.round_trips_per_second > 0 and report.submits_per_1000_changes > 0
    assert 0 < report.writer_executed_seconds < report.writer_seconds
    assert report.latencies and report.latency_offered > 0
    assert report.ratio == pytest.approx(report.drain_rate / min(report.ceilings.values()))


def test_the_report_prints_every_figure_and_ends_with_the_ratio(report: Report) -> None:
    lines = report.lines()
    text = "\n".join(lines)
    for figure in ("drain by quarter of the backlog", "drain (capacity) changes/s=",
                   "statements/s=", "ran in the warehouse for", "p50=", "p95=",
                   "slowest part: "):
        assert figure in text
    for name in report.ceilings:
        assert f"ceiling {name} changes/s=" in text
    assert re.fullmatch(r"ratio=\d+\.\d{3}", lines[-1])
