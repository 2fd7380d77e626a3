"""The benchmarks' warehouse helpers: fresh migrated databases on the local stack, and direct
reads of the warehouse (bypassing the Data API) to see what has landed."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import boto3
import psycopg
from psycopg import sql

from local.stack import StackInfo
from local.stack.provision import warehouse_passwords
from local.stack.state import CONSUMER_USER
from shared.data_api import DataApiTarget, RedshiftDataApi
from shared.migrations import migrate
from shared.spec import PipelineSpec, load_spec
from shared.staging import DELETED
from shared.warehouse_grants import ConsumerLogin


@contextlib.contextmanager
def fresh_databases(info: StackInfo, *names: str,
                    spec: PipelineSpec | None = None) -> Iterator[list[str]]:
    """Fresh warehouse databases on the stack's PostgreSQL, migrated to ``spec`` (the shipped
    one by default); dropped afterwards."""
    admin = f"host=127.0.0.1 port={info.postgres_port} user=postgres dbname=postgres"
    databases = [f"bench_{name}_{uuid.uuid4().hex[:8]}" for name in names]
    client = boto3.client("redshift-data", endpoint_url=info.redshift_data_endpoint)
    with psycopg.connect(admin, autocommit=True) as conn:
        for database in databases:
            conn.execute(f'CREATE DATABASE "{database}"')
    consumer = ConsumerLogin(CONSUMER_USER, warehouse_passwords(info.state_dir)[CONSUMER_USER])
    try:
        for database in databases:
            # As the stack's migrator does: the admin migrates, the consumer gets its grants.
            api = RedshiftDataApi(client, DataApiTarget(
                database=database, workgroup_name=info.workgroup_name,
                secret_arn=info.resources.admin_secret_arn), poll_interval=(0.005, 0.1))
            migrate(api, spec or load_spec(), consumer)
        yield databases
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for database in databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def source_row_counts(dsn: str, spec: PipelineSpec) -> dict[str, int]:
    """Rows per spec table in the source."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {name: _count(conn, sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(spec.source_schema), sql.Identifier(name))) for name in spec.tables}


def live_replica_counts(dsn: str, spec: PipelineSpec) -> dict[str, int]:
    """Live rows per replica in the warehouse (tombstones left out; hard-delete mode keeps
    none)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {name: _count(conn, sql.SQL("SELECT count(*) FROM {}.{} WHERE NOT {}").format(
            sql.Identifier(spec.replica_schema), sql.Identifier(name),
            sql.Identifier(DELETED))) for name in spec.tables}


def _count(conn: psycopg.Connection[tuple[int]], query: sql.Composed) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0
