"""The SharedLayer's third-party requirements, and the check that it carries one whole AWS SDK.

Single source of truth: pyproject.toml -- the project's runtime `dependencies` (the shared
core's, among them boto3 and botocore, pinned to the SDK the project develops and tests with)
plus the `lambda` extra (aws-lambda-powertools with its `tracer` extra). Used by
layers/shared/Makefile during `sam build`:

    python layer_requirements.py                 # the requirements, shell-quoted, one a line
    python layer_requirements.py --check DIR     # after pip: one whole SDK in DIR, tidied

Why the layer ships the SDK although the python3.12 runtime has one: the runtime's boto3 is
whatever version Lambda put in that region at that time ("Runtime-included SDK versions",
Building Lambda functions with Python, https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html),
so neither what the tests ran nor the API's newer parameters (the Data API's WaitTimeSeconds,
shared/data_api.py) are certain there. AWS's advice: "To lock an SDK version and make it
immutable, it's recommended that you create a Lambda layer with a specific version of an SDK"
("Managing AWS SDKs in Lambda functions", AWS Lambda Operator Guide).

The layer must carry ONE consistent SDK, never a mix with the runtime's: /opt/python comes
before the runtime's site-packages on sys.path ("Packaging your layer content", layer paths),
so whatever part of the SDK's closure the layer holds shadows the runtime's copy while the
rest still comes from the runtime -- a botocore 1.44 under the runtime's boto3 1.40, say (what
aws-xray-sdk's own dependency on botocore would bring alone). ``--check`` fails the build
unless the layer holds every distribution of SDK_DISTRIBUTIONS, each once.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

# boto3 and its dependency closure on CPython 3.12 (boto3: botocore, s3transfer, jmespath;
# botocore: jmespath, python-dateutil, urllib3; python-dateutil: six), as pip resolves it; the
# python3.12 runtime has its own copy of each in /var/lang's site-packages.
SDK_DISTRIBUTIONS = frozenset({
    "boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six",
})


class IncompleteSdk(Exception):
    """The layer holds part of the SDK only, or a distribution twice."""


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_requirements(pyproject: Path) -> list[str]:
    """pyproject's runtime dependencies and its `lambda` extra, in order, without repeats."""
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [
        *project.get("dependencies", []),
        *project.get("optional-dependencies", {}).get("lambda", []),
    ]
    return list(dict.fromkeys(wanted))


def _distribution_name(dist_info: Path) -> str:
    for line in (dist_info / "METADATA").read_text(errors="replace").splitlines():
        if line.startswith("Name:"):
            return normalized(line.partition(":")[2].strip())
    return ""


def installed_distributions(target: Path) -> dict[str, list[str]]:
    """{normalized name: [version, ...]} of the distributions pip installed in ``target``."""
    found: dict[str, list[str]] = {}
    for dist_info in sorted(target.glob("*.dist-info")):
        version = dist_info.name.removesuffix(".dist-info").rpartition("-")[2]
        found.setdefault(_distribution_name(dist_info), []).append(version)
    return found


def check_sdk(target: Path) -> dict[str, str]:
    """The SDK's distributions in ``target`` with their versions; ``IncompleteSdk`` unless
    every one of SDK_DISTRIBUTIONS is there exactly once."""
    installed = installed_distributions(target)
    twice = sorted(n for n in SDK_DISTRIBUTIONS if len(installed.get(n, [])) > 1)
    if twice:
        raise IncompleteSdk(f"the layer holds more than one copy of {', '.join(twice)}: "
                            f"install into an empty directory")
    missing = sorted(SDK_DISTRIBUTIONS - installed.keys())
    if missing:
        held = sorted(SDK_DISTRIBUTIONS & installed.keys())
        raise IncompleteSdk(
            f"the layer holds {', '.join(held) or 'no part of the SDK'} but not "
            f"{', '.join(missing)}: the functions would mix them with the runtime's SDK. Keep "
            f"boto3 and botocore in pyproject.toml's dependencies and regenerate runtime.lock "
            f"(python layers/shared/lock_runtime.py > layers/shared/runtime.lock)")
    return {name: installed[name][0] for name in sorted(SDK_DISTRIBUTIONS)}


def tidy(target: Path) -> None:
    """Remove what pip's --target leaves that a layer cannot use: console scripts (jmespath's
    jp.py, ...) go to bin/, which is not on a layer's PATH (/opt/bin is) and whose RECORD paths
    point outside the target; then empty directories."""
    shutil.rmtree(target / "bin", ignore_errors=True)
    for directory in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        directory = Path(sys.argv[2])
        try:
            sdk = check_sdk(directory)
        except IncompleteSdk as exc:
            raise SystemExit(f"layer_requirements.py: {exc}") from None
        tidy(directory)
        print("the layer's SDK:", " ".join(f"{n}=={v}" for n, v in sdk.items()))
        raise SystemExit(0)
    default = Path(__file__).resolve().parents[2] / "pyproject.toml"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    print("\n".join(shlex.quote(r) for r in layer_requirements(path)))
