"""End to end on the local stack: a real source database's changes, captured by the local DMS
(wal2json), through Kinesis (moto) and either consumer (the Lambda handler behind a local event
source mapping, or the Glue batch function on local Spark), into the warehouse (the Redshift
Data API stand-in on PostgreSQL). The DMS stand-in and the
consumer run as their own processes and are killed (SIGKILL) and restarted mid-stream; on the
Lambda path the consumer lands its batches and the single applier (the batch applier function
behind a local SQS event source mapping) runs as a process of its own, killed and restarted
too."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.cdc import LocalPipeline
from local.stack import stop_stack
from local.workload import Workload
from shared.dead_letter import receive_all
from shared.spec import load_spec

pytestmark = pytest.mark.e2e


class Process:
    """A child process of ours that the test can kill the hard way and start again."""

    def __init__(self, name: str, args: list[str], log_dir: Path) -> None:
        self.name, self.args, self.log_dir = name, args, log_dir
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        self.popen = subprocess.Popen([sys.executable, "-m", *self.args], stdout=log,
                                      stderr=subprocess.STDOUT, env=dict(os.environ))

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@pytest.fixture
def pipeline() -> Iterator[LocalPipeline]:
    root = Path(tempfile.mkdtemp(prefix="cdc-e2e-"))
    root.chmod(0o755)
    saved = dict(os.environ)
    try:
        yield LocalPipeline.prepare(root / "stack", root / "run", load_spec())
    finally:
        stop_stack(root / "stack")
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


def wait_for_zero_differences(pipeline: LocalPipeline, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        report = pipeline.reconcile()
        if report.differences == 0 or time.monotonic() > deadline:
            return report
        time.sleep(2)


@pytest.mark.parametrize("path", ["lambda", "glue"])
def test_full_load_cdc_and_restarts_reconcile_to_zero(pipeline: LocalPipeline, path: str) -> None:
    workload = Workload(pipeline.source_dsn, pipeline.spec, seed=11)
    workload.create_schema(loose=True)
    workload.seed_data(customers=60, events=8, purchases=150)
    logs = pipeline.state_dir / "logs"
    logs.mkdir(parents=True)
    dms = Process("dms", ["local.dms", "run", "--source-dsn", pipeline.source_dsn, "--stream",
                          pipeline.stack.resources.stream_name, "--state-dir",
                          str(pipeline.state_dir / "dms")], logs)
    consumer = Process("consumer", pipeline.consumer_command(path, applier=False), logs)
    # The Glue job applies inline; on the Lambda path the applier runs on its own, and its
    # queue gives a killed applier's batches back after a few seconds.
    applier = Process("applier", pipeline.applier_command(), logs) if path == "lambda" else None
    sqs = boto3.client("sqs")
    sqs.set_queue_attributes(QueueUrl=pipeline.stack.resources.applier_queue_url,
                             Attributes={"VisibilityTimeout": "8"})
    applying = [applier] if applier is not None else []
    dms.start()
    consumer.start()
    for process in applying:
        process.start()
    stop = threading.Event()
    runner = threading.Thread(target=workload.run, kwargs={
        "rate_per_second": 25, "duration_seconds": 24, "stop_event": stop,
        "bad_row_share": 0.06})
    runner.start()
    try:
        time.sleep(8)
        dms.kill()       # mid-stream, without a chance to clean up
        consumer.kill()
        for process in applying:
            process.kill()
        time.sleep(3)    # the source keeps changing while they are down
        dms.start()
        consumer.start()
        for process in applying:
            process.start()
        time.sleep(5)
        consumer.kill()  # once more, the consumer alone
        consumer.start()
        time.sleep(3)
        for process in applying:  # and the applier alone
            process.kill()
            process.start()
        runner.join(timeout=60)
        assert not runner.is_alive()
        report = wait_for_zero_differences(pipeline, timeout=150)
        deadline = time.monotonic() + 60
        while applying and pipeline.applier_depth() and time.monotonic() < deadline:
            time.sleep(1)  # a killed applier's messages come back and are found applied
        assert all(p.alive() for p in (dms, consumer, *applying)), \
            "a pipeline process died on its own"
    finally:
        stop.set()
        for process in (dms, consumer, *applying):
            process.stop()

    summary = "\n".join(t.summary() for t in report.tables)
    assert report.differences == 0, summary
    operations = workload.counters.operations
    for kind in ("purchase", "purchase_update", "purchase_delete", "customer_change",
                 "event_change", "late_purchase", "key_change", "bad_row"):
        assert operations[kind] > 0, f"the workload did no {kind}: {dict(operations)}"

    letters = receive_all(boto3.client("sqs"), pipeline.stack.resources.dead_letter_queue_url,
                          visibility_timeout=300)
    by_row: dict[tuple[str, tuple[Any, ...]], str] = {}
    for letter in letters:
        data = json.loads(base64.b64decode(letter["payload"]))["data"]
        table = letter["table"]
        key = tuple(data[k] for k in pipeline.spec.tables[table].key)
        by_row[(table, key)] = letter["reason"]
    assert workload.bad_rows, "no bad rows were written"
    for bad in workload.bad_rows:
        reason = by_row.get((bad.table, bad.key))
        assert reason is not None, f"bad row {bad} is not on the dead-letter queue"
        assert reason.startswith(f"{bad.table}: column "), reason
    assert sum(report.rejected_source_rows.values()) == len(workload.bad_rows)
    if applier is not None:  # every landed batch applied, none given up
        assert pipeline.applier_depth() == 0
        dead = sqs.get_queue_attributes(
            QueueUrl=pipeline.stack.resources.applier_dead_letter_queue_url,
            AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        assert dead["ApproximateNumberOfMessages"] == "0"
