"""checkov and cfn-lint's informational rules on template.yaml.

checkov runs from its own virtualenv (.venv-tools/checkov, scripts/install_tools.sh). Every
finding must be listed in checkov-baseline.txt with its reason, and every line there must still
be a finding (a fixed finding leaves no stale excuse behind).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.deploy.cfn_model import REPO, TEMPLATE
from tests.deploy.deploy_helpers import Tools, install_tools

CHECKOV = REPO / ".venv-tools/checkov/bin/checkov"
BASELINE = REPO / "checkov-baseline.txt"
_LINE = re.compile(r"^(CKV2?_[A-Z0-9_]+) ([A-Za-z0-9]+): (\S.{20,})$")


@pytest.fixture(scope="module")
def checkov(tools: Tools) -> Path:
    if not CHECKOV.exists():
        if os.environ.get("DEPLOY_TESTS_NO_INSTALL"):
            pytest.fail("checkov missing: run bash scripts/install_tools.sh")
        install_tools()
    return CHECKOV


def _baseline() -> dict[tuple[str, str], str]:
    skips: dict[tuple[str, str], str] = {}
    for number, line in enumerate(BASELINE.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match, f"checkov-baseline.txt:{number}: '<check id> <logical id>: <reason>'"
        check, resource, reason = match.groups()
        assert (check, resource) not in skips, f"checkov-baseline.txt:{number}: listed twice"
        skips[(check, resource)] = reason
    return skips


def test_checkov_finds_nothing_but_the_justified_baseline(checkov: Path, tools: Tools) -> None:
    done = tools.run(
        [checkov, "-f", TEMPLATE, "--framework", "cloudformation", "-o", "json", "--quiet"],
        cwd=REPO,
        timeout=600,
    )
    assert done.returncode in (0, 1), done.stderr  # 1 = findings, judged below
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    failed = report.get("results", {}).get("failed_checks", []) if report else []
    findings = {(f["check_id"], f["resource"].split(".", 1)[1]) for f in failed}
    skips = _baseline()
    assert findings - set(skips) == set(), "fix these or justify them in checkov-baseline.txt"
    assert set(skips) - findings == set(), "no longer reported: remove from checkov-baseline.txt"
    passed = report.get("summary", {}).get("passed", 0) if report else 0
    assert passed > 100  # checkov did evaluate the template


def test_cfn_lint_informational_rules_are_clean(tools: Tools) -> None:
    done = tools.run(
        [tools.cfn_lint, "--format", "parseable", "--include-checks", "I", "--", TEMPLATE],
        cwd=REPO,
    )
    assert done.returncode == 0, f"cfn-lint findings:\n{done.stdout}{done.stderr}"
