"""CloudFormation custom resource: create and migrate the warehouse schema on deploy.

On Create and Update it runs the project's idempotent migrations (``shared.migrations``)
through the Redshift Data API, so ``sam deploy`` alone leaves the warehouse ready. Delete
leaves the warehouse untouched (dropping analysts' tables is never a deploy side effect).
Every outcome, including an exception, is reported back to CloudFormation.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.data_api import DataApiTarget, RedshiftDataApi
from shared.migrations import migrate
from shared.spec import load_spec

logger = Logger()
PHYSICAL_ID = "warehouse-schema"


def run_migration(properties: dict[str, Any], client: Any) -> dict[str, Any]:
    """Migrate the warehouse named by the resource properties; return what was done."""
    target = DataApiTarget(
        database=str(properties["Database"]),
        workgroup_name=properties.get("WorkgroupName") or None,
        cluster_identifier=properties.get("ClusterIdentifier") or None,
        secret_arn=properties.get("SecretArn") or None,
        db_user=properties.get("DbUser") or None,
    )
    spec = load_spec(properties.get("PipelineSpecPath") or None)
    plan = migrate(RedshiftDataApi(client, target), spec)
    return {"Statements": len(plan.statements), "RebuiltTargets": ",".join(plan.rebuild_targets)}


def respond(event: dict[str, Any], status: str, reason: str, data: dict[str, Any]) -> None:
    body = json.dumps({
        "Status": status,
        "Reason": reason[:3500],
        "PhysicalResourceId": event.get("PhysicalResourceId") or PHYSICAL_ID,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": data,
    }).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the pre-signed https URL CloudFormation gave
        event["ResponseURL"], data=body, method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> None:
    request_type = event.get("RequestType")
    logger.info("schema migration requested", extra={"request_type": request_type})
    try:
        data: dict[str, Any] = {}
        if request_type in ("Create", "Update"):
            data = run_migration(event["ResourceProperties"], boto3.client("redshift-data"))
            logger.info("schema migrated", extra=data)
        respond(event, "SUCCESS", f"{request_type} done", data)
    except Exception as exc:
        logger.exception("schema migration failed")
        respond(event, "FAILED", f"{type(exc).__name__}: {exc}", {})
