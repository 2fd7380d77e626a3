"""The persistent local stack (``python -m local.stack``), ``local.sql`` and ``local.invoke``.

One stack in a temporary state dir for the module; its processes are stopped (and, should
stop fail, killed) when the module ends, whatever the tests did.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from local.stack import (
    StackInfo,
    ensure_stack,
    handler_environment,
    running_stack,
    start_stack,
    stop_stack,
)
from local.stack.environment import CONFLICTING_VARIABLES
from local.stack.processes import moto_markers, process_running, read_pid_file

ROOT = Path(__file__).resolve().parents[2]
HANDLER_VARIABLES = {
    "HMAC_KEY_SECRET_ARN", "REDSHIFT_WORKGROUP_NAME", "REDSHIFT_CLUSTER_IDENTIFIER",
    "REDSHIFT_DATABASE", "REDSHIFT_SECRET_ARN", "REDSHIFT_DB_USER", "STAGING_BUCKET",
    "STAGING_PREFIX", "COPY_IAM_ROLE_ARN", "DEAD_LETTER_QUEUE_URL", "PIPELINE_SPEC_PATH",
    "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL",
    "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL_REDSHIFT_DATA", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_KINESIS",
    "AWS_ENDPOINT_URL_CLOUDFORMATION",
}


def run(*args: str, check: bool = True, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, check=check, env=env, timeout=120)


def processes_mentioning(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def all_stopped(pids: list[int]) -> bool:
    return not any(Path(f"/proc/{pid}/cmdline").exists()
                   and Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids)


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cdc-stack-test-"))
    root.chmod(0o755)  # PostgreSQL runs as the postgres OS user when we are root
    state = root / "stack"
    try:
        yield state
    finally:
        try:
            stop_stack(state)
        finally:  # should stop have failed: kill what is left, moto by its pid file
            moto_pid, moto_port = read_pid_file(state / "moto.pid")
            leftovers = processes_mentioning(str(state))
            if process_running(moto_pid, moto_markers(moto_port)):
                leftovers.append(moto_pid)
            for pid in leftovers:
                os.kill(pid, signal.SIGKILL)
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def started(state_dir: Path) -> StackInfo:
    result = run("local.stack", "start", "--state-dir", str(state_dir))
    assert "redshift-data  http://127.0.0.1:" in result.stdout
    info = running_stack(state_dir)
    assert info is not None
    return info


def sql(state_dir: Path, query: str) -> str:
    return run("local.sql", "--state-dir", str(state_dir), query).stdout


def test_start_and_status(state_dir: Path, started: StackInfo) -> None:
    status = run("local.stack", "status", "--state-dir", str(state_dir))
    lines = status.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["postgres", "running"], ["moto", "running"], ["redshift_data", "running"]]
    for pid in started.pids.values():
        assert f"pid {pid} " in status.stdout
    assert json.loads((state_dir / "stack.json").read_text())["moto_endpoint"] == (
        started.moto_endpoint)
    for name in ("moto.pid", "redshift-data.pid", "warehouse-pg/postmaster.pid"):
        assert (state_dir / name).exists()


def test_env_prints_the_handler_environment(state_dir: Path, started: StackInfo) -> None:
    out = run("local.stack", "env", "--state-dir", str(state_dir)).stdout
    exported = {}
    for line in out.splitlines():
        word, assignment = shlex.split(line)
        assert word == "export"
        name, _, value = assignment.partition("=")
        exported[name] = value
    assert set(exported) >= HANDLER_VARIABLES
    assert exported == handler_environment(started)
    assert exported == json.loads(run("local.stack", "env", "--json", "--state-dir",
                                      str(state_dir)).stdout)
    assert exported["AWS_ENDPOINT_URL_REDSHIFT_DATA"] == started.redshift_data_endpoint
    assert exported["AWS_ENDPOINT_URL_KINESIS"] == started.moto_endpoint
    assert exported["REDSHIFT_CLUSTER_IDENTIFIER"] == ""
    key = (state_dir / "hmac-key.hex").read_text().strip()
    assert key not in out


def test_plain_boto3_clients_find_every_resource_through_the_environment(
    started: StackInfo, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the consumer does: boto3 clients without endpoint_url, configured by env only."""
    for name in CONFLICTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    env = handler_environment(started)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = boto3.session.Session()

    secret = session.client("secretsmanager").get_secret_value(SecretId=env["HMAC_KEY_SECRET_ARN"])
    assert json.loads(secret["SecretString"]) == {
        "hmac_key": (state_dir / "hmac-key.hex").read_text().strip()}
    sqs = session.client("sqs")
    assert sqs.get_queue_attributes(QueueUrl=env["DEAD_LETTER_QUEUE_URL"],
                                    AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    session.client("s3").head_bucket(Bucket=env["STAGING_BUCKET"])
    stream = session.client("kinesis").describe_stream_summary(StreamName="cdc-stream")
    assert stream["StreamDescriptionSummary"]["OpenShardCount"] == 4
    assert stream["StreamDescriptionSummary"]["StreamARN"] == started.resources.stream_arn
    assert session.client("cloudformation").list_stacks()["StackSummaries"] == []
    data = session.client("redshift-data")
    statement = data.execute_statement(Sql="SELECT 1", Database=env["REDSHIFT_DATABASE"],
                                       WorkgroupName=env["REDSHIFT_WORKGROUP_NAME"])
    assert data.describe_statement(Id=statement["Id"])["Id"] == statement["Id"]


def test_the_warehouse_is_migrated(state_dir: Path, started: StackInfo) -> None:
    out = sql(state_dir, "SELECT table_schema, table_name FROM information_schema.tables "
                         "WHERE table_schema IN ('cdc_replica', 'public') ORDER BY 1, 2")
    assert out.splitlines() == [
        "table_schema,table_name", "cdc_replica,_cdc_applied", "cdc_replica,_cdc_columns",
        "cdc_replica,_cdc_landing",
        *(f"cdc_replica,_cdc_stage_{t}"
          for t in ("customer", "sport_event", "ticket", "ticket_activity")),
        "cdc_replica,_cdc_tables", "cdc_replica,customer", "cdc_replica,sport_event",
        "cdc_replica,ticket", "cdc_replica,ticket_activity", "public,sport_event_activity"]


def test_sql_prints_csv_with_a_header_and_every_page(state_dir: Path, started: StackInfo) -> None:
    out = sql(state_dir, "SELECT 1 AS n, 'O''Brien, \"Jr\"' AS name, NULL AS nothing, "
                         "TRUE AS yes, 2.5::float8 AS x")
    assert list(csv.reader(io.StringIO(out))) == [
        ["n", "name", "nothing", "yes", "x"], ["1", 'O\'Brien, "Jr"', "", "true", "2.5"]]
    many = sql(state_dir, "SELECT n FROM generate_series(1, 2345) AS n ORDER BY n")
    assert many.splitlines() == ["n", *(str(n) for n in range(1, 2346))]  # 3 result pages
    assert sql(state_dir, "SELECT 1 AS n WHERE 1 = 0") == "n\n"


def test_sql_prints_affected_rows_and_fails_with_redshifts_error(
    state_dir: Path, started: StackInfo
) -> None:
    assert sql(state_dir, "CREATE TABLE public.scratch (a INTEGER)") == "0\n"
    assert sql(state_dir, "INSERT INTO public.scratch VALUES (1), (2), (3)") == "3\n"
    assert sql(state_dir, "DELETE FROM public.scratch WHERE a > 1") == "2\n"
    failed = run("local.sql", "--state-dir", str(state_dir), "SELECT nope FROM public.scratch",
                 check=False)
    assert failed.returncode == 1 and failed.stdout == ""
    assert 'column "nope" does not exist' in failed.stderr
    sql(state_dir, "DROP TABLE public.scratch")


def test_invoke_calls_the_handler_with_the_stack_environment(
    state_dir: Path, started: StackInfo, tmp_path: Path
) -> None:
    (tmp_path / "fake_consumer_handler.py").write_text(textwrap.dedent("""
        import os

        print("handler output goes to stderr")

        def handle(event, context):
            print("so does this")
            return {
                "batchItemFailures": [],
                "records": len(event["Records"]),
                "env": {k: os.environ.get(k) for k in (
                    "HMAC_KEY_SECRET_ARN", "AWS_ENDPOINT_URL_REDSHIFT_DATA", "AWS_PROFILE")},
                "context": [context.function_name, context.memory_limit_in_mb,
                            context.invoked_function_arn, len(context.aws_request_id),
                            0 < context.get_remaining_time_in_millis() <= 300_000],
            }
    """))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "AWS_PROFILE": "somebody-else"}
    result = run("local.invoke", "events/inserts.json", "--state-dir", str(state_dir),
                 "--handler", "fake_consumer_handler:handle", env=env)
    response = json.loads(result.stdout)
    assert response == {
        "batchItemFailures": [],
        "records": 5,
        "env": {"HMAC_KEY_SECRET_ARN": started.resources.hmac_secret_arn,
                "AWS_ENDPOINT_URL_REDSHIFT_DATA": started.redshift_data_endpoint,
                "AWS_PROFILE": None},
        "context": ["cdc-kinesis-consumer-local", 1024,
                    "arn:aws:lambda:us-east-1:123456789012:function:cdc-kinesis-consumer-local",
                    36, True],
    }
    assert "handler output goes to stderr" in result.stderr and "so does this" in result.stderr


