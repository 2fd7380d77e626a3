"""docs/deploy.md stays in step with the template it documents."""

from __future__ import annotations

import re

from tests.deploy.cfn_model import REPO, load_template

DOC = REPO / "docs/deploy.md"


def test_every_parameter_is_documented_with_its_default() -> None:
    text = DOC.read_text()
    for name, param in load_template()["Parameters"].items():
        row = re.search(rf"^\| `{name}` \| (.+?) \|", text, re.MULTILINE)
        assert row, f"{name} missing from the parameter tables of docs/deploy.md"
        default = str(param["Default"])
        assert row.group(1) == (f"`{default}`" if default else "(empty)"), name


def test_guide_covers_deploy_toggle_costs_and_teardown() -> None:
    text = DOC.read_text()
    for needle in [
        "sam deploy --guided",
        "sam deploy --config-env glue",
        "dms-vpc-role",
        "dms-cloudwatch-logs-role",
        "stop-replication-task",
        "aws s3 rm",
        "sam delete",
        "pg_drop_replication_slot",
        "$0.40",
        "$1",
        "$0.44 per DPU-hour",
        "$0.375 per RPU-hour",
        "stream-hour",
    ]:
        assert needle in text, needle
    for output in (
        "DmsReplicationTaskArn",
        "StagingBucketName",
        "GlueAssetsBucketName",
        "RedshiftCopyRoleArn",
        "DeadLetterQueueUrl",
    ):
        assert output in load_template()["Outputs"], output
        assert output in text, output
