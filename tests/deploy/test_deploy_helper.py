"""The deploy helper's inline code (template.yaml, DeployHelperFunction Code.ZipFile).

It backs two custom resources moto cannot run (they would need Docker): GlueSharedLibrary,
which zips the `shared` package out of the SharedLayer (/opt/python/shared) for the Glue job's
--extra-py-files, and GlueJobRunState, which starts the streaming job on the Glue path and
stops it on the Lambda path or on delete. The code runs here as Lambda would run it, with stub
`cfnresponse` and `boto3` modules standing in for the Lambda runtime and AWS.
"""

from __future__ import annotations

import io
import shutil
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.cfn_model import REPO, load_template


class ConcurrentRunsExceededException(Exception):
    pass


class FakeGlue:
    def __init__(self, states: list[str], refuse_start: bool = False):
        self.runs = [{"Id": f"jr_{i}", "JobRunState": s} for i, s in enumerate(states)]
        self.refuse_start = refuse_start
        self.calls: list[tuple[str, Any]] = []
        self.exceptions = types.SimpleNamespace(
            ConcurrentRunsExceededException=ConcurrentRunsExceededException
        )

    def get_job_runs(self, JobName: str, MaxResults: int) -> dict[str, Any]:
        return {"JobRuns": self.runs}

    def start_job_run(self, JobName: str) -> dict[str, str]:
        self.calls.append(("start", JobName))
        if self.refuse_start:
            raise ConcurrentRunsExceededException("already running")
        return {"JobRunId": "jr_new"}

    def batch_stop_job_run(self, JobName: str, JobRunIds: list[str]) -> dict[str, Any]:
        self.calls.append(("stop", JobRunIds))
        return {}


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

    def invoke(self, request: str, props: dict[str, Any], pid: str | None = None) -> dict[str, Any]:
        event = {"RequestType": request, "LogicalResourceId": "Res", "ResourceProperties": props}
        if pid:
            event["PhysicalResourceId"] = pid
        self.namespace["handler"](event, None)
        return self.responses[-1]


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
    assert h.glue.calls == [("stop", ["jr_0", "jr_2"])]
    h.glue.calls.clear()
    assert h.invoke("Delete", {**RUN_PROPS, "Desired": "RUNNING"}, pid="p")["Status"] == "SUCCESS"
    assert h.glue.calls == [("stop", ["jr_0", "jr_2"])]


def test_failures_fail_create_but_never_block_delete(
    monkeypatch: pytest.MonkeyPatch, layer_root: Path
) -> None:
    h = Harness(monkeypatch, layer_root, FakeGlue([]))
    h.glue.get_job_runs = lambda **_: (_ for _ in ()).throw(RuntimeError("EntityNotFound"))  # type: ignore[method-assign]
    failed = h.invoke("Create", {**RUN_PROPS, "Desired": "RUNNING"})
    assert failed["Status"] == "FAILED" and "EntityNotFound" in failed["Reason"]
    assert h.invoke("Delete", {**RUN_PROPS, "Desired": "RUNNING"}, pid="p")["Status"] == "SUCCESS"
