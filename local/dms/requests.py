"""Requests to a running local DMS task, as files in its state directory (no network API).

``python -m local.dms reload --table T`` asks for a table reload, as DMS's ``ReloadTables``
does. ``request_skip`` is a TEST DEVICE, not DMS behaviour: it asks the stand-in to leave one
source transaction out of the stream (the slot still moves past it), so a test or the demo can
make the warehouse drift from the source the way a lost change does, and then show a reload
repairing it. Each request is one file, written atomically; the task deletes it once done.
"""

from __future__ import annotations

import os
from pathlib import Path

RELOAD, SKIP = "reload", "skip"


def _request_path(state_dir: Path, slot_name: str, kind: str, subject: str) -> Path:
    return state_dir / f"{slot_name}.{kind}.{subject}.request"


def _write(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text("")
    tmp.replace(path)
    return path


def request_reload(state_dir: Path, slot_name: str, table: str) -> Path:
    """Ask the task to reload ``table`` (a name of the task's table mapping)."""
    if not table.replace("_", "").isalnum():
        raise ValueError(f"not a table name: {table!r}")
    return _write(_request_path(state_dir, slot_name, RELOAD, table))


def request_skip(state_dir: Path, slot_name: str, xid: int) -> Path:
    """TEST DEVICE: leave the source transaction ``xid`` (32-bit, as logical decoding
    reports it) out of the stream. Write it before the transaction commits."""
    return _write(_request_path(state_dir, slot_name, SKIP, str(int(xid) & 0xFFFFFFFF)))


def pending(state_dir: Path, slot_name: str, kind: str) -> dict[str, Path]:
    """The open requests of one kind: subject (table or xid) -> file, oldest first."""
    prefix = f"{slot_name}.{kind}."
    found = [p for p in state_dir.glob(f"{prefix}*.request") if p.is_file()]
    found.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    return {p.name[len(prefix):-len(".request")]: p for p in found}


def done(path: Path) -> None:
    path.unlink(missing_ok=True)
