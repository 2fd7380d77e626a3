"""The deploy helper's inline code (template.yaml, DeployHelperFunction Code.ZipFile).

It backs two custom resources moto cannot run (they would need Docker): GlueSharedLibrary,
which zips the `shared` package out of the SharedLayer (/opt/python/shared) for the Glue job's
--extra-py-files, and GlueJobRunState, which starts the streaming job on the Glue path and
stops it on the Lambda path or on delete. The code runs here as Lambda would run it, with stub
`cfnresponse` and `boto3` modules standing in for the Lambda runtime and AWS.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
import types
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.cfn_model import REPO, load_template


class ConcurrentRunsExceededException(Exception):
    pass


JOB_CREATED = datetime(2026, 1, 1, tzinfo=UTC)
ACTIVE = {"STARTING", "RUNNING", "WAITING", "STOPPING"}


class FakeGlue:
    """Glue's job-run API as its documentation describes it: StartJobRun refuses a start
    beyond MaxConcurrentRuns (1) with ConcurrentRunsExceededException and records no run;
    BatchStopJobRun moves a run to STOPPING, which ends as STOPPED after ``stop_delay`` reads;
    GetJob reports the definition's LastModifiedOn."""

    def __init__(self, states: list[str], refuse_start: bool = False, stop_delay: int = 1):
        started = JOB_CREATED + timedelta(hours=1)
        self.runs = [
            {"Id": f"jr_{i}", "JobRunState": s, "StartedOn": started} for i, s in enumerate(states)
        ]
        self.refuse_start = refuse_start
        self.stop_delay = stop_delay
        self.stopping: dict[str, int] = {}
        self.modified = JOB_CREATED
        self.now = started + timedelta(hours=1)
        self.calls: list[tuple[str, Any]] = []
        self.exceptions = types.SimpleNamespace(
            ConcurrentRunsExceededException=ConcurrentRunsExceededException
        )

    def get_job(self, JobName: str) -> dict[str, Any]:
        return {"Job": {"Name": JobName, "LastModifiedOn": self.modified}}

    def get_job_runs(self, JobName: str, MaxResults: int) -> dict[str, Any]:
        for run in self.runs:
            if run["Id"] in self.stopping:
                self.stopping[run["Id"]] -= 1
                if self.stopping[run["Id"]] < 0:
                    run["JobRunState"] = "STOPPED"
                    del self.stopping[run["Id"]]
        return {"JobRuns": list(reversed(self.runs))}  # newest first

    def start_job_run(self, JobName: str) -> dict[str, str]:
        self.calls.append(("start", JobName))
        if self.refuse_start or self.active():
            raise ConcurrentRunsExceededException("already running")
        self.now += timedelta(minutes=1)
        run = {"Id": f"jr_{len(self.runs)}", "JobRunState": "RUNNING", "StartedOn": self.now}
        self.runs.append(run)
        return {"JobRunId": str(run["Id"])}

    def batch_stop_job_run(self, JobName: str, JobRunIds: list[str]) -> dict[str, Any]:
        self.calls.append(("stop", JobRunIds))
        for run in self.runs:
            if run["Id"] in JobRunIds and run["JobRunState"] in ACTIVE:
                run["JobRunState"] = "STOPPING"
                self.stopping[str(run["Id"])] = self.stop_delay
        return {}

    def active(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["JobRunState"] in ACTIVE]

    def update_job(self) -> None:
        """What CloudFormation's UpdateJob does to the definition (new script or arguments)."""
        self.now += timedelta(minutes=1)
        self.modified = self.now


