"""Helpers for tests that talk to the Redshift Data API stand-in through a boto3
``redshift-data`` client: submit a statement and wait for its final status, assert it
finished, read its rows ("ExecuteStatement", "DescribeStatement", "GetStatementResult" in
the Redshift Data API reference: a statement runs asynchronously and ends FINISHED, FAILED or
ABORTED)."""

from __future__ import annotations

import time
from typing import Any

FINAL = ("FINISHED", "FAILED", "ABORTED")
WG = "local-workgroup"


def wait(client: Any, statement_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        desc: dict[str, Any] = client.describe_statement(Id=statement_id)
        if desc["Status"] in FINAL:
            return desc
        assert time.monotonic() < deadline, f"statement still {desc['Status']}"
        time.sleep(0.02)


def run(client: Any, db: str, sql: str, **kwargs: Any) -> dict[str, Any]:
    submitted = client.execute_statement(Sql=sql, WorkgroupName=WG, Database=db, **kwargs)
    return wait(client, submitted["Id"])


def ok(client: Any, db: str, sql: str, **kwargs: Any) -> dict[str, Any]:
    desc = run(client, db, sql, **kwargs)
    assert desc["Status"] == "FINISHED", desc.get("Error")
    return desc


def batch(client: Any, db: str, sqls: list[str], **kwargs: Any) -> dict[str, Any]:
    submitted = client.batch_execute_statement(Sqls=sqls, ClusterIdentifier="local-cluster",
                                               Database=db, **kwargs)
    return wait(client, submitted["Id"])


def rows(client: Any, statement_id: str) -> list[list[dict[str, Any]]]:
    return list(client.get_statement_result(Id=statement_id)["Records"])


def query(client: Any, db: str, sql: str) -> list[list[Any]]:
    """The rows of ``sql`` with each field reduced to its value."""
    desc = ok(client, db, sql)
    return [[next(iter(f.values())) for f in row] for row in rows(client, desc["Id"])]
