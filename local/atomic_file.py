"""Replace a small state file atomically: readers and a crash see the old or the new text,
never half a file.

The local parts keep their state in JSON files that other processes read while they are
being rewritten (the stack's ``stack.json``, the Data API stand-in's state, the event source
mapping's and the local Glue runner's checkpoints). Each goes through ``replace_text``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary file next to ``path``, fsync it, then rename it
    over ``path`` (``os.replace``: atomic on POSIX within one file system).

    The temporary file's name is unique (``mkstemp``), so two writers never share one, and
    it is removed if anything fails before the rename. Missing parent directories are
    created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
