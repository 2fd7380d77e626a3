"""The template and the code agree, in every deploy mode, on the translated template.

The translated template (`sam package` of the build, then aws-sam-translator: what
CloudFormation receives, Globals merged into each function) is evaluated for each Redshift mode,
and what is still a reference to a stack resource becomes a concrete stand-in value
(``arn:aws:test:...:<LogicalId>``), so every value is exactly what the template sets, not
retyped here:

- the Kinesis consumer's environment, the batch applier's and the Glue job's arguments pass
  the code's settings validation (``shared.settings.PipelineSettings.from_mapping``,
  ``ApplierSettings.from_mapping``, ``shared.glue.arguments.GlueJobSettings``), and the
  schema migration's properties make a valid Data API target that authenticates the way the
  mode needs (admin secret, DbUser or the IAM identity) and names the consumers' secret;
- each role may read exactly the secrets it needs, and has the credential actions its
  authentication needs (the Data API reads a ``SecretArn`` and fetches temporary credentials
  with the caller's permissions: "Authorizing access to the Amazon Redshift Data API",
  https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-access.html);
- every AWS API action the deployed entry points performed during this session's functional
  and end-to-end tests (tests/deploy/api_recorder) is allowed by the policy of the role that
  runs it, and no action is granted on ``*`` without a condition.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shared.data_api import DataApiTarget
from shared.glue.arguments import GlueJobSettings, parse_job_arguments
from shared.settings import ApplierSettings, PipelineSettings
from tests.deploy.cfn_model import ACCOUNT, REGION, Evaluator, iter_policy_statements

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rs-admin-AbCdEf"
MODES = {
    "CreateServerless": {"RedshiftMode": "CreateServerless"},
    "ExistingServerlessIam": {"RedshiftMode": "ExistingServerless",
                              "RedshiftWorkgroupName": "analytics"},
    "ExistingServerlessSecret": {"RedshiftMode": "ExistingServerless",
                                 "RedshiftWorkgroupName": "analytics",
                                 "RedshiftSecretArn": SECRET},
    "ExistingClusterSecret": {"RedshiftMode": "ExistingCluster",
                              "RedshiftClusterIdentifier": "analytics-cluster",
                              "RedshiftSecretArn": SECRET},
    "ExistingClusterDbUser": {"RedshiftMode": "ExistingCluster",
                              "RedshiftClusterIdentifier": "analytics-cluster",
                              "RedshiftDbUser": "cdc_admin"},
    "ExistingClusterIam": {"RedshiftMode": "ExistingCluster",
                           "RedshiftClusterIdentifier": "analytics-cluster"},
}
CREDENTIAL_ACTIONS = {
    "redshift-serverless:GetCredentials",
    "redshift:GetClusterCredentials",
    "redshift:GetClusterCredentialsWithIAM",
}
# Operations whose IAM action has another name ("Actions, resources, and condition keys for
# Amazon S3" / "... for Amazon SQS", Service Authorization Reference).
IAM_ACTION_OF = {
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
}
# Actions that support no resource-level permission ("*" only), each narrowed by a condition.
STAR_ONLY = {"redshift-data:DescribeStatement", "redshift-data:GetStatementResult",
             "redshift-data:CancelStatement", "cloudwatch:PutMetricData"}
PSEUDO_PARAMETERS = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
                     "AWS::StackName": "cdc-stack", "AWS::URLSuffix": "amazonaws.com"}


def stand_in(logical_id: str, attribute: str | None = None, kind: str = "") -> str:
    """A concrete value for ``Ref``/``Fn::GetAtt`` of a stack resource, shaped like AWS's."""
    name = f"cdc-stack-{logical_id}"
    shaped = {
        ("AWS::Kinesis::Stream", "Arn"): f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}",
        ("AWS::SQS::Queue", None): f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}",
        ("AWS::SQS::Queue", "Arn"): f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
        ("AWS::SecretsManager::Secret", None):
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf",
        ("AWS::IAM::Role", "Arn"): f"arn:aws:iam::{ACCOUNT}:role/{name}",
        ("AWS::S3::Bucket", None): name.lower(),
        ("AWS::S3::Bucket", "Arn"): f"arn:aws:s3:::{name.lower()}",
        ("AWS::KMS::Key", "Arn"): f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}",
    }
    suffix = f"/{attribute}" if attribute else ""
    return shaped.get((kind, attribute), f"arn:aws:test:{REGION}:{ACCOUNT}:{logical_id}{suffix}")


