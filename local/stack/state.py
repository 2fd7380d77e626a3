"""What a running local stack is: its names, its state file (``stack.json``) and ``StackInfo``.

The state file is written once the stack is up and read by every client of the stack
(``make sql``, ``make invoke``, ``python -m local.stack env``), so it holds everything they
need: endpoints, pids and the provisioned resources. It never holds the HMAC key or the
warehouse passwords themselves (those stay in 0600 files of the state dir and in the secrets).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from local.atomic_file import replace_text

DEFAULT_STATE_DIR = Path(".local-stack/stack")
STATE_FILE = "stack.json"
# 2: warehouse users (admin and consumer secrets), authenticating stand-in; 3: the applier's
# queue and its dead-letter queue
STATE_VERSION = 3

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# Dummy credentials: moto and the stand-in do not check them, botocore only needs some.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # noqa: S105 - not a secret, moto accepts anything

DATABASE = "warehouse"
WORKGROUP_NAME = "local-workgroup"
CLUSTER_IDENTIFIER = "local-cluster"  # also served, for DbUser (temporary credentials)
# The namespace's admin user (a superuser, as Redshift's AdminUsername is) runs the schema
# migrator; the consumers (Lambda, Glue, tools) run as the consumer user it creates and grants.
ADMIN_USER = "admin"
CONSUMER_USER = "cdc_consumer"
ADMIN_SECRET_NAME = "cdc-redshift-upserts/warehouse-admin"  # noqa: S105 - a name
CONSUMER_SECRET_NAME = "cdc-redshift-upserts/warehouse-consumer"  # noqa: S105 - a name
STREAM_NAME = "cdc-stream"
STREAM_SHARDS = 4
QUEUE_NAME = "cdc-dead-letter"
# The single applier's queue (consumers announce landed batches on it) and its redrive
# dead-letter queue. Lambda advises a visibility timeout of six times the function's timeout
# ("Using Lambda with Amazon SQS"); locally the applier's timeout is as long as the visibility
# timeout, so a failed batch comes back within a minute rather than after half an hour.
APPLIER_QUEUE_NAME = "cdc-applier"
APPLIER_DEAD_LETTER_QUEUE_NAME = "cdc-applier-dead-letter"
APPLIER_VISIBILITY_TIMEOUT_SECONDS = 60
APPLIER_MAX_RECEIVE_COUNT = 5
BUCKET_NAME = "cdc-staging-local"
STAGING_PREFIX = "staging/"
SECRET_NAME = "cdc-redshift-upserts/hmac-key"  # noqa: S105 - a name, not a secret
COPY_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/cdc-redshift-copy-local"

# Files and directories inside the state dir.
PG_DIR = "warehouse-pg"
RSD_DIR = "redshift-data"
LOG_DIR = "logs"
HMAC_KEY_FILE = "hmac-key.hex"
WAREHOUSE_PASSWORDS_FILE = "warehouse-passwords.json"
LOCK_FILE = ".lock"
SPEC_PATH_FILE = "spec-path"  # the spec the warehouse follows; kept across stop and start
PID_FILES = {"moto": "moto.pid", "redshift_data": "redshift-data.pid"}


@dataclass(frozen=True)
class Resources:
    """What ``start`` provisioned in moto for the consumer."""

    hmac_secret_arn: str
    dead_letter_queue_url: str
    staging_bucket: str
    staging_prefix: str
    stream_name: str
    stream_arn: str
    copy_role_arn: str
    admin_secret_arn: str
    consumer_secret_arn: str
    applier_queue_url: str
    applier_dead_letter_queue_url: str


@dataclass(frozen=True)
class StackInfo:
    """A running local stack: where each part listens, its pids, its resources.

    ``pids`` maps ``postgres`` (the postmaster), ``moto`` and ``redshift_data`` to process ids.
    """

    state_dir: Path
    region: str
    moto_endpoint: str
    redshift_data_endpoint: str
    postgres_port: int
    database: str
    workgroup_name: str
    pids: dict[str, int]
    resources: Resources
    version: int = field(default=STATE_VERSION)
    # The pipeline spec file the warehouse was last migrated to ("": the packaged spec); the
    # consumer's PIPELINE_SPEC_PATH on this stack.
    spec_path: str = ""

    @property
    def postgres_conninfo(self) -> str:
        """libpq conninfo of the warehouse database (direct access, bypassing the Data API)."""
        return f"host=127.0.0.1 port={self.postgres_port} user=postgres dbname={self.database}"

    def environment(self, applier: bool = False) -> dict[str, str]:
        """The consumer's environment on this stack (see ``local.stack.environment``); with
        ``applier``, it lands for the applier."""
        from local.stack.environment import handler_environment

        return handler_environment(self, applier)

    def to_json(self) -> str:
        data = asdict(self)
        data["state_dir"] = str(self.state_dir)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackInfo:
        values = dict(data)
        values["state_dir"] = Path(values["state_dir"])
        values["resources"] = Resources(**values["resources"])
        values["pids"] = {str(k): int(v) for k, v in values["pids"].items()}
        return cls(**values)


def read_state(state_dir: Path) -> StackInfo | None:
    """The recorded stack, or None when there is none (or it is unreadable / another version)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
        if data.get("version") != STATE_VERSION:
            return None
        return StackInfo.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def write_state(info: StackInfo) -> None:
    """Replace the state file atomically, so readers never see half a file."""
    path = info.state_dir / STATE_FILE
    replace_text(path, info.to_json())


def recorded_spec_path(state_dir: Path) -> str:
    """The spec file the stack's warehouse was last migrated to ("": the packaged spec)."""
    try:
        return (state_dir / SPEC_PATH_FILE).read_text().strip()
    except FileNotFoundError:
        return ""


def record_spec_path(state_dir: Path, spec_path: str) -> None:
    replace_text(state_dir / SPEC_PATH_FILE, spec_path + "\n")


def remove_state(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
