"""The deployed stack is operable (issue 10), asserted on the translated template.

The template `sam build` + `sam package` + aws-sam-translator produce (the `translated`
fixture, tests/deploy/conftest.py) is evaluated per parameter set with
tests/deploy/cfn_model.Evaluator, for both processing paths. Where a property only means
something through an AWS service's rules (a DMS selection pattern, an SNS topic policy, an
EventBridge event pattern, an IAM resource pattern), the test applies those rules as the AWS
documentation states them (cited at each helper) and asserts the outcome: which tables DMS
selects, whether CloudWatch may publish, which events start the helper.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from shared.dms_table_mappings import (
    DMS_TABLE_MAPPINGS_MAX_BYTES,
    table_mappings,
    table_mappings_json,
)
from shared.spec import PipelineSpec, load_spec, parse_spec
from tests.deploy.cfn_model import ACCOUNT, REGION, REPO, Evaluator, load_template
from tests.deploy.deploy_helpers import Build, layer_requirements
from tools.dms_table_mappings import TEMPLATE_MAX_BYTES, main

DMS_ON = {
    "VpcId": "vpc-0123456789abcdef0",
    "DmsSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "SourceSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:source-AbCdEf",
}
PATHS = ["Lambda", "Glue"]
DMS_MODES = ["Instance", "Serverless"]
STACK_NAME = "cdc-stack"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK_NAME}/0f1e2d3c"


def _resources(translated: dict[str, Any], **params: str) -> dict[str, Any]:
    return Evaluator(translated, params).resources()


def _props(resources: dict[str, Any], name: str) -> dict[str, Any]:
    props: dict[str, Any] = resources[name]["Properties"]
    return props


# --- AWS rules applied by the tests -----------------------------------------------------------


def dms_pattern_matches(pattern: str, name: str) -> bool:
    """DMS object-locator matching: % any run, _ one character, [..] a set or range.

    "Wildcards in table mapping", AWS DMS User Guide:
    https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TableMapping.SelectionTransformation.Wildcards.html
    """
    regex, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "%":
            regex += ".*"
        elif c == "_":
            regex += "."
        elif c == "[":
            end = pattern.index("]", i + 2)  # "[]]" would be a set holding "]"
            regex += "[" + re.escape(pattern[i + 1 : end]).replace("\\-", "-") + "]"
            i = end
        else:
            regex += re.escape(c)
        i += 1
    return re.fullmatch(regex, name, flags=re.DOTALL) is not None


def selected_by(mappings: dict[str, Any], schema: str, table: str) -> bool:
    """Whether DMS replicates schema.table under these mappings (include minus exclude)."""
    included = excluded = False
    for rule in mappings["rules"]:
        if rule["rule-type"] != "selection":
            continue
        locator = rule["object-locator"]
        if dms_pattern_matches(locator["schema-name"], schema) and dms_pattern_matches(
            locator["table-name"], table
        ):
            if rule["rule-action"] == "include":
                included = True
            elif rule["rule-action"] == "exclude":
                excluded = True
    return included and not excluded


def partition_key_type_of(mappings: dict[str, Any], schema: str, table: str) -> str:
    """The ``partition-key-type`` of schema.table's data records under these mappings: that of
    the object-mapping rule that locates it, ``schema-table`` (DMS's default) without one.

    "Using object mapping to migrate data to a Kinesis data stream", AWS DMS User Guide
    (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.Kinesis.html): an
    object-mapping rule's ``mapping-parameters`` give the ``partition-key-type`` (``schema-table``,
    ``transaction-id``, ``primary-key``, ``constant``, ``attribute-name``).
    """
    types = [
        rule.get("mapping-parameters", {}).get("partition-key-type", "schema-table")
        for rule in mappings["rules"]
        if rule["rule-type"] == "object-mapping"
        and dms_pattern_matches(rule["object-locator"]["schema-name"], schema)
        and dms_pattern_matches(rule["object-locator"]["table-name"], table)
    ]
    assert len(types) <= 1, f"{schema}.{table}: {len(types)} object-mapping rules"
    return types[0] if types else "schema-table"


def event_pattern_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge matching of exact values: each pattern field lists the values it accepts,
    nested objects match nested fields ("Amazon EventBridge event patterns", EventBridge User
    Guide); an array in the event matches when one of its values is accepted."""
    for key, wanted in pattern.items():
        if key not in event:
            return False
        if isinstance(wanted, dict):
            if not isinstance(event[key], dict) or not event_pattern_matches(wanted, event[key]):
                return False
            continue
        values = event[key] if isinstance(event[key], list) else [event[key]]
        if not any(v in wanted for v in values):
            return False
    return True