class Resolved:
    """The translated template for one parameter set, every value made concrete."""

    def __init__(self, translated: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self.evaluator = Evaluator(translated, parameters)
        self.types = {name: res["Type"] for name, res in translated["Resources"].items()}
        self.resources = {name: self.concrete(res)
                          for name, res in self.evaluator.resources().items()}

    def concrete(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.concrete(x) for x in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg in self.evaluator.params:
                    return self.evaluator.params[arg]
                return PSEUDO_PARAMETERS.get(arg) or self.ref(arg)
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.att(resource, attribute)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                values = {k: self.concrete(v) for k, v in variables.items()}

                def sub(match: re.Match[str]) -> str:
                    name = match.group(1)
                    if name in values:
                        return str(values[name])
                    if "." in name:
                        return self.att(*name.split(".", 1))
                    return str(self.concrete({"Ref": name}))

                return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", sub, text)
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(i) for i in self.concrete(items))
        return {k: self.concrete(v) for k, v in node.items()}

    def ref(self, logical_id: str) -> str:
        return stand_in(logical_id, None, self.types.get(logical_id, ""))

    def att(self, logical_id: str, attribute: str) -> str:
        return stand_in(logical_id, attribute, self.types.get(logical_id, ""))

    def environment(self, function: str) -> dict[str, str]:
        variables = self.resources[function]["Properties"]["Environment"]["Variables"]
        return {name: str(value) for name, value in variables.items()}

    def statements(self, role: str) -> list[dict[str, Any]]:
        """Every IAM statement of the role: its inline policies and its managed policies."""
        props = self.resources[role]["Properties"]
        found = [st for name, st in iter_policy_statements({role: self.resources[role]})]
        managed = {self.ref(name): name for name, res in self.resources.items()
                   if res["Type"] == "AWS::IAM::ManagedPolicy"}
        for arn in props.get("ManagedPolicyArns", []):
            policy = managed[arn]
            found += [st for _, st in iter_policy_statements({policy: self.resources[policy]})]
        return found

    def allows(self, role: str, action: str) -> list[Any]:
        """The resources on which the role is allowed ``action`` (empty: not allowed)."""
        resources: list[Any] = []
        for statement in self.statements(role):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            if statement["Effect"] == "Allow" and any(
                    fnmatch.fnmatchcase(action, pattern) for pattern in actions):
                granted = statement["Resource"]
                resources += granted if isinstance(granted, list) else [granted]
        return resources


@pytest.fixture(scope="module", params=sorted(MODES))
def mode(request: pytest.FixtureRequest, translated: dict[str, Any]) -> tuple[str, Resolved]:
    return request.param, Resolved(translated, MODES[request.param])


def test_consumer_configuration_passes_the_settings_validation(
    mode: tuple[str, Resolved],
) -> None:
    name, resolved = mode
    settings = PipelineSettings.from_mapping(resolved.environment("KinesisConsumerFunction"))
    assert settings.target.secret_arn == resolved.ref("RedshiftConsumerSecret")
    assert settings.target.db_user is None
    if name.startswith("ExistingCluster"):
        assert settings.target.cluster_identifier == "analytics-cluster"
    elif name.startswith("ExistingServerless"):
        assert settings.target.workgroup_name == "analytics"


def test_batch_applier_configuration_passes_the_settings_validation(
    mode: tuple[str, Resolved],
) -> None:
    """The applier reads the landed batches where the consumer lands them, and writes as the
    same database user; the consumer announces them on the applier's queue."""
    _, resolved = mode
    environment = resolved.environment("BatchApplierFunction")
    applier = ApplierSettings.from_mapping(environment)
    consumer = PipelineSettings.from_mapping(resolved.environment("KinesisConsumerFunction"))
    assert applier.target == consumer.target
    assert (applier.staging_bucket, applier.staging_prefix, applier.copy_iam_role_arn) == (
        consumer.staging_bucket, consumer.staging_prefix, consumer.copy_iam_role_arn)
    # Least privilege: nothing of what the applier does not use.
    assert not {"HMAC_KEY_SECRET_ARN", "DEAD_LETTER_QUEUE_URL", "APPLIER_QUEUE_URL"} & set(
        environment)
    assert consumer.applier_queue_url == resolved.ref("ApplierQueue")
    queue = resolved.att("ApplierQueue", "Arn")
    assert queue in resolved.allows("KinesisConsumerRole", "sqs:SendMessage")
    mapping = resolved.resources["ApplierEventSourceMapping"]["Properties"]
    assert mapping["EventSourceArn"] == queue
    # What the SQS event source mapping does with the function's role ("Using Lambda with
    # Amazon SQS", execution role permissions), on the applier's queue only.
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                   "sqs:ChangeMessageVisibility"):
        assert resolved.allows("BatchApplierRole", action) == [queue], action


