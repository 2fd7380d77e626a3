"""The SharedLayer's third-party requirements, and the pruning of what the runtime provides.

Single source of truth: pyproject.toml -- the project's runtime `dependencies` plus the
`lambda` extra (aws-lambda-powertools with its `tracer` extra) -- minus boto3 and what comes
with it, which the Lambda python3.12 runtime provides. Used by layers/shared/Makefile during
`sam build`:

    python layer_requirements.py                 # the requirements, shell-quoted, one a line
    python layer_requirements.py --prune DIR     # after pip: remove runtime-provided packages

pip installs dependencies of dependencies too (aws-xray-sdk pulls in botocore), so the layer
would carry a second botocore that shadows the runtime's (/opt/python comes first on sys.path)
and pairs it with the runtime's boto3. ``--prune`` removes every installed distribution the
runtime provides, file by file from its RECORD.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import tomllib
from pathlib import Path

# boto3 and its dependency closure, all in the python3.12 runtime's /var/lang site-packages.
PROVIDED_BY_RUNTIME = {
    "boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six",
}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [
        *project.get("dependencies", []),
        *project.get("optional-dependencies", {}).get("lambda", []),
    ]
    out = []
    for requirement in wanted:
        name = _normalized(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])
        if name not in PROVIDED_BY_RUNTIME and requirement not in out:
            out.append(requirement)
    return out


def _distribution_name(dist_info: Path) -> str:
    for line in (dist_info / "METADATA").read_text(errors="replace").splitlines():
        if line.startswith("Name:"):
            return _normalized(line.partition(":")[2].strip())
    return ""


def prune_runtime_provided(target: Path) -> list[str]:
    """Delete the distributions in ``target`` that the runtime provides; return their names."""
    removed = []
    for dist_info in sorted(target.glob("*.dist-info")):
        name = _distribution_name(dist_info)
        if name not in PROVIDED_BY_RUNTIME:
            continue
        for line in (dist_info / "RECORD").read_text().splitlines():
            relative = line.rsplit(",", 2)[0]
            path = (target / relative).resolve()
            if path.is_relative_to(target.resolve()) and path.is_file():
                path.unlink()
        shutil.rmtree(dist_info, ignore_errors=True)
        removed.append(name)
    # Console scripts (jmespath's jp.py, ...): pip's --target puts them in bin/, which is not
    # on a layer's PATH (/opt/bin is) and whose RECORD paths point outside the target.
    shutil.rmtree(target / "bin", ignore_errors=True)
    for directory in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return removed


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--prune":
        print("pruned (provided by the Lambda runtime):",
              " ".join(prune_runtime_provided(Path(sys.argv[2]))) or "nothing")
        raise SystemExit(0)
    default = Path(__file__).resolve().parents[2] / "pyproject.toml"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    print("\n".join(shlex.quote(r) for r in layer_requirements(path)))
