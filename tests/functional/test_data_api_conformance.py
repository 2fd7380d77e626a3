"""The Redshift Data API stand-in against botocore's ``redshift-data`` service model.

The model (botocore/data/redshift-data/2019-12-20/service-2.json, the file every AWS SDK is
generated from) is the spec: every operation is served, every response member the model
requires is there with the model's type (enums and patterns included), every paginator of
paginators-1.json pages, and every error the model declares is reachable, each with its
required members. Driven by boto3's unmodified client.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.session
import psycopg
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import Shape

from local.ports import free_port
from local.postgres import PostgresServer
from local.redshift_data_api.auth import AuthSettings
from local.redshift_data_api.server import RedshiftDataApiServer
from tests.stack_helpers import REGION, standin

MODEL = botocore.session.get_session().get_service_model("redshift-data")
WG = "local-workgroup"
CLUSTER = "local-cluster"
NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1})


def check_shape(value: Any, shape: Shape, path: str) -> None:
    """``value`` (as boto3 parsed it) conforms to the model's ``shape``."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        for name in shape.metadata.get("required", []):
            assert name in value, f"{path}.{name} is required by the model"
        for name, member in value.items():
            if name == "ResponseMetadata":
                continue
            assert name in shape.members, f"{path}.{name} is not in the model"
            check_shape(member, shape.members[name], f"{path}.{name}")
    elif kind == "list":
        assert isinstance(value, list), path
        for k, item in enumerate(value):
            check_shape(item, shape.member, f"{path}[{k}]")  # type: ignore[attr-defined]
    elif kind == "string":
        assert isinstance(value, str), path
        if "enum" in shape.metadata:
            assert value in shape.metadata["enum"], f"{path}={value!r}"
        if "pattern" in shape.metadata:
            assert re.fullmatch(shape.metadata["pattern"], value), f"{path}={value!r}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif kind == "boolean":
        assert isinstance(value, bool), path
    elif kind == "timestamp":
        assert isinstance(value, datetime.datetime), path
    elif kind == "double":
        assert isinstance(value, float), path
    elif kind == "blob":
        assert isinstance(value, bytes), path
    else:
        raise AssertionError(f"{path}: unexpected shape type {kind}")


