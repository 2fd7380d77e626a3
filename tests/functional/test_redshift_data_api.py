"""The Redshift Data API stand-in through an unmodified boto3 ``redshift-data`` client, on a
real PostgreSQL 15 and a moto S3: lifecycle, typing, paging, parameters, batches, sessions,
limits, the Redshift grammar check, COPY, serializable isolation and the command line."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from local.postgres import PostgresServer
from tests.functional.data_api_helpers import FINAL, WG, batch, ok, query, rows, run, wait
from tests.stack_helpers import standin

REPO = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def tiny_api(pg_server: PostgresServer, moto_endpoint: str) -> Iterator[str]:
    """A second stand-in with 2-row result pages and a single worker (statements queue)."""
    with standin(pg_server, moto_endpoint, page_size=2, workers=1) as endpoint:
        yield endpoint


@pytest.fixture
def tiny(tiny_api: str) -> Any:
    return boto3.client("redshift-data", endpoint_url=tiny_api, region_name="us-east-1")


@pytest.fixture
def raw(redshift_api: str) -> Any:
    """A client without botocore's own parameter validation, to reach the server's."""
    return boto3.client("redshift-data", endpoint_url=redshift_api, region_name="us-east-1",
                        config=Config(parameter_validation=False))


# ------------------------------------------------------------------ lifecycle


def test_statement_lifecycle_and_describe(tiny: Any, warehouse_db: str) -> None:
    slow = tiny.execute_statement(Sql="SELECT pg_sleep(0.4) IS NULL AS slept",
                                  WorkgroupName=WG, Database=warehouse_db, StatementName="slow")
    queued = tiny.execute_statement(Sql="SELECT 1 AS one", WorkgroupName=WG,
                                    Database=warehouse_db)
    doomed = tiny.execute_statement(Sql="SELECT 2 AS two", WorkgroupName=WG,
                                    Database=warehouse_db)
    # One worker: the later statements wait their turn; a waiting one can be cancelled.
    assert tiny.describe_statement(Id=queued["Id"])["Status"] == "SUBMITTED"
    assert tiny.cancel_statement(Id=doomed["Id"])["Status"] is True
    seen = set()
    while (status := tiny.describe_statement(Id=slow["Id"])["Status"]) not in FINAL:
        seen.add(status)
        time.sleep(0.02)
    assert "STARTED" in seen and status == "FINISHED"
    desc = tiny.describe_statement(Id=slow["Id"])
    assert desc["Duration"] >= 300_000_000  # nanoseconds
    assert desc["HasResultSet"] is True and desc["ResultRows"] == 1
    assert desc["QueryString"] == "SELECT pg_sleep(0.4) IS NULL AS slept"
    assert desc["RedshiftPid"] > 0 and desc["RedshiftQueryId"] > 0
    assert desc["CreatedAt"] <= desc["UpdatedAt"]
    assert desc["WorkgroupName"] == WG and desc["Database"] == warehouse_db
    assert "Error" not in desc
    assert wait(tiny, queued["Id"])["Status"] == "FINISHED"
    assert wait(tiny, doomed["Id"])["Status"] == "ABORTED"


def test_wait_time_seconds_returns_the_final_status(redshift_data: Any, warehouse_db: str) -> None:
    out = redshift_data.execute_statement(Sql="SELECT 1", WorkgroupName=WG,
                                          Database=warehouse_db, WaitTimeSeconds=10)
    assert out["Status"] == "FINISHED" and out["HasResultSet"] is True


def test_failed_statement_reports_the_postgres_error(redshift_data: Any,
                                                     warehouse_db: str) -> None:
    desc = run(redshift_data, warehouse_db, "SELECT * FROM missing_table")
    assert desc["Status"] == "FAILED"
    assert desc["Error"] == 'ERROR: relation "missing_table" does not exist'
    with pytest.raises(redshift_data.exceptions.ResourceNotFoundException,
                       match="Query does not have result"):
        redshift_data.get_statement_result(Id=desc["Id"])


def test_request_validation(redshift_data: Any, raw: Any, warehouse_db: str) -> None:
    errors = redshift_data.exceptions
    with pytest.raises(errors.ValidationException, match="ClusterIdentifier or WorkgroupName"):
        redshift_data.execute_statement(Sql="SELECT 1", Database=warehouse_db)
    with pytest.raises(errors.ValidationException, match="both"):
        redshift_data.execute_statement(Sql="SELECT 1", Database=warehouse_db,
                                        WorkgroupName=WG, ClusterIdentifier="c")
    with pytest.raises(errors.ValidationException, match="regex pattern"):
        redshift_data.describe_statement(Id="not-a-statement-id")
    with pytest.raises(errors.ResourceNotFoundException, match="Query does not exist"):
        redshift_data.describe_statement(Id=str(uuid.uuid4()))
    with pytest.raises(errors.ValidationException):
        raw.execute_statement(Sql="SELECT 1", WorkgroupName=WG, Database=warehouse_db,
                              SessionKeepAliveSeconds=90000)
    ddl = ok(redshift_data, warehouse_db, "CREATE TABLE t (a INT)")
    assert ddl["HasResultSet"] is False
    with pytest.raises(errors.ResourceNotFoundException, match="Query does not have result"):
        redshift_data.get_statement_result(Id=ddl["Id"])
    missing = run(redshift_data, "no_such_database", "SELECT 1")
    assert missing["Error"] == 'FATAL: database "no_such_database" does not exist'
    bad = run(redshift_data, warehouse_db, "SELECT 1; SELECT 2")
    assert bad["Error"] == "ERROR: cannot insert multiple commands into a prepared statement"


# ------------------------------------------------------------- typed results


def test_results_are_typed_from_postgres_types(redshift_data: Any, warehouse_db: str) -> None:
    ok(redshift_data, warehouse_db,
       "CREATE TABLE typed (i2 SMALLINT, i4 INT, i8 BIGINT, f4 REAL, f8 DOUBLE PRECISION, "
       "n NUMERIC(12,3), b BOOLEAN, v VARCHAR(20), c CHAR(3), d DATE, ts TIMESTAMP, "
       "tz TIMESTAMPTZ, nul VARCHAR(5))")
    ok(redshift_data, warehouse_db,
       "INSERT INTO typed VALUES (1, 2, 9007199254740993, 1.1, 2.5, 1234.5, true, 'vé', 'ab', "
       "'2024-02-29', '2024-02-29 12:34:56.5', '2024-02-29 12:34:56+00', NULL)")
    desc = ok(redshift_data, warehouse_db, "SELECT * FROM typed")
    result = redshift_data.get_statement_result(Id=desc["Id"])
    assert result["TotalNumRows"] == 1 and "NextToken" not in result
    assert result["Records"] == [[
        {"longValue": 1}, {"longValue": 2}, {"longValue": 9007199254740993},
        {"doubleValue": 1.1}, {"doubleValue": 2.5}, {"stringValue": "1234.500"},
        {"booleanValue": True}, {"stringValue": "vé"}, {"stringValue": "ab "},
        {"stringValue": "2024-02-29"}, {"stringValue": "2024-02-29 12:34:56.5"},
        {"stringValue": "2024-02-29 12:34:56+00"}, {"isNull": True},
    ]]
    meta = {m["name"]: m for m in result["ColumnMetadata"]}
    assert [m["typeName"] for m in result["ColumnMetadata"]] == [
        "int2", "int4", "int8", "float4", "float8", "numeric", "bool", "varchar", "bpchar",
        "date", "timestamp", "timestamptz", "varchar"]
    assert (meta["n"]["precision"], meta["n"]["scale"]) == (12, 3)
    assert meta["v"]["precision"] == 20 and meta["v"]["isCaseSensitive"] is True
    assert meta["i8"]["isSigned"] is True and meta["i8"]["label"] == "i8"
    assert all(m["nullable"] == 1 for m in meta.values())


def test_results_page_by_next_token(tiny: Any, warehouse_db: str) -> None:
    desc = ok(tiny, warehouse_db, "SELECT g AS n FROM generate_series(1, 5) g ORDER BY g")
    assert desc["ResultRows"] == 5
    pages = []
    token = None
    while True:
        kwargs = {"NextToken": token} if token else {}
        page = tiny.get_statement_result(Id=desc["Id"], **kwargs)
        assert page["TotalNumRows"] == 5 and page["ColumnMetadata"][0]["name"] == "n"
        pages.append([row[0]["longValue"] for row in page["Records"]])
        token = page.get("NextToken")
        if not token:
            break
    assert pages == [[1, 2], [3, 4], [5]]
    paginator = tiny.get_paginator("get_statement_result")
    assert sum(len(p["Records"]) for p in paginator.paginate(Id=desc["Id"])) == 5
    with pytest.raises(tiny.exceptions.ValidationException, match="NextToken"):
        tiny.get_statement_result(Id=desc["Id"], NextToken="garbage")


def test_csv_result_format(tiny: Any, warehouse_db: str) -> None:
    submitted = tiny.execute_statement(
        Sql="SELECT g AS n, 'a,' || g AS s FROM generate_series(1, 3) g ORDER BY g",
        WorkgroupName=WG, Database=warehouse_db, ResultFormat="CSV")
    assert wait(tiny, submitted["Id"])["ResultFormat"] == "CSV"
    first = tiny.get_statement_result_v2(Id=submitted["Id"])
    second = tiny.get_statement_result_v2(Id=submitted["Id"], NextToken=first["NextToken"])
    assert first["Records"] == [{"CSVRecords": 'n,s\n1,"a,1"\n2,"a,2"\n'}]
    assert second["Records"] == [{"CSVRecords": '3,"a,3"\n'}] and "NextToken" not in second
    with pytest.raises(tiny.exceptions.ValidationException, match="GetStatementResultV2"):
        tiny.get_statement_result(Id=submitted["Id"])


# ----------------------------------------------------------------- parameters


def test_parameters_bind_values(redshift_data: Any, raw: Any, warehouse_db: str) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE p (id INT, name VARCHAR(50), d DATE)")
    ok(redshift_data, warehouse_db, "INSERT INTO p VALUES (:id, :name, :day)",
       Parameters=[{"name": "id", "value": "7"}, {"name": "name", "value": "O'Brien\\ :id"},
                   {"name": "day", "value": "2024-01-31"}])
    assert query(redshift_data, warehouse_db, "SELECT id, name, d FROM p") == [
        [7, "O'Brien\\ :id", "2024-01-31"]]
    desc = ok(redshift_data, warehouse_db, "SELECT name FROM p WHERE id = :id",
              Parameters=[{"name": "id", "value": "7"}])
    assert desc["QueryParameters"] == [{"name": "id", "value": "7"}]
    errors = raw.exceptions
    with pytest.raises(errors.ValidationException, match="empty"):
        raw.execute_statement(Sql="SELECT :a", WorkgroupName=WG, Database=warehouse_db,
                              Parameters=[{"name": "a", "value": ""}])
    with pytest.raises(errors.ValidationException, match="':b'"):
        raw.execute_statement(Sql="SELECT :a, :b", WorkgroupName=WG, Database=warehouse_db,
                              Parameters=[{"name": "a", "value": "1"}])
    with pytest.raises(errors.ValidationException, match="'unused'"):
        raw.execute_statement(Sql="SELECT :a", WorkgroupName=WG, Database=warehouse_db,
                              Parameters=[{"name": "a", "value": "1"},
                                          {"name": "unused", "value": "1"}])
    # Without Parameters a placeholder reaches the database, which cannot parse it.
    assert "syntax error" in run(redshift_data, warehouse_db, "SELECT :a")["Error"]


# -------------------------------------------------------------------- batches


def test_batch_is_one_transaction(redshift_data: Any, warehouse_db: str,
                                  warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE b (id INT)")
    desc = batch(redshift_data, warehouse_db, [
        "INSERT INTO b VALUES (1)", "INSERT INTO b VALUES (2)", "INSERT INTO nope VALUES (3)",
        "INSERT INTO b VALUES (4)"])
    assert desc["Status"] == "FAILED"
    assert desc["Error"] == 'ERROR: relation "nope" does not exist'
    subs = desc["SubStatements"]
    assert [s["Id"] for s in subs] == [f"{desc['Id']}:{n}" for n in (1, 2, 3, 4)]
    assert [s["Status"] for s in subs] == ["FINISHED", "FINISHED", "FAILED", "ABORTED"]
    assert subs[2]["Error"] == desc["Error"] and "Error" not in subs[0]
    assert warehouse_sql("SELECT count(*) AS n FROM b") == [{"n": 0}]


def test_batch_sub_statements(redshift_data: Any, warehouse_db: str) -> None:
    desc = batch(redshift_data, warehouse_db, [
        "CREATE TEMP TABLE s (id INT)", "INSERT INTO s VALUES (1), (2)",
        "SELECT id FROM s ORDER BY id"])
    assert desc["Status"] == "FINISHED" and desc["HasResultSet"] is True
    assert [s["ResultRows"] for s in desc["SubStatements"]] == [0, 2, 2]
    sub = redshift_data.describe_statement(Id=f"{desc['Id']}:3")
    assert sub["Id"] == f"{desc['Id']}:3" and sub["QueryString"] == "SELECT id FROM s ORDER BY id"
    assert sub["Status"] == "FINISHED" and sub["HasResultSet"] is True
    assert rows(redshift_data, f"{desc['Id']}:3") == [[{"longValue": 1}], [{"longValue": 2}]]
    errors = redshift_data.exceptions
    with pytest.raises(errors.ResourceNotFoundException, match="Query does not have result"):
        redshift_data.get_statement_result(Id=f"{desc['Id']}:2")
    with pytest.raises(errors.ResourceNotFoundException, match="Query does not have result"):
        redshift_data.get_statement_result(Id=desc["Id"])
    with pytest.raises(errors.ResourceNotFoundException, match="Query does not exist"):
        redshift_data.describe_statement(Id=f"{desc['Id']}:4")


def test_truncate_commits_the_batch_so_far(redshift_data: Any, warehouse_db: str,
                                           warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE a (id INT)")
    ok(redshift_data, warehouse_db, "CREATE TABLE z (id INT)")
    ok(redshift_data, warehouse_db, "INSERT INTO z VALUES (1)")
    desc = batch(redshift_data, warehouse_db, [
        "INSERT INTO a VALUES (1)", "TRUNCATE z", "INSERT INTO a VALUES (2)",
        "INSERT INTO nope VALUES (1)"])
    assert desc["Status"] == "FAILED"
    # As on Redshift, TRUNCATE committed what came before it (and itself).
    assert warehouse_sql("SELECT id FROM a") == [{"id": 1}]
    assert warehouse_sql("SELECT count(*) AS n FROM z") == [{"n": 0}]


def test_auto_commit_batch(redshift_data: Any, warehouse_db: str, warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE a (id INT)")
    desc = batch(redshift_data, warehouse_db, [
        "INSERT INTO a VALUES (1)", "INSERT INTO nope VALUES (1)", "INSERT INTO a VALUES (3)"],
        ExecutionMode="AUTO_COMMIT")
    assert desc["Status"] == "FAILED"
    assert [s["Status"] for s in desc["SubStatements"]] == ["FINISHED", "FAILED", "FINISHED"]
    assert warehouse_sql("SELECT id FROM a ORDER BY id") == [{"id": 1}, {"id": 3}]


def test_limits(redshift_data: Any, warehouse_db: str) -> None:
    errors = redshift_data.exceptions
    with pytest.raises(errors.ValidationException, match="less than or equal to 40"):
        redshift_data.batch_execute_statement(Sqls=["SELECT 1"] * 41, WorkgroupName=WG,
                                              Database=warehouse_db)
    assert batch(redshift_data, warehouse_db, ["SELECT 1"] * 40)["Status"] == "FINISHED"
    limit = 100_000  # "100 KB" read strictly: 100,000 bytes of UTF-8
    at_limit = "SELECT 1 --" + "x" * (limit - len("SELECT 1 --"))
    assert ok(redshift_data, warehouse_db, at_limit)["Status"] == "FINISHED"
    with pytest.raises(errors.ValidationException, match="larger than 100kB"):
        redshift_data.execute_statement(Sql=at_limit + "x", WorkgroupName=WG,
                                        Database=warehouse_db)
    # The limit is in UTF-8 bytes, not characters.
    wide = "SELECT '" + "é" * (limit // 2) + "'"
    assert len(wide) < limit
    with pytest.raises(errors.ValidationException, match="larger than 100kB"):
        redshift_data.execute_statement(Sql=wide, WorkgroupName=WG, Database=warehouse_db)
    with pytest.raises(errors.ValidationException, match="larger than 100kB"):
        redshift_data.batch_execute_statement(Sqls=["SELECT 1", at_limit + "x"],
                                              WorkgroupName=WG, Database=warehouse_db)


def test_client_token_makes_retries_idempotent(redshift_data: Any, warehouse_db: str,
                                               warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE i (id INT)")
    token = str(uuid.uuid4())
    first = redshift_data.execute_statement(Sql="INSERT INTO i VALUES (1)", WorkgroupName=WG,
                                            Database=warehouse_db, ClientToken=token)
    again = redshift_data.execute_statement(Sql="INSERT INTO i VALUES (1)", WorkgroupName=WG,
                                            Database=warehouse_db, ClientToken=token)
    assert first["Id"] == again["Id"]
    wait(redshift_data, first["Id"])
    assert warehouse_sql("SELECT count(*) AS n FROM i") == [{"n": 1}]
    b1 = redshift_data.batch_execute_statement(Sqls=["INSERT INTO i VALUES (2)"],
                                               WorkgroupName=WG, Database=warehouse_db,
                                               ClientToken=token + "-b")
    b2 = redshift_data.batch_execute_statement(Sqls=["INSERT INTO i VALUES (2)"],
                                               WorkgroupName=WG, Database=warehouse_db,
                                               ClientToken=token + "-b")
    assert b1["Id"] == b2["Id"]
    wait(redshift_data, b1["Id"])
    assert warehouse_sql("SELECT count(*) AS n FROM i") == [{"n": 2}]


# ------------------------------------------------------------------- sessions


def test_sessions_keep_temp_tables(redshift_data: Any, warehouse_db: str) -> None:
    first = redshift_data.execute_statement(Sql="CREATE TEMP TABLE tmp (id INT)",
                                            WorkgroupName=WG, Database=warehouse_db,
                                            SessionKeepAliveSeconds=60)
    session = first["SessionId"]
    assert wait(redshift_data, first["Id"])["SessionId"] == session
    second = redshift_data.batch_execute_statement(
        Sqls=["INSERT INTO tmp VALUES (1)", "INSERT INTO tmp VALUES (2)"], SessionId=session)
    assert wait(redshift_data, second["Id"])["Status"] == "FINISHED"
    third = redshift_data.execute_statement(Sql="SELECT count(*) FROM tmp", SessionId=session)
    assert wait(redshift_data, third["Id"])["RedshiftPid"] == wait(
        redshift_data, first["Id"])["RedshiftPid"]
    assert rows(redshift_data, third["Id"]) == [[{"longValue": 2}]]
    # Outside the session the temp table does not exist.
    assert "does not exist" in run(redshift_data, warehouse_db, "SELECT * FROM tmp")["Error"]


def test_session_busy_and_expiry(redshift_data: Any, warehouse_db: str) -> None:
    first = redshift_data.execute_statement(Sql="SELECT pg_sleep(0.3)", WorkgroupName=WG,
                                            Database=warehouse_db, SessionKeepAliveSeconds=1)
    session = first["SessionId"]
    with pytest.raises(redshift_data.exceptions.ValidationException, match="busy"):
        redshift_data.execute_statement(Sql="SELECT 1", SessionId=session)
    wait(redshift_data, first["Id"])
    time.sleep(1.5)
    with pytest.raises(redshift_data.exceptions.ResourceNotFoundException,
                       match="not available"):
        redshift_data.execute_statement(Sql="SELECT 1", SessionId=session)


# ------------------------------------------------------------- cancel and list


def test_cancel_a_running_statement(redshift_data: Any, warehouse_db: str,
                                    warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE c (id INT)")
    submitted = redshift_data.batch_execute_statement(
        Sqls=["INSERT INTO c VALUES (1)", "SELECT pg_sleep(30)"], WorkgroupName=WG,
        Database=warehouse_db)
    deadline = time.monotonic() + 10
    while redshift_data.describe_statement(Id=f"{submitted['Id']}:2")["Status"] != "STARTED":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert redshift_data.cancel_statement(Id=submitted["Id"])["Status"] is True
    desc = wait(redshift_data, submitted["Id"], timeout=10)
    assert desc["Status"] == "ABORTED"
    assert desc["SubStatements"][1]["Status"] == "ABORTED"
    assert warehouse_sql("SELECT count(*) AS n FROM c") == [{"n": 0}]
    with pytest.raises(redshift_data.exceptions.ValidationException,
                       match="already in ABORTED state"):
        redshift_data.cancel_statement(Id=submitted["Id"])


def test_list_statements(redshift_data: Any, warehouse_db: str) -> None:
    name = f"list-{uuid.uuid4().hex[:8]}"
    ids = [run(redshift_data, warehouse_db, "SELECT 1", StatementName=f"{name}-{n}")["Id"]
           for n in range(3)]
    failed = run(redshift_data, warehouse_db, "SELECT * FROM nope", StatementName=f"{name}-x")
    listed = redshift_data.list_statements(StatementName=name, Status="ALL")["Statements"]
    assert [s["Id"] for s in listed] == [failed["Id"], *reversed(ids)]  # newest first
    assert listed[0]["Status"] == "FAILED" and listed[0]["QueryString"] == "SELECT * FROM nope"
    finished = redshift_data.list_statements(StatementName=name)["Statements"]  # default
    assert {s["Id"] for s in finished} == set(ids)
    page = redshift_data.list_statements(StatementName=name, Status="ALL", MaxResults=3)
    rest = redshift_data.list_statements(StatementName=name, Status="ALL", MaxResults=3,
                                         NextToken=page["NextToken"])
    assert len(page["Statements"]) == 3 and len(rest["Statements"]) == 1
    assert "NextToken" not in rest
    b = batch(redshift_data, warehouse_db, ["SELECT 1", "SELECT 2"], StatementName=f"{name}-b")
    [listed_batch] = redshift_data.list_statements(StatementName=f"{name}-b")["Statements"]
    assert listed_batch["Id"] == b["Id"] and listed_batch["IsBatchStatement"] is True
    assert listed_batch["QueryStrings"] == ["SELECT 1", "SELECT 2"]


# ------------------------------------------------------------- Redshift rules


def test_merge_forms(redshift_data: Any, warehouse_db: str, warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE tgt (id INT, v VARCHAR(10))")
    ok(redshift_data, warehouse_db, "CREATE TABLE src (id INT, v VARCHAR(10))")
    ok(redshift_data, warehouse_db, "INSERT INTO tgt VALUES (1, 'old'), (2, 'old')")
    ok(redshift_data, warehouse_db, "INSERT INTO src VALUES (2, 'new'), (3, 'new')")
    rejected = {
        "AND": "MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED AND src.v = 'x' "
               "THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (src.id, src.v)",
        "BY": "MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED THEN DELETE "
              "WHEN NOT MATCHED BY SOURCE THEN DELETE",
        "MERGE": "WITH s AS (SELECT * FROM src) MERGE INTO tgt USING s ON tgt.id = s.id WHEN "
                 "MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
        "DO": "MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED THEN DO NOTHING "
              "WHEN NOT MATCHED THEN INSERT VALUES (src.id, src.v)",
        "end of input": "MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED THEN "
                        "UPDATE SET v = src.v",
        "not a subquery": "MERGE INTO tgt USING (SELECT src.* FROM src JOIN tgt ON "
                          "src.id = tgt.id) s ON tgt.id = s.id WHEN MATCHED THEN DELETE "
                          "WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)",
        "takes no alias": "MERGE INTO tgt AS t USING src ON t.id = src.id WHEN MATCHED THEN "
                          "DELETE WHEN NOT MATCHED THEN INSERT VALUES (src.id, src.v)",
        "Target table": "MERGE INTO tgt USING tgt ON 1 = 1 REMOVE DUPLICATES",
    }
    for near, sql in rejected.items():
        desc = run(redshift_data, warehouse_db, sql)
        assert desc["Status"] == "FAILED" and near in desc["Error"], (sql, desc.get("Error"))
    # PostgreSQL 15 would have run every one of them; nothing changed.
    assert warehouse_sql("SELECT id, v FROM tgt ORDER BY id") == [
        {"id": 1, "v": "old"}, {"id": 2, "v": "old"}]
    ok(redshift_data, warehouse_db,
       "MERGE INTO tgt USING src AS s ON tgt.id = s.id "
       "WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (id, v) "
       "VALUES (s.id, s.v)")
    assert warehouse_sql("SELECT id, v FROM tgt ORDER BY id") == [
        {"id": 1, "v": "old"}, {"id": 2, "v": "new"}, {"id": 3, "v": "new"}]
    ok(redshift_data, warehouse_db, "INSERT INTO tgt VALUES (3, 'dup')")
    ok(redshift_data, warehouse_db, "UPDATE src SET v = 'newer'")
    ok(redshift_data, warehouse_db, "MERGE INTO tgt USING src ON tgt.id = src.id "
                                    "REMOVE DUPLICATES")
    assert warehouse_sql("SELECT id, v FROM tgt ORDER BY id") == [
        {"id": 1, "v": "old"}, {"id": 2, "v": "newer"}, {"id": 3, "v": "newer"}]
    ok(redshift_data, warehouse_db, "INSERT INTO src VALUES (2, 'twice')")
    desc = run(redshift_data, warehouse_db,
               "MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED THEN UPDATE SET "
               "v = src.v WHEN NOT MATCHED THEN INSERT VALUES (src.id, src.v)")
    assert desc["Error"] == "ERROR: Found multiple matches to update the same tuple."


def test_postgres_only_syntax_fails(redshift_data: Any, warehouse_db: str) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE pk (id INT PRIMARY KEY, v INT)")
    for sql, expected in [
        ("INSERT INTO pk VALUES (1, 1) ON CONFLICT (id) DO NOTHING", 'near "ON"'),
        ("INSERT INTO pk VALUES (1, 1) RETURNING id", 'near "RETURNING"'),
        ("SELECT E'a\\tb'", "syntax error"),
        ("ALTER TABLE pk ADD COLUMN IF NOT EXISTS w INT", 'near "NOT"'),
        ("SELECT $$x$$", "syntax error"),
    ]:
        desc = run(redshift_data, warehouse_db, sql)
        assert desc["Status"] == "FAILED" and expected in desc["Error"], (sql, desc)


def test_strict_sql_can_be_switched_off(pg_server: PostgresServer, warehouse_db: str) -> None:
    with standin(pg_server, strict_sql=False) as endpoint:
        client = boto3.client("redshift-data", endpoint_url=endpoint, region_name="us-east-1")
        ok(client, warehouse_db, "CREATE TABLE r (id INT)")
        desc = ok(client, warehouse_db, "INSERT INTO r VALUES (1) RETURNING id")
        assert rows(client, desc["Id"]) == [[{"longValue": 1}]]


def test_backslashes_and_quotes_behave_as_on_redshift(redshift_data: Any, warehouse_db: str,
                                                      warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE q (id INT, s VARCHAR(100))")
    ok(redshift_data, warehouse_db,
       "INSERT INTO q VALUES (1, 'O''Brien\\\\'), (2, 'it\\'s'), (3, 'tab\\there'), "
       "(4, 'ünïcødé ✓\nline')")
    expected = ["O'Brien\\", "it's", "tab\there", "ünïcødé ✓\nline"]
    assert [r["s"] for r in warehouse_sql("SELECT s FROM q ORDER BY id")] == expected
    assert [r[1] for r in query(redshift_data, warehouse_db,
                                "SELECT id, s FROM q ORDER BY id")] == expected
    # QUOTE_LITERAL doubles quotes and backslashes, so its output reads back as the input.
    [[literal]] = query(redshift_data, warehouse_db, "SELECT quote_literal(s) FROM q WHERE id = 1")
    assert literal == "'O''Brien\\\\'"


def test_redshift_ddl_is_accepted(redshift_data: Any, warehouse_db: str) -> None:
    ok(redshift_data, warehouse_db, "CREATE SCHEMA IF NOT EXISTS mart")
    ok(redshift_data, warehouse_db,
       "CREATE TABLE IF NOT EXISTS mart.orders (id BIGINT IDENTITY(1,1), "
       "customer_id INT NOT NULL ENCODE az64 DISTKEY, note VARCHAR(MAX) ENCODE zstd, "
       "code VARCHAR, amount DECIMAL, created TIMESTAMP DEFAULT GETDATE() ENCODE raw, "
       "PRIMARY KEY (id)) DISTSTYLE KEY COMPOUND SORTKEY (customer_id, created) BACKUP NO")
    ok(redshift_data, warehouse_db, "ALTER TABLE mart.orders ALTER DISTKEY customer_id")
    ok(redshift_data, warehouse_db, "ALTER TABLE mart.orders ADD COLUMN extra INT DEFAULT 0")
    ok(redshift_data, warehouse_db,
       "INSERT INTO mart.orders (customer_id, note, code, amount) VALUES (1, 'n', 'c', 2.7)")
    [[ident, amount, created]] = query(redshift_data, warehouse_db,
                                       "SELECT id, amount, created FROM mart.orders")
    assert ident == 1 and amount == "3"  # DECIMAL without precision is DECIMAL(18,0)
    assert len(created) == len("2024-01-01 00:00:00")  # GETDATE(): whole seconds
    # VARCHAR without a length is VARCHAR(256); IDENTITY columns refuse explicit values.
    assert "too long" in run(redshift_data, warehouse_db,
                             "INSERT INTO mart.orders (customer_id, code) "
                             f"VALUES (1, '{'x' * 257}')")["Error"]
    assert run(redshift_data, warehouse_db,
               "INSERT INTO mart.orders (id, customer_id) VALUES (5, 1)")["Status"] == "FAILED"
    ok(redshift_data, warehouse_db, "CREATE TEMP TABLE stage (LIKE mart.orders)")
    ok(redshift_data, warehouse_db, "LOCK mart.orders")


def test_varchar_lengths_are_bytes(redshift_data: Any, warehouse_db: str, s3: Any,
                                   warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE vb (s VARCHAR(4))")
    ok(redshift_data, warehouse_db, "INSERT INTO vb VALUES ('éé')")  # 4 bytes
    desc = run(redshift_data, warehouse_db, "INSERT INTO vb VALUES ('ééé')")  # 3 chars, 6 bytes
    assert desc["Error"] == "ERROR: value too long for type character varying(4)"
    ok(redshift_data, warehouse_db, "ALTER TABLE vb ALTER COLUMN s TYPE VARCHAR(6)")
    ok(redshift_data, warehouse_db, "INSERT INTO vb VALUES ('ééé')")
    ok(redshift_data, warehouse_db, "CREATE TEMP TABLE vb2 (LIKE vb)")  # (a new session)
    [[name, length]] = query(redshift_data, warehouse_db,
                             "SELECT data_type, character_maximum_length FROM "
                             "information_schema.columns WHERE table_name = 'vb'")
    assert (name, length) == ("character varying", 6)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key="vb/1.json", Body='{"s": "éééé"}'.encode())
    copy = f"COPY vb FROM 's3://{bucket}/vb/' IAM_ROLE default JSON 'auto'"
    assert "String length exceeds DDL length" in run(redshift_data, warehouse_db, copy)["Error"]
    ok(redshift_data, warehouse_db, copy + " TRUNCATECOLUMNS")
    assert warehouse_sql("SELECT s FROM vb ORDER BY s") == [
        {"s": "éé"}, {"s": "ééé"}, {"s": "ééé"}]


def test_quoted_identifiers_fold_to_lower_case(redshift_data: Any, warehouse_db: str) -> None:
    ok(redshift_data, warehouse_db, 'CREATE TABLE "Mixed" ("CustomerID" INT)')
    ok(redshift_data, warehouse_db, 'INSERT INTO mixed (customerid) VALUES (1)')
    desc = ok(redshift_data, warehouse_db, 'SELECT "CUSTOMERID" AS "Id" FROM "MIXED"')
    page = redshift_data.get_statement_result(Id=desc["Id"])
    assert page["ColumnMetadata"][0]["name"] == "id"
    assert page["Records"] == [[{"longValue": 1}]]


def test_key_constraints_are_not_enforced(redshift_data: Any, warehouse_db: str,
                                          warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE k (id INT NOT NULL, v VARCHAR(5), "
                                    "PRIMARY KEY (id), UNIQUE (v))")
    ok(redshift_data, warehouse_db, "INSERT INTO k VALUES (1, 'a'), (1, 'a')")
    assert warehouse_sql("SELECT count(*) AS n FROM k") == [{"n": 2}]
    assert "null value" in run(redshift_data, warehouse_db,
                               "INSERT INTO k VALUES (NULL, 'b')")["Error"]  # enforced


def test_alter_column_type_outside_transactions_only(redshift_data: Any,
                                                     warehouse_db: str) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE w (id INT, v VARCHAR(5))")
    in_batch = batch(redshift_data, warehouse_db,
                     ["ALTER TABLE w ALTER COLUMN v TYPE VARCHAR(10)", "SELECT 1"])
    assert in_batch["Error"] == ("ERROR: ALTER TABLE ALTER COLUMN cannot run inside a "
                                 "transaction block")
    ok(redshift_data, warehouse_db, "ALTER TABLE w ALTER COLUMN v TYPE VARCHAR(10)")
    assert "not supported" in run(redshift_data, warehouse_db,
                                  "ALTER TABLE w ALTER COLUMN id TYPE BIGINT")["Error"]


def test_serialization_failure_is_error_1023(redshift_data: Any, warehouse_db: str) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE x (id INT)")
    ok(redshift_data, warehouse_db, "CREATE TABLE y (id INT)")
    # Write skew: each transaction reads the table the other writes.
    first = redshift_data.batch_execute_statement(
        Sqls=["SELECT count(*) FROM x", "INSERT INTO y VALUES (1)", "SELECT pg_sleep(0.5)"],
        WorkgroupName=WG, Database=warehouse_db)
    second = redshift_data.batch_execute_statement(
        Sqls=["SELECT count(*) FROM y", "INSERT INTO x VALUES (1)", "SELECT pg_sleep(0.5)"],
        WorkgroupName=WG, Database=warehouse_db)
    outcomes = [wait(redshift_data, first["Id"]), wait(redshift_data, second["Id"])]
    assert sorted(d["Status"] for d in outcomes) == ["FAILED", "FINISHED"]
    [failed] = [d for d in outcomes if d["Status"] == "FAILED"]
    assert failed["Error"].startswith("ERROR: 1023 DETAIL: Serializable isolation violation")


def _merge_writer(client: Any, db: str, key: int, lock: bool) -> str:
    sqls = [f"CREATE TEMP TABLE s AS SELECT {key} AS id, 'v' AS v",
            "MERGE INTO m USING s ON m.id = s.id "
            "WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT VALUES "
            "(s.id, s.v)", "SELECT pg_sleep(0.4)"]
    submitted = client.batch_execute_statement(Sqls=["LOCK m", *sqls] if lock else sqls,
                                               WorkgroupName=WG, Database=db)
    return str(submitted["Id"])


def test_concurrent_merge_writers_need_a_lock(redshift_data: Any, warehouse_db: str,
                                              warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE m (id INT, v VARCHAR(5), PRIMARY KEY (id))")
    # Two writers merging different keys into one table at once: one fails, as on Redshift.
    ids = [_merge_writer(redshift_data, warehouse_db, key, lock=False) for key in (1, 2)]
    statuses = sorted(wait(redshift_data, i)["Status"] for i in ids)
    assert statuses == ["FAILED", "FINISHED"]
    # LOCK at the start of the transaction makes writers queue instead.
    ids = [_merge_writer(redshift_data, warehouse_db, key, lock=True) for key in (3, 4)]
    assert [wait(redshift_data, i)["Status"] for i in ids] == ["FINISHED", "FINISHED"]
    assert len(warehouse_sql("SELECT id FROM m WHERE id IN (3, 4)")) == 2


# ----------------------------------------------------------------------- COPY


def _bucket(s3: Any) -> str:
    name = f"copy-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _copy_table(client: Any, db: str) -> None:
    ok(client, db, "CREATE TABLE events (id INT, name VARCHAR(20), amount DECIMAL(8,2), "
                   "at TIMESTAMP, ok BOOLEAN)")


def test_copy_json_auto_from_s3(redshift_data: Any, warehouse_db: str, s3: Any,
                                warehouse_sql: Any) -> None:
    bucket = _bucket(s3)
    _copy_table(redshift_data, warehouse_db)
    lines = [{"id": 1, "name": "O'Brien\\", "amount": 1.5, "at": "2024-01-02 03:04:05",
              "ok": True}, {"id": 2, "name": "ünï"}, {"id": 3, "NAME": "ignored", "ok": False}]
    body = "\n".join(json.dumps(line) for line in lines[:2]) + "\n"
    s3.put_object(Bucket=bucket, Key="load/part-0.json.gz", Body=gzip.compress(body.encode()))
    s3.put_object(Bucket=bucket, Key="load/part-1.json.gz",
                  Body=gzip.compress(json.dumps(lines[2]).encode()))  # concatenated, no newline
    s3.put_object(Bucket=bucket, Key="other/part-9.json.gz", Body=b"not loaded")
    desc = ok(redshift_data, warehouse_db,
              f"COPY events FROM 's3://{bucket}/load/' IAM_ROLE 'arn:aws:iam::1:role/r' "
              "FORMAT AS JSON 'auto' GZIP TIMEFORMAT 'auto' DATEFORMAT 'auto'")
    assert desc["ResultRows"] == 3
    got = warehouse_sql("SELECT id, name, amount::text AS amount, at::text AS at, ok "
                        "FROM events ORDER BY id")
    assert got == [
        {"id": 1, "name": "O'Brien\\", "amount": "1.50", "at": "2024-01-02 03:04:05", "ok": True},
        {"id": 2, "name": "ünï", "amount": None, "at": None, "ok": None},
        {"id": 3, "name": None, "amount": None, "at": None, "ok": False},
    ]
    ok(redshift_data, warehouse_db, "CREATE TABLE ev2 (id INT, name VARCHAR(20))")
    ok(redshift_data, warehouse_db, f"COPY ev2 FROM 's3://{bucket}/load/part-1' IAM_ROLE default "
                                    "JSON 'auto ignorecase' GZIP")
    assert warehouse_sql("SELECT id, name FROM ev2") == [{"id": 3, "name": "ignored"}]


def test_copy_csv_from_s3(redshift_data: Any, warehouse_db: str, s3: Any,
                          warehouse_sql: Any) -> None:
    bucket = _bucket(s3)
    _copy_table(redshift_data, warehouse_db)
    csv_text = ('id,name,amount,at,ok\n1,"a, ""quoted"" name",2.50,2024-01-02 03:04:05,t\n'
                "2,,,,\n3,  ,1,,f\n")
    s3.put_object(Bucket=bucket, Key="csv/data.csv.gz", Body=gzip.compress(csv_text.encode()))
    desc = ok(redshift_data, warehouse_db,
              f"COPY events (id, name, amount, at, ok) FROM 's3://{bucket}/csv/' "
              "IAM_ROLE default CSV QUOTE AS '\"' DELIMITER ',' IGNOREHEADER 1 GZIP BLANKSASNULL")
    assert desc["ResultRows"] == 3
    got = warehouse_sql("SELECT id, name, amount::text AS amount, ok FROM events ORDER BY id")
    assert got == [
        {"id": 1, "name": 'a, "quoted" name', "amount": "2.50", "ok": True},
        {"id": 2, "name": "", "amount": None, "ok": None},
        {"id": 3, "name": None, "amount": "1.00", "ok": False},
    ]
    s3.put_object(Bucket=bucket, Key="bad/data.csv", Body=b"1,a,1,,t,extra\n")
    bad = run(redshift_data, warehouse_db,
              f"COPY events FROM 's3://{bucket}/bad/' IAM_ROLE default CSV")
    assert bad["Error"].startswith("ERROR: Load into table 'events' failed.")
    assert "Extra column(s) found" in bad["Error"]


def test_copy_missing_prefix_and_bucket(redshift_data: Any, warehouse_db: str, s3: Any) -> None:
    bucket = _bucket(s3)
    _copy_table(redshift_data, warehouse_db)
    desc = run(redshift_data, warehouse_db,
               f"COPY events FROM 's3://{bucket}/nothing/here' IAM_ROLE default JSON 'auto'")
    assert desc["Error"] == "ERROR: The specified S3 prefix 'nothing/here' does not exist"
    desc = run(redshift_data, warehouse_db,
               "COPY events FROM 's3://no-such-bucket-xyz/p' IAM_ROLE default JSON 'auto'")
    assert "The specified bucket does not exist" in desc["Error"]


def test_copy_rolls_back_with_its_batch(redshift_data: Any, warehouse_db: str, s3: Any,
                                        warehouse_sql: Any) -> None:
    bucket = _bucket(s3)
    _copy_table(redshift_data, warehouse_db)
    s3.put_object(Bucket=bucket, Key="b/1.json", Body=b'{"id": 1}\n{"id": 2}\n')
    desc = batch(redshift_data, warehouse_db, [
        "CREATE TEMP TABLE stage (LIKE events)",
        f"COPY stage FROM 's3://{bucket}/b/' IAM_ROLE default FORMAT AS JSON 'auto'",
        "INSERT INTO events SELECT * FROM stage",
        "INSERT INTO nope VALUES (1)"])
    assert [s["Status"] for s in desc["SubStatements"]] == ["FINISHED", "FINISHED", "FINISHED",
                                                            "FAILED"]
    assert desc["SubStatements"][1]["ResultRows"] == 2
    assert warehouse_sql("SELECT count(*) AS n FROM events") == [{"n": 0}]
    ok_batch = batch(redshift_data, warehouse_db, [
        "CREATE TEMP TABLE stage (LIKE events)",
        f"COPY stage FROM 's3://{bucket}/b/' IAM_ROLE default FORMAT AS JSON 'auto'",
        "INSERT INTO events SELECT * FROM stage"])
    assert ok_batch["Status"] == "FINISHED", ok_batch.get("Error")
    assert warehouse_sql("SELECT count(*) AS n FROM events") == [{"n": 2}]


def test_copy_manifest(redshift_data: Any, warehouse_db: str, s3: Any,
                       warehouse_sql: Any) -> None:
    bucket = _bucket(s3)
    _copy_table(redshift_data, warehouse_db)
    s3.put_object(Bucket=bucket, Key="m/a.json", Body=b'{"id": 1}')
    s3.put_object(Bucket=bucket, Key="m/b.json", Body=b'{"id": 2}')
    manifest = {"entries": [{"url": f"s3://{bucket}/m/a.json", "mandatory": True},
                            {"url": f"s3://{bucket}/m/missing.json", "mandatory": False}]}
    s3.put_object(Bucket=bucket, Key="m/manifest", Body=json.dumps(manifest).encode())
    ok(redshift_data, warehouse_db, f"COPY events FROM 's3://{bucket}/m/manifest' "
                                    "IAM_ROLE default JSON 'auto' MANIFEST")
    assert warehouse_sql("SELECT id FROM events") == [{"id": 1}]


def test_copy_manifest_many_files_in_order_and_a_missing_mandatory_entry(
    redshift_data: Any, warehouse_db: str, s3: Any, warehouse_sql: Any,
) -> None:
    """Redshift loads a manifest's files in parallel ("Loading data from Amazon S3"); a
    mandatory entry that does not exist fails the COPY ("Using a manifest to specify data
    files": mandatory, "COPY terminates if the file is not found"), loading nothing."""
    bucket = _bucket(s3)
    _copy_table(redshift_data, warehouse_db)
    for n in range(30):
        s3.put_object(Bucket=bucket, Key=f"many/{n}.json", Body=f'{{"id": {n}}}'.encode())
    entries = [{"url": f"s3://{bucket}/many/{n}.json", "mandatory": True} for n in range(30)]
    s3.put_object(Bucket=bucket, Key="many/manifest",
                  Body=json.dumps({"entries": entries}).encode())
    ok(redshift_data, warehouse_db, f"COPY events FROM 's3://{bucket}/many/manifest' "
                                    "IAM_ROLE default JSON 'auto' MANIFEST")
    assert [r["id"] for r in warehouse_sql("SELECT id FROM events ORDER BY id")] == \
        list(range(30))

    missing = f"s3://{bucket}/many/gone.json"
    s3.put_object(Bucket=bucket, Key="many/manifest2", Body=json.dumps(
        {"entries": [*entries[:3], {"url": missing, "mandatory": True}]}).encode())
    desc = run(redshift_data, warehouse_db, f"COPY events FROM 's3://{bucket}/many/manifest2' "
                                            "IAM_ROLE default JSON 'auto' MANIFEST")
    assert desc["Status"] == "FAILED"
    assert desc["Error"] == f"ERROR: Manifest file entry '{missing}' is mandatory and does " \
                            "not exist"
    assert warehouse_sql("SELECT count(*) AS n FROM events") == [{"n": 30}]


def test_copy_parquet(redshift_data: Any, warehouse_db: str, s3: Any,
                      warehouse_sql: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bucket = _bucket(s3)
    ok(redshift_data, warehouse_db, "CREATE TABLE pq (id BIGINT, name VARCHAR(10), x FLOAT8)")
    table = pa.table({"id": pa.array([1, 2], pa.int64()), "name": ["a", None],
                      "x": [0.5, 2.0]})
    out = io.BytesIO()
    pq.write_table(table, out)
    s3.put_object(Bucket=bucket, Key="pq/part.parquet", Body=out.getvalue())
    desc = ok(redshift_data, warehouse_db,
              f"COPY pq FROM 's3://{bucket}/pq/' IAM_ROLE default FORMAT AS PARQUET")
    assert desc["ResultRows"] == 2
    assert warehouse_sql("SELECT id, name, x FROM pq ORDER BY id") == [
        {"id": 1, "name": "a", "x": 0.5}, {"id": 2, "name": None, "x": 2.0}]
    wrong = pa.table({"id": ["1"], "name": ["a"], "x": [1.0]})  # id as a string
    out = io.BytesIO()
    pq.write_table(wrong, out)
    s3.put_object(Bucket=bucket, Key="bad/part.parquet", Body=out.getvalue())
    desc = run(redshift_data, warehouse_db,
               f"COPY pq FROM 's3://{bucket}/bad/' IAM_ROLE default FORMAT AS PARQUET")
    assert "incompatible Parquet schema" in desc["Error"]


# ---------------------------------------------------------------- command line


def test_command_line_start_stop(moto_endpoint: str) -> None:
    state = Path(tempfile.mkdtemp(prefix="rsd-cli-"))
    state.chmod(0o755)  # its own PostgreSQL runs as the postgres OS user
    cli = [sys.executable, "-m", "local.redshift_data_api"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        started = subprocess.run([*cli, "start", "--state-dir", str(state),
                                  "--s3-endpoint-url", moto_endpoint],
                                 capture_output=True, text=True, check=True, cwd=REPO, env=env,
                                 timeout=90)
        url = started.stdout.strip()
        info = json.loads((state / "endpoint.json").read_text())
        assert info["endpoint_url"] == url and info["pid"] > 0 and info["pg_conninfo"]
        again = subprocess.run([*cli, "start", "--state-dir", str(state)], capture_output=True,
                               text=True, check=True, cwd=REPO, env=env, timeout=30)
        assert again.stdout.strip() == url
        client = boto3.client("redshift-data", endpoint_url=url, region_name="us-east-1")
        assert query(client, "dev", "SELECT 40 + 2") == [[42]]
        subprocess.run([*cli, "stop", "--state-dir", str(state)], check=True, cwd=REPO,
                       env=env, timeout=60, capture_output=True)
        assert not (state / "endpoint.json").exists()
        assert not (state / "pg" / "postmaster.pid").exists()
    finally:
        subprocess.run([*cli, "stop", "--state-dir", str(state)], cwd=REPO, env=env,
                       timeout=60, capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


def test_concurrent_clients(redshift_data: Any, warehouse_db: str, warehouse_sql: Any) -> None:
    ok(redshift_data, warehouse_db, "CREATE TABLE cc (id INT)")
    errors: list[BaseException] = []

    def insert(n: int) -> None:
        try:
            ok(redshift_data, warehouse_db, f"INSERT INTO cc VALUES ({n})")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert warehouse_sql("SELECT count(*) AS n FROM cc") == [{"n": 20}]
