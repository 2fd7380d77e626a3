"""``make bench-e2e`` on a tiny backlog and ``make bench-scale`` on a tiny load: the benchmark
code runs end to end on its own fresh local stack, drains exactly what it committed or sent,
and reports every figure. Correctness only: no figure is compared with a threshold (the
machine decides those)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.e2e_bench import LATENCY_PLANS, STAGES, Options, Report, run_benchmark
from bench.scale_bench import Options as ScaleOptions
from bench.scale_bench import Report as ScaleReport
from bench.scale_bench import build_load
from bench.scale_bench import run_benchmark as run_scale
from local.stack import stop_stack

PARTS = ("capture", "Kinesis put", "Kinesis get", "consumer transform", "consumer landing",
         "applier", "Data API round trips")


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
    assert 0 < report.applies <= report.consumer_batches
    assert set(report.source_rows) == {"sport_event", "ticket", "customer", "ticket_activity"}


def test_every_figure_is_measured(report: Report) -> None:
    assert report.drain_seconds > 0 and report.drain_rate > 0
    assert all(rate > 0 for rate in report.quarter_rates())
    assert [next(p for p in PARTS if name.startswith(p)) for name in report.ceilings] == \
        list(PARTS)
    assert all(rate > 0 for rate in report.ceilings.values())
    assert report.round_trips_per_second > 0 and report.submits_per_1000_changes > 0
    assert 0 < report.writer_executed_seconds < report.writer_seconds
    assert [(run.consumer, run.share) for run in report.latency_runs] == \
        [(plan.consumer, plan.share) for plan in LATENCY_PLANS]
    assert all(run.latencies and run.offered > 0 for run in report.latency_runs)
    for run in report.latency_runs:
        # Every batch the consumer landed splits commit -> landed into its stages.
        assert set(run.stage_lags) <= set(STAGES) and STAGES[0] in run.stage_lags
        assert len(run.stage_lags[STAGES[0]]) == len(run.stage_lags[STAGES[3]])
        assert run.cpu is not None and 0 < run.cpu.busy <= run.cpu.cores
        assert "benchmark (pollers, sampler)" in run.cpu.by_part
    assert report.ratio == pytest.approx(report.drain_rate / min(report.ceilings.values()))


def test_the_report_prints_every_figure_and_ends_with_the_ratio(report: Report) -> None:
    lines = report.lines()
    text = "\n".join(lines)
    for figure in ("drain by quarter of the backlog", "drain (capacity) changes/s=",
                   "statements/s=", "ran in the warehouse for", "p50=", "p95=",
                   "slowest part: ", "CPU: ", "(DMS; CaptureLag)"):
        assert figure in text
    for name in report.ceilings:
        assert f"ceiling {name} changes/s=" in text
    assert re.fullmatch(r"ratio=\d+\.\d{3}", lines[-1])


# -- make bench-scale ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scale_report() -> Iterator[ScaleReport]:
    """``make bench-scale`` with tiny sizes (1 and 2 shards with the applier, 1 inline) on a
    stack of its own."""
    root = Path(tempfile.mkdtemp(prefix="cdc-bench-scale-test-"))
    root.chmod(0o755)  # PostgreSQL runs as the postgres OS user when we are root
    saved = dict(os.environ)
    try:
        yield run_scale(ScaleOptions(shard_counts=(1, 2), inline_shard_counts=(1,), rate=60.0,
                                     seconds=2.0, stack_dir=root / "stack",
                                     state_dir=root / "run", progress=lambda _: None))
    finally:
        stop_stack(root / "stack")
        shutil.rmtree(root, ignore_errors=True)
        os.environ.clear()
        os.environ.update(saved)


def test_bench_scale_drains_exactly_the_changes_sent(scale_report: ScaleReport) -> None:
    sent = build_load(120)
    assert [(r.design, r.shards) for r in scale_report.runs] == \
        [("applier", 1), ("applier", 2), ("inline", 1)]
    for run in scale_report.runs:
        assert run.changes == len(sent.records)
        assert run.sent_rows == sent.live_rows()
        assert run.warehouse_rows == run.sent_rows
        assert set(run.warehouse_rows) == {"sport_event", "ticket", "customer",
                                           "ticket_activity"}


def test_bench_scale_measures_every_figure(scale_report: ScaleReport) -> None:
    for run in scale_report.runs:
        assert run.drain_seconds >= run.load_seconds > 0
        assert run.transactions > 0 and run.statements >= run.transactions
        # Each submission long-polls: one call when it ends within 30 s, more when not.
        assert run.calls >= run.transactions
        assert run.reader_queries > 0 and run.reader_longest_wait > 0
        assert run.consumer_invocations > 0
    assert all(r.applier_invocations > 0 for r in scale_report.of("applier"))


def test_bench_scale_prints_every_figure_and_ends_with_the_ratio(
        scale_report: ScaleReport) -> None:
    lines = scale_report.lines()
    changes = len(build_load(120).records)
    assert lines[0].startswith(f"offered to each configuration: {changes} changes")
    for design, shards in (("applier", 1), ("applier", 2), ("inline", 1)):
        line = next(x for x in lines if re.match(rf"{design}\s+{shards} shards:", x))
        for figure in ("changes/s drained=", "transactions/min=", "statements/1000 changes=",
                       "Data API calls/1000 changes=", "reader longest wait="):
            assert figure in line
    applier = scale_report.of("applier")
    assert scale_report.ratio == pytest.approx(
        applier[1].per_1000_changes(applier[1].statements)
        / applier[0].per_1000_changes(applier[0].statements))
    assert re.fullmatch(r"ratio=\d+\.\d{2}", lines[-1])
