"""Provision what the consumer needs on the local stack, idempotently.

In moto: the HMAC key secret, the dead-letter queue, the staging bucket and the change stream.
In the warehouse: the schema of the default pipeline spec (``shared.migrations.migrate``),
through the Data API stand-in like the SchemaMigrator function does on AWS.

moto keeps its state in memory, so every (re)start of moto provisions again; the HMAC key is
generated once and kept in the state dir, so tokens stay the same across restarts.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from local.stack.state import (
    ACCESS_KEY_ID,
    BUCKET_NAME,
    COPY_ROLE_ARN,
    HMAC_KEY_FILE,
    QUEUE_NAME,
    SECRET_ACCESS_KEY,
    SECRET_NAME,
    STAGING_PREFIX,
    STREAM_NAME,
    STREAM_SHARDS,
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


def _ensure_secret(client: Any, key_hex: str) -> str:
    """The secret's ARN; created with ``{"hmac_key": ...}`` or brought back to that value."""
    value = json.dumps({"hmac_key": key_hex})
    try:
        arn = str(client.describe_secret(SecretId=SECRET_NAME)["ARN"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        return str(client.create_secret(Name=SECRET_NAME, SecretString=value)["ARN"])
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


def provision_aws(moto_endpoint: str, region: str, state_dir: Path) -> Resources:
    """Create (or find) the secret, queue, bucket and stream in moto."""
    key_hex = hmac_key_hex(state_dir)
    secret_arn = _ensure_secret(aws_client("secretsmanager", moto_endpoint, region), key_hex)
    queue_url = aws_client("sqs", moto_endpoint, region).create_queue(
        QueueName=QUEUE_NAME)["QueueUrl"]
    _ensure_bucket(aws_client("s3", moto_endpoint, region))
    stream_arn = _ensure_stream(aws_client("kinesis", moto_endpoint, region))
    return Resources(hmac_secret_arn=secret_arn, dead_letter_queue_url=str(queue_url),
                     staging_bucket=BUCKET_NAME, staging_prefix=STAGING_PREFIX,
                     stream_name=STREAM_NAME, stream_arn=stream_arn, copy_role_arn=COPY_ROLE_ARN)


def migrate_warehouse(redshift_data_endpoint: str, region: str, database: str,
                      workgroup_name: str) -> int:
    """Bring the warehouse schema in line with the default spec; the number of DDL statements."""
    from shared.data_api import DataApiTarget, RedshiftDataApi
    from shared.migrations import migrate
    from shared.spec import load_spec

    client = aws_client("redshift-data", redshift_data_endpoint, region)
    api = RedshiftDataApi(client, DataApiTarget(database=database, workgroup_name=workgroup_name),
                          poll_interval=(0.005, 0.1))
    return len(migrate(api, load_spec()).statements)
