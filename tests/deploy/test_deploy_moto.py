"""Package the built app with `sam package`, translate it, and deploy it to moto's CloudFormation.

The chain is the real one up to the CloudFormation API: `sam build` (tests/deploy/conftest.py)
-> `sam package` uploading every artifact to moto's S3 (AWS_ENDPOINT_URL) -> aws-sam-translator
-> CreateStack/UpdateStack on moto (the in-process server of the `moto_endpoint` fixture), for
ProcessingPath=Lambda and ProcessingPath=Glue, and a switch between them on a deployed stack.

What moto cannot do, and how this test deals with it (the parts removed from moto's stack are
asserted on the translated template here and in test_template.py):

- Resource types moto's CloudFormation does not implement are removed before CreateStack and
  every Ref/GetAtt/Sub to them becomes an ARN-shaped placeholder: Secrets Manager secrets,
  Redshift Serverless namespace/workgroup, the Glue job and trigger, all DMS resources,
  CloudWatch alarms, S3 bucket policies, the SNS topic policy and subscription
  (MOTO_CANNOT_CREATE lists them; a type outside that list fails the test).
- Custom resources (schema migration, Glue library publisher, Glue run state) are removed too:
  moto would invoke their Lambda functions in a container, which needs Docker. Their handler
  is tested in test_deploy_helper.py; the schema migrator belongs to its own tests.
- moto turns AWS::NoValue inside a list into null, so the optional IAM statements (Fn::If with
  an AWS::NoValue branch) are resolved for the parameter set before CreateStack.
- moto's UpdateStack only touches resources whose template text changed and does not
  re-evaluate conditions when only parameters change; for the path switch the test resolves
  Fn::If for the new parameters in the resources whose resolved form changes (CloudFormation
  does that by itself). Only those are touched: moto fails to update a Lambda function that
  has Layers (it passes the layer object where it expects the ARN).
- moto accepts but ignores: Lambda Architectures and Layers, Kinesis StreamEncryption and
  StreamModeDetails, S3 PublicAccessBlock/Lifecycle/OwnershipControls, IAM Role
  ManagedPolicyArns; those are asserted on the translated template (here and in
  test_template.py).
"""

from __future__ import annotations

import ast
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
import yaml
from moto.cloudformation.parsing import get_model_map

from tests.deploy.cfn_model import (
    REGION,
    Evaluator,
    placeholder,
    resolve_optional_list_items,
    strip_for_moto,
)
from tests.deploy.deploy_helpers import ARTIFACT_BUCKET, AppCopy

MOTO_CANNOT_CREATE = {
    "AWS::SecretsManager::Secret",
    "AWS::RedshiftServerless::Namespace",
    "AWS::RedshiftServerless::Workgroup",
    "AWS::Glue::Job",
    "AWS::Glue::Trigger",
    "AWS::Glue::SecurityConfiguration",
    "AWS::DMS::Endpoint",
    "AWS::DMS::ReplicationSubnetGroup",
    "AWS::DMS::ReplicationInstance",
    "AWS::DMS::ReplicationTask",
    "AWS::DMS::ReplicationConfig",
    "AWS::CloudWatch::Alarm",
    "AWS::Kinesis::StreamConsumer",  # KinesisEnhancedFanOut=true only
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
    # Custom resources: moto would run their Lambda in Docker.
    "Custom::SchemaMigration",
    "Custom::GlueSharedLibrary",
    "Custom::GlueJobRunState",
    "Custom::DmsTableMappingsCheck",
}
SOURCE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:source-db-AbCdEf"
_names = itertools.count()


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION)


def _read_yaml(path: Path) -> dict[str, Any]:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506


@pytest.fixture(scope="module")
def network(moto_endpoint: str) -> dict[str, str]:
    """A VPC with two subnets in moto, for the DMS security group and subnet parameters."""
    ec2 = _client("ec2", moto_endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"{REGION}{az}")[
            "Subnet"
        ]["SubnetId"]
        for i, az in enumerate("ab")
    ]
    return {"VpcId": vpc, "DmsSubnetIds": ",".join(subnets), "SourceSecretArn": SOURCE_SECRET}


