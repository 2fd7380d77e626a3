"""The template passes `cfn-lint` and `sam validate --lint` with no rule ignored."""

from __future__ import annotations

from tests.deploy.cfn_model import REPO, TEMPLATE
from tests.deploy.deploy_helpers import Tools


def test_template_has_no_lint_ignores() -> None:
    text = TEMPLATE.read_text()
    assert "cfn-lint" not in text  # no Metadata cfn-lint ignore_checks anywhere
    assert not (REPO / ".cfnlintrc").exists()
    assert not (REPO / ".cfnlintrc.yaml").exists()


def test_cfn_lint_is_clean(tools: Tools) -> None:
    done = tools.run([tools.cfn_lint, "--format", "parseable", TEMPLATE], cwd=REPO)
    assert done.returncode == 0, f"cfn-lint findings:\n{done.stdout}{done.stderr}"


def test_sam_validate_lint(tools: Tools) -> None:
    # No AWS credentials are needed: the template uses no SAM policy templates.
    done = tools.run(
        [tools.sam, "validate", "--lint", "--template-file", TEMPLATE],
        cwd=REPO,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    assert done.returncode == 0, f"sam validate --lint failed:\n{done.stdout}{done.stderr}"
    assert "is a valid SAM Template" in done.stdout + done.stderr