class Clock:
    """time.time/time.sleep for the helper: sleeping advances the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> dict[str, Any]:
        self.objects[(Bucket, Key)] = Body
        return {}


class Harness:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, layer_root: Path, glue: FakeGlue):
        self.s3, self.glue = FakeS3(), glue
        self.responses: list[dict[str, Any]] = []
        cfnresponse = types.ModuleType("cfnresponse")
        cfnresponse.SUCCESS, cfnresponse.FAILED = "SUCCESS", "FAILED"  # type: ignore[attr-defined]

        def send(
            event: Any,
            context: Any,
            status: str,
            data: dict[str, Any],
            pid: str,
            reason: str | None = None,
        ) -> None:
            self.responses.append(
                {"Status": status, "Data": data, "PhysicalResourceId": pid, "Reason": reason}
            )

        cfnresponse.send = send  # type: ignore[attr-defined]
        boto3 = types.ModuleType("boto3")
        boto3.client = lambda name: {"s3": self.s3, "glue": self.glue}[name]  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "cfnresponse", cfnresponse)
        monkeypatch.setitem(sys.modules, "boto3", boto3)
        monkeypatch.setenv("LAYER_PYTHON_ROOT", str(layer_root))
        code = load_template()["Resources"]["DeployHelperFunction"]["Properties"]["Code"]["ZipFile"]
        self.namespace: dict[str, Any] = {"__name__": "index"}
        exec(compile(code, "index.py", "exec"), self.namespace)  # noqa: S102 - the helper's own code
        self.namespace["time"] = Clock()

    def invoke(self, request: str, props: dict[str, Any], pid: str | None = None) -> dict[str, Any]:
        event = {"RequestType": request, "LogicalResourceId": "Res", "ResourceProperties": props}
        if pid:
            event["PhysicalResourceId"] = pid
        self.namespace["handler"](event, None)
        return self.responses[-1]

    def scheduled(self, job: str) -> None:
        """An EventBridge invocation: the restart schedule or the job-updated rule."""
        self.namespace["handler"]({"JobName": job}, None)


@pytest.fixture
def layer_root(tmp_path: Path) -> Path:
    """A stand-in for /opt/python: the repository's shared package plus noise to leave out."""
    root = tmp_path / "python"
    shutil.copytree(
        REPO / "shared", root / "shared", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    (root / "shared/__pycache__").mkdir()
    (root / "shared/__pycache__/x.cpython-312.pyc").write_bytes(b"\0")
    (root / "msgspec").mkdir()
    (root / "msgspec/__init__.py").write_text("")
    return root


LIB_PROPS = {
    "Action": "PublishGlueLibrary",
    "Bucket": "assets",
    "Prefix": "lib/",
    "SharedLayerVersion": "v1",
}


def test_publishes_the_shared_package_as_a_glue_zip(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    h = Harness(monkeypatch, layer_root, FakeGlue([]))
    response = h.invoke("Create", LIB_PROPS)
    assert response["Status"] == "SUCCESS"
    (((bucket, key), body),) = h.s3.objects.items()
    assert bucket == "assets" and key.startswith("lib/shared-") and key.endswith(".zip")
    assert response["Data"]["S3Uri"] == response["PhysicalResourceId"] == f"s3://assets/{key}"
    names = set(zipfile.ZipFile(io.BytesIO(body)).namelist())
    expected = {
        str(p.relative_to(layer_root))
        for p in (layer_root / "shared").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert names == expected  # `shared/...` at the zip root, as --extra-py-files wants it
    assert "shared/__init__.py" in names and "shared/specs/sports_ticketing.toml" in names

    # Same content -> same key (deterministic zip); an update re-publishes, a delete keeps it.
    again = h.invoke("Update", LIB_PROPS, pid=response["PhysicalResourceId"])
    assert again["PhysicalResourceId"] == response["PhysicalResourceId"]
    (layer_root / "shared/new_module.py").write_text("X = 1\n")
    changed = h.invoke("Update", LIB_PROPS, pid=response["PhysicalResourceId"])
    assert changed["PhysicalResourceId"] != response["PhysicalResourceId"]
    deleted = h.invoke("Delete", LIB_PROPS, pid=changed["PhysicalResourceId"])
    assert deleted["Status"] == "SUCCESS" and len(h.s3.objects) == 2


RUN_PROPS = {"Action": "GlueJobRunState", "JobName": "stack-cdc-streaming"}


def test_glue_path_starts_the_job_once(monkeypatch: pytest.MonkeyPatch, layer_root: Path) -> None:
    idle = Harness(monkeypatch, layer_root, FakeGlue(["SUCCEEDED", "FAILED"]))
    assert idle.invoke("Create", {**RUN_PROPS, "Desired": "RUNNING"})["Status"] == "SUCCESS"
    assert idle.glue.calls == [("start", "stack-cdc-streaming")]

    running = Harness(monkeypatch, layer_root, FakeGlue(["RUNNING"]))
    running.invoke(
        "Update", {**RUN_PROPS, "Desired": "RUNNING"}, pid="stack-cdc-streaming/run-state"
    )
    assert running.glue.calls == []

    racing = Harness(monkeypatch, layer_root, FakeGlue([], refuse_start=True))
    assert racing.invoke("Create", {**RUN_PROPS, "Desired": "RUNNING"})["Status"] == "SUCCESS"


def test_lambda_path_and_delete_stop_active_runs(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    h = Harness(monkeypatch, layer_root, FakeGlue(["RUNNING", "SUCCEEDED", "STARTING"]))
    assert h.invoke("Update", {**RUN_PROPS, "Desired": "STOPPED"}, pid="p")["Status"] == "SUCCESS"
    assert [r["JobRunState"] for r in h.glue.runs] == ["STOPPING", "SUCCEEDED", "STOPPING"]
    again = Harness(monkeypatch, layer_root, FakeGlue(["RUNNING", "SUCCEEDED", "STARTING"]))
    deleted = again.invoke("Delete", {**RUN_PROPS, "Desired": "RUNNING"}, pid="p")
    assert deleted["Status"] == "SUCCESS"
    assert [r["JobRunState"] for r in again.glue.runs] == ["STOPPING", "SUCCEEDED", "STOPPING"]


def test_failures_fail_create_but_never_block_delete(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    h = Harness(monkeypatch, layer_root, FakeGlue([]))
    h.glue.get_job_runs = lambda **_: (_ for _ in ()).throw(RuntimeError("EntityNotFound"))  # type: ignore[method-assign]
    failed = h.invoke("Create", {**RUN_PROPS, "Desired": "RUNNING"})
    assert failed["Status"] == "FAILED" and "EntityNotFound" in failed["Reason"]
    assert h.invoke("Delete", {**RUN_PROPS, "Desired": "RUNNING"}, pid="p")["Status"] == "SUCCESS"


JOB = "stack-cdc-streaming"


def test_scheduled_restart_never_starts_a_second_run(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    h = Harness(monkeypatch, layer_root, FakeGlue(["SUCCEEDED", "RUNNING"]))
    for _ in range(3):
        h.scheduled(JOB)
    assert [r["JobRunState"] for r in h.glue.runs] == ["SUCCEEDED", "RUNNING"]
    # Glue's own SCHEDULED trigger would have been refused here and recorded a FAILED run.
    assert not [r for r in h.glue.runs if r["JobRunState"] == "FAILED"]


def test_scheduled_restart_brings_a_failed_job_back(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    h = Harness(monkeypatch, layer_root, FakeGlue(["RUNNING", "FAILED"]))
    h.glue.runs[0]["JobRunState"] = "SUCCEEDED"
    h.scheduled(JOB)
    h.scheduled(JOB)
    assert [r["JobRunState"] for r in h.glue.runs] == ["SUCCEEDED", "FAILED", "RUNNING"]


def test_a_changed_job_definition_restarts_the_run_on_it(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    h = Harness(monkeypatch, layer_root, FakeGlue(["RUNNING"], stop_delay=2))
    h.scheduled(JOB)  # nothing changed: the run keeps running
    assert [r["JobRunState"] for r in h.glue.runs] == ["RUNNING"]

    h.glue.update_job()  # a deploy changed the script, the library or an argument
    h.scheduled(JOB)  # the job-updated rule
    states = [r["JobRunState"] for r in h.glue.runs]
    assert states == ["STOPPED", "RUNNING"]
    (current,) = h.glue.active()
    assert current["StartedOn"] > h.glue.modified  # the new run runs the new definition


def test_a_run_slow_to_stop_is_restarted_by_the_schedule(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    # A streaming run can take longer to stop than the helper waits (60 s of its 120 s).
    h = Harness(monkeypatch, layer_root, FakeGlue(["RUNNING"], stop_delay=1000))
    h.glue.update_job()
    h.scheduled(JOB)
    assert [r["JobRunState"] for r in h.glue.runs] == ["STOPPING"]  # no refused start
    h.glue.stopping.clear()
    h.glue.runs[0]["JobRunState"] = "STOPPED"
    h.scheduled(JOB)
    assert [r["JobRunState"] for r in h.glue.runs] == ["STOPPED", "RUNNING"]


def test_a_deploy_with_a_new_definition_restarts_through_the_run_state_resource(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    h = Harness(monkeypatch, layer_root, FakeGlue(["RUNNING"]))
    h.glue.update_job()
    response = h.invoke(
        "Update", {**RUN_PROPS, "Desired": "RUNNING"}, pid="stack-cdc-streaming/run-state"
    )
    assert response["Status"] == "SUCCESS"
    assert [r["JobRunState"] for r in h.glue.runs] == ["STOPPED", "RUNNING"]


def test_publishes_the_glue_wheels_next_to_the_library(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    # The layer's glue-wheels/ (layers/shared/Makefile, from runtime.lock) sits beside python/.
    wheels = layer_root.parent / "glue-wheels"
    wheels.mkdir()
    name = "msgspec-0.23.0-cp311-cp311-manylinux2014_x86_64.whl"
    (wheels / name).write_bytes(b"PK\x03\x04 wheel")
    h = Harness(monkeypatch, layer_root, FakeGlue([]))
    response = h.invoke("Create", LIB_PROPS)
    assert response["Status"] == "SUCCESS"
    assert response["Data"]["Modules"] == f"s3://assets/lib/{name}"
    assert h.s3.objects[("assets", f"lib/{name}")] == b"PK\x03\x04 wheel"
    assert response["Data"]["S3Uri"].startswith("s3://assets/lib/shared-")


def test_deploy_fails_when_the_mappings_were_built_for_another_spec(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path, tmp_path: Path
) -> None:
    from shared.dms_table_mappings import table_mappings, table_mappings_json
    from shared.spec import load_spec

    built = table_mappings_json(table_mappings(load_spec())).encode()
    props = {
        "Action": "CheckDmsTableMappings",
        "PipelineSpecPath": "",
        "TableMappingsSha256": hashlib.sha256(built).hexdigest(),
    }
    h = Harness(monkeypatch, layer_root, FakeGlue([]))
    assert h.invoke("Create", props)["Status"] == "SUCCESS"

    # PipelineSpecPath names a spec with one more table, the build used the default spec.
    other = tmp_path / "mine.toml"
    other.write_text(
        (REPO / "shared/specs/sports_ticketing.toml").read_text()
        + '\n[tables.refund]\nkey = ["refund_id"]\ncolumns = { refund_id = "bigint" }\n'
    )
    failed = h.invoke("Update", {**props, "PipelineSpecPath": str(other)}, pid="p")
    assert failed["Status"] == "FAILED"
    assert "PipelineSpecPath" in failed["Reason"] and "PIPELINE_SPEC" in failed["Reason"]
    # A stack deletion is never blocked by the check.
    deleted = h.invoke("Delete", {**props, "PipelineSpecPath": str(other)}, pid="p")
    assert deleted["Status"] == "SUCCESS"
