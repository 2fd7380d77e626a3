"""The runtime lock: pinned, hashed third-party packages of the SharedLayer and the Glue job.

One file, layers/shared/runtime.lock (pip's requirements format with ``--hash``), is what both
install from:

- the SharedLayer (layers/shared/Makefile): ``pip install --require-hashes --no-deps`` of the
  lock's entries that pyproject.toml's layer requirements bring (each entry says ``# via``
  which requirement brings it), for the Lambda platform (python3.12, arm64 or x86_64). That
  includes the AWS SDK (boto3, botocore and their closure, layer_requirements.SDK_DISTRIBUTIONS)
  at the versions of the project's virtualenv: the functions run the SDK the tests ran, not
  the runtime's (layer_requirements.py says why);
- the Glue job: the Makefile downloads the wheels of the shared core's own dependencies
  (pyproject ``dependencies`` the Glue 5.0 runtime does not bring, i.e. msgspec) for Glue's
  platform (CPython 3.11, x86_64) with the same hashes into the layer's ``glue-wheels/``; the
  deploy helper publishes them to the stack's Glue assets bucket and the job installs them from
  there with ``--no-index`` (no registry at job start).

Every package carries the hashes of its wheels for all three platforms, so the one file serves
each. Regenerate after changing pyproject.toml's runtime dependencies or the virtualenv's SDK
(needs the package index; run it with the project's virtualenv, whose SDK versions it pins):

    .venv/bin/python layers/shared/lock_runtime.py > layers/shared/runtime.lock
    python layers/shared/lock_runtime.py --layer-requirements  # the layer's part (Makefile)
    python layers/shared/lock_runtime.py --glue-requirements   # the Glue job's part (Makefile)

A requirement of pyproject.toml that the lock does not cover fails the build ("regenerate").
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_requirements import (
    SDK_DISTRIBUTIONS,
    layer_requirements,
    normalized,
)

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parents[1] / "pyproject.toml"
LOCK = HERE / "runtime.lock"
# (pip --platform, --python-version): Lambda arm64 and x86_64, and AWS Glue 5.0.
PLATFORMS = (
    ("manylinux2014_aarch64", "3.12"),
    ("manylinux2014_x86_64", "3.12"),
    ("manylinux2014_x86_64", "3.11"),
)
# AWS Glue 5.0 brings its own boto3 and its dependencies ("Using Python libraries with AWS
# Glue", the modules provided in Glue 5.0); the job uses that SDK, so its wheels leave it out.
GLUE_PROVIDES = SDK_DISTRIBUTIONS
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")


class Entry(NamedTuple):
    version: str
    hashes: list[str]
    via: list[str]  # the requirements (name[extras]) that bring this package


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?\s*(.*)$")


def key(requirement: str) -> str:
    """``name[extras]`` of a requirement, normalized, without its version specifier."""
    match = _REQUIREMENT.match(requirement)
    assert match, requirement
    extras = sorted(normalized(e) for e in (match[2] or "").split(",") if e.strip())
    return normalized(match[1]) + (f"[{','.join(extras)}]" if extras else "")


def _variants(requirement: str) -> dict[str, str]:
    """{key: requirement} for the requirement and, if it has extras, its base without them, so
    a pyproject that drops an extra selects what the base alone brings."""
    match = _REQUIREMENT.match(requirement)
    assert match, requirement
    base = f"{match[1]}{match[3]}"
    return {key(requirement): requirement, key(base): base}


def glue_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The shared core's runtime requirements the Glue runtime does not bring."""
    project = tomllib.loads(pyproject.read_text())["project"]
    return [
        r for r in project["dependencies"]
        if normalized(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) not in GLUE_PROVIDES
    ]


def parse_lock(text: str) -> dict[str, Entry]:
    """{normalized name: Entry} of a lock file's text."""
    entries: dict[str, Entry] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.replace("\\\n", " ")):
        line = block.split("#", 1)[0].strip()
        if not line:
            continue
        pin = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        assert pin, f"not a pinned requirement: {line!r}"
        entries[normalized(pin.group(1))] = Entry(
            pin.group(2),
            re.findall(r"--hash=sha256:(\w+)", line),
            [v.strip() for v in re.findall(r"^\s*# via (.+)$", block, re.MULTILINE)],
        )
    return entries


