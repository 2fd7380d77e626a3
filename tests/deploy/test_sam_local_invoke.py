"""`make sam-invoke`: `sam local invoke` of the built consumer in a Lambda container.

scripts/sam_invoke.py runs the real AWS SAM CLI against the project's dockerd and the locally
built python3.12 base image (scripts/lambda_docker.sh: installs docker.io and debootstrap if
missing; the root file system and the image are cached, so only a machine's first run pays for
them). The function is pointed at the local stack through the endpoint variables the template
declares; the changes must land in the warehouse. `sam` exits 0 when the function fails, so the
script reads the response: a build whose layer misses a module (aws_xray_sdk, the issue's
failure) must make it fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg

from local.stack import StackInfo
from tests.deploy.cfn_model import REPO
from tests.deploy.deploy_helpers import AppCopy, Tools, sam_build


def sam_invoke(app: Path, stack: StackInfo, event: str,
               *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, REPO / "scripts/sam_invoke.py", REPO / "events" / event,
         "--state-dir", stack.state_dir, "--app-dir", app, *options],
        cwd=REPO, capture_output=True, text=True, timeout=1500, check=False,
    )


def test_sam_local_invoke_applies_a_sample_event(
    tools: Tools, app_copy: AppCopy, local_stack: StackInfo,
) -> None:
    done = sam_invoke(app_copy.root, local_stack, "inserts.json")
    assert done.returncode == 0, done.stderr[-6000:]
    assert json.loads(done.stdout) == {"batchItemFailures": []}, done.stderr[-6000:]
    assert "START RequestId" in done.stderr  # it ran in the emulator, not in-process
    with psycopg.connect(local_stack.postgres_conninfo) as conn:
        rows = conn.execute("SELECT ticket_id, event_id FROM public.sport_event_activity "
                            "WHERE ticket_id IN (9, 10) ORDER BY 1").fetchall()
    assert rows == [(9, 4), (10, 2)]


def test_sam_local_invoke_fails_when_the_build_misses_a_module(
    tools: Tools, app_copy: AppCopy, local_stack: StackInfo, tmp_path: Path,
) -> None:
    """The issue's failure reintroduced: a layer built without aws_xray_sdk."""
    broken = tmp_path / "app"
    shutil.copytree(app_copy.root, broken, ignore=shutil.ignore_patterns(".aws-sam"))
    done = sam_build(tools, broken, broken / ".aws-sam/local-x86_64", "x86_64")
    assert done.returncode == 0, done.stdout + done.stderr
    layer = broken / ".aws-sam/local-x86_64/SharedLayer/python"
    for path in layer.glob("aws_xray_sdk*"):
        shutil.rmtree(path)
    done = sam_invoke(broken, local_stack, "inserts.json", "--skip-build")
    assert done.returncode == 1, done.stderr[-6000:]
    response = json.loads(done.stdout)
    assert response["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'aws_xray_sdk'" in response["errorMessage"]