@pytest.fixture(scope="module")
def moto_template(translated: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    return strip_for_moto(translated, set(get_model_map()))


class Stack:
    def __init__(self, name: str, endpoint: str, params: dict[str, str]):
        self.name = name
        self.params = params
        self.cfn = _client("cloudformation", endpoint)
        self.endpoint = endpoint

    def describe(self) -> dict[str, Any]:
        stack: dict[str, Any] = self.cfn.describe_stacks(StackName=self.name)["Stacks"][0]
        return stack

    @property
    def outputs(self) -> dict[str, str]:
        return {o["OutputKey"]: o["OutputValue"] for o in self.describe().get("Outputs", [])}

    @property
    def resources(self) -> dict[str, str]:
        summaries = self.cfn.list_stack_resources(StackName=self.name)["StackResourceSummaries"]
        return {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in summaries
            if r["LogicalResourceId"]
        }

    def esm(self) -> dict[str, Any]:
        esm: dict[str, Any] = _client("lambda", self.endpoint).get_event_source_mapping(
            UUID=self.resources["KinesisEventSourceMapping"]
        )
        return esm


def _document(document: Any) -> dict[str, Any]:
    """An IAM policy document as returned by boto3 (moto may return it as JSON text)."""
    if isinstance(document, str):
        text = unquote(document)
        try:
            document = json.loads(text)
        except json.JSONDecodeError:  # moto keeps inline role policies from CFN as a repr
            document = ast.literal_eval(text)
    result: dict[str, Any] = document
    return result


def _parameters(params: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]


@pytest.fixture(scope="module")
def deploy(
    moto_endpoint: str,
    translated: dict[str, Any],
    moto_template: tuple[dict[str, Any], dict[str, str]],
    network: dict[str, str],
) -> Callable[..., Stack]:
    body, _ = moto_template

    def create(**overrides: str) -> Stack:
        params = {"DmsMode": "Instance", **network, **overrides}
        name = f"cdc-deploy-test-{next(_names)}"
        ready = resolve_optional_list_items(body, Evaluator(translated, params))
        cfn = _client("cloudformation", moto_endpoint)
        cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(ready),
            Parameters=_parameters(params),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = Stack(name, moto_endpoint, params)
        status = stack.describe()
        assert status["StackStatus"] == "CREATE_COMPLETE", status.get("StackStatusReason")
        return stack

    return create


def _update(stack: Stack, translated: dict[str, Any], body: dict[str, Any], **params: str) -> None:
    # The parameters given at creation with the changes: passing every parameter back from
    # DescribeStacks makes moto think each one changed (it compares them to typed defaults).
    previous = stack.params
    merged = {**previous, **params}
    before, after = Evaluator(translated, previous), Evaluator(translated, merged)
    ready = resolve_optional_list_items(body, after)
    # Resources whose resolved form changes with the new parameters get that form, so moto
    # sees them change (CloudFormation re-evaluates conditions by itself); the rest stay as-is.
    # Resources and outputs whose condition is false for the new parameters are left out, so
    # moto deletes what CloudFormation would (the batch applier's, off the Lambda path).
    existing = after.resources()
    resources = {
        name: _without_layers(after.value(res, refs=False))
        if before.value(res) != after.value(res) else res
        for name, res in ready["Resources"].items() if name in existing
    }
    outputs = {name: out for name, out in ready.get("Outputs", {}).items()
               if "Condition" not in out or after.condition(out["Condition"])}
    ready = {**ready, "Resources": resources, "Outputs": outputs}
    stack.cfn.update_stack(
        StackName=stack.name,
        TemplateBody=json.dumps(ready),
        Parameters=_parameters(merged),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    assert stack.describe()["StackStatus"] == "UPDATE_COMPLETE"
    stack.params = merged


def _without_layers(resource: dict[str, Any]) -> dict[str, Any]:
    """A changed Lambda function without its Layers: moto's update of a function passes the
    layer object where it expects the ARN and fails (moto ignores layers anyway; the layer of
    every function is asserted on the translated template)."""
    if resource.get("Type") != "AWS::Lambda::Function":
        return resource
    properties = {k: v for k, v in resource["Properties"].items() if k != "Layers"}
    return {**resource, "Properties": properties}


# --- packaging and translation ----------------------------------------------------------------


def test_sam_package_uploads_every_artifact(
    packaged_template: Path, moto_endpoint: str, app_copy: AppCopy
) -> None:
    resources = _read_yaml(packaged_template)["Resources"]
    uris = {
        "SharedLayer": resources["SharedLayer"]["Properties"]["ContentUri"],
        "KinesisConsumerFunction": resources["KinesisConsumerFunction"]["Properties"]["CodeUri"],
        "BatchApplierFunction": resources["BatchApplierFunction"]["Properties"]["CodeUri"],
        "SchemaMigratorFunction": resources["SchemaMigratorFunction"]["Properties"]["CodeUri"],
        "GlueStreamingJob": resources["GlueStreamingJob"]["Properties"]["Command"][
            "ScriptLocation"
        ],
    }
    s3 = _client("s3", moto_endpoint)
    for name, uri in uris.items():
        assert isinstance(uri, str) and uri.startswith(f"s3://{ARTIFACT_BUCKET}/app/"), name
        key = uri.removeprefix(f"s3://{ARTIFACT_BUCKET}/")
        body = s3.get_object(Bucket=ARTIFACT_BUCKET, Key=key)["Body"].read()
        if name == "GlueStreamingJob":  # uploaded as the script itself, not zipped
            assert body == (app_copy.root / "glue_job/cdc_streaming_job.py").read_bytes()
        else:
            assert body[:2] == b"PK", name


def test_translation_keeps_runtime_arch_and_layer(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]
    (layer,) = [n for n, r in resources.items() if r["Type"] == "AWS::Lambda::LayerVersion"]
    for name in ("KinesisConsumerFunction", "SchemaMigratorFunction", "DeployHelperFunction",
                 "BatchApplierFunction"):
        props = resources[name]["Properties"]
        assert props["Runtime"] == "python3.12"
        assert props["Architectures"] == [{"Ref": "LambdaArchitecture"}]  # default arm64
        assert props["Layers"] == [{"Ref": layer}]
    assert resources[layer]["Properties"]["CompatibleArchitectures"] == [
        {"Ref": "LambdaArchitecture"}]
    assert translated["Parameters"]["LambdaArchitecture"]["Default"] == "arm64"
    # No auto-generated SAM roles with AWS managed policies: every function has its own role.
    assert not [
        n
        for n, r in resources.items()
        if r["Type"] == "AWS::IAM::Role"
        and "ManagedPolicyArns" in r["Properties"]
        and any("AWSLambda" in json.dumps(a) for a in r["Properties"]["ManagedPolicyArns"])
    ]


def test_only_listed_types_are_removed_for_moto(
    moto_template: tuple[dict[str, Any], dict[str, str]],
) -> None:
    _, stripped = moto_template
    assert set(stripped.values()) <= MOTO_CANNOT_CREATE, set(stripped.values()) - MOTO_CANNOT_CREATE
    kept = {r["Type"] for r in moto_template[0]["Resources"].values()}
    for wanted in (
        "AWS::Kinesis::Stream",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::Lambda::LayerVersion",
        "AWS::SQS::Queue",
        "AWS::S3::Bucket",
        "AWS::KMS::Key",
        "AWS::IAM::Role",
        "AWS::IAM::ManagedPolicy",
        "AWS::CloudWatch::Dashboard",
        "AWS::Events::Rule",
        "AWS::EC2::SecurityGroup",
        "AWS::Logs::LogGroup",
    ):
        assert wanted in kept, wanted


# --- stacks in moto -------------------------------------------------------------------------------


def test_lambda_path_stack(deploy: Callable[..., Stack], moto_endpoint: str) -> None:
    stack = deploy(ProcessingPath="Lambda")
    outputs = stack.outputs
    assert outputs["ProcessingPathInUse"] == "Lambda"
    for name in (
        "ChangeStreamArn",
        "DeadLetterQueueUrl",
        "KinesisConsumerFunctionName",
        "GlueJobName",
        "RedshiftWorkgroup",
        "StagingBucketName",
        "DmsSecurityGroupId",
    ):
        assert outputs.get(name), name
    assert "RedshiftCluster" not in outputs

    esm = stack.esm()
    assert esm["State"] == "Enabled"
    assert esm["EventSourceArn"] == outputs["ChangeStreamArn"]
    assert esm["BatchSize"] == 1000
    assert esm["MaximumBatchingWindowInSeconds"] == 0  # the default: an invocation per poll
    assert esm["ParallelizationFactor"] == 1
    assert esm["BisectBatchOnFunctionError"] is True
    assert esm["MaximumRetryAttempts"] == 5
    assert esm["MaximumRecordAgeInSeconds"] == 43200
    assert esm["StartingPosition"] == "TRIM_HORIZON"
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    dlq_arn = _client("sqs", moto_endpoint).get_queue_attributes(
        QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    assert esm["DestinationConfig"]["OnFailure"]["Destination"] == dlq_arn["QueueArn"]
    assert dlq_arn["KmsMasterKeyId"] == stack.resources["DataKey"]

    function = _client("lambda", moto_endpoint).get_function_configuration(
        FunctionName=outputs["KinesisConsumerFunctionName"]
    )
    assert function["Runtime"] == "python3.12"
    assert function["Handler"] == "app.lambda_handler"
    env = function["Environment"]["Variables"]
    assert env["DEAD_LETTER_QUEUE_URL"] == outputs["DeadLetterQueueUrl"]
    assert env["STAGING_BUCKET"] == outputs["StagingBucketName"]
    assert env["COPY_IAM_ROLE_ARN"] == outputs["RedshiftCopyRoleArn"]
    assert env["REDSHIFT_CLUSTER_IDENTIFIER"] == ""
    assert env["REDSHIFT_WORKGROUP_NAME"]  # the created workgroup (placeholder in moto)

    # The batch applier: the consumer lands for it; its queue feeds it through a mapping.
    sqs = _client("sqs", moto_endpoint)
    assert env["APPLIER_QUEUE_URL"] == outputs["ApplierQueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=outputs["ApplierQueueUrl"],
                                     AttributeNames=["All"])["Attributes"]
    dead = sqs.get_queue_attributes(QueueUrl=outputs["ApplierDeadLetterQueueUrl"],
                                    AttributeNames=["All"])["Attributes"]
    assert (queue["VisibilityTimeout"], queue["MessageRetentionPeriod"]) == ("1800", "1209600")
    assert queue["KmsMasterKeyId"] == dead["KmsMasterKeyId"] == stack.resources["DataKey"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dead["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5
    lambda_client = _client("lambda", moto_endpoint)
    mapping = lambda_client.get_event_source_mapping(
        UUID=stack.resources["ApplierEventSourceMapping"])
    assert mapping["EventSourceArn"] == queue["QueueArn"]
    assert mapping["BatchSize"] == 10  # without a window (the default), Lambda's most for SQS
    assert mapping["FunctionArn"].endswith(":" + outputs["BatchApplierFunctionName"])
    applier = lambda_client.get_function_configuration(
        FunctionName=outputs["BatchApplierFunctionName"])
    assert applier["Handler"] == "app.lambda_handler" and applier["Timeout"] == 300
    applier_env = applier["Environment"]["Variables"]
    assert applier_env["STAGING_BUCKET"] == outputs["StagingBucketName"]
    assert "APPLIER_QUEUE_URL" not in applier_env

    stream = _client("kinesis", moto_endpoint).describe_stream_summary(
        StreamName=outputs["ChangeStreamName"]
    )["StreamDescriptionSummary"]
    assert stream["RetentionPeriodHours"] == 24
    s3 = _client("s3", moto_endpoint)
    rule = s3.get_bucket_encryption(Bucket=outputs["StagingBucketName"])[
        "ServerSideEncryptionConfiguration"
    ]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    iam = _client("iam", moto_endpoint)
    role = stack.resources["KinesisConsumerRole"]
    policy = _document(
        iam.get_role_policy(RoleName=role, PolicyName="KinesisConsumer")["PolicyDocument"]
    )
    kinesis = next(s for s in policy["Statement"] if s.get("Sid") == "ReadChangeStream")
    assert kinesis["Resource"] == outputs["ChangeStreamArn"]
    # (moto ignores a role's ManagedPolicyArns; the attachment is asserted in test_template.py)


def test_glue_path_stack(deploy: Callable[..., Stack]) -> None:
    stack = deploy(ProcessingPath="Glue")
    assert stack.outputs["ProcessingPathInUse"] == "Glue"
    assert stack.esm()["State"] == "Disabled"
    # The Glue job applies inline: no batch applier, and a consumer that would apply inline.
    assert "ApplierQueueUrl" not in stack.outputs
    assert not {"BatchApplierFunction", "ApplierQueue"} & set(stack.resources)
    # The Glue job, its trigger and run state are not creatable in moto; see test_template.py
    # test_processing_path_toggle for the trigger (Glue path only) and the run state.
    assert "GlueJobRole" in stack.resources and "DeployHelperFunction" in stack.resources


def test_switching_paths_on_a_deployed_stack(
    deploy: Callable[..., Stack],
    translated: dict[str, Any],
    moto_template: tuple[dict[str, Any], dict[str, str]],
) -> None:
    body, _ = moto_template
    stack = deploy(ProcessingPath="Lambda")
    uuid = stack.resources["KinesisEventSourceMapping"]
    function = stack.outputs["KinesisConsumerFunctionName"]
    assert stack.esm()["State"] == "Enabled"

    lambda_client = _client("lambda", stack.endpoint)

    def applier_queue_url() -> str:
        config = lambda_client.get_function_configuration(FunctionName=function)
        return str(config["Environment"]["Variables"]["APPLIER_QUEUE_URL"])

    assert applier_queue_url() == stack.outputs["ApplierQueueUrl"]

    _update(stack, translated, body, ProcessingPath="Glue")
    assert stack.esm()["State"] == "Disabled"
    # Same mapping (kept, not replaced: its shard checkpoints survive), same function.
    assert stack.resources["KinesisEventSourceMapping"] == uuid
    assert stack.outputs["KinesisConsumerFunctionName"] == function
    assert stack.outputs["ProcessingPathInUse"] == "Glue"
    # No batch applier on the Glue path; the consumer function would apply inline.
    assert not {"BatchApplierFunction", "ApplierEventSourceMapping"} & set(stack.resources)
    assert "ApplierQueueUrl" not in stack.outputs
    assert applier_queue_url() == ""

    _update(stack, translated, body, ProcessingPath="Lambda")
    assert stack.esm()["State"] == "Enabled"
    assert stack.resources["KinesisEventSourceMapping"] == uuid
    assert applier_queue_url() == stack.outputs["ApplierQueueUrl"]
    # The applier is back in the stack (its properties: test_lambda_path_stack; moto's Lambda
    # API does not serve the function and mapping a stack update created).
    assert {"BatchApplierFunction", "ApplierEventSourceMapping"} <= set(stack.resources)
    assert stack.outputs["BatchApplierFunctionName"]


def test_existing_cluster_without_dms(deploy: Callable[..., Stack], moto_endpoint: str) -> None:
    stack = deploy(
        ProcessingPath="Lambda",
        DmsMode="None",
        RedshiftMode="ExistingCluster",
        RedshiftClusterIdentifier="analytics",
        RedshiftDbUser="cdc_writer",
    )
    outputs = stack.outputs
    assert outputs["RedshiftCluster"] == "analytics"
    assert "RedshiftWorkgroup" not in outputs and "DmsSecurityGroupId" not in outputs
    assert not [n for n in stack.resources if n.startswith("Dms")]
    env = _client("lambda", moto_endpoint).get_function_configuration(
        FunctionName=outputs["KinesisConsumerFunctionName"]
    )["Environment"]["Variables"]
    assert (env["REDSHIFT_CLUSTER_IDENTIFIER"], env["REDSHIFT_WORKGROUP_NAME"]) == ("analytics", "")
    # The consumers authenticate as their own user (the stack's secret), not as cdc_writer.
    assert env["REDSHIFT_DB_USER"] == ""
    # (moto cannot create secrets: the stripped secret's placeholder ARN stands in for it)
    assert env["REDSHIFT_SECRET_ARN"] == placeholder("RedshiftConsumerSecret")
    iam = _client("iam", moto_endpoint)

    def statements_of(policy: str) -> dict[str, Any]:
        arn = stack.resources[policy]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        document = _document(
            iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        )
        return {s["Sid"]: s for s in document["Statement"]}

    shared = statements_of("RedshiftDataAccessPolicy")
    assert (
        shared["RunStatementsOnThisWarehouse"]["Resource"]
        == "arn:aws:redshift:us-east-1:123456789012:cluster:analytics"
    )
    assert shared["ReadConsumerUserSecret"]["Resource"] == env["REDSHIFT_SECRET_ARN"]
    # The migrator alone gets temporary credentials for the cluster's DbUser.
    statements = statements_of("RedshiftMigratorAuthPolicy")
    assert statements["ClusterTemporaryCredentialsForDbUser"]["Resource"] == [
        "arn:aws:redshift:us-east-1:123456789012:dbuser:analytics/cdc_writer",
        "arn:aws:redshift:us-east-1:123456789012:dbname:analytics/dev",
    ]
    assert (
        "ReadRedshiftSecret" not in statements
        and "ServerlessTemporaryCredentials" not in statements
    )