def test_glue_job_arguments_pass_the_settings_validation(mode: tuple[str, Resolved]) -> None:
    _, resolved = mode
    arguments = resolved.resources["GlueStreamingJob"]["Properties"]["DefaultArguments"]
    # Glue hands the job its arguments as `--NAME value` pairs after the script's name.
    argv = ["cdc_streaming_job.py"]
    for argument, value in arguments.items():
        argv += [argument, str(value)]
    settings = GlueJobSettings.from_mapping(parse_job_arguments(argv)).pipeline
    consumer = PipelineSettings.from_mapping(resolved.environment("KinesisConsumerFunction"))
    assert settings.target == consumer.target  # both consumers are the same database user


def test_schema_migration_authenticates_as_the_mode_needs(mode: tuple[str, Resolved]) -> None:
    name, resolved = mode
    properties = {k: str(v) for k, v in resolved.resources["SchemaMigration"]["Properties"].items()}
    target = DataApiTarget(
        database=properties["Database"],
        workgroup_name=properties.get("WorkgroupName") or None,
        cluster_identifier=properties.get("ClusterIdentifier") or None,
        secret_arn=properties.get("SecretArn") or None,
        db_user=properties.get("DbUser") or None,
    )
    auth = {k: v for k, v in target.call_args().items() if k in ("SecretArn", "DbUser")}
    expected = {
        "CreateServerless": {"SecretArn": resolved.ref("RedshiftAdminSecret")},
        "ExistingServerlessIam": {},
        "ExistingServerlessSecret": {"SecretArn": SECRET},
        "ExistingClusterSecret": {"SecretArn": SECRET},
        "ExistingClusterDbUser": {"DbUser": "cdc_admin"},
        "ExistingClusterIam": {},
    }
    assert auth == expected[name]
    assert properties["ConsumerSecretArn"] == resolved.ref("RedshiftConsumerSecret")


def _secret_resources(resolved: Resolved, role: str) -> set[str]:
    return {str(r) for r in resolved.allows(role, "secretsmanager:GetSecretValue")}