def policy_allows_service(
    statements: list[dict[str, Any]], service: str, action: str, context: dict[str, str]
) -> bool:
    """Whether an Allow statement admits ``service`` for ``action`` in this request context
    (ArnLike/ArnEquals/StringEquals as "IAM JSON policy elements: Condition operators")."""
    for st in statements:
        principal = st.get("Principal", {})
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        services = [services] if isinstance(services, str) else services
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if st["Effect"] != "Allow" or service not in services or action not in actions:
            continue
        ok = True
        for operator, conditions in st.get("Condition", {}).items():
            for key, expected in conditions.items():
                expected = expected if isinstance(expected, list) else [expected]
                actual = context.get(key)
                if actual is None:
                    ok = False
                elif operator in ("ArnLike", "StringLike"):
                    ok &= any(fnmatch.fnmatchcase(actual, e) for e in expected)
                elif operator in ("ArnEquals", "StringEquals"):
                    ok &= actual in expected
                else:
                    ok = False
        if ok:
            return True
    return False


PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK_NAME,
}


def with_pseudo_parameters(node: Any) -> Any:
    """``node`` with every Fn::Sub that names only pseudo parameters rendered as text."""
    if isinstance(node, list):
        return [with_pseudo_parameters(x) for x in node]
    if not isinstance(node, dict):
        return node
    sub = node.get("Fn::Sub") if len(node) == 1 else None
    if isinstance(sub, str) and set(re.findall(r"\$\{([^}]+)\}", sub)) <= set(PSEUDO):
        return _render_sub(sub, PSEUDO)
    return {k: with_pseudo_parameters(v) for k, v in node.items()}


def _render_sub(node: Any, values: dict[str, str]) -> str:
    """A Fn::Sub whose references are all in ``values`` (test stand-ins), as text."""
    text, variables = (node, {}) if isinstance(node, str) else (node[0], node[1])
    assert isinstance(text, str)
    env = {**values, **{k: str(v) for k, v in variables.items() if isinstance(v, str)}}

    def sub(match: re.Match[str]) -> str:
        return env[match.group(1)]

    return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", sub, text)


# --- DMS table mappings from the spec --------------------------------------------------------


def _mappings_of(resources: dict[str, Any], mode: str) -> dict[str, Any]:
    name = "DmsReplicationTask" if mode == "Instance" else "DmsReplicationConfig"
    text = _props(resources, name)["TableMappings"]
    assert isinstance(text, str), "TableMappings must be literal JSON, not built at deploy time"
    result: dict[str, Any] = json.loads(text)
    return result


def _near_misses(name: str) -> list[str]:
    """Names DMS would also select if a name's characters were read as wildcards."""
    misses = [name + "x", "x" + name, name[:-1]]
    if "_" in name:
        misses.append(name.replace("_", "x", 1))
    return [m for m in misses if m and m != name]


