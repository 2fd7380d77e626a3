"""``make sam-invoke EVENT=events/<name>.json``: the built Kinesis consumer in the Lambda container.

    python scripts/sam_invoke.py events/inserts.json [--state-dir DIR] [--app-dir DIR]
                                 [--function KinesisConsumerFunction] [--skip-build]

1. starts the local stack if it does not run (as ``make invoke`` does);
2. starts the project's dockerd and builds the python3.12 base image if missing
   (scripts/lambda_docker.sh: cached, so only the first run pays);
3. ``sam build`` of the application for x86_64 (scripts/sam_build.sh, into
   ``.aws-sam/local-x86_64`` so a deploy build is left alone): the artifacts ``sam deploy``
   ships, for the architecture of this machine;
4. ``sam local invoke`` with the template's own configuration, and ``--env-vars`` pointing the
   endpoint variables the template declares (``AWS_ENDPOINT_URL_<SERVICE>``, empty on AWS) and
   the resource names at the local stack; ``skip_pull_image`` comes from samconfig.toml.

``sam local invoke`` exits 0 even when the function fails, so this reads the function's
response: stdout gets it as JSON, and the exit status is 1 when it holds an ``errorType``
(``Runtime.ImportModuleError``, an unhandled exception, ...), 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from local.stack import DEFAULT_STATE_DIR, ensure_stack, handler_environment  # noqa: E402
from local.stack.environment import (  # noqa: E402
    CONFLICTING_VARIABLES,
    CONSUMER_HANDLER,
    HANDLERS_BY_LOGICAL_ID,
)

ARCHITECTURE = "x86_64"
BUILD_DIR = Path(".aws-sam/local-x86_64")


def sam_binary() -> str:
    local = REPO / ".venv-tools/bin/sam"
    return str(local) if local.exists() else "sam"


def docker_host() -> str:
    out = subprocess.run(["bash", str(REPO / "scripts/lambda_docker.sh"), "env"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


def function_response(stdout: str) -> Any:
    """The function's response: the last line of sam's stdout that is JSON."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise ValueError("sam local invoke printed no response")


def failed(response: Any) -> bool:
    return isinstance(response, dict) and "errorType" in response


def run(event: Path, state_dir: Path, app_dir: Path, function: str, build: bool = True) -> int:
    stack_env = handler_environment(
        ensure_stack(state_dir), handler=HANDLERS_BY_LOGICAL_ID.get(function, CONSUMER_HANDLER))
    subprocess.run(["bash", str(REPO / "scripts/lambda_docker.sh"), "image"], check=True)
    build_dir = app_dir / BUILD_DIR
    if build:
        subprocess.run(
            ["bash", str(REPO / "scripts/sam_build.sh"), "--build-dir", str(build_dir)],
            check=True, stdout=sys.stderr,
            env={**os.environ, "APP_DIR": str(app_dir), "LAMBDA_ARCHITECTURE": ARCHITECTURE},
        )
    env = {name: value for name, value in os.environ.items() if name not in CONFLICTING_VARIABLES}
    env.update({
        # SAM hands its own credentials and region to the container: the stack's dummy ones.
        "AWS_ACCESS_KEY_ID": stack_env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": stack_env["AWS_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": stack_env["AWS_DEFAULT_REGION"],
        "DOCKER_HOST": docker_host(),
        "SAM_CLI_TELEMETRY": "0",
    })
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as env_vars:
        json.dump({function: stack_env}, env_vars)
    try:
        done = subprocess.run(
            [sam_binary(), "local", "invoke", function,
             "--template-file", str(build_dir / "template.yaml"),
             "--config-file", str(REPO / "samconfig.toml"),
             "--event", str(event.resolve()), "--env-vars", env_vars.name,
             "--parameter-overrides", f"LambdaArchitecture={ARCHITECTURE}"],
            cwd=app_dir, env=env, capture_output=True, text=True, check=False, timeout=900,
        )
    finally:
        os.unlink(env_vars.name)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        print(f"sam local invoke failed with exit status {done.returncode}", file=sys.stderr)
        return done.returncode
    response = function_response(done.stdout)
    print(json.dumps(response, indent=2))
    if failed(response):
        print(f"the function failed: {response['errorType']}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("event", help="a Kinesis event file, e.g. events/inserts.json")
    parser.add_argument("--state-dir", type=Path, default=REPO / DEFAULT_STATE_DIR)
    parser.add_argument("--app-dir", type=Path, default=REPO,
                        help="the application to build (default: this checkout)")
    parser.add_argument("--function", default="KinesisConsumerFunction")
    parser.add_argument("--skip-build", action="store_true",
                        help=f"invoke the existing build in APP_DIR/{BUILD_DIR}")
    args = parser.parse_args(argv)
    if not args.event.strip():
        parser.error("no event; use make sam-invoke EVENT=events/<name>.json")
    try:
        return run(Path(args.event), args.state_dir, args.app_dir.resolve(), args.function,
                   build=not args.skip_build)
    except subprocess.CalledProcessError as exc:
        print(f"sam_invoke: {' '.join(map(str, exc.cmd))} failed with exit status "
              f"{exc.returncode}", file=sys.stderr)
        return exc.returncode or 1


if __name__ == "__main__":
    sys.exit(main())