def test_each_role_reads_only_the_secrets_it_needs(mode: tuple[str, Resolved]) -> None:
    name, resolved = mode
    consumer_secrets = {resolved.ref("HmacKeySecret"), resolved.ref("RedshiftConsumerSecret")}
    assert _secret_resources(resolved, "KinesisConsumerRole") == consumer_secrets
    assert _secret_resources(resolved, "GlueJobRole") == consumer_secrets
    admin = {"CreateServerless": {resolved.ref("RedshiftAdminSecret")},
             "ExistingServerlessSecret": {SECRET}, "ExistingClusterSecret": {SECRET}}
    assert _secret_resources(resolved, "SchemaMigratorRole") == (
        {resolved.ref("RedshiftConsumerSecret")} | admin.get(name, set()))
    assert _secret_resources(resolved, "DeployHelperRole") == set()
    # The applier's Data API calls name the consumers' secret; it never reads the HMAC key.
    assert _secret_resources(resolved, "BatchApplierRole") == {
        resolved.ref("RedshiftConsumerSecret")}
    # The secrets the consumers' and the migrator's Data API calls name are readable by them.
    consumer_env = resolved.environment("KinesisConsumerFunction")
    assert consumer_env["REDSHIFT_SECRET_ARN"] in _secret_resources(resolved, "KinesisConsumerRole")
    migrator_secret = str(resolved.resources["SchemaMigration"]["Properties"]["SecretArn"])
    if migrator_secret:
        assert migrator_secret in _secret_resources(resolved, "SchemaMigratorRole")
    # ... and decryptable: the stack's secrets are encrypted with its DataKey.
    for role in ("KinesisConsumerRole", "GlueJobRole", "SchemaMigratorRole", "BatchApplierRole"):
        assert resolved.att("DataKey", "Arn") in resolved.allows(role, "kms:Decrypt"), role


def test_only_the_migrator_gets_the_credentials_its_mode_needs(mode: tuple[str, Resolved]) -> None:
    name, resolved = mode
    needed = {"ExistingServerlessIam": "redshift-serverless:GetCredentials",
              "ExistingClusterDbUser": "redshift:GetClusterCredentials",
              "ExistingClusterIam": "redshift:GetClusterCredentialsWithIAM"}.get(name)
    for action in CREDENTIAL_ACTIONS:
        granted = bool(resolved.allows("SchemaMigratorRole", action))
        assert granted == (action == needed), (name, action)
        for role in ("KinesisConsumerRole", "GlueJobRole", "DeployHelperRole",
                     "BatchApplierRole"):
            assert not resolved.allows(role, action), (role, action)


def test_no_action_on_a_wildcard_resource_without_a_condition(mode: tuple[str, Resolved]) -> None:
    _, resolved = mode
    roles = [n for n, r in resolved.resources.items() if r["Type"] == "AWS::IAM::Role"]
    for role in roles:
        for statement in resolved.statements(role):
            granted = statement["Resource"]
            granted = granted if isinstance(granted, list) else [granted]
            if "*" not in granted:
                continue
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            assert set(actions) <= STAR_ONLY, (role, actions)
            assert statement.get("Condition"), (role, actions)


# Run alone (``pytest tests/deploy``), its fixture records the functional tests of the four
# entry points in a subprocess, itself allowed 1800 s; the project's 300 s would cut it short.
@pytest.mark.timeout(1900)
def test_recorded_api_calls_are_allowed_to_their_roles(
    translated: dict[str, Any], recorded_api_calls: Path,
) -> None:
    calls = {(c["role"], c["action"]) for c in map(json.loads,
                                                     recorded_api_calls.read_text().splitlines())}
    roles = {role for role, _ in calls}
    # The functional tests exercise all four deployed entry points that call AWS.
    assert {"KinesisConsumerRole", "SchemaMigratorRole", "GlueJobRole",
            "BatchApplierRole"} <= roles, calls
    for name, parameters in MODES.items():
        resolved = Resolved(translated, parameters)
        refused = sorted(
            (role, action) for role, action in calls
            if not resolved.allows(role, IAM_ACTION_OF.get(action, action)))
        assert not refused, f"{name}: the template does not allow {refused}"
