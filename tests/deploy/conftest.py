"""Fixtures of the deployment tests: the SAM/cfn-lint tool chain, a built copy of the app, its
`sam package` output (uploaded to moto's S3) and its CloudFormation translation.

The tools live in their own virtualenv, .venv-tools/ (scripts/install_tools.sh), so their pins
never meet the project's. If it is missing, the `tools` fixture runs the install script once
(PyPI only); set DEPLOY_TESTS_NO_INSTALL=1 to fail instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.deploy.cfn_model import REGION, REPO

TOOLS_VENV = REPO / ".venv-tools"

# Files other engineers own. When one does not exist yet, the build copy gets a stand-in (in the
# temporary copy only, never in the repository), so the packaging can still be tested.
_HANDLER_STAND_IN = "def lambda_handler(event, context):\n    raise NotImplementedError\n"
HANDLER_FILES = {
    "functions/kinesis_consumer/app.py": _HANDLER_STAND_IN,
    "functions/schema_migrator/app.py": _HANDLER_STAND_IN,
    "glue_job/cdc_streaming_job.py": "raise NotImplementedError('stand-in for the Glue job')\n",
}
APP_PARTS = [
    "template.yaml",
    "samconfig.toml",
    "pyproject.toml",
    "functions",
    "shared",
    "layers",
    "glue_job",
]
ARTIFACT_BUCKET = "sam-artifacts-deploy-tests"


def layer_requirements(pyproject: Path) -> list[str]:
    """The SharedLayer's requirements, as layers/shared/layer_requirements.py computes them."""
    spec = importlib.util.spec_from_file_location(
        "layer_requirements", REPO / "layers/shared/layer_requirements.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result: list[str] = module.layer_requirements(pyproject)
    return result


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


@pytest.fixture(scope="session")
def tools() -> Tools:
    found = Tools(TOOLS_VENV / "bin/sam", TOOLS_VENV / "bin/cfn-lint", TOOLS_VENV / "bin/python")
    if not (found.sam.exists() and found.cfn_lint.exists()):
        if os.environ.get("DEPLOY_TESTS_NO_INSTALL"):
            pytest.fail("AWS SAM CLI / cfn-lint missing: run bash scripts/install_tools.sh")
        done = subprocess.run(
            ["bash", str(REPO / "scripts/install_tools.sh")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, f"install_tools.sh failed:\n{done.stdout}\n{done.stderr}"
    return found


@dataclass(frozen=True)
class AppCopy:
    root: Path
    stand_ins: tuple[str, ...]


@pytest.fixture(scope="session")
def app_copy(tmp_path_factory: pytest.TempPathFactory) -> AppCopy:
    """template + pyproject + functions + shared + layers + glue_job copied to a temporary dir."""
    root = tmp_path_factory.mktemp("sam-app")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".aws-sam")
    for part in APP_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, root / part, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, root / part)
    stand_ins = []
    for rel, text in HANDLER_FILES.items():
        target = root / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            stand_ins.append(rel)
    return AppCopy(root, tuple(stand_ins))


@dataclass(frozen=True)
class Build:
    root: Path
    build_dir: Path
    output: str


@pytest.fixture(scope="session")
def built_app(tools: Tools, app_copy: AppCopy) -> Build:
    done = subprocess.run(
        ["bash", str(REPO / "scripts/sam_build.sh")],
        cwd=app_copy.root,
        env=tools.env(APP_DIR=str(app_copy.root)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"sam build failed:\n{output}"
    return Build(app_copy.root, app_copy.root / ".aws-sam/build", output)


@pytest.fixture(scope="session")
def moto_env(moto_endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }


@pytest.fixture(scope="session")
def packaged_template(
    tools: Tools, built_app: Build, moto_env: dict[str, str], moto_endpoint: str
) -> Path:
    """`sam package` of the build, uploading every artifact to moto's S3."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    out = built_app.root / "packaged.yaml"
    done = tools.run(
        [
            tools.sam,
            "package",
            "--template-file",
            built_app.build_dir / "template.yaml",
            "--s3-bucket",
            ARTIFACT_BUCKET,
            "--s3-prefix",
            "app",
            "--output-template-file",
            out,
            "--region",
            REGION,
        ],
        cwd=built_app.root,
        **moto_env,
    )
    assert done.returncode == 0, f"sam package failed:\n{done.stdout}\n{done.stderr}"
    return out


@pytest.fixture(scope="session")
def translated(tools: Tools, packaged_template: Path) -> dict[str, Any]:
    """The packaged SAM template translated to plain CloudFormation (aws-sam-translator)."""
    done = tools.run(
        [tools.python, REPO / "tests/deploy/sam_translate.py", packaged_template], cwd=REPO
    )
    assert done.returncode == 0, f"translation failed:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result
