"""Clients the project did not write, against the Redshift Data API stand-in: the AWS CLI
(``aws redshift-data ...``) and AWS SDK for pandas (``awswrangler.data_api.redshift``), with
only the endpoint pointed at the stand-in, authenticating with a Secrets Manager secret.

The CLI runs in-process through its own entry point (``awscli.clidriver``, what the ``aws``
script calls), so the test does not pay an interpreter start per command: every operation's
command, the CLI's own pagination and an error's exit status and message.
"""

from __future__ import annotations

import functools
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any

import boto3
import psycopg
import pytest

from local.postgres import PostgresServer
from local.redshift_data_api.auth import AuthSettings
from tests.stack_helpers import REGION, standin

WG = "local-workgroup"


@pytest.fixture(scope="module")
def stand_in(pg_server: PostgresServer, moto_endpoint: str) -> Iterator[str]:
    """An authenticating stand-in with 2-row result pages."""
    with standin(pg_server, moto_endpoint, page_size=2,
                 auth=AuthSettings(secrets_endpoint_url=moto_endpoint,
                                   sts_endpoint_url=moto_endpoint, region=REGION)) as url:
        yield url


@pytest.fixture(scope="module")
def secret_arn(pg_server: PostgresServer, moto_endpoint: str) -> str:
    """A warehouse user that owns what it creates, and its secret."""
    user, password = f"tool_user_{uuid.uuid4().hex[:6]}", "Tool-User-Pw1"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE USER {user} CREATEDB PASSWORD '{password}'".encode())
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    return str(secrets.create_secret(
        Name=f"{user}-secret",
        SecretString=json.dumps({"username": user, "password": password}))["ARN"])


@pytest.fixture
def tool_db(pg_server: PostgresServer, secret_arn: str, moto_endpoint: str) -> str:
    """A fresh database owned by the secret's user (so it may create tables in it)."""
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    owner = json.loads(secrets.get_secret_value(SecretId=secret_arn)["SecretString"])["username"]
    name = f"tools_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER {owner}'.encode())
    with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
        conn.execute(f"ALTER SCHEMA public OWNER TO {owner}".encode())
    return name


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


@functools.cache
def _cli_driver() -> Any:
    from awscli.clidriver import create_clidriver

    return create_clidriver()