def test_invoke_runs_the_lambda_handler_on_a_sample_event(
    state_dir: Path, started: StackInfo
) -> None:
    result = run("local.invoke", "events/full_load.json", "--state-dir", str(state_dir))
    assert json.loads(result.stdout) == {"batchItemFailures": []}
    assert sql(state_dir, "SELECT count(*) AS n FROM public.sport_event_activity") == "n\n8\n"


def test_a_second_start_reuses_the_running_stack(state_dir: Path, started: StackInfo) -> None:
    again = start_stack(state_dir)
    assert again == started
    assert ensure_stack(state_dir) == started
    second = run("local.stack", "start", "--state-dir", str(state_dir))
    assert started.redshift_data_endpoint in second.stdout
    assert "starting" not in second.stderr


def test_stop_leaves_no_process_and_start_brings_the_warehouse_back(
    state_dir: Path, started: StackInfo
) -> None:
    pids = list(started.pids.values())
    stopped = run("local.stack", "stop", "--state-dir", str(state_dir))
    assert stopped.stdout.strip() == "stopped: redshift_data, moto, postgres"
    assert all_stopped(pids)
    assert processes_mentioning(str(state_dir)) == []
    assert run("local.stack", "status", "--state-dir", str(state_dir), check=False
               ).returncode == 1
    assert run("local.stack", "stop", "--state-dir", str(state_dir)).stdout.strip() == (
        "not running")

    restarted = start_stack(state_dir)
    assert running_stack(state_dir) == restarted
    assert set(restarted.pids.values()).isdisjoint(pids)
    # The warehouse persists; the HMAC key is the same; moto was provisioned afresh.
    assert sql(state_dir, "SELECT count(*) AS n FROM public.sport_event_activity") == "n\n8\n"
    secret = boto3.client("secretsmanager", endpoint_url=restarted.moto_endpoint,
                          region_name="us-east-1").get_secret_value(
        SecretId=restarted.resources.hmac_secret_arn)
    assert json.loads(secret["SecretString"])["hmac_key"] == (
        (state_dir / "hmac-key.hex").read_text().strip())


def test_a_killed_stack_is_cleaned_up_by_the_next_start(state_dir: Path) -> None:
    before = running_stack(state_dir)
    assert before is not None
    for pid in before.pids.values():
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not all_stopped(list(before.pids.values())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running_stack(state_dir) is None

    after = ensure_stack(state_dir)
    assert running_stack(state_dir) == after
    assert set(after.pids.values()).isdisjoint(before.pids.values())
    assert sql(state_dir, "SELECT count(*) AS n FROM cdc_replica.customer") == "n\n5\n"
    stop_stack(state_dir)
    assert processes_mentioning(str(state_dir)) == []
