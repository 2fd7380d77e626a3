"""The Kinesis consumer's environment on the local stack.

The consumer builds plain boto3 clients, so the local endpoints reach it only through
botocore's standard endpoint variables: ``AWS_ENDPOINT_URL_<SERVICE_ID>``, where the service
id is upper-cased with spaces and hyphens as underscores. Note Secrets Manager's:
``AWS_ENDPOINT_URL_SECRETS_MANAGER`` (service id "Secrets Manager"); botocore ignores
``AWS_ENDPOINT_URL_SECRETSMANAGER``. ``AWS_ENDPOINT_URL`` sends every other service to moto
too, so nothing the consumer might call reaches real AWS with the dummy credentials.

The configuration variables mirror template.yaml (Globals + KinesisConsumerFunction),
including the ones it sets to an empty string on this kind of deployment (a Serverless
workgroup, no cluster, no DB user): the consumer must read an empty value as unset there too.
``REDSHIFT_SECRET_ARN`` is the consumers' own user (created and granted by the schema
migrator), never the admin's: the consumer runs with least privilege, as on AWS.

``APPLIER_QUEUE_URL`` (the single applier's queue) is set only with ``applier=True`` (empty
otherwise): a consumer that has it lands its batches and leaves them to the applier, so it
belongs to runs that run the applier too (``local.cdc.LocalPipeline``). One-off invocations
(``make invoke``, ``sam local invoke``, ``cdc dlq replay``) run without it and apply inline, in
the same transaction design (``shared.redshift_writer``). The applier function gets the same
environment here and reads only its part (``shared.settings.ApplierSettings``: the warehouse,
the staging bucket and the COPY role; template.yaml gives it no more).

What template.yaml sets on one function alone, ``POWERTOOLS_SERVICE_NAME`` (the ``service``
dimension of its metrics and the ``service`` key of its logs), follows the handler:
``handler_environment(info, handler=...)`` gives that function's, and every local execution
environment of a function (``local.event_source_mapping.environments``) sets its own
(``function_variables``), as Lambda gives each function its own configuration.
"""

from __future__ import annotations

import shlex

from local.stack.state import ACCESS_KEY_ID, SECRET_ACCESS_KEY, StackInfo

# Service-specific endpoint variables, exactly as botocore names them.
ENDPOINT_VARIABLES = {
    "redshift-data": "AWS_ENDPOINT_URL_REDSHIFT_DATA",
    "s3": "AWS_ENDPOINT_URL_S3",
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "secretsmanager": "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "kinesis": "AWS_ENDPOINT_URL_KINESIS",
    "cloudformation": "AWS_ENDPOINT_URL_CLOUDFORMATION",
    "sts": "AWS_ENDPOINT_URL_STS",
}

# Lambda's ``Handler`` of each function in template.yaml as the local runs name it (module path
# from the repository root), and the POWERTOOLS_SERVICE_NAME the template gives that function
# (tests/deploy/test_local_environment.py keeps the two in step).
CONSUMER_HANDLER = "functions.kinesis_consumer.app.lambda_handler"
APPLIER_HANDLER = "functions.batch_applier.app.lambda_handler"
MIGRATOR_HANDLER = "functions.schema_migrator.app.lambda_handler"
SERVICE_NAMES = {
    CONSUMER_HANDLER: "cdc-kinesis-consumer",
    APPLIER_HANDLER: "cdc-batch-applier",
    MIGRATOR_HANDLER: "cdc-schema-migrator",
}
# The same functions by their logical id in template.yaml (``sam local invoke <id>``).
HANDLERS_BY_LOGICAL_ID = {
    "KinesisConsumerFunction": CONSUMER_HANDLER,
    "BatchApplierFunction": APPLIER_HANDLER,
    "SchemaMigratorFunction": MIGRATOR_HANDLER,
}

# Variables of the caller's environment that would stop the stack's endpoints or credentials
# from applying; ``local.invoke`` removes them before it calls the handler.
CONFLICTING_VARIABLES = (
    "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def function_variables(handler: str) -> dict[str, str]:
    """The variables template.yaml sets on the function of ``handler`` alone (none for a
    handler that is no function of the template, such as a test's)."""
    service = SERVICE_NAMES.get(handler)
    return {"POWERTOOLS_SERVICE_NAME": service} if service else {}


def handler_environment(info: StackInfo, applier: bool = False,
                        handler: str = CONSUMER_HANDLER) -> dict[str, str]:
    """Every variable the consumer reads, plus endpoints, region and dummy credentials; with
    ``applier``, the applier's queue too (the consumer then lands for the applier). The
    function's own variables are those of ``handler`` (default: the Kinesis consumer)."""
    resources = info.resources
    env = {
        "AWS_DEFAULT_REGION": info.region,
        "AWS_REGION": info.region,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_ENDPOINT_URL": info.moto_endpoint,
    }
    for service, variable in ENDPOINT_VARIABLES.items():
        env[variable] = (
            info.redshift_data_endpoint if service == "redshift-data" else info.moto_endpoint
        )
    env.update({
        "HMAC_KEY_SECRET_ARN": resources.hmac_secret_arn,
        "REDSHIFT_WORKGROUP_NAME": info.workgroup_name,
        "REDSHIFT_CLUSTER_IDENTIFIER": "",
        "REDSHIFT_DATABASE": info.database,
        "REDSHIFT_SECRET_ARN": resources.consumer_secret_arn,
        "REDSHIFT_DB_USER": "",
        "STAGING_BUCKET": resources.staging_bucket,
        "STAGING_PREFIX": resources.staging_prefix,
        "COPY_IAM_ROLE_ARN": resources.copy_role_arn,
        "DEAD_LETTER_QUEUE_URL": resources.dead_letter_queue_url,
        "PIPELINE_SPEC_PATH": info.spec_path,
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAMES[CONSUMER_HANDLER],
        "POWERTOOLS_METRICS_NAMESPACE": "CdcRedshiftUpserts",
        "LOG_LEVEL": "INFO",
    })
    env.update(function_variables(handler))
    # Empty without the applier (read as unset, as the template sets it on the Glue path), so
    # the template's own value cannot reach a one-off ``sam local invoke`` either.
    env["APPLIER_QUEUE_URL"] = resources.applier_queue_url if applier else ""
    return env


def export_lines(env: dict[str, str]) -> str:
    """``export NAME=value`` lines a POSIX shell can ``eval``."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in env.items())
