"""What `sam deploy` ships, run as AWS runs it: the built artifacts, not the source tree.

- The SharedLayer's wheels match the functions' architecture (arm64 by default, ELF machine
  checked, not file names), the arm64 and x86_64 builds hold the same packages, the layer
  carries one whole AWS SDK (boto3, botocore and their closure, each once, at runtime.lock's
  versions), and every module the handlers import (followed through the `shared` package) is
  in the layer or the standard library.
- The x86_64 build (what these machines can execute) of the Kinesis consumer, the batch
  applier, the schema migrator and the deploy helper runs in a Python 3.12 virtualenv holding
  only what the Lambda runtime provides (its own, older boto3), with the layer and function
  directories on sys.path as Lambda puts them (tests/deploy/lambda_provided/runtime_runner.py),
  against the local stack; the warehouse, S3 and CloudFormation's response URL are checked, not
  the code's internals. There the layer's SDK is the one imported, so the applier long-polls
  the Data API: a stand-in of the test's own counts the requests it receives.
- The built layer without aws_xray_sdk (powertools' `tracer` extra) fails exactly as the
  deployed function did (`Runtime.ImportModuleError: No module named 'aws_xray_sdk'`).
- The Glue job as deployed: the job script plus the `--extra-py-files` zip the deploy helper
  published from the built layer, run by spark-submit on local Spark with the job's arguments
  from the template (resources replaced by the local stack's), under a Python that has the
  job's third-party modules but not this project, and a minimal `awsglue` stand-in
  (tests/deploy/glue_standin); rows are asserted in the warehouse.
"""

from __future__ import annotations

import ast
import base64
import http.server
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from local.redshift_data_api.auth import AuthSettings
from local.redshift_data_api.server import RedshiftDataApiServer
from local.stack import StackInfo, handler_environment
from local.stack.environment import APPLIER_HANDLER
from local.stack.state import CLUSTER_IDENTIFIER, WORKGROUP_NAME
from tests.deploy.cfn_model import REPO, Evaluator, load_template
from tests.deploy.deploy_helpers import (
    LAMBDA_PROVIDED,
    Build,
    layer_module,
    locked_sdk,
    run_in_lambda_runtime,
    running_local_stack,
)

