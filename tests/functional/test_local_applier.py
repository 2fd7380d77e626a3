"""The single applier on the local stack, killed or cancelled mid-merge.

Consumers land batches (S3 objects plus one message each on the applier's queue); the applier
(``functions.batch_applier``, behind the local SQS event source mapping) applies every landed
batch in one transaction. These tests stop that transaction halfway and check that nothing is
lost or applied twice: the warehouse reconciles with the source, every landed batch id is in
``_cdc_applied`` exactly once, and ``_cdc_landing`` is empty.

To catch the transaction mid-merge every time on a busy machine, the test holds a lock on one
replica table (as another session's long statement would), so the apply call waits inside the
procedure with the landing COPY done and other tables merged; ``pg_stat_activity`` shows it.

- The applier process is killed (SIGKILL, its execution environment with it). A Data API
  statement runs on in the warehouse whatever happens to its caller ("Using the Amazon
  Redshift Data API": the calls are asynchronous), so the transaction commits once the lock
  goes; the messages come back after the queue's visibility timeout and the restarted applier
  finds their batches in ``_cdc_applied``.
- The same, and the warehouse session dies too (its backend terminated): the transaction rolls
  back, and the redelivered messages apply the batches.

The mapping runs two applier invocations at once (``MaximumConcurrency`` 2), so the messages
may be split between them: the test follows the one statement caught waiting (its backend is
the statement's ``RedshiftPid``, "DescribeStatement", Amazon Redshift Data API Reference) and
the batches of its COPY manifest, not every landed batch.
- The statement is cancelled (Data API ``CancelStatement``): it is rolled back (ABORTED), none
  of its batches is applied on its own (no bisection), and the applier's retry applies them,
  once.
"""

from __future__ import annotations

import json
import os
import re
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
import psycopg
import pytest

from local.cdc import LocalPipeline
from local.stack import stop_stack
from local.workload import Workload
from shared.spec import load_spec
from shared.warehouse_sql import APPLIED, LANDING

LOCKED_TABLE = "ticket_activity"  # the replica the test holds while the applier merges
REDELIVERY_SECONDS = 4  # the applier queue's visibility timeout in these tests


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    """A local stack whose consumer lands for the applier, with a source database."""
    root = Path(tempfile.mkdtemp(prefix="cdc-applier-"))
    root.chmod(0o755)
    saved = dict(os.environ)
    try:
        pipeline = LocalPipeline.prepare(root / "stack", root / "run", load_spec(), applier=True)
        boto3.client("sqs").set_queue_attributes(
            QueueUrl=pipeline.stack.resources.applier_queue_url,
            Attributes={"VisibilityTimeout": str(REDELIVERY_SECONDS)})
        workload = pipeline.workload(seed=5)
        workload.create_schema(loose=True)
        workload.seed_data(customers=40, events=5, purchases=300)
        landed = land(pipeline, workload, changes=0)
        applier = pipeline.applier_mapping()
        try:
            applier.drain(timeout_seconds=180)
        finally:
            applier.close()
        wait_until_applied(pipeline, landed)
        yield pipeline
    finally:
        stop_stack(root / "stack")
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


def warehouse(pipeline: LocalPipeline) -> psycopg.Connection[Any]:
    return psycopg.connect(pipeline.stack.postgres_conninfo, autocommit=True)


def replica(pipeline: LocalPipeline, table: str) -> str:
    return f'"{pipeline.spec.replica_schema}"."{table}"'


def land(pipeline: LocalPipeline, workload: Workload, changes: int) -> set[str]:
    """``changes`` source changes (after the full load, the first time) captured, consumed
    and landed, not applied; the ids of the batches landed and not applied yet."""
    if changes:
        workload.commit_changes(changes)
    time.sleep(1.0)  # the source's last commits reach the WAL
    dms = pipeline.dms()
    consumer = pipeline.consumer()
    try:
        dms.full_load()
        dms.drain()
        consumer.drain(timeout_seconds=180)
    finally:
        consumer.close()
    staged = boto3.client("s3").list_objects_v2(
        Bucket=pipeline.stack.resources.staging_bucket,
        Prefix=pipeline.stack.resources.staging_prefix).get("Contents", [])
    ids = {Path(o["Key"]).stem for o in staged if o["Key"].endswith(".json")}
    assert ids, "the consumer landed nothing"
    return ids


