"""Static checks of template.yaml and samconfig.toml, evaluated per parameter set.

These read the template the way CloudFormation does (conditions resolved for a parameter set by
tests/deploy/cfn_model.py) and cover what moto cannot create or ignores: DMS, Glue, Redshift
Serverless, Secrets Manager, alarms, and the properties moto accepts but drops (Lambda
architectures/layers, Kinesis encryption and capacity mode, S3 public access block/lifecycle).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from typing import Any

import pytest

from tests.deploy.cfn_model import REPO, Evaluator, iter_policy_statements, load_template

SPEC_PATH = REPO / "shared/specs/sports_ticketing.toml"
# The spec's source tables when the spec file is not there yet (see _spec_source()).
FALLBACK_TABLES = {"sport_event", "ticket", "customer", "ticket_activity"}
FALLBACK_SCHEMA = "public"

LAMBDA_ENV = {
    "PIPELINE_SPEC_PATH",
    "HMAC_KEY_SECRET_ARN",
    "REDSHIFT_WORKGROUP_NAME",
    "REDSHIFT_CLUSTER_IDENTIFIER",
    "REDSHIFT_DATABASE",
    "REDSHIFT_SECRET_ARN",
    "REDSHIFT_DB_USER",
    "STAGING_BUCKET",
    "STAGING_PREFIX",
    "COPY_IAM_ROLE_ARN",
    "DEAD_LETTER_QUEUE_URL",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
}
# The Kinesis consumer's alone: on the Lambda path it lands batches for the batch applier; the
# Glue job applies inline and has no such argument.
CONSUMER_ONLY_ENV = {"APPLIER_QUEUE_URL"}
# The batch applier's own variables (it shares the Globals with the other functions).
# The applier reads only these (shared.settings.ApplierSettings): no HMAC key and no
# dead-letter queue, which it never uses.
APPLIER_ENV = {
    "STAGING_BUCKET",
    "STAGING_PREFIX",
    "COPY_IAM_ROLE_ARN",
    "POWERTOOLS_SERVICE_NAME",
}
APPLIER_RESOURCES = {
    "ApplierQueue",
    "ApplierDeadLetterQueue",
    "BatchApplierLogGroup",
    "BatchApplierRole",
    "BatchApplierFunction",
    "ApplierEventSourceMapping",
    "ApplierQueueAgeAlarm",
    "ApplierDeadLetterQueueDepthAlarm",
    "ApplierErrorsAlarm",
}
# boto3's endpoint variables the functions declare, empty on AWS (make sam-invoke sets them).
ENDPOINT_ENV = {
    "AWS_ENDPOINT_URL_REDSHIFT_DATA",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
}
GLUE_ONLY_ARGS = {
    "STREAM_ARN",
    "STARTING_POSITION",
    "MAX_FETCH_RECORDS_PER_SHARD",
    "WINDOW_SIZE",
    "CHECKPOINT_LOCATION",
}
DMS_ON = {
    "VpcId": "vpc-0123456789abcdef0",
    "DmsSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "SourceSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:source-AbCdEf",
}
REDSHIFT_MODES = {
    "CreateServerless": {"RedshiftMode": "CreateServerless"},
    "ExistingServerless": {
        "RedshiftMode": "ExistingServerless",
        "RedshiftWorkgroupName": "analytics",
    },
    "ExistingServerlessSecret": {
        "RedshiftMode": "ExistingServerless",
        "RedshiftWorkgroupName": "analytics",
        "RedshiftSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rs-AbCdEf",
    },
    "ExistingClusterDbUser": {
        "RedshiftMode": "ExistingCluster",
        "RedshiftClusterIdentifier": "analytics-cluster",
        "RedshiftDbUser": "cdc_writer",
    },
    "ExistingClusterIam": {
        "RedshiftMode": "ExistingCluster",
        "RedshiftClusterIdentifier": "analytics-cluster",
    },
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _spec_source() -> tuple[set[str], str, str]:
    """(source tables, source schema, before-image field) of the default pipeline spec.

    Reads shared/specs/sports_ticketing.toml ([tables.<name>] sections, [pipeline]
    source_schema); while that file does not exist, the reference use case's tables.
    """
    if not SPEC_PATH.exists():
        return FALLBACK_TABLES, FALLBACK_SCHEMA, "before-image"
    spec = tomllib.loads(SPEC_PATH.read_text())
    pipeline = spec.get("pipeline", {})
    return (
        set(spec["tables"]),
        pipeline.get("source_schema", FALLBACK_SCHEMA),
        pipeline.get("before_image_field", "before-image"),
    )


# --- parameters, outputs, samconfig -------------------------------------------------------------


def test_every_parameter_has_description_and_default(template: dict[str, Any]) -> None:
    for name, param in template["Parameters"].items():
        assert param.get("Description", "").strip(), f"{name} has no description"
        assert "Default" in param, f"{name} has no default"


def test_processing_path_parameter(template: dict[str, Any]) -> None:
    param = template["Parameters"]["ProcessingPath"]
    assert param["AllowedValues"] == ["Lambda", "Glue"]
    assert param["Default"] == "Lambda"
    assert template["Parameters"]["RedshiftMode"]["AllowedValues"] == [
        "CreateServerless",
        "ExistingServerless",
        "ExistingCluster",
    ]


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    for name in [
        "ChangeStreamArn",
        "DeadLetterQueueUrl",
        "KinesisConsumerFunctionName",
        "GlueJobName",
        "RedshiftWorkgroup",
        "RedshiftCluster",
        "BatchApplierFunctionName",
        "ApplierQueueUrl",
        "ApplierDeadLetterQueueUrl",
    ]:
        assert name in outputs, name
        assert outputs[name]["Description"]
    for name in ("BatchApplierFunctionName", "ApplierQueueUrl", "ApplierDeadLetterQueueUrl"):
        assert outputs[name]["Condition"] == "UseLambdaPath", name
    for mode, overrides in REDSHIFT_MODES.items():
        ev = Evaluator(template, overrides)
        shown = {
            n for n, o in outputs.items() if "Condition" not in o or ev.condition(o["Condition"])
        }
        assert len(shown & {"RedshiftWorkgroup", "RedshiftCluster"}) == 1, mode


def test_samconfig_toggles_the_same_stack() -> None:
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    assert {"default", "glue"} <= set(config)
    stacks = {env: config[env]["global"]["parameters"]["stack_name"] for env in ("default", "glue")}
    assert stacks["default"] == stacks["glue"]
    for env, path in (("default", "Lambda"), ("glue", "Glue")):
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["parameter_overrides"] == f'ProcessingPath="{path}"'
        assert "CAPABILITY_NAMED_IAM" in deploy["capabilities"]
        assert deploy["resolve_s3"] is True


# --- the consumers and the toggle -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["Lambda", "Glue"])
def test_processing_path_toggle(template: dict[str, Any], path: str) -> None:
    ev = Evaluator(template, {"ProcessingPath": path})
    resources = ev.resources()
    esm = resources["KinesisEventSourceMapping"]["Properties"]
    assert esm["Enabled"] is (path == "Lambda")
    assert ("GlueRestartRule" in resources) is (path == "Glue")
    run_state = resources["GlueJobRunState"]["Properties"]
    assert run_state["Desired"] == ("RUNNING" if path == "Glue" else "STOPPED")
    # Both consumers stay defined, so a switch keeps each one's checkpoints.
    assert "KinesisConsumerFunction" in resources and "GlueStreamingJob" in resources
    # The batch applier and its queues exist on the Lambda path only (the Glue job applies
    # inline); the consumer lands for it there, and applies inline otherwise.
    assert (APPLIER_RESOURCES & set(resources)) == (APPLIER_RESOURCES if path == "Lambda"
                                                     else set())
    env = ev.value(resources["KinesisConsumerFunction"]["Properties"]["Environment"]["Variables"])
    expected = {"Ref": "ApplierQueue"} if path == "Lambda" else ""
    assert env["APPLIER_QUEUE_URL"] == expected


def test_applier_queue_and_its_event_source_mapping(template: dict[str, Any]) -> None:
    """"Creating and configuring an Amazon SQS event source mapping" (AWS Lambda Developer
    Guide): visibility timeout at least six times the function's timeout; a batch size above
    10 needs a batching window of at least 1 s ("Lambda parameters for Amazon SQS event source
    mappings"); ScalingConfig.MaximumConcurrency 2-1000."""
    resources = Evaluator(template, {"ProcessingPath": "Lambda"}).resources()
    function = resources["BatchApplierFunction"]["Properties"]
    queue = resources["ApplierQueue"]["Properties"]
    assert int(queue["VisibilityTimeout"]) >= 6 * int(function["Timeout"])
    assert queue["MessageRetentionPeriod"] == 1209600  # 14 days, the most SQS keeps
    assert queue["KmsMasterKeyId"] == {"Ref": "DataKey"}
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ApplierDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    dead_letters = resources["ApplierDeadLetterQueue"]["Properties"]
    assert dead_letters["KmsMasterKeyId"] == {"Ref": "DataKey"}
    assert dead_letters["MessageRetentionPeriod"] >= queue["MessageRetentionPeriod"]
    for name in ("ApplierQueue", "ApplierDeadLetterQueue"):
        assert resources[name]["DeletionPolicy"] == "Retain", name

    raw = template["Resources"]["ApplierEventSourceMapping"]
    esm = raw["Properties"]
    assert raw["DependsOn"] == "SchemaMigration"
    assert esm["EventSourceArn"] == {"Fn::GetAtt": ["ApplierQueue", "Arn"]}
    assert esm["FunctionName"] == {"Ref": "BatchApplierFunction"}
    # "Lambda parameters for Amazon SQS event source mappings": a BatchSize above 10 needs a
    # MaximumBatchingWindowInSeconds of at least 1, so the batch size follows the window.
    assert esm["BatchSize"] == {"Fn::If": ["ApplierGathers", 10000, 10]}
    assert template["Conditions"]["ApplierGathers"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ApplierBatchingWindowSeconds"}, 0]}]
    }
    assert esm["MaximumBatchingWindowInSeconds"] == {"Ref": "ApplierBatchingWindowSeconds"}
    window = template["Parameters"]["ApplierBatchingWindowSeconds"]
    assert (window["Default"], window["MinValue"], window["MaxValue"]) == (0, 0, 300)
    for overrides, batch_size, seconds in [({}, 10, "0"),
                                           ({"ApplierBatchingWindowSeconds": "2"}, 10000, "2")]:
        resolved = Evaluator(template, {"ProcessingPath": "Lambda", **overrides}).resources()
        props = resolved["ApplierEventSourceMapping"]["Properties"]
        assert props["BatchSize"] == batch_size, overrides
        assert props["MaximumBatchingWindowInSeconds"] == seconds, overrides
        assert props["BatchSize"] <= 10 or int(seconds) >= 1, overrides
    assert esm["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    env = function["Environment"]["Variables"]
    assert set(env) == APPLIER_ENV
    assert env["POWERTOOLS_SERVICE_NAME"] == "cdc-batch-applier"
    assert env["STAGING_PREFIX"] == "staging/"  # the StagingPrefix default, as the consumer's
    assert "APPLIER_QUEUE_URL" not in env  # it applies; it never lands
    # A message must not outlive its landed batch (the lifecycle rule of the staging prefix).
    expiration = template["Parameters"]["StagingExpirationDays"]["Default"]
    assert expiration * 86400 > queue["MessageRetentionPeriod"]


def test_event_source_mapping(template: dict[str, Any]) -> None:
    props = template["Resources"]["KinesisEventSourceMapping"]["Properties"]
    assert Evaluator(template).value(props["EventSourceArn"]) == {
        "Fn::GetAtt": ["ChangeStream", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
    }
    for prop, param in [
        ("BatchSize", "BatchSize"),
        ("MaximumBatchingWindowInSeconds", "MaximumBatchingWindowSeconds"),
        ("ParallelizationFactor", "ParallelizationFactor"),
        ("MaximumRetryAttempts", "MaximumRetryAttempts"),
        ("MaximumRecordAgeInSeconds", "MaximumRecordAgeSeconds"),
        ("StartingPosition", "StartingPosition"),
    ]:
        assert props[prop] == {"Ref": param}, prop
    assert Evaluator(template).value(props["BisectBatchOnFunctionError"]) is True
    assert (
        Evaluator(template, {"BisectBatchOnFunctionError": "false"}).value(
            props["BisectBatchOnFunctionError"]
        )
        is False
    )
    # The schema exists before the first batch is consumed.
    assert template["Resources"]["KinesisEventSourceMapping"]["DependsOn"] == "SchemaMigration"


@pytest.mark.parametrize("fan_out", ["false", "true"])
def test_enhanced_fan_out_toggle(template: dict[str, Any], fan_out: str) -> None:
    """KinesisEnhancedFanOut=true: the mapping reads through a stream consumer ("How Lambda
    processes records from Amazon Kinesis Data Streams": a consumer's ARN as the event
    source), and only then may the function subscribe, on that consumer alone
    (SubscribeToShard's resource is the consumer, Service Authorization Reference)."""
    resources = Evaluator(template, {"KinesisEnhancedFanOut": fan_out}).resources()
    source = resources["KinesisEventSourceMapping"]["Properties"]["EventSourceArn"]
    granted = _role_actions(resources, "KinesisConsumerRole")
    alarm = resources["StreamIteratorAgeAlarm"]["Properties"]
    assert granted["kinesis:GetRecords"] == {"Fn::GetAtt": ["ChangeStream", "Arn"]}
    if fan_out == "true":
        consumer = resources["ChangeStreamConsumer"]
        assert consumer["Type"] == "AWS::Kinesis::StreamConsumer"
        assert consumer["Properties"]["StreamARN"] == {"Fn::GetAtt": ["ChangeStream", "Arn"]}
        assert source == {"Fn::GetAtt": ["ChangeStreamConsumer", "ConsumerARN"]}
        for action in ("kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"):
            assert granted[action] == source
        # The consumer's lag, not GetRecords' (it makes none): by stream and consumer.
        assert alarm["MetricName"] == "SubscribeToShardEvent.MillisBehindLatest"
        assert alarm["Dimensions"][1] == {
            "Name": "ConsumerName", "Value": {"Fn::GetAtt": ["ChangeStreamConsumer",
                                                         "ConsumerName"]}}
    else:
        assert "ChangeStreamConsumer" not in resources
        assert source == {"Fn::GetAtt": ["ChangeStream", "Arn"]}
        assert "kinesis:SubscribeToShard" not in granted
        assert alarm["MetricName"] == "GetRecords.IteratorAgeMilliseconds"
        assert [d["Name"] for d in alarm["Dimensions"]] == ["StreamName"]


@pytest.mark.parametrize("path", ["Lambda", "Glue"])
@pytest.mark.parametrize("fan_out", ["false", "true"])
def test_the_glue_job_reads_through_the_fan_out_consumer_too(
    template: dict[str, Any], path: str, fan_out: str
) -> None:
    """KinesisEnhancedFanOut is one switch for both consumers: the Glue job gets the
    consumer's ARN as --FANOUT_CONSUMER_ARN (its Kinesis source's ``fanoutConsumerARN``,
    "Using enhanced fan-out in Kinesis streaming jobs", AWS Glue Developer Guide) and its
    role may subscribe on that consumer only then; without fan-out the argument is empty
    and the role has no consumer grants (SubscribeToShard's and DescribeStreamConsumer's
    resource is the consumer, Service Authorization Reference, so none on the stream)."""
    resources = Evaluator(template, {"ProcessingPath": path,
                                     "KinesisEnhancedFanOut": fan_out}).resources()
    argument = resources["GlueStreamingJob"]["Properties"]["DefaultArguments"][
        "--FANOUT_CONSUMER_ARN"]
    granted = _role_actions(resources, "GlueJobRole")
    assert granted["kinesis:GetRecords"] == {"Fn::GetAtt": ["ChangeStream", "Arn"]}
    if fan_out == "true":
        consumer = {"Fn::GetAtt": ["ChangeStreamConsumer", "ConsumerARN"]}
        assert argument == consumer
        for action in ("kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"):
            assert granted[action] == consumer
        # the alarm's metric is the consumer's, emitted on either path
        alarm = resources["StreamIteratorAgeAlarm"]["Properties"]
        assert alarm["MetricName"] == "SubscribeToShardEvent.MillisBehindLatest"
    else:
        assert argument == ""
        assert "kinesis:SubscribeToShard" not in granted
        assert "kinesis:DescribeStreamConsumer" not in granted


def test_lambda_functions(template: dict[str, Any]) -> None:
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.12"
    assert function_globals["Architectures"] == [{"Ref": "LambdaArchitecture"}]
    assert template["Parameters"]["LambdaArchitecture"]["Default"] == "arm64"
    assert function_globals["Layers"] == [{"Ref": "SharedLayer"}]
    resources = template["Resources"]
    for name, code_uri in [
        ("KinesisConsumerFunction", "functions/kinesis_consumer/"),
        ("SchemaMigratorFunction", "functions/schema_migrator/"),
        ("BatchApplierFunction", "functions/batch_applier/"),
    ]:
        props = resources[name]["Properties"]
        assert props["CodeUri"] == code_uri
        assert props["Handler"] == "app.lambda_handler"
    layer = resources["SharedLayer"]
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == [{"Ref": "LambdaArchitecture"}]
    assert layer["Metadata"]["BuildArchitecture"] == {"Ref": "LambdaArchitecture"}


@pytest.mark.parametrize("mode", sorted(REDSHIFT_MODES))
def test_consumer_environment(template: dict[str, Any], mode: str) -> None:
    ev = Evaluator(template, REDSHIFT_MODES[mode])
    common = ev.value(template["Globals"]["Function"]["Environment"]["Variables"])
    own = ev.value(
        template["Resources"]["KinesisConsumerFunction"]["Properties"]["Environment"]["Variables"]
    )
    env = common | own
    assert set(env) == LAMBDA_ENV | CONSUMER_ONLY_ENV | ENDPOINT_ENV
    assert all(env[name] == "" for name in ENDPOINT_ENV)
    target = [env["REDSHIFT_WORKGROUP_NAME"], env["REDSHIFT_CLUSTER_IDENTIFIER"]]
    assert sum(1 for t in target if t != "") == 1, target
    if mode == "CreateServerless":
        assert env["REDSHIFT_WORKGROUP_NAME"] == {"Ref": "RedshiftWorkgroup"}
    # In every mode the consumers are their own database user, never the admin.
    assert env["REDSHIFT_SECRET_ARN"] == {"Ref": "RedshiftConsumerSecret"}
    assert env["REDSHIFT_DB_USER"] == ""
    assert env["COPY_IAM_ROLE_ARN"] == {"Fn::GetAtt": ["RedshiftCopyRole", "Arn"]}
    assert env["DEAD_LETTER_QUEUE_URL"] == {"Ref": "DeadLetterQueue"}
    assert env["HMAC_KEY_SECRET_ARN"] == {"Ref": "HmacKeySecret"}


@pytest.mark.parametrize("mode", sorted(REDSHIFT_MODES))
def test_glue_job(template: dict[str, Any], mode: str) -> None:
    ev = Evaluator(template, REDSHIFT_MODES[mode])
    job = ev.resources()["GlueStreamingJob"]["Properties"]
    assert job["GlueVersion"] == "5.0"
    assert job["Command"] == {
        "Name": "gluestreaming",
        "PythonVersion": "3",
        "ScriptLocation": "glue_job/cdc_streaming_job.py",
    }
    raw = template["Resources"]["GlueStreamingJob"]["Properties"]
    assert raw["WorkerType"] == {"Ref": "GlueWorkerType"}
    assert raw["NumberOfWorkers"] == {"Ref": "GlueNumberOfWorkers"}
    assert (job["WorkerType"], job["NumberOfWorkers"]) == ("G.1X", "2")
    assert job["ExecutionProperty"]["MaxConcurrentRuns"] == 1
    args = job["DefaultArguments"]
    assert {f"--{name}" for name in LAMBDA_ENV | GLUE_ONLY_ARGS} <= set(args)
    assert args["--extra-py-files"] == {"Fn::GetAtt": ["GlueSharedLibrary", "S3Uri"]}
    assert (
        sum(
            1
            for k in ("--REDSHIFT_WORKGROUP_NAME", "--REDSHIFT_CLUSTER_IDENTIFIER")
            if args[k] != ""
        )
        == 1
    )
    # The same values the Lambda gets.
    common = ev.value(template["Globals"]["Function"]["Environment"]["Variables"])
    for name, value in common.items():
        if name not in ENDPOINT_ENV:
            assert args[f"--{name}"] == value, name


def test_glue_library_is_published_from_the_shared_layer(template: dict[str, Any]) -> None:
    lib = template["Resources"]["GlueSharedLibrary"]["Properties"]
    assert lib["Action"] == "PublishGlueLibrary"
    assert lib["SharedLayerVersion"] == {
        "Ref": "SharedLayer"
    }  # re-published when the layer changes
    helper = template["Resources"]["DeployHelperFunction"]["Properties"]
    assert helper["Layers"] == [{"Ref": "SharedLayer"}]
    assert len(helper["Code"]["ZipFile"]) <= 4096


# --- stream, queue, buckets, secrets ------------------------------------------------------------


def test_stream_queue_buckets_and_secret(template: dict[str, Any]) -> None:
    res = template["Resources"]
    stream = res["ChangeStream"]["Properties"]
    assert stream["StreamEncryption"] == {
        "EncryptionType": "KMS",
        "KeyId": {"Fn::GetAtt": ["DataKey", "Arn"]},
    }
    assert stream["RetentionPeriodHours"] == {"Ref": "KinesisRetentionHours"}
    assert template["Parameters"]["KinesisStreamMode"]["Default"] == "ON_DEMAND"
    assert "ShardCount" not in Evaluator(template).resources()["ChangeStream"]["Properties"]
    provisioned = Evaluator(
        template, {"KinesisStreamMode": "PROVISIONED", "KinesisShardCount": "3"}
    )
    assert provisioned.resources()["ChangeStream"]["Properties"]["ShardCount"] == "3"
    assert res["DataKey"]["Properties"]["EnableKeyRotation"] is True

    assert res["DeadLetterQueue"]["Properties"]["KmsMasterKeyId"] == {"Ref": "DataKey"}

    staging = res["StagingBucket"]["Properties"]
    assert staging["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    sse = staging["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    expire = [r for r in staging["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    assert expire and expire[0]["Prefix"] == {"Ref": "StagingPrefix"}
    assert expire[0]["ExpirationInDays"] == {"Ref": "StagingExpirationDays"}
    assert (
        res["StagingBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Effect"]
        == "Deny"
    )

    secret = res["HmacKeySecret"]["Properties"]["GenerateSecretString"]
    alphabet = set("abcdefghijklmnopqrstuvwxyz0123456789") - set(secret["ExcludeCharacters"])
    assert alphabet == set("0123456789abcdef") and secret["PasswordLength"] == 64
    assert secret["ExcludeUppercase"] and secret["ExcludePunctuation"]


def test_redshift_modes(template: dict[str, Any]) -> None:
    created = Evaluator(template, REDSHIFT_MODES["CreateServerless"]).resources()
    assert {"RedshiftNamespace", "RedshiftWorkgroup", "RedshiftAdminSecret"} <= set(created)
    namespace = created["RedshiftNamespace"]["Properties"]
    assert namespace["IamRoles"] == [{"Fn::GetAtt": ["RedshiftCopyRole", "Arn"]}]
    assert "RedshiftAdminSecret" in namespace["AdminUserPassword"]["Fn::Sub"]
    for mode in ("ExistingServerless", "ExistingClusterIam"):
        existing = Evaluator(template, REDSHIFT_MODES[mode]).resources()
        assert not {"RedshiftNamespace", "RedshiftWorkgroup", "RedshiftAdminSecret"} & set(existing)


def test_schema_migration_custom_resource(template: dict[str, Any]) -> None:
    migration = template["Resources"]["SchemaMigration"]
    assert migration["Type"] == "Custom::SchemaMigration"
    props = migration["Properties"]
    assert props["ServiceToken"] == {"Fn::GetAtt": ["SchemaMigratorFunction", "Arn"]}
    assert props["SharedLayerVersion"] == {"Ref": "SharedLayer"}  # re-runs when spec/code change
    # A migrator that never answers fails the deploy after 16 minutes instead of one hour.
    timeout = template["Resources"]["SchemaMigratorFunction"]["Properties"]["Timeout"]
    assert timeout < props["ServiceTimeout"] <= 3600


# --- DMS ------------------------------------------------------------------------------------------


# Which tables the mappings select, by DMS's pattern rules: tests/deploy/test_operability.py.
@pytest.mark.parametrize("mode", ["Instance", "Serverless"])
def test_dms_selects_exactly_the_spec_tables(template: dict[str, Any], mode: str) -> None:
    from shared.dms_table_mappings import table_mappings
    from shared.spec import load_spec

    _, _, before_image = _spec_source()
    ev = Evaluator(template, {"DmsMode": mode, **DMS_ON})
    resources = ev.resources()
    if mode == "Instance":
        task = resources["DmsReplicationTask"]["Properties"]
        assert "DmsReplicationConfig" not in resources
        assert task["MigrationType"] == "full-load-and-cdc"
        mappings = json.loads(task["TableMappings"])
        settings = json.loads(task["ReplicationTaskSettings"])
    else:
        config = resources["DmsReplicationConfig"]["Properties"]
        assert "DmsReplicationTask" not in resources and "DmsReplicationInstance" not in resources
        assert config["ReplicationType"] == "full-load-and-cdc"
        mappings = json.loads(config["TableMappings"])
        settings = config["ReplicationSettings"]
    assert mappings == table_mappings(load_spec())
    assert settings["BeforeImageSettings"] == {
        "EnableBeforeImage": True,
        "FieldName": before_image,
        "ColumnFilter": "pk-only",
    }


def test_dms_endpoints_and_roles(template: dict[str, Any]) -> None:
    resources = Evaluator(template, {"DmsMode": "Instance", **DMS_ON}).resources()
    kinesis = resources["DmsKinesisEndpoint"]["Properties"]
    assert kinesis["EngineName"] == "kinesis"
    settings = kinesis["KinesisSettings"]
    assert settings["MessageFormat"] == "json"
    for flag in [
        "IncludeTransactionDetails",
        "IncludePartitionValue",
        "PartitionIncludeSchemaTable",
        "IncludeControlDetails",
        "IncludeTableAlterOperations",
        "IncludeNullAndEmpty",
    ]:
        assert settings[flag] is True, flag
    source = resources["DmsSourceEndpoint"]["Properties"]
    assert source["EndpointType"] == "source"
    assert source["PostgreSqlSettings"]["SecretsManagerSecretId"] == DMS_ON["SourceSecretArn"]
    assert "MySqlSettings" not in source
    mysql = Evaluator(
        template, {"DmsMode": "Instance", "SourceEngine": "mysql", **DMS_ON}
    ).resources()
    assert "PostgreSqlSettings" not in mysql["DmsSourceEndpoint"]["Properties"]
    assert mysql["DmsSourceEndpoint"]["Properties"]["MySqlSettings"]["SecretsManagerSecretId"]
    # DMS's account-wide roles only on request; the DMS resources only with DMS on.
    assert "DmsVpcRole" not in resources
    with_roles = Evaluator(
        template, {"DmsMode": "Instance", "CreateDmsServiceRoles": "true", **DMS_ON}
    )
    assert {"DmsVpcRole", "DmsCloudWatchLogsRole"} <= set(with_roles.resources())
    off = Evaluator(template, {"DmsMode": "None"}).resources()
    assert not [n for n in off if n.startswith("Dms")]


def test_dms_rule_requires_network_and_secret(template: dict[str, Any]) -> None:
    rule = template["Rules"]["DmsNeedsNetworkAndSource"]
    asserted = json.dumps(rule["Assertions"])
    for param in ("VpcId", "DmsSubnetIds", "SourceSecretArn"):
        assert param in asserted


# --- IAM ------------------------------------------------------------------------------------------


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else actions


# Actions whose only possible resource is "*" (no resource-level permissions), each narrowed
# by a condition.
STAR_RESOURCE_ALLOWED = {
    "redshift-data:DescribeStatement",
    "redshift-data:GetStatementResult",
    "redshift-data:CancelStatement",
    "cloudwatch:PutMetricData",
}


@pytest.mark.parametrize("mode", sorted(REDSHIFT_MODES))
def test_least_privilege(template: dict[str, Any], mode: str) -> None:
    resources = Evaluator(
        template,
        {**REDSHIFT_MODES[mode], "DmsMode": "Instance", "CreateDmsServiceRoles": "true", **DMS_ON},
    ).resources()
    statements = iter_policy_statements(resources)
    assert len(statements) > 20
    for name, st in statements:
        assert st["Effect"] == "Allow", name
        for action in _actions(st):
            assert action != "*" and not action.endswith(":*"), f"{name}: {action}"
        if st.get("Resource") == "*":
            assert set(_actions(st)) <= STAR_RESOURCE_ALLOWED, name
            assert st.get("Condition"), f"{name}: Resource * without condition"
    by_action: dict[str, list[Any]] = {}
    for _, st in statements:
        for action in _actions(st):
            by_action.setdefault(action, []).append(st["Resource"])
    statement_ops = by_action["redshift-data:ExecuteStatement"]
    assert all(r != "*" for r in statement_ops)
    owner_only = [st for _, st in statements if "redshift-data:DescribeStatement" in _actions(st)]
    assert owner_only[0]["Condition"] == {
        "StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}
    }
    if mode == "ExistingClusterDbUser":
        (creds,) = by_action["redshift:GetClusterCredentials"]
        assert any(
            "dbuser:${RedshiftClusterIdentifier}/${RedshiftDbUser}" in json.dumps(r) for r in creds
        )
    if mode == "ExistingServerless":
        assert "redshift-serverless:GetCredentials" in by_action
    if mode in ("CreateServerless", "ExistingServerlessSecret"):
        assert "secretsmanager:GetSecretValue" in by_action
        assert "redshift-serverless:GetCredentials" not in by_action


def _role_actions(resources: dict[str, Any], role: str) -> dict[str, Any]:
    """Each action of the role's inline policies and the resource it is granted on."""
    granted: dict[str, Any] = {}
    for _, st in iter_policy_statements({role: resources[role]}):
        for action in _actions(st):
            granted[action] = st["Resource"]
    return granted


def test_batch_applier_role_is_least_privilege(template: dict[str, Any]) -> None:
    resources = Evaluator(template, {"ProcessingPath": "Lambda"}).resources()
    staging = {"Fn::Sub": "${StagingBucket.Arn}/${StagingPrefix}*"}
    queue = {"Fn::GetAtt": ["ApplierQueue", "Arn"]}
    assert _role_actions(resources, "BatchApplierRole") == {
        "logs:CreateLogStream": {"Fn::Sub": "${BatchApplierLogGroup.Arn}:*"},
        "logs:PutLogEvents": {"Fn::Sub": "${BatchApplierLogGroup.Arn}:*"},
        # What the SQS event source mapping does with the function's role.
        "sqs:ReceiveMessage": queue,
        "sqs:DeleteMessage": queue,
        "sqs:GetQueueAttributes": queue,
        "sqs:ChangeMessageVisibility": queue,
        "kms:Decrypt": {"Fn::GetAtt": ["DataKey", "Arn"]},
        # The COPY manifest in, the applied batches out; Redshift reads them (RedshiftCopyRole).
        "s3:PutObject": staging,
        "s3:DeleteObject": staging,
    }
    role = resources["BatchApplierRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [{"Ref": "RedshiftDataAccessPolicy"}]
    sends = [st["Resource"] for _, st in iter_policy_statements(
        {"KinesisConsumerRole": resources["KinesisConsumerRole"]})
        if "sqs:SendMessage" in _actions(st)]
    assert queue in sends
    glue = Evaluator(template, {"ProcessingPath": "Glue"}).resources()
    sends = [st["Resource"] for _, st in iter_policy_statements(
        {"KinesisConsumerRole": glue["KinesisConsumerRole"]})
        if "sqs:SendMessage" in _actions(st)]
    assert queue not in sends


def test_consumers_may_read_the_added_columns_marker(template: dict[str, Any]) -> None:
    """Each batch HEADs the marker object (shared.redshift_writer.S3Stager); a missing one must
    answer 404, which S3 does only for a caller allowed s3:ListBucket ("HeadObject", Amazon S3
    API Reference), not 403."""
    resources = Evaluator(template).resources()
    for role in ("KinesisConsumerRole", "GlueJobRole"):
        granted = _role_actions(resources, role)
        assert granted["s3:GetObject"] != "*", role
        gets = [st["Resource"] for _, st in iter_policy_statements({role: resources[role]})
                if "s3:GetObject" in _actions(st)]
        assert {"Fn::Sub": "${StagingBucket.Arn}/${StagingPrefix}_state/added-columns"} in gets
        lists = [st["Resource"] for _, st in iter_policy_statements({role: resources[role]})
                 if "s3:ListBucket" in _actions(st)]
        assert {"Fn::GetAtt": ["StagingBucket", "Arn"]} in lists, role


def test_glue_and_lambda_role_scopes(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for role in ("KinesisConsumerRole", "GlueJobRole"):
        text = json.dumps(resources[role])
        assert "RedshiftDataAccessPolicy" in text
        assert re.search(r"kinesis:GetRecords", text)
        assert '"ChangeStream", "Arn"' in text
    key_policy = resources["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
    for st in key_policy:
        assert "kms:*" not in _actions(st)


# --- alarms and dashboard ------------------------------------------------------------------------


def test_alarms_and_dashboard(template: dict[str, Any]) -> None:
    resources = Evaluator(template).resources()
    alarms = {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    metrics = {(a["Namespace"], a["MetricName"]) for a in alarms.values() if "MetricName" in a}
    assert ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds") in metrics
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics
    assert ("AWS/Lambda", "Errors") in metrics
    assert ("AWS/Events", "TriggeredRules") in metrics  # the Glue job failure rule
    rule = resources["GlueJobFailureRule"]["Properties"]["EventPattern"]
    assert set(rule["detail"]["state"]) >= {"FAILED", "TIMEOUT"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    body, _ = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    rendered = re.sub(r"\$\{[^}]+\}", "x", body)
    assert len(json.loads(rendered)["widgets"]) >= 5


# --- dependencies ----------------------------------------------------------------------------


def test_layer_and_glue_get_the_runtime_dependencies(template: dict[str, Any]) -> None:
    from tests.deploy.deploy_helpers import layer_requirements

    requirements = layer_requirements(REPO / "pyproject.toml")
    names = [re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements]
    assert "aws-lambda-powertools" in names
    # The layer ships the SDK the project develops with, pinned, not the runtime's own
    # ("Managing AWS SDKs in Lambda functions": lock the SDK in a layer).
    for sdk in ("boto3", "botocore"):
        [pin] = [r for r in requirements if re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0] == sdk]
        assert pin == f"{sdk}=={importlib.metadata.version(sdk)}", pin
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {
        re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in project["dependencies"]
    }
    assert runtime <= set(names)
    # The Glue job installs the same runtime dependencies, pinned and hashed, from the wheels
    # the deploy helper publishes (tests/deploy/test_operability.py checks the lock).
    args = template["Resources"]["GlueStreamingJob"]["Properties"]["DefaultArguments"]
    assert args["--additional-python-modules"] == {"Fn::GetAtt": ["GlueSharedLibrary", "Modules"]}
    assert args["--python-modules-installer-option"] == "--no-index"
