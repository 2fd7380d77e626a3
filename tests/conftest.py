"""Session-wide local stack for the tests: a real PostgreSQL 15, a moto server and the
Redshift Data API stand-in. Nothing here mocks our own code or the database. Helpers that
tests import (``REGION``, ``fresh_database``, ``standin``) are in ``tests/stack_helpers.py``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest

from local.ports import free_port
from local.postgres import PostgresServer, start_postgres, stop_postgres
from tests.stack_helpers import REGION, fresh_database, standin

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
# Powertools reads these when the handler module is imported, as Lambda sets them first.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "cdc-consumer")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CdcPipeline")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL 15 cluster for the whole test session."""
    root = Path(tempfile.mkdtemp(prefix="cdc-tests-pg-"))
    root.chmod(0o755)  # the server may run as the postgres OS user
    server = start_postgres(root / "data")
    try:
        yield server
    finally:
        stop_postgres(root / "data")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def warehouse_db(pg_server: PostgresServer) -> str:
    """Name of a fresh, empty warehouse database (one per test)."""
    return fresh_database(pg_server, "wh")


@pytest.fixture
def warehouse_sql(pg_server: PostgresServer, warehouse_db: str):  # type: ignore[no-untyped-def]
    """Run a query directly on the test's warehouse database and return the rows as dicts."""

    def run(sql: str, params: tuple[object, ...] = ()) -> list[dict[str, object]]:
        with psycopg.connect(pg_server.dsn(warehouse_db), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    return run


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server (Kinesis, S3, SQS, Secrets Manager, ...) on a free port."""
    from moto.server import ThreadedMotoServer

    from local.moto_server import patch

    patch()  # as the local stack runs it
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redshift_api(pg_server: PostgresServer, moto_endpoint: str) -> Iterator[str]:
    """The Redshift Data API stand-in over the test PostgreSQL; yields its endpoint URL."""
    with standin(pg_server, moto_endpoint) as endpoint:
        yield endpoint


@pytest.fixture
def redshift_data(redshift_api: str):  # type: ignore[no-untyped-def]
    """A plain boto3 ``redshift-data`` client pointed at the stand-in."""
    return boto3.client("redshift-data", endpoint_url=redshift_api, region_name=REGION)


@pytest.fixture
def s3(moto_endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