def aws(endpoint: str, *args: str, check: bool = True) -> CliRun:
    """``aws redshift-data <args> --endpoint-url <endpoint> --output json``."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = _cli_driver().main(["redshift-data", *args, "--endpoint-url", endpoint,
                                   "--output", "json"])
    run = CliRun(code, out.getvalue(), err.getvalue())
    assert not check or code == 0, run
    return run


def test_the_aws_cli(stand_in: str, secret_arn: str, tool_db: str,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION), ("AWS_PAGER", "")):
        monkeypatch.setenv(name, value)
    target = ["--workgroup-name", WG, "--database", tool_db, "--secret-arn", secret_arn]
    batch = json.loads(aws(stand_in, "batch-execute-statement", *target, "--sqls",
                           "CREATE TABLE cli_t (id INT, name VARCHAR(20))",
                           "INSERT INTO cli_t SELECT g, 'n' || g FROM generate_series(1, 5) g",
                           "SELECT id, name FROM cli_t ORDER BY id").stdout)
    described = json.loads(aws(stand_in, "describe-statement", "--id", batch["Id"],
                               "--wait-time-seconds", "10").stdout)
    assert described["Status"] == "FINISHED", described
    # The CLI follows NextToken itself: five rows in 2-row pages come back as one list.
    result = json.loads(aws(stand_in, "get-statement-result", "--id",
                            f"{batch['Id']}:3").stdout)
    assert [[f.get("longValue", f.get("stringValue")) for f in row]
            for row in result["Records"]] == [[n, f"n{n}"] for n in range(1, 6)]
    assert [c["typeName"] for c in result["ColumnMetadata"]] == ["int4", "varchar"]
    tables = json.loads(aws(stand_in, "list-tables", *target, "--table-pattern",
                            "cli%").stdout)
    assert tables["Tables"] == [{"name": "cli_t", "type": "TABLE", "schema": "public"}]
    columns = json.loads(aws(stand_in, "describe-table", *target, "--table", "cli_t").stdout)
    assert [(c["name"], c["typeName"], c["length"]) for c in columns["ColumnList"]] == [
        ("id", "int4", 0), ("name", "varchar", 20)]
    schemas = json.loads(aws(stand_in, "list-schemas", *target).stdout)["Schemas"]
    assert "public" in schemas
    databases = json.loads(aws(stand_in, "list-databases", *target).stdout)["Databases"]
    assert tool_db in databases
    listed = json.loads(aws(stand_in, "list-statements", "--status", "ALL",
                            "--database", tool_db).stdout)["Statements"]
    assert [s["Id"] for s in listed] == [batch["Id"]]  # before the statements below
    sessions = json.loads(aws(stand_in, "list-sessions", "--database", tool_db).stdout)
    assert sessions["Sessions"] == []
    as_csv = json.loads(aws(stand_in, "execute-statement", *target, "--result-format", "CSV",
                            "--wait-time-seconds", "10", "--sql",
                            "SELECT name FROM cli_t WHERE id < 4 ORDER BY id").stdout)
    csv_pages = json.loads(aws(stand_in, "get-statement-result-v2", "--id",
                               as_csv["Id"]).stdout)
    assert [r["CSVRecords"] for r in csv_pages["Records"]] == ["name\nn1\nn2\n", "n3\n"]
    slow = json.loads(aws(stand_in, "execute-statement", *target, "--sql",
                          "SELECT pg_sleep(20)").stdout)
    assert json.loads(aws(stand_in, "cancel-statement", "--id", slow["Id"]).stdout) == {
        "Status": True}
    cancelled = json.loads(aws(stand_in, "describe-statement", "--id", slow["Id"],
                               "--wait-time-seconds", "10").stdout)
    assert cancelled["Status"] == "ABORTED" and "cancelled" in cancelled["Error"]
    failed = aws(stand_in, "execute-statement", "--workgroup-name", "No_Such",
                 "--database", tool_db, "--sql", "SELECT 1", check=False)
    assert failed.returncode == 255  # AWS CLI v1: the service refused the request
    assert "(ValidationException)" in failed.stderr and "regular expression" in failed.stderr


def test_awswrangler(stand_in: str, secret_arn: str, tool_db: str,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    import awswrangler as wr

    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", stand_in)
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name=REGION)
    con = wr.data_api.redshift.connect(workgroup_name=WG, database=tool_db,
                                       secret_arn=secret_arn, boto3_session=session)
    wr.data_api.redshift.read_sql_query(
        "CREATE TABLE wr_t (id BIGINT, amount DECIMAL(8,2), at TIMESTAMP, ok BOOLEAN)", con=con)
    wr.data_api.redshift.read_sql_query(
        "INSERT INTO wr_t VALUES (1, 2.50, '2024-01-01 10:00:00', true), "
        "(2, NULL, NULL, false), (3, 7, '2024-03-01', NULL)", con=con)
    frame = wr.data_api.redshift.read_sql_query("SELECT * FROM wr_t ORDER BY id", con=con)
    assert frame["id"].tolist() == [1, 2, 3]
    assert frame["amount"].tolist()[0] == "2.50" and frame["ok"].tolist()[:2] == [True, False]
    assert frame["at"].tolist()[0] == "2024-01-01 10:00:00"

    # A statement cancelled while awswrangler polls it: its error names the cancel
    # (a cancelled statement without Error made awswrangler fail with KeyError('Error')).
    raised: list[BaseException] = []

    def run_slow() -> None:
        try:
            wr.data_api.redshift.read_sql_query("SELECT pg_sleep(20)", con=con)
        except BaseException as exc:
            raised.append(exc)

    runner = threading.Thread(target=run_slow)
    runner.start()
    client = boto3.client("redshift-data", endpoint_url=stand_in, region_name=REGION)
    deadline = time.monotonic() + 10
    while True:
        running = [s for s in client.list_statements(Status="STARTED")["Statements"]
                   if s["QueryString"] == "SELECT pg_sleep(20)"]
        if running:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.cancel_statement(Id=running[0]["Id"])
    runner.join(timeout=20)
    assert len(raised) == 1
    assert type(raised[0]).__name__ == "RedshiftDataApiFailedException"
    assert "cancelled on user's request" in str(raised[0])
    with pytest.raises(Exception, match="does not exist") as missing:
        wr.data_api.redshift.read_sql_query("SELECT * FROM missing_table", con=con)
    assert type(missing.value).__name__ == "RedshiftDataApiFailedException"
