"""Provision what the consumer needs on the local stack, idempotently.

In moto: the HMAC key secret, the dead-letter queue, the single applier's queue with its
redrive dead-letter queue, the staging bucket, the change stream and the two warehouse secrets
(``{"username", "password"}``, as the Data API reads them): the namespace's admin user and the
consumers' user.
In the warehouse: the admin user (a superuser, like a namespace's AdminUsername), Redshift's
defaults PostgreSQL lacks (every user may CREATE in schema ``public``), then the schema of the
pipeline spec (the packaged one or the stack's, see ``lifecycle``) through the Data API
stand-in by the SchemaMigrator function's own code, as the admin and with
``ConsumerSecretArn``: it creates the consumer user and grants it what
the consumers need. The developer's own IAM identity (moto's default caller, ``IAM:moto``),
which tools use when they pass neither SecretArn nor DbUser, gets read access to the
pipeline's tables, as an analyst would be granted.

moto keeps its state in memory, so every (re)start of moto provisions again; the HMAC key and
the warehouse passwords are generated once and kept in the state dir (0600), so tokens and
logins stay the same across restarts.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.exceptions import ClientError
from psycopg import sql

from local.postgres import PostgresServer
from local.redshift_data_api.auth import database_user_for
from local.stack.state import (
    ACCESS_KEY_ID,
    ADMIN_SECRET_NAME,
    ADMIN_USER,
    APPLIER_DEAD_LETTER_QUEUE_NAME,
    APPLIER_MAX_RECEIVE_COUNT,
    APPLIER_QUEUE_NAME,
    APPLIER_VISIBILITY_TIMEOUT_SECONDS,
    BUCKET_NAME,
    CONSUMER_SECRET_NAME,
    CONSUMER_USER,
    COPY_ROLE_ARN,
    HMAC_KEY_FILE,
    QUEUE_NAME,
    SECRET_ACCESS_KEY,
    SECRET_NAME,
    STAGING_PREFIX,
    STREAM_NAME,
    STREAM_SHARDS,
    WAREHOUSE_PASSWORDS_FILE,
    Resources,
)

_HEX_KEY = re.compile(r"^[0-9a-f]{64}$")


def aws_client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for a local endpoint with the stack's dummy credentials.

    Explicit credentials, so the caller's AWS configuration (profiles, tokens) plays no part.
    """
    session = boto3.session.Session(aws_access_key_id=ACCESS_KEY_ID,
                                    aws_secret_access_key=SECRET_ACCESS_KEY, region_name=region)
    return session.client(service, endpoint_url=endpoint_url)  # type: ignore[call-overload]


def hmac_key_hex(state_dir: Path) -> str:
    """The stack's HMAC key (64 hex chars): read from the state dir, or generated once (0600)."""
    path = state_dir / HMAC_KEY_FILE
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key + "\n")
        return key
    if not _HEX_KEY.match(key):
        raise ValueError(f"{path} does not hold 64 lower-case hex characters; delete it")
    return key


def warehouse_passwords(state_dir: Path) -> dict[str, str]:
    """The admin's and the consumer's passwords: read from the state dir, or generated once
    (0600). Redshift's rules: 8 to 64 characters with an upper-case letter, a lower-case
    letter and a digit."""
    path = state_dir / WAREHOUSE_PASSWORDS_FILE
    try:
        passwords = json.loads(path.read_text())
        if isinstance(passwords, dict) and {ADMIN_USER, CONSUMER_USER} <= set(passwords):
            return {str(k): str(v) for k, v in passwords.items()}
        raise ValueError(f"{path} does not hold both passwords; delete it")
    except FileNotFoundError:
        passwords = {user: "Aa1-" + secrets.token_hex(16) for user in (ADMIN_USER, CONSUMER_USER)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(passwords) + "\n")
        return passwords


def _ensure_secret(client: Any, key_hex: str) -> str:
    """The HMAC secret's ARN; created with ``{"hmac_key": ...}`` or brought back to that."""
    return _ensure_secret_value(client, SECRET_NAME, json.dumps({"hmac_key": key_hex}))