class Recorder:
    """A boto3 client that checks every response against the model and notes what ran."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.operations: set[str] = set()

    def __call__(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        method = getattr(self.client, xform_name(operation))
        response: dict[str, Any] = method(**kwargs)
        output = MODEL.operation_model(operation).output_shape
        assert output is not None
        check_shape(response, output, operation)
        self.operations.add(operation)
        return response


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    return dict(caught.value.response["Error"]) | {
        "_body": caught.value.response}


@pytest.fixture(scope="module")
def admin_login(pg_server: PostgresServer, moto_endpoint: str) -> tuple[str, str]:
    """A superuser and two secrets in moto's Secrets Manager: (with its password, with a
    wrong one)."""
    user = f"conformance_admin_{uuid.uuid4().hex[:6]}"
    password = "Admin-" + uuid.uuid4().hex
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE USER {user} SUPERUSER PASSWORD '{password}'".encode())
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    arn = secrets.create_secret(Name=f"{user}-secret",
                                SecretString=f'{{"username": "{user}", '
                                             f'"password": "{password}"}}')["ARN"]
    wrong = secrets.create_secret(Name=f"{user}-wrong",
                                  SecretString=f'{{"username": "{user}", '
                                               '"password": "Not-the-password1"}')["ARN"]
    return arn, wrong  # the role stays: it owns objects in the tests' throwaway databases


@pytest.fixture(scope="module")
def authenticated(pg_server: PostgresServer, moto_endpoint: str) -> Iterator[str]:
    """A stand-in that authenticates, with small pages, a 1 s catalog timeout and one
    waiting request per statement."""
    with standin(pg_server, moto_endpoint, page_size=2, catalog_timeout=1.0,
                 max_waiting_requests=1,
                 auth=AuthSettings(secrets_endpoint_url=moto_endpoint,
                                   sts_endpoint_url=moto_endpoint, region=REGION)) as url:
        yield url


def test_every_operation_answers_with_the_models_shapes(
        authenticated: str, admin_login: tuple[str, str], warehouse_db: str) -> None:
    secret, _ = admin_login
    call = Recorder(boto3.client("redshift-data", endpoint_url=authenticated,
                                 region_name=REGION, config=NO_RETRY))
    target = {"WorkgroupName": WG, "Database": warehouse_db, "SecretArn": secret}

    def finished(statement_id: str) -> dict[str, Any]:
        return call("DescribeStatement", Id=statement_id, WaitTimeSeconds=10)

    ddl = call("ExecuteStatement", Sql="CREATE TABLE shapes (id INT NOT NULL, name VARCHAR(12) "
               "DEFAULT 'x', amount DECIMAL(10,2), at TIMESTAMP, ok BOOLEAN, code CHAR(3), "
               "doc SUPER)",
               **target)
    assert finished(ddl["Id"])["Status"] == "FINISHED"
    batch = call("BatchExecuteStatement", Sqls=[
        "INSERT INTO shapes VALUES (1, 'a', 1.50, '2024-01-01 10:00:00', true, 'abc', "
        """JSON_PARSE('{"k": [1, 2]}')), (2, NULL, NULL, NULL, NULL, NULL, NULL), """
        "(3, 'ccc', 3, '2024-01-03', false, 'x', NULL)",
        "SELECT * FROM shapes ORDER BY id"], SessionKeepAliveSeconds=60,
        StatementName="conformance", **target)
    described = finished(batch["Id"])
    assert described["Status"] == "FINISHED" and len(described["SubStatements"]) == 2
    finished(f"{batch['Id']}:2")
    pages = list(call.client.get_paginator("get_statement_result").paginate(
        Id=f"{batch['Id']}:2"))
    for page in pages:
        check_shape(page, MODEL.operation_model("GetStatementResult").output_shape, "page")
    assert [len(p["Records"]) for p in pages] == [2, 1]
    first = call("GetStatementResult", Id=f"{batch['Id']}:2")
    meta = {m["name"]: m for m in first["ColumnMetadata"]}
    assert {n: (m["typeName"], m["precision"], m["scale"]) for n, m in meta.items()} == {
        "id": ("int4", 10, 0), "name": ("varchar", 12, 0), "amount": ("numeric", 10, 2),
        "at": ("timestamp", 29, 0), "ok": ("bool", 1, 0), "code": ("bpchar", 3, 0),
        "doc": ("super", 0, 0)}
    assert first["Records"][0][-1] == {"stringValue": '{"k": [1, 2]}'}
    # Through the session: the statement keeps the session's target.
    in_session = call("ExecuteStatement", Sql="SELECT 'abc' AS literal, NULL AS nothing, "
                      "1.25 AS num", SessionId=batch["SessionId"], ResultFormat="CSV")
    described = finished(in_session["Id"])
    assert (described["WorkgroupName"], described["Database"]) == (WG, warehouse_db)
    v2 = call("GetStatementResultV2", Id=in_session["Id"])
    assert v2["Records"] == [{"CSVRecords": "literal,nothing,num\nabc,,1.25\n"}]
    assert [(m["typeName"], m["precision"], m["scale"]) for m in v2["ColumnMetadata"]] == [
        ("varchar", 3, 0), ("varchar", 1, 0), ("numeric", 3, 2)]
    listed = call("ListStatements", WorkgroupName=WG, Database=warehouse_db, Status="ALL")
    assert in_session["Id"] in {s["Id"] for s in listed["Statements"]}
    sessions = call("ListSessions", SessionId=batch["SessionId"])["Sessions"]
    assert [(s["Database"], s["WorkgroupName"], s["Status"]) for s in sessions] == [
        (warehouse_db, WG, "AVAILABLE")]

    slow = call("ExecuteStatement", Sql="SELECT pg_sleep(30)", **target)
    deadline = time.monotonic() + 10
    while call("DescribeStatement", Id=slow["Id"])["Status"] != "STARTED":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert call("CancelStatement", Id=slow["Id"])["Status"] is True
    aborted = finished(slow["Id"])
    assert aborted["Status"] == "ABORTED" and "cancelled on user's request" in aborted["Error"]

    assert warehouse_db in call("ListDatabases", **target)["Databases"]
    assert "public" in call("ListSchemas", SchemaPattern="pub%", **target)["Schemas"]
    assert call("ListTables", SchemaPattern="public", TablePattern="shap_s",
                **target)["Tables"] == [{"name": "shapes", "type": "TABLE", "schema": "public"}]
    table = call("DescribeTable", Schema="public", Table="shapes", MaxResults=2, **target)
    assert table["TableName"] == "shapes" and len(table["ColumnList"]) == 2
    assert "NextToken" in table
    columns = [c for page in call.client.get_paginator("describe_table").paginate(
        Schema="public", Table="shapes", **target) for c in page["ColumnList"]]
    assert [(c["name"], c["typeName"], c["length"], c["nullable"]) for c in columns] == [
        ("id", "int4", 0, 0), ("name", "varchar", 12, 1), ("amount", "numeric", 0, 1),
        ("at", "timestamp", 0, 1), ("ok", "bool", 0, 1), ("code", "bpchar", 3, 1),
        ("doc", "super", 0, 1)]
    assert columns[1]["columnDefault"].startswith("'x'")
    assert set(MODEL.operation_names) == call.operations


def test_every_paginator_pages(authenticated: str, admin_login: tuple[str, str],
                               warehouse_db: str) -> None:
    secret, _ = admin_login
    client = boto3.client("redshift-data", endpoint_url=authenticated, region_name=REGION)
    target = {"WorkgroupName": WG, "Database": warehouse_db, "SecretArn": secret}
    for n in range(3):
        client.execute_statement(Sql=f"CREATE TABLE page_{n} (a INT, b INT)",
                                 SessionKeepAliveSeconds=30, WaitTimeSeconds=10, **target)
    name = f"pages-{uuid.uuid4().hex[:6]}"
    ids = [client.execute_statement(Sql=f"SELECT {n} AS n FROM generate_series(1, 3)",
                                    StatementName=name, ResultFormat="CSV", **target)["Id"]
           for n in range(3)]
    as_json = client.execute_statement(Sql="SELECT generate_series(1, 5) AS n",
                                       **target)["Id"]
    for statement_id in [*ids, as_json]:
        client.describe_statement(Id=statement_id, WaitTimeSeconds=10)
    small = {"PaginationConfig": {"PageSize": 2}}
    runs: dict[str, list[Any]] = {
        "ListStatements": [s["Id"] for p in client.get_paginator("list_statements").paginate(
            StatementName=name, Status="ALL", **small) for s in p["Statements"]],
        "ListTables": [t["name"] for p in client.get_paginator("list_tables").paginate(
            TablePattern="page\\_%", **target, **small) for t in p["Tables"]],
        "ListSchemas": [s for p in client.get_paginator("list_schemas").paginate(
            **target, **small) for s in p["Schemas"]],
        "ListDatabases": [d for p in client.get_paginator("list_databases").paginate(
            **target, **small) for d in p["Databases"]],
        "DescribeTable": [c["name"] for p in client.get_paginator("describe_table").paginate(
            Table="page_0", **target, **small) for c in p["ColumnList"]],
        "ListSessions": [s["SessionId"] for p in client.get_paginator("list_sessions").paginate(
            Database=warehouse_db, **small) for s in p["Sessions"]],
        "GetStatementResult": [len(p["Records"]) for p in client.get_paginator(
            "get_statement_result").paginate(Id=as_json)],
        "GetStatementResultV2": [r["CSVRecords"] for p in client.get_paginator(
            "get_statement_result_v2").paginate(Id=ids[0]) for r in p["Records"]],
    }
    assert runs["ListStatements"] == list(reversed(ids))
    assert runs["ListTables"] == ["page_0", "page_1", "page_2"]
    assert {"information_schema", "pg_catalog", "public"} <= set(runs["ListSchemas"])
    assert warehouse_db in runs["ListDatabases"] and "postgres" not in runs["ListDatabases"]
    assert runs["DescribeTable"] == ["a", "b"]
    assert len(runs["ListSessions"]) == 3
    assert runs["GetStatementResult"] == [2, 2, 1]
    assert runs["GetStatementResultV2"] == ["n\n0\n0\n", "0\n"]
    loader = botocore.session.get_session().get_component("data_loader")
    assert set(runs) == set(loader.load_service_model("redshift-data",
                                                      "paginators-1")["pagination"])


# ------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def limited(pg_server: PostgresServer, moto_endpoint: str) -> Iterator[str]:
    """One worker, one active statement and one session at most."""
    with standin(pg_server, moto_endpoint, workers=1, max_active_statements=1,
                 max_sessions=1) as url:
        yield url


@pytest.fixture(scope="module")
def sts_unreachable(pg_server: PostgresServer) -> Iterator[str]:
    """Authenticating, with STS at a closed port: the IAM identity cannot be resolved."""
    closed = f"http://127.0.0.1:{free_port()}"
    with standin(pg_server, None, auth=AuthSettings(secrets_endpoint_url=closed,
                                                    sts_endpoint_url=closed)) as url:
        yield url


def test_every_modeled_error_is_reachable(
        authenticated: str, limited: str, sts_unreachable: str, admin_login: tuple[str, str],
        warehouse_db: str, pg_server: PostgresServer) -> None:
    secret, wrong_secret = admin_login
    client = boto3.client("redshift-data", endpoint_url=authenticated, region_name=REGION,
                          config=NO_RETRY)
    target = {"WorkgroupName": WG, "Database": warehouse_db, "SecretArn": secret}
    seen: dict[str, dict[str, Any]] = {}

    def expect(code: str, call: Callable[[], Any], match: str = "") -> None:
        error = error_of(call)
        assert error["Code"] == code, error
        assert re.search(match, error["Message"]), error["Message"]
        required = MODEL.shape_for(code).metadata.get("required", [])
        body = error["_body"]["Error"]
        for name in required:
            assert name in body or name in error["_body"], f"{code} lacks {name}"
        seen[code] = error

    expect("ValidationException", lambda: client.execute_statement(
        Sql="SELECT 1", WorkgroupName="Not_A_Workgroup", Database=warehouse_db),
        "regular expression pattern")
    expect("ValidationException", lambda: client.list_tables(
        ClusterIdentifier="no-such-cluster", Database=warehouse_db),
        "Redshift endpoint doesn't exist in this region")
    expect("ValidationException", lambda: client.execute_statement(
        Sql="SELECT 1", DbUser="someone", **{k: v for k, v in target.items()
                                              if k != "SecretArn"}), "DbUser")
    expect("ResourceNotFoundException", lambda: client.describe_statement(Id=str(uuid.uuid4())),
           "Query does not exist")
    expect("ResourceNotFoundException", lambda: client.list_schemas(
        WorkgroupName=WG, Database="no_such_database", SecretArn=secret), "does not exist")
    expect("ResourceNotFoundException", lambda: client.list_sessions(
        SessionId=str(uuid.uuid4())), "does not exist")
    expect("DatabaseConnectionException", lambda: client.list_tables(
        WorkgroupName=WG, Database=warehouse_db, SecretArn=wrong_secret),
        "password authentication failed")

    # ClientToken reuse with a different request.
    token = str(uuid.uuid4())
    client.execute_statement(Sql="SELECT 1", ClientToken=token, **target)
    expect("ValidationException", lambda: client.execute_statement(
        Sql="SELECT 2", ClientToken=token, **target), "ClientToken")

    # A table under another transaction's LOCK cannot be described within the timeout.
    client.execute_statement(Sql="CREATE TABLE locked (a INT)", WaitTimeSeconds=10, **target)
    holder = client.batch_execute_statement(Sqls=["LOCK locked", "SELECT pg_sleep(20)"],
                                            **target)
    deadline = time.monotonic() + 10
    while client.describe_statement(Id=f"{holder['Id']}:2")["Status"] != "STARTED":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    expect("QueryTimeoutException", lambda: client.describe_table(Table="locked", **target),
           "timeout")
    # One waiting request per statement on this stand-in.
    waiter = threading.Thread(target=lambda: client.describe_statement(
        Id=holder["Id"], WaitTimeSeconds=5))
    waiter.start()
    time.sleep(0.3)
    expect("ActiveWaitingRequestsExceededException",
           lambda: client.describe_statement(Id=holder["Id"], WaitTimeSeconds=1))
    client.cancel_statement(Id=holder["Id"])
    waiter.join()

    few = boto3.client("redshift-data", endpoint_url=limited, region_name=REGION,
                       config=NO_RETRY)
    long = few.execute_statement(Sql="SELECT pg_sleep(20)", WorkgroupName=WG,
                                 Database=warehouse_db, SessionKeepAliveSeconds=30)
    expect("ActiveStatementsExceededException", lambda: few.execute_statement(
        Sql="SELECT 1", WorkgroupName=WG, Database=warehouse_db))
    few.cancel_statement(Id=long["Id"])
    few.describe_statement(Id=long["Id"], WaitTimeSeconds=10)
    expect("ActiveSessionsExceededException", lambda: few.batch_execute_statement(
        Sqls=["SELECT 1"], WorkgroupName=WG, Database=warehouse_db,
        SessionKeepAliveSeconds=30))

    lost = boto3.client("redshift-data", endpoint_url=sts_unreachable, region_name=REGION,
                        config=NO_RETRY)
    expect("ExecuteStatementException", lambda: lost.execute_statement(
        Sql="SELECT 1", WorkgroupName=WG, Database=warehouse_db), "IAM identity")
    expect("BatchExecuteStatementException", lambda: lost.batch_execute_statement(
        Sqls=["SELECT 1"], WorkgroupName=WG, Database=warehouse_db), "IAM identity")

    server = RedshiftDataApiServer(
        pg_conninfo=f"host={pg_server.host} port={pg_server.port} user={pg_server.user}")
    server.start()
    try:
        server.engine.shutdown()  # the service side fails: no worker takes statements
        down = boto3.client("redshift-data", endpoint_url=server.endpoint_url,
                            region_name=REGION, config=NO_RETRY)
        expect("InternalServerException", lambda: down.execute_statement(
            Sql="SELECT 1", WorkgroupName=WG, Database=warehouse_db))
    finally:
        server.stop()

    modeled = {e.name for op in MODEL.operation_names
               for e in MODEL.operation_model(op).error_shapes}
    assert modeled == set(seen)
