"""What the stand-in keeps between runs, in a JSON file of its own (one per slot).

The replication position itself lives in the slot (its confirmed LSN, moved only after the
records are in Kinesis); the file keeps what the slot cannot: whether the full load finished,
the task id of control records, the last change emitted (``prev-transaction-*``) and each
table's columns as the last control record described them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

STATE_VERSION = 1
FULL_LOAD_PENDING, FULL_LOAD_RUNNING, FULL_LOAD_DONE = "pending", "running", "done"


def new_task_id() -> str:
    """A task id shaped like a DMS replication task's resource id: 26 upper-case base32
    characters (``DZ6OKLFYA5BWVG4RYROQUHXU4E`` in a published capture)."""
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


@dataclass
class DmsState:
    task_id: str
    full_load: str = FULL_LOAD_PENDING
    prev_transaction_id: int = 0
    prev_transaction_record_id: int = 0
    last_lsn: str | None = None
    last_commit_time: str | None = None
    # The columns (name, type, nullable) each table had when last described in a control
    # record: DDL capture compares the catalog with them.
    table_columns: dict[str, list[list[object]]] = field(default_factory=dict)
    version: int = STATE_VERSION


def state_path(state_dir: Path, slot_name: str) -> Path:
    return state_dir / f"{slot_name}.state.json"


def load_state(path: Path) -> DmsState:
    """The saved state, or a fresh one (no file, an unreadable file, another version)."""
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") == STATE_VERSION:
            known = {f.name for f in fields(DmsState)}
            return DmsState(**{k: v for k, v in raw.items() if k in known})
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return DmsState(task_id=new_task_id())


def save_state(path: Path, state: DmsState) -> None:
    """Replace the file atomically (write, fsync, rename), so a crash leaves old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as out:
        json.dump(asdict(state), out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