# The ELF header's e_machine values (System V ABI supplements for each architecture).
ELF_MACHINES = {"arm64": 183, "x86_64": 62}
# The top-level modules of the SDK's distributions (python-dateutil's is dateutil).
SDK_MODULES = {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six"}
EVENTS = REPO / "events"


def elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


def top_level_names(layer_python: Path) -> set[str]:
    names = set()
    for entry in layer_python.iterdir():
        if entry.name.endswith(".dist-info") or entry.name == "__pycache__":
            continue
        names.add(entry.name.removesuffix(".py"))
    return names


def cloudformation_event(request_type: str, logical_id: str, resource_type: str,
                         properties: dict[str, Any], response_url: str) -> dict[str, Any]:
    """A custom-resource request as CloudFormation sends it: property values as strings."""
    return {
        "RequestType": request_type,
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/cdc/1",
        "RequestId": f"req-{logical_id}",
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceProperties": {k: str(v) for k, v in properties.items()},
    }


class ResponseUrl:
    """CloudFormation's pre-signed response URL: records the PUT bodies it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def response_url() -> Iterator[ResponseUrl]:
    url = ResponseUrl()
    try:
        yield url
    finally:
        url.close()


def warehouse_rows(info: StackInfo, sql: str, database: str | None = None) -> list[tuple[Any, ...]]:
    conninfo = info.postgres_conninfo
    if database:
        conninfo = conninfo.replace(f"dbname={info.database}", f"dbname={database}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def sqs_record(message: dict[str, Any], region: str) -> dict[str, Any]:
    """A received SQS message as the SQS event source mapping delivers it ("Using Lambda with
    Amazon SQS": Records of messageId, body, ...)."""
    return {"messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"], "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {}, "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs", "awsRegion": region,
            "eventSourceARN": f"arn:aws:sqs:{region}:123456789012:cdc-applier"}


class RecordingDataApi:
    """A Data API stand-in of the test's own over the stack's warehouse, set up as the stack's
    (authentication, workgroup, cluster), that records every request it receives: operation
    and whether it asked to wait (``WaitTimeSeconds``, "Reduce API calls with long polling",
    Amazon Redshift Management Guide)."""

    def __init__(self, info: StackInfo) -> None:
        self.requests: list[tuple[str, bool]] = []
        self.server = RedshiftDataApiServer(
            pg_conninfo=f"host=127.0.0.1 port={info.postgres_port} user=postgres",
            s3_endpoint_url=info.moto_endpoint,
            auth=AuthSettings(secrets_endpoint_url=info.moto_endpoint,
                              sts_endpoint_url=info.moto_endpoint, region=info.region),
            workgroups=(WORKGROUP_NAME,), clusters=(CLUSTER_IDENTIFIER,))
        handlers = self.server.operations.handlers
        for operation, handler in list(handlers.items()):
            handlers[operation] = self._recorded(operation, handler)

    def _recorded(self, operation: str, handler: Any) -> Any:
        def run(body: dict[str, Any], caller: Any) -> Any:
            self.requests.append((operation, "WaitTimeSeconds" in body))
            return handler(body, caller)

        return run

    def __enter__(self) -> RecordingDataApi:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return str(self.server.endpoint_url)


def template_properties(resource: str, **parameters: str) -> dict[str, Any]:
    """A resource's properties as the template sets them for the given parameters."""
    evaluator = Evaluator(load_template(), parameters)
    properties: dict[str, Any] = evaluator.resources()[resource]["Properties"]
    return properties


# --- the layer -----------------------------------------------------------------------------


def test_layer_wheels_match_the_architecture(built_app: Build, built_x86_64: Build) -> None:
    layers = {"arm64": built_app.build_dir / "SharedLayer/python",
              "x86_64": built_x86_64.build_dir / "SharedLayer/python"}
    for architecture, python in layers.items():
        extensions = list(python.rglob("*.so"))
        assert extensions, architecture  # msgspec's and wrapt's C cores
        wrong = [p for p in extensions if elf_machine(p) != ELF_MACHINES[architecture]]
        assert not wrong, f"{architecture} layer holds foreign binaries: {wrong}"
    # The same packages for both: what runs here (x86_64) is what AWS gets (arm64).
    assert top_level_names(layers["arm64"]) == top_level_names(layers["x86_64"])
    for python in layers.values():
        assert (python / "aws_xray_sdk").is_dir()  # Tracer() needs it


def test_layer_carries_one_whole_sdk_at_the_locked_versions(
    built_app: Build, built_x86_64: Build,
) -> None:
    """boto3, botocore and their closure, each once, at runtime.lock's versions, which are the
    virtualenv's (the SDK the tests run): a part of the SDK alone would be paired with the
    rest of the runtime's copy."""
    sdk = locked_sdk()
    assert set(sdk) == {"boto3", "botocore", "s3transfer", "jmespath", "urllib3",
                        "python-dateutil", "six"}
    assert sdk["botocore"] == importlib.metadata.version("botocore")
    assert sdk["boto3"] == importlib.metadata.version("boto3")
    for build in (built_app, built_x86_64):
        python = build.build_dir / "SharedLayer/python"
        installed = layer_module("layer_requirements").installed_distributions(python)
        assert {name: installed.get(name) for name in sdk} == {
            name: [version] for name, version in sdk.items()}
        assert top_level_names(python) >= SDK_MODULES


def _imports(path: Path) -> set[str]:
    """Modules imported by a file, except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_layer_holds_what_the_handlers_import(built_app: Build) -> None:
    python = built_app.build_dir / "SharedLayer/python"
    available = top_level_names(python) | set(sys.stdlib_module_names)  # the SDK is in the layer
    for function in ("KinesisConsumerFunction", "SchemaMigratorFunction", "BatchApplierFunction"):
        seen: set[str] = set()
        pending = [built_app.build_dir / function / "app.py"]
        missing = set()
        while pending:
            path = pending.pop()
            for module in _imports(path):
                top = module.split(".")[0]
                if top == "shared":
                    parts = module.split(".")
                    for n in range(2, len(parts) + 1):
                        candidate = python.joinpath(*parts[:n])
                        file = candidate.with_suffix(".py")
                        if file.exists() and str(file) not in seen:
                            seen.add(str(file))
                            pending.append(file)
                elif top not in available:
                    missing.add(module)
        assert not missing, f"{function} imports what its layer does not have: {missing}"
        assert seen, function


def test_layer_without_aws_xray_sdk_fails_like_the_deployed_function(
    built_x86_64: Build, lambda_runtime_python: Path, tmp_path: Path,
) -> None:
    """The issue's failure, reintroduced (the build's layer without powertools' `tracer`
    extra): the artifact run reports it as Lambda did."""
    layer = tmp_path / "SharedLayer"
    shutil.copytree(built_x86_64.build_dir / "SharedLayer", layer)
    for path in (layer / "python").glob("aws_xray_sdk*"):
        shutil.rmtree(path)
    response = run_in_lambda_runtime(lambda_runtime_python, tmp_path, {
        "task": str(built_x86_64.build_dir / "KinesisConsumerFunction"),
        "layers": [str(layer)],
        "handler": "app.lambda_handler",
        "environment": {"POWERTOOLS_SERVICE_NAME": "cdc-kinesis-consumer"},
        "event": {"Records": []},
    })
    assert response["errorType"] == "Runtime.ImportModuleError"
    assert "No module named 'aws_xray_sdk'" in response["errorMessage"]


# --- the functions in a clean runtime ---------------------------------------------------------


def test_built_consumer_applies_a_sample_event(
    built_x86_64: Build, lambda_runtime_python: Path, local_stack: StackInfo, tmp_path: Path,
) -> None:
    response = run_in_lambda_runtime(lambda_runtime_python, tmp_path, {
        "task": str(built_x86_64.build_dir / "KinesisConsumerFunction"),
        "layers": [str(built_x86_64.build_dir / "SharedLayer")],
        "handler": "app.lambda_handler",
        "function_name": "KinesisConsumerFunction",
        "environment": handler_environment(local_stack),
        "event": json.loads((EVENTS / "full_load.json").read_text()),
    })
    assert response == {"batchItemFailures": []}
    rows = warehouse_rows(local_stack, "SELECT ticket_id FROM public.sport_event_activity "
                                       "WHERE ticket_id <= 8 ORDER BY 1")
    assert [r[0] for r in rows] == list(range(1, 9))


def test_built_schema_migrator_migrates_and_answers_cloudformation(
    built_x86_64: Build, lambda_runtime_python: Path, local_stack: StackInfo,
    response_url: ResponseUrl, tmp_path: Path,
) -> None:
    """A new database of an existing workgroup, the admin's secret: the migrator creates the
    tables and grants the consumers' user (ConsumerSecretArn) what it needs on them."""
    database = "migrator_artifact"
    warehouse_rows(local_stack, f"CREATE DATABASE {database}", database="postgres")
    properties = template_properties(
        "SchemaMigration", RedshiftMode="ExistingServerless",
        RedshiftWorkgroupName=local_stack.workgroup_name, RedshiftDatabase=database,
        RedshiftSecretArn=local_stack.resources.admin_secret_arn)
    assert properties["ConsumerSecretArn"] == {"Ref": "RedshiftConsumerSecret"}
    properties["ConsumerSecretArn"] = local_stack.resources.consumer_secret_arn
    properties = {k: v for k, v in properties.items() if isinstance(v, str)}
    event = cloudformation_event("Create", "SchemaMigration", "Custom::SchemaMigration",
                                 {"ServiceToken": "arn:aws:lambda:fn", **properties},
                                 response_url.url)
    env = handler_environment(local_stack)
    response = run_in_lambda_runtime(lambda_runtime_python, tmp_path, {
        "task": str(built_x86_64.build_dir / "SchemaMigratorFunction"),
        "layers": [str(built_x86_64.build_dir / "SharedLayer")],
        "handler": "app.lambda_handler",
        "function_name": "SchemaMigratorFunction",
        "environment": {k: v for k, v in env.items() if k.startswith("AWS_")}
        | {"POWERTOOLS_SERVICE_NAME": "cdc-schema-migrator"},
        "event": event,
    })
    assert response is None
    [answer] = response_url.bodies
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    secrets = boto3.client("secretsmanager", endpoint_url=local_stack.moto_endpoint,
                           region_name=local_stack.region)
    consumer = json.loads(secrets.get_secret_value(
        SecretId=local_stack.resources.consumer_secret_arn)["SecretString"])["username"]
    [(can_write,)] = warehouse_rows(
        local_stack, f"SELECT has_table_privilege('{consumer}', 'public.sport_event_activity', "
                     "'INSERT')", database=database)
    assert can_write