def selected(entries: dict[str, Entry], requirements: list[str]) -> dict[str, Entry]:
    """The entries these requirements bring; every requirement must be in the lock."""
    keys = {key(r) for r in requirements}
    missing = sorted(k for k in keys if not any(k in e.via for e in entries.values()))
    if missing:
        raise SystemExit(f"runtime.lock does not cover {missing}: run lock_runtime.py again")
    return {n: e for n, e in entries.items() if set(e.via) & keys}


def as_requirements(entries: dict[str, Entry]) -> str:
    return "".join(
        f"{name}=={e.version} " + " ".join(f"--hash=sha256:{h}" for h in e.hashes) + "\n"
        for name, e in sorted(entries.items())
    )


def render(entries: dict[str, Entry]) -> str:
    lines = [
        "# Generated by layers/shared/lock_runtime.py from pyproject.toml: do not edit by hand.",
        "# The SharedLayer installs what its requirements bring, the Glue job what the shared",
        "# core's own requirements bring; `# via` names the pyproject requirement(s).",
    ]
    for name, e in sorted(entries.items()):
        hashes = sorted(e.hashes)
        lines.append(f"{name}=={e.version} \\")
        lines.extend(f"    --hash=sha256:{h} \\" for h in hashes[:-1])
        lines.append(f"    --hash=sha256:{hashes[-1]}")
        lines.extend(f"    # via {v}" for v in sorted(e.via))
    return "\n".join(lines) + "\n"


def development_sdk() -> dict[str, str]:
    """{name: version} of the SDK's distributions in the Python running this script: the
    project's virtualenv, whose SDK the tests run and the layer ships."""
    versions = {}
    for name in sorted(SDK_DISTRIBUTIONS):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed in {sys.executable}: run this script "
                             "with the project's virtualenv (.venv/bin/python)") from None
    return versions


def resolve(requirements: list[str], constraints: dict[str, str]) -> dict[str, Entry]:
    """Download each requirement's wheels for every platform, with ``constraints`` (name:
    exact version): one version and its hashes per package, and which requirements bring it."""
    versions: dict[str, str] = {}
    hashes: dict[str, set[str]] = {}
    via: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        pins = Path(scratch) / "constraints.txt"
        pins.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
        for via_key, requirement in (v for r in requirements for v in _variants(r).items()):
            for platform, python in PLATFORMS:
                target = Path(scratch) / "wheels"
                shutil.rmtree(target, ignore_errors=True)
                subprocess.run(  # noqa: S603 - pip with this file's own fixed arguments
                    [sys.executable, "-m", "pip", "download", "--quiet",
                     "--disable-pip-version-check", "--only-binary=:all:", "--implementation",
                     "cp", "--platform", platform, "--python-version", python, "--dest", target,
                     "--constraint", pins, requirement],
                    check=True,
                )
                for wheel in sorted(target.glob("*.whl")):
                    match = _WHEEL.match(wheel.name)
                    assert match, wheel.name
                    name, version = normalized(match["name"]), match["version"]
                    known = versions.setdefault(name, version)
                    assert known == version, f"{name}: {known} and {version} both resolved"
                    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
                    hashes.setdefault(name, set()).add(digest)
                    via.setdefault(name, set()).add(via_key)
    return {n: Entry(versions[n], sorted(hashes[n]), sorted(via[n])) for n in versions}


def main(argv: list[str]) -> int:
    if argv == ["--layer-requirements"]:
        print(as_requirements(selected(parse_lock(LOCK.read_text()),
                                       layer_requirements(PYPROJECT))), end="")
        return 0
    if argv == ["--glue-requirements"]:
        print(as_requirements(selected(parse_lock(LOCK.read_text()),
                                       glue_requirements(PYPROJECT))), end="")
        return 0
    print(render(resolve(layer_requirements(PYPROJECT), development_sdk())), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
