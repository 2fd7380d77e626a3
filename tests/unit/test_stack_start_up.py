"""local.stack.processes.wait_until_serving: a server that is slow to exec is waited for, one
that exits is reported at once.

``spawn`` starts a server through a throwaway shell; until that shell's child has exec'd the
server, the pid's arguments are the shell's. On a busy machine that window is long enough to be
seen, and the start-up used to take it for an exit ("process ... exited during start-up" while
the server went on to listen)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from local.ports import free_port
from local.stack.processes import StackError, process_alive, spawn, wait_until_serving


def test_a_server_still_in_its_launching_shell_is_waited_for(tmp_path: Path) -> None:
    # Given a server whose launching shell waits a second before it execs the server
    port = free_port()
    server = f"{sys.executable} -m http.server --bind 127.0.0.1 {port}"
    pid = spawn(["/bin/sh", "-c", f"sleep 1; exec {server}"], port,
                tmp_path / "server.log", tmp_path / "server.pid")
    try:
        # When start-up waits for it, Then it returns once the server listens
        wait_until_serving(pid, port, tmp_path / "server.log", timeout=30.0)
        assert process_alive(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def test_a_server_that_exits_is_reported_at_once(tmp_path: Path) -> None:
    port = free_port()
    pid = spawn(["/bin/sh", "-c", "exit 3"], port, tmp_path / "gone.log", tmp_path / "gone.pid")
    with pytest.raises(StackError, match=f"process {pid} exited during start-up; see "):
        wait_until_serving(pid, port, tmp_path / "gone.log", timeout=30.0)
