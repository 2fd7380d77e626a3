"""Print the SharedLayer's third-party requirements, shell-quoted, one per line.

Single source of truth: pyproject.toml -- the project's runtime `dependencies` plus the
`lambda` extra (aws-lambda-powertools) -- minus boto3/botocore, which the Lambda runtime
provides. Used by layers/shared/Makefile during `sam build`.
"""

from __future__ import annotations

import re
import shlex
import sys
import tomllib
from pathlib import Path

PROVIDED_BY_RUNTIME = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3"}


def layer_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    wanted = [
        *project.get("dependencies", []),
        *project.get("optional-dependencies", {}).get("lambda", []),
    ]
    out = []
    for requirement in wanted:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        if name not in PROVIDED_BY_RUNTIME and requirement not in out:
            out.append(requirement)
    return out


if __name__ == "__main__":
    default = Path(__file__).resolve().parents[2] / "pyproject.toml"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    print("\n".join(shlex.quote(r) for r in layer_requirements(path)))