def _ensure_secret_value(client: Any, name: str, value: str) -> str:
    """The secret's ARN; created with ``value`` or brought back to it."""
    try:
        arn = str(client.describe_secret(SecretId=name)["ARN"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        return str(client.create_secret(Name=name, SecretString=value)["ARN"])
    if client.get_secret_value(SecretId=arn)["SecretString"] != value:
        client.put_secret_value(SecretId=arn, SecretString=value)
    return arn


def _ensure_bucket(client: Any) -> None:
    try:
        client.head_bucket(Bucket=BUCKET_NAME)
    except ClientError:
        client.create_bucket(Bucket=BUCKET_NAME)


def _ensure_stream(client: Any) -> str:
    """The stream's ARN; created with ``STREAM_SHARDS`` shards if missing."""
    try:
        summary = client.describe_stream_summary(StreamName=STREAM_NAME)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        client.create_stream(StreamName=STREAM_NAME, ShardCount=STREAM_SHARDS)
        client.get_waiter("stream_exists").wait(
            StreamName=STREAM_NAME, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
        )
        summary = client.describe_stream_summary(StreamName=STREAM_NAME)
    return str(summary["StreamDescriptionSummary"]["StreamARN"])


def ensure_stream_consumer(client: Any, stream_arn: str, name: str) -> str:
    """The ARN of the stream's enhanced fan-out consumer ``name`` (what template.yaml's
    ChangeStreamConsumer is), registered if it is not yet. A name is registered once per
    stream (RegisterStreamConsumer refuses a second; moto would add a twin)."""
    try:
        described = client.describe_stream_consumer(StreamARN=stream_arn, ConsumerName=name)
        return str(described["ConsumerDescription"]["ConsumerARN"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
    registered = client.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)
    return str(registered["Consumer"]["ConsumerARN"])


def _ensure_applier_queues(client: Any) -> tuple[str, str]:
    """The applier's queue and its dead-letter queue (URLs), created or brought back to their
    attributes: the visibility timeout, and a redrive policy that moves a message received
    ``APPLIER_MAX_RECEIVE_COUNT`` times to the dead-letter queue ("Using dead-letter queues in
    Amazon SQS", Amazon SQS Developer Guide). The attributes are set after creating, so a
    queue that exists with others is corrected rather than refused."""
    dead_letter_url = str(client.create_queue(QueueName=APPLIER_DEAD_LETTER_QUEUE_NAME)["QueueUrl"])
    dead_letter_arn = client.get_queue_attributes(
        QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = str(client.create_queue(QueueName=APPLIER_QUEUE_NAME)["QueueUrl"])
    client.set_queue_attributes(QueueUrl=queue_url, Attributes={
        "VisibilityTimeout": str(APPLIER_VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_letter_arn,
                                     "maxReceiveCount": APPLIER_MAX_RECEIVE_COUNT}),
    })
    return queue_url, dead_letter_url


def provision_aws(moto_endpoint: str, region: str, state_dir: Path) -> Resources:
    """Create (or find) the secrets, queues, bucket and stream in moto."""
    key_hex = hmac_key_hex(state_dir)
    secrets_client = aws_client("secretsmanager", moto_endpoint, region)
    secret_arn = _ensure_secret(secrets_client, key_hex)
    passwords = warehouse_passwords(state_dir)
    login_arns = {
        user: _ensure_secret_value(secrets_client, name, json.dumps(
            {"username": user, "password": passwords[user], "engine": "redshift"}))
        for user, name in ((ADMIN_USER, ADMIN_SECRET_NAME), (CONSUMER_USER, CONSUMER_SECRET_NAME))
    }
    sqs = aws_client("sqs", moto_endpoint, region)
    queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    applier_queue_url, applier_dead_letter_url = _ensure_applier_queues(sqs)
    _ensure_bucket(aws_client("s3", moto_endpoint, region))
    stream_arn = _ensure_stream(aws_client("kinesis", moto_endpoint, region))
    return Resources(hmac_secret_arn=secret_arn, dead_letter_queue_url=str(queue_url),
                     staging_bucket=BUCKET_NAME, staging_prefix=STAGING_PREFIX,
                     stream_name=STREAM_NAME, stream_arn=stream_arn, copy_role_arn=COPY_ROLE_ARN,
                     admin_secret_arn=login_arns[ADMIN_USER],
                     consumer_secret_arn=login_arns[CONSUMER_USER],
                     applier_queue_url=applier_queue_url,
                     applier_dead_letter_queue_url=applier_dead_letter_url)


def prepare_namespace(pg: PostgresServer, database: str, admin_password: str) -> None:
    """What creating a Redshift namespace gives: the admin user (a superuser) with its
    password, and Redshift's default that every user may CREATE in schema ``public``
    (PostgreSQL 15 no longer grants it)."""
    with psycopg.connect(pg.dsn(database), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                              (ADMIN_USER,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " USER {} WITH SUPERUSER LOGIN PASSWORD {}").format(
            sql.Identifier(ADMIN_USER), sql.Literal(admin_password)))
        conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")


def migrate_warehouse(redshift_data_endpoint: str, moto_endpoint: str, region: str,
                      database: str, workgroup_name: str, resources: Resources,
                      pg: PostgresServer, spec_path: str = "") -> int:
    """Run the SchemaMigrator function's code as the admin, with ``ConsumerSecretArn`` and
    ``PipelineSpecPath`` (``spec_path``; "" is the packaged spec), then give the developer's
    IAM identity read access; the number of DDL statements.

    The read grant goes to PostgreSQL directly: the stand-in folds quoted identifiers to lower
    case (Redshift's default) and so cannot name ``IAM:moto``, which Redshift only can with
    ``enable_case_sensitive_identifier`` on.
    """
    from functions.schema_migrator.app import run_migration
    from shared.data_api import DataApiTarget, RedshiftDataApi
    from shared.spec import load_spec

    client = aws_client("redshift-data", redshift_data_endpoint, region)
    done = run_migration({"Database": database, "WorkgroupName": workgroup_name,
                          "SecretArn": resources.admin_secret_arn,
                          "ConsumerSecretArn": resources.consumer_secret_arn,
                          "PipelineSpecPath": spec_path},
                         client, aws_client("secretsmanager", moto_endpoint, region))
    spec = load_spec(spec_path or None)
    target = {"database": database, "workgroup_name": workgroup_name}
    # The developer's identity logs in once (the Data API creates its user, as GetCredentials
    # does), then the admin grants it read access.
    RedshiftDataApi(client, DataApiTarget(**target), poll_interval=(0.005, 0.1)).execute(
        "SELECT 1")
    developer = sql.Identifier(database_user_for(
        aws_client("sts", moto_endpoint, region).get_caller_identity()["Arn"]))
    schemas = dict.fromkeys((spec.replica_schema, spec.target_schema))
    tables = [sql.SQL(".").join(map(sql.Identifier, name)) for name in
              [*((spec.replica_schema, t) for t in spec.tables),
               *((spec.target_schema, t) for t in spec.targets)]]
    with psycopg.connect(pg.dsn(database), autocommit=True) as conn, conn.transaction():
        for schema in schemas:
            conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                sql.Identifier(schema), developer))
        conn.execute(sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(
            sql.SQL(", ").join(tables), developer))
    return int(done["Statements"])