def apply_call(conn: psycopg.Connection[Any]) -> tuple[int, str] | None:
    """The backend running the apply call while it waits for a lock, and its wait."""
    row = conn.execute(
        "SELECT pid, wait_event_type FROM pg_stat_activity WHERE state = 'active' "
        "AND query ILIKE '%_cdc_apply_pending%' AND pid <> pg_backend_pid()").fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def wait_for_apply_call(conn: psycopg.Connection[Any], timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = apply_call(conn)
        if found is not None and found[1] == "Lock":
            return found[0]
        time.sleep(0.02)
    raise AssertionError("the applier's call never waited on the held replica table")


def apply_statement_on(backend: int) -> dict[str, Any]:
    """The Data API statement (a BatchExecuteStatement transaction) that runs the apply call
    on warehouse ``backend``."""
    data_api = boto3.client("redshift-data")
    for listed in data_api.list_statements(Status="STARTED", RoleLevel=False)["Statements"]:
        described = data_api.describe_statement(Id=listed["Id"])
        if described.get("RedshiftPid") == backend:
            return dict(described)
    raise AssertionError(f"no running Data API statement on backend {backend}")


def manifest_batches(pipeline: LocalPipeline, statement: dict[str, Any]) -> set[str]:
    """The landed batches the statement's COPY loads: the entries of its manifest (a killed
    applier leaves the manifest behind)."""
    copies = [s["QueryString"] for s in statement["SubStatements"]
              if "manifest" in s["QueryString"].lower()]
    assert len(copies) == 1, copies
    url = re.search(r"'s3://([^/']+)/([^']+)'", copies[0])
    assert url, copies[0]
    body = boto3.client("s3").get_object(Bucket=url[1], Key=url[2])["Body"].read()
    return {Path(e["url"]).stem for e in json.loads(body)["entries"]}


def statement_outcome(statement: dict[str, Any], timeout: float = 60) -> str:
    """The statement's final status, once it has one."""
    data_api = boto3.client("redshift-data")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = str(data_api.describe_statement(Id=statement["Id"])["Status"])
        if status in ("FINISHED", "FAILED", "ABORTED"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"statement {statement['Id']} never ended")


def start_applier(pipeline: LocalPipeline, log: Path) -> subprocess.Popen[bytes]:
    """The applier in a process of its own (and a session, so its execution environment dies
    with it)."""
    return subprocess.Popen([sys.executable, "-m", *pipeline.applier_command()],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env=dict(os.environ), start_new_session=True)


def kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def applied_batches(pipeline: LocalPipeline) -> set[str]:
    with warehouse(pipeline) as conn:
        return {r[0] for r in conn.execute(
            f"SELECT batch_id FROM {replica(pipeline, APPLIED)}").fetchall()}


def wait_until_applied(pipeline: LocalPipeline, batch_ids: set[str], timeout: float = 180
                       ) -> None:
    deadline = time.monotonic() + timeout
    with warehouse(pipeline) as conn:
        while time.monotonic() < deadline:
            applied = {r[0] for r in conn.execute(
                f"SELECT batch_id FROM {replica(pipeline, APPLIED)}").fetchall()}
            if batch_ids <= applied and pipeline.applier_depth() == 0:
                return
            time.sleep(0.5)
    raise AssertionError(f"{len(batch_ids - applied)} landed batches were never applied")


def assert_applied_once_and_reconciled(pipeline: LocalPipeline, batch_ids: set[str]) -> None:
    with warehouse(pipeline) as conn:
        counts = dict(conn.execute(
            f"SELECT batch_id, count(*) FROM {replica(pipeline, APPLIED)} "
            "GROUP BY batch_id").fetchall())
        landing = conn.execute(f"SELECT count(*) FROM {replica(pipeline, LANDING)}").fetchone()
    assert {b: counts.get(b) for b in batch_ids} == dict.fromkeys(batch_ids, 1)
    assert landing == (0,), "rows were left in the landing table"
    report = pipeline.reconcile()
    assert report.differences == 0, "\n".join(t.summary() for t in report.tables)
    left = boto3.client("s3").list_objects_v2(
        Bucket=pipeline.stack.resources.staging_bucket,
        Prefix=pipeline.stack.resources.staging_prefix).get("Contents", [])
    # A killed applier leaves its manifest behind (the bucket's lifecycle rule expires it);
    # the landed batches themselves are deleted once applied.
    assert not [o["Key"] for o in left if o["Key"].endswith(".json")]


@pytest.mark.parametrize("session_dies", [False, True],
                         ids=["transaction-commits", "session-dies-and-rolls-back"])
def test_applier_killed_mid_merge_loses_nothing_and_applies_nothing_twice(
        pipeline: LocalPipeline, session_dies: bool, tmp_path: Path) -> None:
    batch_ids = land(pipeline, pipeline.workload(seed=21 if session_dies else 22), 400)
    logs = tmp_path
    with warehouse(pipeline) as holder, warehouse(pipeline) as watcher:
        holder.autocommit = False
        holder.execute(f"LOCK TABLE {replica(pipeline, LOCKED_TABLE)} IN ACCESS EXCLUSIVE MODE")
        applier = start_applier(pipeline, logs / "applier-1.log")
        try:
            backend = wait_for_apply_call(watcher)
            caught = apply_statement_on(backend)
            kill(applier)
            if session_dies:
                watcher.execute("SELECT pg_terminate_backend(%s)", (backend,))
        finally:
            if applier.poll() is None:
                kill(applier)
            holder.rollback()
    held = manifest_batches(pipeline, caught)
    assert held and held <= batch_ids, (held, batch_ids)
    status = statement_outcome(caught)
    if session_dies:
        assert status == "FAILED", status
        assert not held & applied_batches(pipeline), \
            "a rolled-back transaction left applied batches"
    else:
        # The statement outlived its caller and committed once the lock went: the
        # redelivered messages find their batches applied.
        assert status == "FINISHED", status
        assert held <= applied_batches(pipeline)
    restarted = start_applier(pipeline, logs / "applier-2.log")
    try:
        wait_until_applied(pipeline, batch_ids)
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    assert_applied_once_and_reconciled(pipeline, batch_ids)


def test_a_cancelled_apply_statement_is_rolled_back_and_applied_once(
        pipeline: LocalPipeline) -> None:
    batch_ids = land(pipeline, pipeline.workload(seed=23), 400)
    data_api = boto3.client("redshift-data")
    applier = pipeline.applier_mapping()
    try:
        with warehouse(pipeline) as holder, warehouse(pipeline) as watcher:
            holder.autocommit = False
            holder.execute(
                f"LOCK TABLE {replica(pipeline, LOCKED_TABLE)} IN ACCESS EXCLUSIVE MODE")
            first = threading.Thread(target=applier.poll_once)
            first.start()
            try:
                wait_for_apply_call(watcher)
                running = [s for s in data_api.list_statements(
                    Status="STARTED", RoleLevel=False)["Statements"]
                    if "_cdc_apply_pending" in " ".join(s.get("QueryStrings", [])
                                                         or [s.get("QueryString", "")])]
                assert len(running) == 1, running
                # Its batches, while its manifest is there (the applier deletes it after).
                held = manifest_batches(pipeline, data_api.describe_statement(Id=running[0]["Id"]))
                data_api.cancel_statement(Id=running[0]["Id"])
            finally:
                holder.rollback()
                first.join(timeout=120)
            described = data_api.describe_statement(Id=running[0]["Id"])
            assert described["Status"] == "ABORTED"
        # A stopped statement says nothing about its batches: none was applied on its own (no
        # bisection); they all come back after the visibility timeout.
        assert held and not held & applied_batches(pipeline)
        applier.drain(timeout_seconds=180)
    finally:
        applier.close()
    wait_until_applied(pipeline, batch_ids)
    assert_applied_once_and_reconciled(pipeline, batch_ids)