def test_built_applier_applies_what_the_built_consumer_landed(
    built_x86_64: Build, lambda_runtime_python: Path, local_stack: StackInfo, tmp_path: Path,
) -> None:
    """The Lambda path as deployed: the built consumer (APPLIER_QUEUE_URL set) lands a batch
    and announces it; the built applier gets that message as the SQS event source mapping
    delivers it ("Using Lambda with Amazon SQS": Records of messageId, body, ...) and applies
    it. Both run in the runtime-only environment."""
    env = handler_environment(local_stack)
    sqs = boto3.client("sqs", endpoint_url=local_stack.moto_endpoint,
                       region_name=local_stack.region)
    queue_url = sqs.create_queue(QueueName="cdc-applier-artifact")["QueueUrl"]
    layers = [str(built_x86_64.build_dir / "SharedLayer")]
    landed = run_in_lambda_runtime(lambda_runtime_python, tmp_path, {
        "task": str(built_x86_64.build_dir / "KinesisConsumerFunction"),
        "layers": layers,
        "handler": "app.lambda_handler",
        "function_name": "KinesisConsumerFunction",
        "environment": env | {"APPLIER_QUEUE_URL": queue_url},
        "event": json.loads((EVENTS / "inserts.json").read_text()),
    })
    assert landed == {"batchItemFailures": []}
    query = "SELECT ticket_id FROM public.sport_event_activity WHERE ticket_id IN (9, 10)"
    assert warehouse_rows(local_stack, query) == []  # landed, not applied
    [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    record = sqs_record(message, local_stack.region)
    garbage = {**record, "messageId": "not-a-batch", "body": "{}"}
    applied = run_in_lambda_runtime(lambda_runtime_python, tmp_path, {
        "task": str(built_x86_64.build_dir / "BatchApplierFunction"),
        "layers": layers,
        "handler": "app.lambda_handler",
        "function_name": "BatchApplierFunction",
        # The applier's own variables (POWERTOOLS_SERVICE_NAME: template.yaml's, kept in step
        # by tests/deploy/test_local_environment.py), as Lambda gives each function its own.
        "environment": handler_environment(local_stack, handler=APPLIER_HANDLER),
        "event": {"Records": [record, garbage]},
    })
    assert applied == {"batchItemFailures": [{"itemIdentifier": "not-a-batch"}]}
    assert sorted(r[0] for r in warehouse_rows(local_stack, query)) == [9, 10]


PROBE = """\
import boto3, botocore, urllib3
from shared.data_api import sdk_long_polls


def lambda_handler(event, context):
    client = boto3.client("redshift-data", region_name="us-east-1")
    return {name: [module.__version__, module.__file__]
            for name, module in (("boto3", boto3), ("botocore", botocore), ("urllib3", urllib3))
            } | {"long_polls": sdk_long_polls(client)}
"""


def test_the_functions_import_the_layers_sdk_not_the_runtimes(
    built_x86_64: Build, lambda_runtime_python: Path, tmp_path: Path,
) -> None:
    """In the runtime's environment (its own older SDK in site-packages) a handler on the
    layer imports the layer's boto3, botocore and urllib3, whose model has the Data API's
    WaitTimeSeconds."""
    runtime_site = lambda_runtime_python.parent.parent / "lib/python3.12/site-packages"
    [runtime_botocore] = runtime_site.glob("botocore-*.dist-info")
    sdk = locked_sdk()
    runtime_version = runtime_botocore.name.removesuffix(".dist-info").rpartition("-")[2]
    assert runtime_version != sdk["botocore"]  # the runtime's SDK is another one
    task = tmp_path / "probe"
    task.mkdir()
    (task / "app.py").write_text(PROBE)
    layer = built_x86_64.build_dir / "SharedLayer"
    answer = run_in_lambda_runtime(lambda_runtime_python, tmp_path, {
        "task": str(task), "layers": [str(layer)], "handler": "app.lambda_handler",
        "environment": {}, "event": {},
    })
    for name in ("boto3", "botocore", "urllib3"):
        version, file = answer[name]
        assert version == sdk[name], name
        assert Path(file).is_relative_to(layer / "python"), file
    assert answer["long_polls"] is True


def test_built_applier_long_polls_with_the_layers_sdk(
    built_x86_64: Build, lambda_runtime_python: Path, local_stack: StackInfo, tmp_path: Path,
) -> None:
    """The built consumer lands a batch and the built applier applies it, both in the
    runtime's environment and talking to a Data API stand-in that records what it receives:
    every statement was submitted with WaitTimeSeconds and no DescribeStatement came without
    it (the runtime's own botocore 1.40 would have polled every 0.2 s)."""
    env = handler_environment(local_stack)
    sqs = boto3.client("sqs", endpoint_url=local_stack.moto_endpoint,
                       region_name=local_stack.region)
    queue_url = sqs.create_queue(QueueName="cdc-applier-long-poll")["QueueUrl"]
    layers = [str(built_x86_64.build_dir / "SharedLayer")]
    with RecordingDataApi(local_stack) as data_api:
        landed = run_in_lambda_runtime(lambda_runtime_python, tmp_path, {
            "task": str(built_x86_64.build_dir / "KinesisConsumerFunction"),
            "layers": layers,
            "handler": "app.lambda_handler",
            "function_name": "KinesisConsumerFunction",
            "environment": env | {"APPLIER_QUEUE_URL": queue_url,
                                  "AWS_ENDPOINT_URL_REDSHIFT_DATA": data_api.url},
            "event": json.loads((EVENTS / "full_load.json").read_text()),
        })
        assert landed == {"batchItemFailures": []}
        [message] = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        batch_id = json.loads(message["Body"])["batch_id"]
        applied = run_in_lambda_runtime(lambda_runtime_python, tmp_path, {
            "task": str(built_x86_64.build_dir / "BatchApplierFunction"),
            "layers": layers,
            "handler": "app.lambda_handler",
            "function_name": "BatchApplierFunction",
            "environment": handler_environment(local_stack, handler=APPLIER_HANDLER)
            | {"AWS_ENDPOINT_URL_REDSHIFT_DATA": data_api.url},
            "event": {"Records": [sqs_record(message, local_stack.region)]},
        })
    assert applied == {"batchItemFailures": []}
    assert warehouse_rows(local_stack, "SELECT 1 FROM cdc_replica._cdc_applied "
                                       f"WHERE batch_id = '{batch_id}'") == [(1,)]
    rows = warehouse_rows(local_stack, "SELECT ticket_id FROM public.sport_event_activity "
                                       "WHERE ticket_id <= 8 ORDER BY 1")
    assert [r[0] for r in rows] == list(range(1, 9))
    submitted = [waited for operation, waited in data_api.requests
                 if operation in ("ExecuteStatement", "BatchExecuteStatement")]
    assert submitted and all(submitted), data_api.requests
    short_polls = [op for op, waited in data_api.requests
                   if op == "DescribeStatement" and not waited]
    assert short_polls == [], data_api.requests


@pytest.fixture(scope="module")
def published_glue_library(
    built_app: Build, lambda_runtime_python: Path, local_stack: StackInfo,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The deploy helper's inline code (template.yaml) with the shipped (arm64) layer publishes
    the Glue library to S3, as on a deploy; returns the downloaded zip."""
    work = tmp_path_factory.mktemp("deploy-helper")
    code = load_template()["Resources"]["DeployHelperFunction"]["Properties"]["Code"]["ZipFile"]
    (work / "task").mkdir()
    (work / "task/index.py").write_text(code)
    env = handler_environment(local_stack)
    s3 = boto3.client("s3", endpoint_url=local_stack.moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="glue-assets-artifacts")
    properties = template_properties("GlueSharedLibrary")
    url = ResponseUrl()
    try:
        event = cloudformation_event(
            "Create", "GlueSharedLibrary", "Custom::GlueSharedLibrary",
            {"ServiceToken": "arn:aws:lambda:fn", "Action": properties["Action"],
             "Prefix": properties["Prefix"], "Bucket": "glue-assets-artifacts",
             "SharedLayerVersion": "arn:aws:lambda:us-east-1:123456789012:layer:shared:1"},
            url.url)
        response = run_in_lambda_runtime(lambda_runtime_python, work, {
            "task": str(work / "task"),
            "layers": [str(built_app.build_dir / "SharedLayer")],
            "handler": "index.handler",
            "environment": {k: v for k, v in env.items() if k.startswith("AWS_")}
            | {"LAYER_PYTHON_ROOT": str(built_app.build_dir / "SharedLayer/python")},
            "event": event,
            "extra_paths": [str(LAMBDA_PROVIDED)],
        })
        assert response is None
        [answer] = url.bodies
    finally:
        url.close()
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    uri = answer["Data"]["S3Uri"]
    assert uri.startswith("s3://glue-assets-artifacts/lib/shared-") and uri.endswith(".zip")
    key = uri.split("/", 3)[3]
    archive = work / "shared.zip"
    archive.write_bytes(s3.get_object(Bucket="glue-assets-artifacts", Key=key)["Body"].read())
    return archive


def test_deploy_helper_publishes_the_shared_package_of_the_layer(
    published_glue_library: Path, built_app: Build,
) -> None:
    names = set(zipfile.ZipFile(published_glue_library).namelist())
    shared = built_app.build_dir / "SharedLayer/python/shared"
    expected = {f"shared/{p.relative_to(shared)}" for p in shared.rglob("*") if p.is_file()}
    assert names == expected
    assert "shared/specs/sports_ticketing.toml" in names


# --- the Glue job as deployed -------------------------------------------------------------------


@pytest.fixture(scope="module")
def glue_stack() -> Iterator[StackInfo]:
    """A stack of its own: the stream and warehouse start empty."""
    with running_local_stack("cdc-glue-stack-") as info:
        yield info


def glue_python(root: Path) -> Path:
    """A Python with the job's third-party modules (Spark, pandas, Arrow, boto3, msgspec, as
    Glue 5.0 plus --additional-python-modules provide them) but not this project.

    A .pth line adds the test virtualenv's site-packages as a plain path: the project's
    editable-install hook there (itself a .pth) is not run, so `shared` can only come from the
    --extra-py-files zip.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
    site = next(root.glob("lib/python3*/site-packages"))
    project_site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
    (site / "job_modules.pth").write_text(f"{project_site}\n")
    return root / "bin/python"


def test_glue_job_as_deployed_applies_the_stream(
    published_glue_library: Path, glue_stack: StackInfo, tmp_path: Path,
) -> None:
    env = handler_environment(glue_stack)
    kinesis = boto3.client("kinesis", endpoint_url=glue_stack.moto_endpoint,
                           region_name=glue_stack.region)
    for record in json.loads((EVENTS / "full_load.json").read_text())["Records"]:
        kinesis.put_record(StreamName=glue_stack.resources.stream_name,
                           Data=base64.b64decode(record["kinesis"]["data"]),
                           PartitionKey=record["kinesis"]["partitionKey"])
    arguments = template_properties(
        "GlueStreamingJob", RedshiftMode="ExistingServerless",
        RedshiftWorkgroupName=glue_stack.workgroup_name,
        RedshiftDatabase=glue_stack.database)["DefaultArguments"]
    local_values = {
        "--STREAM_ARN": glue_stack.resources.stream_arn,
        "--CHECKPOINT_LOCATION": str(tmp_path / "checkpoint"),
        "--TempDir": str(tmp_path / "temp"),
        "--extra-py-files": str(published_glue_library),
        # Glue installs these wheels (the deploy helper's S3 copies) before the script runs;
        # the test's Python already has them (glue_python).
        "--additional-python-modules": "msgspec",
    }
    argv: list[str] = []
    for name, value in arguments.items():
        if not isinstance(value, str):  # a reference to a stack resource: the local one
            # (Glue's own --additional-python-modules: the job's modules are in its Python)
            value = local_values.get(name) or env.get(name.removeprefix("--"), "")
        argv += [name, value]
    standin = tmp_path / "awsglue.zip"
    with zipfile.ZipFile(standin, "w") as zf:
        for path in (REPO / "tests/deploy/glue_standin/awsglue").glob("*.py"):
            zf.write(path, f"awsglue/{path.name}")
    script = tmp_path / "cdc_streaming_job.py"
    shutil.copy(REPO / "glue_job/cdc_streaming_job.py", script)
    python = glue_python(tmp_path / "glue-python")
    job_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
    job_env |= {k: v for k, v in env.items() if k.startswith("AWS_")}
    job_env |= {"PYSPARK_PYTHON": str(python), "PYSPARK_DRIVER_PYTHON": str(python)}
    done = subprocess.run(
        [Path(sys.prefix) / "bin/spark-submit", "--master", "local[2]",
         "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4",
         "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
         "--conf", "spark.sql.execution.arrow.pyspark.enabled=true",
         "--py-files", f"{published_glue_library},{standin}", script, *argv],
        cwd=tmp_path, env=job_env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    rows = warehouse_rows(glue_stack, "SELECT ticket_id FROM public.sport_event_activity "
                                      "ORDER BY 1")
    assert [r[0] for r in rows] == list(range(1, 9))
