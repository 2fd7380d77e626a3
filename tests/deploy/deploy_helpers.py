"""Helpers of the deployment tests (their fixtures are in tests/deploy/conftest.py): the SAM /
cfn-lint tool chain and its install, the app's copy and build, the SharedLayer's
requirements and locked SDK, running a built handler in a Python holding only what the Lambda
runtime provides, and a local stack of a test's own."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.stack import StackInfo
from tests.deploy.cfn_model import REGION, REPO

ARTIFACT_BUCKET = "sam-artifacts-deploy-tests"
LAMBDA_PROVIDED = REPO / "tests/deploy/lambda_provided"


def layer_module(name: str) -> Any:
    """A module of layers/shared (``layer_requirements``, ``lock_runtime``), from its file."""
    spec = importlib.util.spec_from_file_location(name, REPO / f"layers/shared/{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def layer_requirements(pyproject: Path) -> list[str]:
    """The SharedLayer's requirements, as layers/shared/layer_requirements.py computes them."""
    result: list[str] = layer_module("layer_requirements").layer_requirements(pyproject)
    return result


def locked_sdk() -> dict[str, str]:
    """{distribution: version} of the AWS SDK in layers/shared/runtime.lock: what the layer
    ships (boto3, botocore and their closure)."""
    lock = layer_module("lock_runtime")
    entries = lock.parse_lock((REPO / "layers/shared/runtime.lock").read_text())
    sdk = layer_module("layer_requirements").SDK_DISTRIBUTIONS
    return {name: entries[name].version for name in sorted(sdk) if name in entries}


@dataclass(frozen=True)
class Tools:
    sam: Path
    cfn_lint: Path
    python: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": REGION, **extra})
        return env

    def run(
        self, args: list[str | Path], cwd: Path, timeout: int = 300, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=self.env(**extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def install_tools() -> None:
    """Run scripts/install_tools.sh (the SAM CLI, cfn-lint and checkov in .venv-tools/)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts/install_tools.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"install_tools.sh failed:\n{done.stdout}\n{done.stderr}"


@dataclass(frozen=True)
class AppCopy:
    root: Path
    stand_ins: tuple[str, ...]


@dataclass(frozen=True)
class Build:
    root: Path
    build_dir: Path
    output: str


def run_in_lambda_runtime(python: Path, work: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Run a built handler with tests/deploy/lambda_provided/runtime_runner.py; its response."""
    request_file = work / f"request-{len(list(work.glob('request-*')))}.json"
    request_file.write_text(json.dumps(request))
    done = subprocess.run(
        [python, "-I", LAMBDA_PROVIDED / "runtime_runner.py", request_file],
        cwd=work, capture_output=True, text=True, check=False, timeout=600,
        env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
    )
    assert done.returncode == 0, done.stderr[-5000:]
    response: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return response


def sam_build(tools: Tools, app: Path, build_dir: Path, architecture: str,
              *resources: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts/sam_build.sh"), "--build-dir", str(build_dir), *resources],
        cwd=app, env=tools.env(APP_DIR=str(app), LAMBDA_ARCHITECTURE=architecture),
        capture_output=True, text=True, timeout=600, check=False,
    )


@contextmanager
def running_local_stack(prefix: str) -> Iterator[StackInfo]:
    """The persistent local stack (local.stack) in a fresh state dir while the block runs.

    The directory is world-readable (pytest's temporary dirs are not): PostgreSQL runs as the
    postgres OS user when the tests run as root.
    """
    from local.stack import start_stack, stop_stack

    state_dir = Path(tempfile.mkdtemp(prefix=prefix))
    state_dir.chmod(0o755)
    try:
        info = start_stack(state_dir)
        try:
            yield info
        finally:
            stop_stack(state_dir)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