@pytest.mark.parametrize("mode", DMS_MODES)
def test_dms_replicates_exactly_the_spec_tables(translated: dict[str, Any], mode: str) -> None:
    spec = load_spec()
    resources = _resources(translated, DmsMode=mode, **DMS_ON)
    mappings = _mappings_of(resources, mode)
    assert mappings == table_mappings(spec)  # the committed mappings are the generated ones
    # The deploy-time check compares the spec's mappings with this digest (test_deploy_helper).
    check = _props(resources, "DmsTableMappingsCheck")
    name = "DmsReplicationTask" if mode == "Instance" else "DmsReplicationConfig"
    text = _props(resources, name)["TableMappings"]
    assert check["TableMappingsSha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert text == table_mappings_json(table_mappings(spec))
    assert check["PipelineSpecPath"] == ""  # the parameter's default
    assert resources[name]["DependsOn"] == "DmsTableMappingsCheck"
    selections = [r for r in mappings["rules"] if r["rule-type"] == "selection"]
    assert all(r["rule-action"] == "include" for r in selections)
    assert len(selections) == len(spec.tables)
    for table in spec.tables:
        assert selected_by(mappings, spec.source_schema, table), table
        # spec.source_names is "case-insensitive": Oracle/Db2 send upper-case names.
        assert selected_by(mappings, spec.source_schema.upper(), table.upper()), table
        for other in _near_misses(table):
            if other not in spec.tables:
                assert not selected_by(mappings, spec.source_schema, other), other
        assert not selected_by(mappings, spec.source_schema + "x", table)
    assert_partitioned_by_primary_key(mappings, spec)
    for other in ("awsdms_apply_exceptions", "customers", "ticketxactivity", "pg_class"):
        assert not selected_by(mappings, spec.source_schema, other), other


def assert_partitioned_by_primary_key(
    mappings: dict[str, Any], spec: PipelineSpec, tables: list[str] | None = None
) -> None:
    """Every spec table's records are partitioned by primary key, in any case DMS sends its
    name, and by one rule that changes nothing else: ``map-record-to-record`` "creates an
    attribute for each column in the source database" not listed in ``exclude-columns`` ("Using
    object mapping to migrate data to a Kinesis data stream", AWS DMS User Guide), and the rules
    list no ``exclude-columns``, ``attribute-mappings`` or ``target-table-name``. Tables the
    spec does not name keep DMS's default. ``tables``: the spec tables to look up (all)."""
    rules = [r for r in mappings["rules"] if r["rule-type"] == "object-mapping"]
    assert len(rules) == len(spec.tables)
    assert len({r["rule-id"] for r in mappings["rules"]}) == len(mappings["rules"])
    for rule in rules:
        assert rule["rule-action"] == "map-record-to-record"
        assert rule["mapping-parameters"] == {"partition-key-type": "primary-key"}
        assert "target-table-name" not in rule
    schema = spec.source_schema
    for table in spec.tables if tables is None else tables:
        assert partition_key_type_of(mappings, schema, table) == "primary-key", table
        assert partition_key_type_of(mappings, schema.upper(), table.upper()) == "primary-key"
        for other in _near_misses(table):
            if other not in spec.tables:
                assert partition_key_type_of(mappings, schema, other) == "schema-table", other


def _big_spec(tables: int, source_names: str = "case-insensitive") -> PipelineSpec:
    return parse_spec(
        {
            "pipeline": {"source_schema": "sales_db", "source_names": source_names},
            "tables": {
                f"orders_{i:04d}": {
                    "key": ["order_id"],
                    "columns": {"order_id": "bigint", "note": "varchar(64)"},
                }
                for i in range(tables)
            },
        }
    )


@pytest.mark.parametrize("tables", [1, 600])
def test_generated_mappings_for_one_to_hundreds_of_tables(
    built_app: Build, tmp_path: Path, tables: int
) -> None:
    spec = _big_spec(tables)
    mappings = table_mappings(spec)
    text = table_mappings_json(mappings)
    assert json.loads(text) == mappings
    assert len(text.encode()) < DMS_TABLE_MAPPINGS_MAX_BYTES
    for name in (next(iter(spec.tables)), list(spec.tables)[-1]):
        assert selected_by(mappings, "sales_db", name)
        assert selected_by(mappings, "SALES_DB", name.upper())
    assert not selected_by(mappings, "sales_db", "ordersx0000")
    assert not selected_by(mappings, "salesxdb", "orders_0000")
    names = list(spec.tables)
    assert_partitioned_by_primary_key(mappings, spec, [names[0], names[-1]])

    # What scripts/sam_build.sh does after `sam build` (PIPELINE_SPEC=<this spec>): both DMS
    # resources of the built template get the spec's mappings, within the template quota.
    spec_file = tmp_path / "mine.toml"
    spec_file.write_text(
        '[pipeline]\nsource_schema = "sales_db"\n'
        + "".join(
            f'[tables.{name}]\nkey = ["order_id"]\n'
            'columns = { order_id = "bigint", note = "varchar(64)" }\n'
            for name in spec.tables
        )
    )
    built_template = built_app.build_dir / "template.yaml"
    built = yaml.safe_load(built_template.read_text())
    rewritten = tmp_path / "template.yaml"
    rewritten.write_text(built_template.read_text())
    assert main(["--spec", str(spec_file), "--template", str(rewritten)]) == 0
    assert len(rewritten.read_bytes()) <= TEMPLATE_MAX_BYTES
    again = yaml.safe_load(rewritten.read_text())
    for name in ("DmsReplicationTask", "DmsReplicationConfig"):
        assert json.loads(again["Resources"][name]["Properties"]["TableMappings"]) == mappings
    check = again["Resources"]["DmsTableMappingsCheck"]["Properties"]
    assert check["TableMappingsSha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert again["Resources"].keys() == built["Resources"].keys()
    # The build itself wrote the default spec's mappings.
    assert f"dms_table_mappings: {len(load_spec().tables)} tables" in built_app.output
    for name in ("DmsReplicationTask", "DmsReplicationConfig"):
        text_built = built["Resources"][name]["Properties"]["TableMappings"]
        assert json.loads(text_built) == table_mappings(load_spec())


def test_exact_source_names_select_only_that_case() -> None:
    mappings = table_mappings(_big_spec(2, source_names="exact"))
    assert selected_by(mappings, "sales_db", "orders_0001")
    assert not selected_by(mappings, "SALES_DB", "ORDERS_0001")
    assert partition_key_type_of(mappings, "sales_db", "orders_0001") == "primary-key"
    assert partition_key_type_of(mappings, "SALES_DB", "ORDERS_0001") == "schema-table"


def test_generated_mappings_refuse_what_dms_cannot_process() -> None:
    spec = _big_spec(1)
    rule = table_mappings(spec)["rules"][0]
    too_many = {"rules": [rule] * (DMS_TABLE_MAPPINGS_MAX_BYTES // len(json.dumps(rule)) + 10)}
    with pytest.raises(ValueError, match="DMS accepts at most"):
        table_mappings_json(too_many)


# --- alarms reach their topic ----------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_alarm_topic_admits_cloudwatch_alarms_and_the_failure_rules(
    translated: dict[str, Any], path: str
) -> None:
    resources = _resources(translated, ProcessingPath=path, DmsMode="Instance", **DMS_ON)
    policy = _props(resources, "AlarmTopicPolicy")
    statements = policy["PolicyDocument"]["Statement"]
    assert policy["Topics"] == [{"Ref": "AlarmTopic"}]
    alarm_arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:cdc-stack-StreamIteratorAge"
    ours = {"aws:SourceArn": alarm_arn, "aws:SourceAccount": ACCOUNT}
    rendered = with_pseudo_parameters(statements)
    assert policy_allows_service(rendered, "cloudwatch.amazonaws.com", "sns:Publish", ours)
    other_account = {
        "aws:SourceArn": alarm_arn.replace(ACCOUNT, "999999999999"),
        "aws:SourceAccount": "999999999999",
    }
    assert not policy_allows_service(
        rendered, "cloudwatch.amazonaws.com", "sns:Publish", other_account
    )
    rules = {
        st["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0]
        for st in statements
        if st["Principal"] == {"Service": "events.amazonaws.com"}
    }
    assert rules == {"GlueJobFailureRule", "DmsFailureRule"}
    # The topic is KMS-encrypted: CloudWatch must be able to use the key.
    key_policy = _props(resources, "DataKey")["KeyPolicy"]["Statement"]
    assert policy_allows_service(key_policy, "cloudwatch.amazonaws.com", "kms:GenerateDataKey*", {})
    assert policy_allows_service(key_policy, "cloudwatch.amazonaws.com", "kms:Decrypt", {})
    for name, res in resources.items():
        if res["Type"] == "AWS::CloudWatch::Alarm":
            assert res["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: res["Properties"]
        for name, res in resources.items()
        if res["Type"] == "AWS::CloudWatch::Alarm"
    }


def _query(alarm: dict[str, Any]) -> str:
    (metric,) = alarm["Metrics"]
    expression = metric["Expression"]["Fn::Sub"]
    if isinstance(expression, str):
        return expression
    text, variables = expression
    filter_value = variables["Filter"]
    if isinstance(filter_value, dict):  # Fn::Sub of the task id
        filter_value = filter_value["Fn::Sub"][0].replace("${TaskId}", "TASKID")
    return str(text).replace("${Filter}", filter_value)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", [*DMS_MODES, "None"])
def test_alarms_cover_the_whole_path(translated: dict[str, Any], path: str, mode: str) -> None:
    params = {"ProcessingPath": path, "DmsMode": mode, **(DMS_ON if mode != "None" else {})}
    resources = _resources(translated, **params)
    alarms = _alarms(resources)

    stream = alarms["StreamIteratorAgeAlarm"]
    assert (stream["Namespace"], stream["MetricName"]) == (
        "AWS/Kinesis",
        "GetRecords.IteratorAgeMilliseconds",
    )
    assert stream["TreatMissingData"] == "breaching"  # nobody reading is an alarm
    assert alarms["DeadLetterQueueDepthAlarm"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarms["ConsumerErrorsAlarm"]["MetricName"] == "Errors"
    rejected = _query(alarms["RecordsRejectedAlarm"])
    assert rejected == 'SELECT SUM(RecordsRejected) FROM SCHEMA("${MetricsNamespace}", service)'
    assert alarms["RecordsRejectedAlarm"]["Threshold"] == 0

    applier_alarms = {"ApplierQueueAgeAlarm", "ApplierDeadLetterQueueDepthAlarm",
                      "ApplierErrorsAlarm"}
    if path == "Lambda":
        lambda_age = alarms["ConsumerIteratorAgeAlarm"]
        assert (lambda_age["Namespace"], lambda_age["MetricName"]) == ("AWS/Lambda", "IteratorAge")
        assert lambda_age["Dimensions"][0]["Value"] == {"Ref": "KinesisConsumerFunction"}
        # The applier down or behind: consumers keep landing, the oldest message ages
        # ("Available CloudWatch metrics for Amazon SQS": ApproximateAgeOfOldestMessage, s).
        age = alarms["ApplierQueueAgeAlarm"]
        assert (age["Namespace"], age["MetricName"], age["Statistic"]) == (
            "AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum")
        assert age["Dimensions"] == [{"Name": "QueueName",
                                      "Value": {"Fn::GetAtt": ["ApplierQueue", "QueueName"]}}]
        assert age["Threshold"] == "600"  # ApplierQueueAgeAlarmSeconds
        assert age["OKActions"] == [{"Ref": "AlarmTopic"}]
        dead = alarms["ApplierDeadLetterQueueDepthAlarm"]
        assert (dead["MetricName"], dead["Threshold"], dead["ComparisonOperator"]) == (
            "ApproximateNumberOfMessagesVisible", 0, "GreaterThanThreshold")
        assert dead["Dimensions"][0]["Value"] == {
            "Fn::GetAtt": ["ApplierDeadLetterQueue", "QueueName"]}
        errors = alarms["ApplierErrorsAlarm"]
        assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
        assert errors["Dimensions"][0]["Value"] == {"Ref": "BatchApplierFunction"}
    else:
        assert "ConsumerIteratorAgeAlarm" not in alarms
        assert not applier_alarms & set(alarms)
        assert alarms["GlueJobFailureAlarm"]["MetricName"] == "TriggeredRules"

    assert "RedshiftRpuHoursAlarm" not in alarms  # optional: RedshiftRpuHoursPerDayAlarm > 0
    with_limit = _alarms(_resources(translated, RedshiftRpuHoursPerDayAlarm="24", **params))
    rpu = with_limit["RedshiftRpuHoursAlarm"]
    seconds, hours = rpu["Metrics"]
    assert seconds["MetricStat"]["Metric"]["MetricName"] == "ComputeSeconds"
    assert seconds["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "Workgroup", "Value": "cdc-upserts"}
    ]
    assert (hours["Expression"], rpu["Threshold"]) == ("seconds / 3600", "24")
    cluster = {**params, "RedshiftMode": "ExistingCluster", "RedshiftClusterIdentifier": "c1"}
    assert "RedshiftRpuHoursAlarm" not in _alarms(
        _resources(translated, RedshiftRpuHoursPerDayAlarm="24", **cluster)
    )

    dms_alarms = {"DmsCdcLatencySourceAlarm", "DmsCdcLatencyTargetAlarm", "DmsFailureAlarm"}
    if mode == "None":
        assert not dms_alarms & set(alarms)
        return
    assert dms_alarms <= set(alarms)
    for name, metric in (
        ("DmsCdcLatencySourceAlarm", "CDCLatencySource"),
        ("DmsCdcLatencyTargetAlarm", "CDCLatencyTarget"),
    ):
        query = _query(alarms[name])
        assert query.startswith(f'SELECT MAX({metric}) FROM "AWS/DMS"'), query
        if mode == "Instance":
            assert query.endswith(" WHERE ReplicationTaskIdentifier = 'TASKID'"), query
        assert alarms[name]["Threshold"] == "600"  # DmsCdcLatencyAlarmSeconds

    # The failure rule matches the events DMS sends for this stack's replication only.
    rule = _props(resources, "DmsFailureRule")
    resource = "DmsReplicationTask" if mode == "Instance" else "DmsReplicationConfig"
    ours = f"arn:aws:dms:{REGION}:{ACCOUNT}:task:OURS"
    pattern = json.loads(json.dumps(rule["EventPattern"]).replace(
        json.dumps({"Ref": resource}), json.dumps(ours)))
    failed = {
        "source": "aws.dms",
        "detail-type": "DMS Replication Task State Change"
        if mode == "Instance"
        else "DMS Replication State Change",
        "resources": [ours],
        "detail": {
            "category": "Failure",
            "eventType": "REPLICATION_TASK_FAILED" if mode == "Instance" else "REPLICATION_FAILED",
        },
    }
    assert event_pattern_matches(pattern, failed)
    assert not event_pattern_matches(pattern, {**failed, "resources": [ours + "x"]})
    started = {**failed, "detail": {"eventType": "REPLICATION_TASK_STARTED"}}
    assert not event_pattern_matches(pattern, started)
    assert rule["Targets"] == [{"Id": "AlarmTopic", "Arn": {"Ref": "AlarmTopic"}}]
    # The task stops on a table error instead of suspending the table silently.
    if mode == "Instance":
        settings = json.loads(_props(resources, "DmsReplicationTask")["ReplicationTaskSettings"])
    else:
        settings = _props(resources, "DmsReplicationConfig")["ReplicationSettings"]
    assert settings["ErrorBehavior"]["TableErrorPolicy"] == "STOP_TASK"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", [*DMS_MODES, "None"])
def test_dashboard_shows_dms_stream_consumer_freshness_and_dead_letters(
    translated: dict[str, Any], mode: str, path: str
) -> None:
    params = {"ProcessingPath": path, "DmsMode": mode, **(DMS_ON if mode != "None" else {})}
    resources = _resources(translated, **params)
    text, variables = _props(resources, "Dashboard")["DashboardBody"]["Fn::Sub"]
    dms_filter = variables["DmsFilter"]
    applier = {"ApplierFunction": {"Ref": "BatchApplierFunction"},
               "ApplierQueueName": {"Fn::GetAtt": ["ApplierQueue", "QueueName"]},
               "ApplierDeadLetterQueueName": {"Fn::GetAtt": ["ApplierDeadLetterQueue",
                                                             "QueueName"]}}
    for name, reference in applier.items():
        assert variables[name] == (reference if path == "Lambda" else "none"), name
    values = {
        "ApplierFunction": "applier",
        "ApplierQueueName": "applierqueue",
        "ApplierDeadLetterQueueName": "applierdlq",
        "DmsFilter": "" if dms_filter == "" else " WHERE ReplicationTaskIdentifier = 'TASKID'",
        "DmsRuleName": "rule" if isinstance(variables["DmsRuleName"], dict) else "none",
        "AWS::Region": REGION,
        "ChangeStream": "stream",
        "KinesisConsumerFunction": "function",
        "DeadLetterQueue.QueueName": "queue",
        "GlueStreamingJob": "job",
        "GlueJobFailureRule": "gluerule",
        "MetricsNamespace": "CdcRedshiftUpserts",
    }
    body = json.loads(_render_sub([text, {}], values))
    shown = json.dumps(body)
    for needle in (
        "CDCLatencySource",
        "CDCLatencyTarget",
        "CDCIncomingChanges",
        "GetRecords.IteratorAgeMilliseconds",
        "IteratorAge",
        "SourceLag",
        "RecordsRejected",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "BatchesApplied",
        "ApplyTransactions",
        "applierdlq",
    ):
        assert needle in shown, needle
    assert ("TASKID" in shown) is (mode == "Instance")


# --- Glue: restarts, new code, encryption, scoped role --------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_glue_restart_never_races_a_running_job(translated: dict[str, Any], path: str) -> None:
    resources = _resources(translated, ProcessingPath=path)
    # No Glue SCHEDULED trigger: it would start the job while a run is active. The rule has a
    # logical id of its own: CloudFormation refuses to change the type of an existing one.
    assert not [n for n, r in resources.items() if r["Type"] == "AWS::Glue::Trigger"]
    assert "GlueRestartTrigger" not in translated["Resources"]
    restart_parts = {
        "GlueRestartRule",
        "GlueJobUpdatedRule",
        "GlueRestartRulePermission",
        "GlueJobUpdatedRulePermission",
    }
    if path == "Lambda":
        assert not restart_parts & set(resources)
        return
    assert restart_parts <= set(resources)
    schedule = _props(resources, "GlueRestartRule")
    assert schedule["ScheduleExpression"] == "cron(0/10 * * * ? *)"
    updated = _props(resources, "GlueJobUpdatedRule")
    for rule, permission in (
        (schedule, "GlueRestartRulePermission"),
        (updated, "GlueJobUpdatedRulePermission"),
    ):
        (target,) = rule["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": ["DeployHelperFunction", "Arn"]}
        assert target["Input"] == {"Fn::Sub": '{"JobName": "${GlueStreamingJob}"}'}
        allow = _props(resources, permission)
        assert allow["Principal"] == "events.amazonaws.com"
        assert allow["FunctionName"] == {"Ref": "DeployHelperFunction"}
    assert _props(resources, "GlueRestartRulePermission")["SourceArn"] == {
        "Fn::GetAtt": ["GlueRestartRule", "Arn"]
    }

    # A deploy that changes the job definition: CloudFormation's resource event for the job.
    pattern = json.loads(
        json.dumps(updated["EventPattern"]).replace(json.dumps({"Ref": "AWS::StackId"}),
                                                    json.dumps(STACK_ID))
    )
    event = {
        "source": "aws.cloudformation",
        "detail-type": "CloudFormation Resource Status Change",
        "detail": {
            "stack-id": STACK_ID,
            "logical-resource-id": "GlueStreamingJob",
            "physical-resource-id": f"{STACK_NAME}-cdc-streaming",
            "status-details": {"status": "UPDATE_COMPLETE", "status-reason": ""},
            "resource-type": "AWS::Glue::Job",
        },
    }
    assert event_pattern_matches(pattern, event)
    in_progress = json.loads(json.dumps(event).replace("UPDATE_COMPLETE", "UPDATE_IN_PROGRESS"))
    assert not event_pattern_matches(pattern, in_progress)
    other = json.loads(json.dumps(event).replace('"GlueStreamingJob"', '"ChangeStream"'))
    assert not event_pattern_matches(pattern, other)
    other_stack = json.loads(json.dumps(event).replace(STACK_ID, STACK_ID + "x"))
    assert not event_pattern_matches(pattern, other_stack)
    helper = iter_statements(resources, "DeployHelperRole")
    assert "glue:GetJob" in helper["ControlStreamingJobRuns"]["Action"]


def iter_statements(resources: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    (policy,) = _props(resources, role)["Policies"]
    return {st["Sid"]: st for st in policy["PolicyDocument"]["Statement"]}


@pytest.mark.parametrize("path", PATHS)
def test_glue_security_configuration_encrypts_with_the_stack_key(
    translated: dict[str, Any], path: str
) -> None:
    resources = _resources(translated, ProcessingPath=path)
    job = _props(resources, "GlueStreamingJob")
    assert job["SecurityConfiguration"] == {"Ref": "GlueSecurityConfiguration"}
    config = _props(resources, "GlueSecurityConfiguration")["EncryptionConfiguration"]
    key = {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert config["S3Encryptions"] == [{"S3EncryptionMode": "SSE-KMS", "KmsKeyArn": key}]
    assert config["CloudWatchEncryption"] == {
        "CloudWatchEncryptionMode": "SSE-KMS",
        "KmsKeyArn": key,
    }
    assert config["JobBookmarksEncryption"] == {
        "JobBookmarksEncryptionMode": "CSE-KMS",
        "KmsKeyArn": key,
    }
    # CloudWatch Logs may use the key for the Glue log groups only.
    rendered = with_pseudo_parameters(_props(resources, "DataKey")["KeyPolicy"]["Statement"])
    logs = f"logs.{REGION}.amazonaws.com"
    context_key = "kms:EncryptionContext:aws:logs:arn"
    glue_logs = {context_key: f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws-glue/jobs/x-role/y"}
    other_logs = {context_key: f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/other"}
    assert policy_allows_service(rendered, logs, "kms:GenerateDataKey*", glue_logs)
    assert not policy_allows_service(rendered, logs, "kms:GenerateDataKey*", other_logs)
    role = iter_statements(resources, "GlueJobRole")
    assert "logs:AssociateKmsKey" in role["WriteGlueLogs"]["Action"]
    key_actions = set(role["UseDataKey"]["Action"])
    assert {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"} <= key_actions


def test_glue_role_reads_only_this_stacks_artifacts(translated: dict[str, Any]) -> None:
    resources = _resources(translated, ProcessingPath="Glue")
    managed = "aws-sam-cli-managed-default-samclisourcebucket-*"  # DeploymentBucketName
    bucket = managed.replace("*", "1a2b3c")
    readable = []
    for st in iter_statements(resources, "GlueJobRole").values():
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if "s3:GetObject" not in actions:
            continue
        for resource in st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]:
            text = resource["Fn::Sub"] if isinstance(resource, dict) else resource
            readable.append(
                text.replace("${AWS::Partition}", "aws")
                .replace("${DeploymentBucketName}", managed)
                .replace("${AWS::StackName}", STACK_NAME)
                .replace("${GlueAssetsBucket.Arn}", "arn:aws:s3:::assets")
            )

    def can_read(arn: str) -> bool:
        return any(fnmatch.fnmatchcase(arn, pattern) for pattern in readable)

    assert can_read(f"arn:aws:s3:::{bucket}/{STACK_NAME}/0123abcd")  # sam package's upload
    assert can_read("arn:aws:s3:::assets/lib/shared-0123.zip")
    assert not can_read(f"arn:aws:s3:::{bucket}/another-app/0123abcd")
    assert not can_read("arn:aws:s3:::assets/other/file")


# --- DMS network -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", DMS_MODES)
def test_dms_serverless_gets_vpc_endpoints(translated: dict[str, Any], mode: str) -> None:
    resources = _resources(translated, DmsMode=mode, **DMS_ON)
    endpoints = {
        name: res["Properties"]
        for name, res in resources.items()
        if res["Type"] == "AWS::EC2::VPCEndpoint"
    }
    if mode == "Instance":
        assert not endpoints  # the instance may use a NAT gateway or your endpoints
        return
    services = {p["ServiceName"]["Fn::Sub"] for p in endpoints.values()}
    assert services == {
        "com.amazonaws.${AWS::Region}.kinesis-streams",
        "com.amazonaws.${AWS::Region}.secretsmanager",
    }
    for props in endpoints.values():
        assert props["VpcEndpointType"] == "Interface"
        assert props["PrivateDnsEnabled"] is True
        assert props["VpcId"] == DMS_ON["VpcId"]
        assert props["SubnetIds"] == DMS_ON["DmsSubnetIds"].split(",")
        assert props["SecurityGroupIds"] == [
            {"Fn::GetAtt": ["DmsEndpointSecurityGroup", "GroupId"]}
        ]
    group = _props(resources, "DmsEndpointSecurityGroup")
    assert group["SecurityGroupIngress"] == [
        {
            "Description": "HTTPS from the DMS replication",
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "SourceSecurityGroupId": {"Fn::GetAtt": ["DmsSecurityGroup", "GroupId"]},
        }
    ]
    reuse = _resources(translated, DmsMode=mode, CreateDmsVpcEndpoints="false", **DMS_ON)
    assert not [n for n, r in reuse.items() if r["Type"] == "AWS::EC2::VPCEndpoint"]


def test_dms_security_group_egress_is_limited(translated: dict[str, Any]) -> None:
    resources = _resources(
        translated, DmsMode="Instance", SourceDatabaseCidr="10.1.0.0/16", **DMS_ON
    )
    egress = _props(resources, "DmsSecurityGroup")["SecurityGroupEgress"]
    allowed = {(r["IpProtocol"], str(r["FromPort"]), str(r["ToPort"]), r["CidrIp"]) for r in egress}
    assert allowed == {("tcp", "5432", "5432", "10.1.0.0/16"), ("tcp", "443", "443", "0.0.0.0/0")}
    mysql = _resources(translated, DmsMode="Instance", SourceDatabasePort="3306", **DMS_ON)
    ports = {str(r["FromPort"]) for r in _props(mysql, "DmsSecurityGroup")["SecurityGroupEgress"]}
    assert ports == {"3306", "443"}


# --- data that must survive -------------------------------------------------------------------


def test_secrets_key_namespace_and_dead_letters_are_retained(translated: dict[str, Any]) -> None:
    resources = _resources(translated, RedshiftMode="CreateServerless")
    for name in (
        "HmacKeySecret",
        "DataKey",
        "RedshiftNamespace",
        "RedshiftAdminSecret",
        "DeadLetterQueue",
        # Landed batches the warehouse has not got (Lambda path, the default).
        "ApplierQueue",
        "ApplierDeadLetterQueue",
    ):
        assert resources[name]["DeletionPolicy"] == "Retain", name
        assert resources[name]["UpdateReplacePolicy"] == "Retain", name
    # Every other stateful resource says what happens to it (cfn-lint I3011, in
    # test_static_analysis.py); the Lambda log groups are encrypted with the stack's key.
    for name in ("KinesisConsumerLogGroup", "SchemaMigratorLogGroup", "DeployHelperLogGroup",
                 "BatchApplierLogGroup"):
        assert _props(resources, name)["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}


def test_base_capacity_only_takes_values_serverless_accepts(translated: dict[str, Any]) -> None:
    # "Compute capacity for Amazon Redshift Serverless": 4, 8-512 in steps of 8, 512-1024 in
    # steps of 32 (https://docs.aws.amazon.com/redshift/latest/mgmt/serverless-capacity.html).
    param = translated["Parameters"]["RedshiftBaseCapacity"]
    accepted = {4, *range(8, 513, 8), *range(544, 1025, 32)}
    assert {int(v) for v in param["AllowedValues"]} == accepted
    assert int(param["Default"]) in accepted
    assert not {12, 520, 1000, 2048} & {int(v) for v in param["AllowedValues"]}


def test_first_week_guide_explains_every_alarm() -> None:
    doc = (REPO / "docs/deploy.md").read_text()
    assert "### First week" in doc
    section = doc.split("### First week", 1)[1].split("\n## ", 1)[0]
    alarms = [
        name
        for name, res in load_template()["Resources"].items()
        if res["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert len(alarms) >= 9
    for name in alarms:
        row = re.search(rf"^\| `{name}`.*\| (.+) \| (.+) \|$", section, re.MULTILINE)
        assert row, f"{name}: no row in docs/deploy.md 'First week'"


# --- pinned, hashed runtime dependencies -----------------------------------------------------


def _lock_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "lock_runtime", REPO / "layers/shared/lock_runtime.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runtime_lock_pins_and_hashes_every_dependency() -> None:
    lock = _lock_module()
    entries = lock.parse_lock((REPO / "layers/shared/runtime.lock").read_text())
    requirements = layer_requirements(REPO / "pyproject.toml")
    for requirement in requirements:
        wanted = Requirement(requirement)
        name = lock.normalized(wanted.name)
        assert name in entries, f"{name} is not in runtime.lock: regenerate it"
        assert lock.key(requirement) in entries[name].via, f"{requirement}: regenerate the lock"
        version = entries[name].version
        assert wanted.specifier.contains(version), f"{name}=={version} breaks {requirement}"
    for name, entry in entries.items():
        assert entry.hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in entry.hashes), name
        assert entry.via, name
    assert set(lock.selected(entries, requirements)) == set(entries)  # nothing stale
    # The Glue job's packages carry a wheel hash for CPython 3.11 x86_64 as well.
    glue = lock.selected(entries, lock.glue_requirements())
    assert set(glue) == {"msgspec"}
    assert len(entries["msgspec"].hashes) == 3  # Lambda arm64, Lambda x86_64, Glue 5.0
    # A pyproject that drops the tracer extra selects what powertools alone brings.
    base = lock.selected(entries, ["msgspec>=0.18", "aws-lambda-powertools>=3.0"])
    assert "aws-xray-sdk" not in base and "aws-lambda-powertools" in base


def test_runtime_lock_ships_the_sdk_the_project_tests_with() -> None:
    """The layer's SDK is the virtualenv's boto3 and botocore, with a closure that satisfies
    what those two require on python3.12: one consistent set, shadowing the runtime's."""
    lock = _lock_module()
    entries = lock.parse_lock((REPO / "layers/shared/runtime.lock").read_text())
    assert set(lock.SDK_DISTRIBUTIONS) <= set(entries)
    for sdk in ("boto3", "botocore"):
        assert entries[sdk].version == importlib.metadata.version(sdk), f"{sdk}: regenerate"
        for line in importlib.metadata.requires(sdk) or []:
            wanted = Requirement(line)
            if wanted.marker and not wanted.marker.evaluate({"python_version": "3.12",
                                                             "extra": ""}):
                continue
            version = entries[lock.normalized(wanted.name)].version
            assert wanted.specifier.contains(version), f"{sdk} wants {wanted}, lock has {version}"


def test_layer_and_glue_install_exactly_the_lock(built_app: Build) -> None:
    lock = _lock_module()
    entries = lock.parse_lock((REPO / "layers/shared/runtime.lock").read_text())
    layer = built_app.build_dir / "SharedLayer"
    installed = {}
    for dist_info in (layer / "python").glob("*.dist-info"):
        name, version = dist_info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[lock.normalized(name)] = version
    assert installed == {name: entry.version for name, entry in entries.items()}
    wheels = sorted((layer / "glue-wheels").glob("*.whl"))
    glue = lock.selected(entries, lock.glue_requirements())
    assert {lock.normalized(w.name.split("-")[0]) for w in wheels} == set(glue)
    for wheel in wheels:
        name = lock.normalized(wheel.name.split("-")[0])
        assert "cp311" in wheel.name and "x86_64" in wheel.name, wheel.name
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() in entries[name].hashes


@pytest.mark.parametrize("path", PATHS)
def test_glue_job_installs_its_wheels_from_the_stack(translated: dict[str, Any], path: str) -> None:
    resources = _resources(translated, ProcessingPath=path)
    args = _props(resources, "GlueStreamingJob")["DefaultArguments"]
    assert args["--additional-python-modules"] == {"Fn::GetAtt": ["GlueSharedLibrary", "Modules"]}
    assert args["--python-modules-installer-option"] == "--no-index"
    assert "GlueAdditionalPythonModules" not in translated["Parameters"]
