"""Least-privilege warehouse access, on a Data API stand-in that authenticates like AWS.

The schema migrator runs as the administrator (its secret) and creates the consumers' user
from ``ConsumerSecretArn`` with exactly the grants they need; the consumer's identity then
writes every table the migrator created (the real writer, and plain DML on each table) but
cannot create, alter or drop anything. A migrator that passes neither SecretArn nor DbUser
runs as its IAM role (``IAMR:<role>``, a fresh user without privileges) and fails on a new
workgroup, as the default deploy did on AWS (issue 9).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest

from functions.schema_migrator import app
from local.postgres import PostgresServer
from local.redshift_data_api.auth import AuthSettings
from shared.data_api import DataApiTarget, RedshiftDataApi, StatementFailed
from shared.redshift_writer import RedshiftWriter
from shared.spec import load_spec
from shared.transform import Transformer
from tests.factories import DmsStream, activity, customer, sport_event, ticket
from tests.functional.pipeline_helpers import FAST_RETRY, HMAC_KEY
from tests.stack_helpers import REGION, standin

WG = "local-workgroup"
CLUSTER = "local-cluster"


@pytest.fixture(scope="module")
def authenticated(pg_server: PostgresServer, moto_endpoint: str) -> Iterator[str]:
    with standin(pg_server, moto_endpoint,
                 auth=AuthSettings(secrets_endpoint_url=moto_endpoint,
                                   sts_endpoint_url=moto_endpoint, region=REGION)) as url:
        yield url


def _secret(secrets: Any, name: str, username: str, password: str) -> str:
    value = json.dumps({"username": username, "password": password})
    return str(secrets.create_secret(Name=name, SecretString=value)["ARN"])


@pytest.fixture
def logins(pg_server: PostgresServer, moto_endpoint: str) -> dict[str, str]:
    """An administrator (a superuser, as a namespace's admin user is) and the consumers'
    user, each as a Secrets Manager secret; the consumer does not exist in the database."""
    tag = uuid.uuid4().hex[:8]
    admin, admin_password = f"admin_{tag}", f"Admin-{tag}-Pw1"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE USER {admin} SUPERUSER PASSWORD '{admin_password}'".encode())
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    consumer = f"cdc_consumer_{tag}"
    return {
        "admin": _secret(secrets, f"admin-{tag}", admin, admin_password),
        "consumer": _secret(secrets, f"consumer-{tag}", consumer, f"Consumer-{tag}-Pw1"),
        "consumer_wrong": _secret(secrets, f"consumer-wrong-{tag}", consumer, "Wrong-Pw-123"),
        "consumer_user": consumer,
        "admin_user": admin,
    }


def _api(client: Any, database: str, **target: str) -> RedshiftDataApi:
    if "cluster_identifier" not in target:
        target.setdefault("workgroup_name", WG)
    return RedshiftDataApi(client, DataApiTarget(database=database, **target),
                           retry=FAST_RETRY, poll_interval=(0.005, 0.05))


def _migrate(client: Any, moto_endpoint: str, database: str, **properties: str) -> dict[str, Any]:
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    return app.run_migration({"Database": database, "WorkgroupName": WG, **properties}, client,
                             secrets)


def test_the_consumer_writes_every_migrated_table_and_nothing_else(
        authenticated: str, moto_endpoint: str, logins: dict[str, str], warehouse_db: str,
        warehouse_sql: Any) -> None:
    client = boto3.client("redshift-data", endpoint_url=authenticated, region_name=REGION)
    done = _migrate(client, moto_endpoint, warehouse_db, SecretArn=logins["admin"],
                    ConsumerSecretArn=logins["consumer"])
    assert done["ConsumerUser"] == logins["consumer_user"]
    consumer = _api(client, warehouse_db, secret_arn=logins["consumer"])

    # The real writer, as the Lambda and Glue consumers run it.
    spec = load_spec()
    stream = DmsStream()
    stream.add("sport_event", "load", sport_event(1))
    stream.add("ticket", "load", ticket(10, 1))
    stream.add("customer", "load", customer(222, "Teresa Stein", "teresa@example.com"))
    stream.add("ticket_activity", "load", activity(10, 222))
    changes = Transformer(spec, HMAC_KEY).transform(stream.take()).changes
    RedshiftWriter(spec, consumer).stage_and_merge(changes)
    assert warehouse_sql("SELECT ticket_id, name FROM public.sport_event_activity") == [
        {"ticket_id": 10, "name": "Teresa Stein"}]

    # Every table the migrator created: the consumer reads, inserts, updates and deletes.
    created = warehouse_sql("SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN "
                            "('cdc_replica', 'public') ORDER BY 1, 2")
    assert {"cdc_replica.customer", "public.sport_event_activity"} <= {
        f"{t['schemaname']}.{t['tablename']}" for t in created}
    for table in created:
        name = f'"{table["schemaname"]}"."{table["tablename"]}"'
        consumer.run_transaction([
            f"CREATE TEMP TABLE probe AS SELECT * FROM {name} LIMIT 1",
            f"DELETE FROM {name} WHERE 1 = 0", f"UPDATE {name} SET {_first(name, warehouse_sql)}"
            f" = {_first(name, warehouse_sql)} WHERE 1 = 0",
            f"INSERT INTO {name} SELECT * FROM probe WHERE 1 = 0"])

    # ... and alters or drops no wide table (it owns the replicas, their stages and apply
    # procedures only, and may create in the pipeline's replica schema, for schema evolution's
    # ADD COLUMN and the procedure it recreates: shared.warehouse_grants).
    refused = {
        "DROP TABLE public.sport_event_activity": "must be owner of table sport_event_activity",
        "ALTER TABLE public.sport_event_activity ADD COLUMN x INT": "must be owner",
        "CREATE SCHEMA other": "permission denied for database",
        "TRUNCATE public.sport_event_activity": "permission denied for table sport_event_activity",
    }
    for sql, error in refused.items():
        with pytest.raises(StatementFailed, match=error):
            consumer.execute(sql)


def _first(table: str, warehouse_sql: Any) -> str:
    schema, name = (part.strip('"') for part in table.split("."))
    column = warehouse_sql("SELECT column_name FROM information_schema.columns WHERE "
                           "table_schema = %s AND table_name = %s ORDER BY ordinal_position "
                           "LIMIT 1", (schema, name))[0]["column_name"]
    return f'"{column}"'


def test_grants_are_renewed_on_every_run_and_logins_fail_as_on_aws(
        authenticated: str, moto_endpoint: str, logins: dict[str, str], warehouse_db: str,
        warehouse_sql: Any) -> None:
    client = boto3.client("redshift-data", endpoint_url=authenticated, region_name=REGION)
    _migrate(client, moto_endpoint, warehouse_db, SecretArn=logins["admin"],
             ConsumerSecretArn=logins["consumer"])
    admin = _api(client, warehouse_db, secret_arn=logins["admin"])
    admin.execute("CREATE TABLE cdc_replica._cdc_later (id INT)")  # a later version's table
    consumer = _api(client, warehouse_db, secret_arn=logins["consumer"])
    with pytest.raises(StatementFailed, match="permission denied for table _cdc_later"):
        consumer.execute("INSERT INTO cdc_replica._cdc_later VALUES (1)")
    _migrate(client, moto_endpoint, warehouse_db, SecretArn=logins["admin"],
             ConsumerSecretArn=logins["consumer"])  # the user exists now: grants only
    consumer.execute("INSERT INTO cdc_replica._cdc_later VALUES (1)")
    assert warehouse_sql("SELECT id FROM cdc_replica._cdc_later") == [{"id": 1}]

    # A wrong password fails at log-in, as Redshift's does.
    wrong = _api(client, warehouse_db, secret_arn=logins["consumer_wrong"])
    with pytest.raises(StatementFailed, match='password authentication failed for user "'
                       + logins["consumer_user"]):
        wrong.execute("SELECT 1")
    # DbUser: temporary credentials on a cluster only.
    errors = client.exceptions
    with pytest.raises(errors.ValidationException, match="DbUser"):
        client.execute_statement(Sql="SELECT 1", WorkgroupName=WG, Database=warehouse_db,
                                 DbUser=logins["consumer_user"])
    as_db_user = _api(client, warehouse_db, cluster_identifier=CLUSTER,
                      db_user=logins["consumer_user"])
    assert as_db_user.query("SELECT current_user AS me") == [{"me": logins["consumer_user"]}]
    with pytest.raises(StatementFailed, match='user "nobody" does not exist'):
        _api(client, warehouse_db, cluster_identifier=CLUSTER, db_user="nobody").execute(
            "SELECT 1")
    # A secret without a username and password is refused at once.
    secrets = boto3.client("secretsmanager", endpoint_url=moto_endpoint, region_name=REGION)
    empty = secrets.create_secret(Name=f"empty-{uuid.uuid4().hex[:6]}",
                                  SecretString="{}")["ARN"]
    with pytest.raises(errors.ValidationException,
                       match="username and password in secret cannot be empty"):
        client.execute_statement(Sql="SELECT 1", WorkgroupName=WG, Database=warehouse_db,
                                 SecretArn=empty)
    with pytest.raises(errors.ValidationException, match="can't find the specified secret"):
        client.execute_statement(Sql="SELECT 1", WorkgroupName=WG, Database=warehouse_db,
                                 SecretArn=empty.replace("empty-", "missing-"))


def test_the_migrator_as_its_iam_role_fails_on_a_new_workgroup(
        authenticated: str, moto_endpoint: str, warehouse_db: str, warehouse_sql: Any) -> None:
    """No SecretArn and no DbUser: the Data API maps the Lambda's role to ``IAMR:<role>``, a
    new database user that may not create schemas: the migration fails, as on AWS."""
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name=REGION)
    role = f"SchemaMigratorRole-{uuid.uuid4().hex[:6]}"
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    credentials = boto3.client("sts", endpoint_url=moto_endpoint, region_name=REGION).assume_role(
        RoleArn=arn, RoleSessionName="migrator")["Credentials"]
    as_role = boto3.client(
        "redshift-data", endpoint_url=authenticated, region_name=REGION,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"])
    with pytest.raises(StatementFailed, match=f"permission denied for database {warehouse_db}"):
        _migrate(as_role, moto_endpoint, warehouse_db)
    assert warehouse_sql("SELECT usename, usesuper FROM pg_user WHERE usename = %s",
                         (f"IAMR:{role}",)) == [{"usename": f"IAMR:{role}", "usesuper": False}]
    assert warehouse_sql("SELECT nspname FROM pg_namespace WHERE nspname = 'cdc_replica'") == []
