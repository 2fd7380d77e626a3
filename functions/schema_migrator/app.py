"""CloudFormation custom resource: create and migrate the warehouse schema on deploy.

On Create and Update it runs the project's idempotent migrations (``shared.migrations``)
through the Redshift Data API, so ``sam deploy`` alone leaves the warehouse ready. Delete
leaves the warehouse untouched (dropping analysts' tables is never a deploy side effect).
Every outcome, including an exception, is reported back to CloudFormation.

Properties: ``Database``, ``WorkgroupName`` or ``ClusterIdentifier``, and how the migrator
authenticates (``SecretArn``, ``DbUser``, or neither for its IAM identity), the optional
``PipelineSpecPath``, and the optional ``ConsumerSecretArn``: the secret (``username``,
``password``) of the consumers' database user, which the migrator creates when missing and
grants exactly what the consumers need on everything it created (``shared.warehouse_grants``),
on every run.
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
from shared.warehouse_grants import ConsumerLogin, GrantError

logger = Logger()
PHYSICAL_ID = "warehouse-schema"


def consumer_login(secrets_client: Any, secret_arn: str) -> ConsumerLogin:
    """The consumers' user from its secret (``{"username": ..., "password": ...}``)."""
    value = secrets_client.get_secret_value(SecretId=secret_arn)["SecretString"]
    try:
        fields = json.loads(value)
        return ConsumerLogin(username=str(fields["username"]), password=str(fields["password"]))
    except (ValueError, KeyError, TypeError):
        raise GrantError("the consumer secret must be JSON with a username and a "
                         "password") from None


def run_migration(properties: dict[str, Any], client: Any,
                  secrets_client: Any = None) -> dict[str, Any]:
    """Migrate the warehouse named by the resource properties; return what was done."""
    target = DataApiTarget(
        database=str(properties["Database"]),
        workgroup_name=properties.get("WorkgroupName") or None,
        cluster_identifier=properties.get("ClusterIdentifier") or None,
        secret_arn=properties.get("SecretArn") or None,
        db_user=properties.get("DbUser") or None,
    )
    spec = load_spec(properties.get("PipelineSpecPath") or None)
    consumer_secret = properties.get("ConsumerSecretArn") or None
    consumer = None
    if consumer_secret:
        consumer = consumer_login(secrets_client or boto3.client("secretsmanager"),
                                  str(consumer_secret))
    plan = migrate(RedshiftDataApi(client, target), spec, consumer)
    data = {"Statements": len(plan.statements), "RebuiltTargets": ",".join(plan.rebuild_targets)}
    if consumer is not None:
        data["ConsumerUser"] = consumer.username
    return data


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
