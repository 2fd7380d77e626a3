"""Helpers for tests on the local stack (the fixtures that start it are in tests/conftest.py):
the AWS region the tests use, a fresh PostgreSQL database, a Redshift Data API stand-in of a
test's own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from local.postgres import PostgresServer

# The region of every client the tests make; tests/conftest.py sets AWS_DEFAULT_REGION to it.
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


def fresh_database(server: PostgresServer, prefix: str) -> str:
    """Create an empty database on ``server`` named ``<prefix>_<random>``; returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


@contextmanager
def standin(pg_server: PostgresServer, moto_endpoint: str | None = None,
            **options: Any) -> Iterator[str]:
    """A Redshift Data API stand-in over the test PostgreSQL while the block runs; yields its
    endpoint URL. ``options`` go to ``RedshiftDataApiServer`` (page size, limits, ...)."""
    from local.redshift_data_api.server import RedshiftDataApiServer

    server = RedshiftDataApiServer(
        pg_conninfo=f"host={pg_server.host} port={pg_server.port} user={pg_server.user}",
        s3_endpoint_url=moto_endpoint, **options,
    )
    server.start()
    try:
        yield server.endpoint_url
    finally:
        server.stop()
