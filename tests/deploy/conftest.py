"""Fixtures of the deployment tests: the SAM/cfn-lint tool chain, a built copy of the app, its
`sam package` output (uploaded to moto's S3) and its CloudFormation translation.

The tools live in their own virtualenv, .venv-tools/ (scripts/install_tools.sh), so their pins
never meet the project's. If it is missing, the `tools` fixture runs the install script once
(PyPI only); set DEPLOY_TESTS_NO_INSTALL=1 to fail instead. Helpers that tests import are in
``tests/deploy/deploy_helpers.py``.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.stack import StackInfo
from tests.deploy.cfn_model import REGION, REPO
from tests.deploy.deploy_helpers import (
    ARTIFACT_BUCKET,
    AppCopy,
    Build,
    Tools,
    install_tools,
    running_local_stack,
    sam_build,
)

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


@pytest.fixture(scope="session")
def tools() -> Tools:
    found = Tools(TOOLS_VENV / "bin/sam", TOOLS_VENV / "bin/cfn-lint", TOOLS_VENV / "bin/python")
    if not (found.sam.exists() and found.cfn_lint.exists()):
        if os.environ.get("DEPLOY_TESTS_NO_INSTALL"):
            pytest.fail("AWS SAM CLI / cfn-lint missing: run bash scripts/install_tools.sh")
        install_tools()
    return found


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


# --- the artifacts as the runtimes run them ---------------------------------------------------

RUNTIME_REQUIREMENTS = REPO / "scripts/lambda_docker/runtime-requirements.txt"


def find_python312() -> Path:
    """python3.12 as scripts/sam_build.sh finds it: $PYTHON312, PATH, then pyenv's 3.12."""
    candidates = [os.environ.get("PYTHON312", ""), shutil.which("python3.12") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv.glob("versions/3.12*/bin/python3.12"))]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "--version"], capture_output=True,
                                        check=False).returncode == 0:
            return Path(candidate)
    pytest.fail("python3.12 not found (set PYTHON312), as scripts/sam_build.sh needs it too")


@pytest.fixture(scope="session")
def lambda_runtime_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python 3.12 virtualenv holding only what the Lambda runtime provides: boto3 and its
    dependencies (scripts/lambda_docker/runtime-requirements.txt). No pip, no project."""
    python312 = find_python312()
    root = tmp_path_factory.mktemp("lambda-runtime") / "venv"
    subprocess.run([python312, "-m", "venv", "--without-pip", root], check=True)
    site = root / "lib/python3.12/site-packages"
    done = subprocess.run(
        [python312, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--only-binary=:all:", "--target", site, "-r", RUNTIME_REQUIREMENTS],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return root / "bin/python"


@pytest.fixture(scope="session")
def built_x86_64(tools: Tools, app_copy: AppCopy) -> Build:
    """The same application built for x86_64 (LambdaArchitecture=x86_64), runnable here."""
    build_dir = app_copy.root / ".aws-sam/build-x86_64"
    done = sam_build(tools, app_copy.root, build_dir, "x86_64")
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"sam build (x86_64) failed:\n{output}"
    return Build(app_copy.root, build_dir, output)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[StackInfo]:
    """One local stack for the deploy tests that run the artifacts against it."""
    with running_local_stack("cdc-deploy-stack-") as info:
        yield info


# --- the AWS API actions the deployed code performs (tests/deploy/api_recorder) ---------------

API_RECORDER_DIR = REPO / "tests/deploy/api_recorder"
RECORDED_CALLS_TEST = "test_recorded_api_calls_are_allowed_to_their_roles"


def _start_api_recording() -> Path:
    """Record this session's calls, in-process and in Python subprocesses (PYTHONPATH)."""
    if not os.environ.get("CDC_API_CALLS_FILE"):
        handle, name = tempfile.mkstemp(prefix="cdc-api-calls-", suffix=".jsonl")
        os.close(handle)
        os.environ["CDC_API_CALLS_FILE"] = name
        atexit.register(Path(name).unlink, missing_ok=True)
    paths = [str(API_RECORDER_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    os.environ["PYTHONPATH"] = ":".join(dict.fromkeys(paths))
    spec = importlib.util.spec_from_file_location(
        "cdc_api_recorder", API_RECORDER_DIR / "sitecustomize.py")
    assert spec and spec.loader
    recorder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recorder)
    recorder.install()
    return Path(os.environ["CDC_API_CALLS_FILE"])


API_CALLS_FILE = _start_api_recording()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The recorded-calls check runs last: after the functional and end-to-end tests."""
    last = [item for item in items if item.name == RECORDED_CALLS_TEST]
    if last:
        items[:] = [item for item in items if item.name != RECORDED_CALLS_TEST] + last


@pytest.fixture(scope="session")
def recorded_api_calls(request: pytest.FixtureRequest) -> Path:
    """The session's recording, or, when no functional or end-to-end test ran in this session
    (``pytest tests/deploy``), a recording of the functional tests of the deployed entry points,
    made now in a pytest subprocess."""
    session_items = request.session.items
    ran_code_tests = any("/functional/" in item.nodeid or "/e2e/" in item.nodeid
                         or item.nodeid.startswith(("tests/functional", "tests/e2e"))
                         for item in session_items)
    if ran_code_tests:
        return API_CALLS_FILE
    handle, name = tempfile.mkstemp(prefix="cdc-api-calls-sub-", suffix=".jsonl")
    os.close(handle)
    atexit.register(Path(name).unlink, missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/functional/test_kinesis_consumer.py", "tests/functional/test_schema_migrator.py",
         "tests/functional/test_glue_batch.py", "tests/functional/test_batch_applier.py"],
        cwd=REPO, env={**os.environ, "CDC_API_CALLS_FILE": name},
        capture_output=True, text=True, timeout=1800, check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:]
    return Path(name)
