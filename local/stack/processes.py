"""The stack's background processes: PostgreSQL, moto and the Redshift Data API stand-in.

Each server outlives the command that started it, so it is started detached (its own session,
reparented to init once the launching shell exits) with its output in ``logs/``, and found
again through a pid file. A pid alone is not trusted: a recorded pid only counts as ours if
``/proc/<pid>/cmdline`` still holds arguments unique to this stack (the data dir, the state
dir, the port), so a stale pid file from a killed run never makes us signal a stranger.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from local.ports import free_port
from local.postgres import PG_BIN, SUPERUSER, PostgresServer, start_postgres
from local.stack.state import CLUSTER_IDENTIFIER, WORKGROUP_NAME

log = logging.getLogger("local.stack")

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """A part of the local stack did not start or stop."""


# --- process bookkeeping --------------------------------------------------------------------


def process_running(pid: int, markers: Sequence[str]) -> bool:
    """True if ``pid`` runs (not a zombie) and every marker is one of its arguments."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()  # empty for a zombie
    except OSError:
        return False
    args = set(cmdline.split(b"\0"))
    return all(m.encode() in args for m in markers)


def read_pid_file(path: Path) -> tuple[int, int]:
    """(pid, port) from one of our pid files (``<pid> <port>``); zeros if unreadable."""
    try:
        fields = path.read_text().split()
        return int(fields[0]), int(fields[1]) if len(fields) > 1 else 0
    except (OSError, ValueError, IndexError):
        return 0, 0


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    """True if a server could listen on ``port`` now (all of ours set SO_REUSEADDR, so
    TIME_WAIT connections of a killed predecessor do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def preferred_port(previous: int | None) -> int:
    """The port a part had before, if it is free again (exported environments stay valid)."""
    if previous and port_free(previous):
        return previous
    return free_port()


def spawn(command: Sequence[str], port: int, log_path: Path, pid_path: Path) -> int:
    """Start ``command`` detached from us and return its pid.

    ``pid_path`` gets ``<pid> <port>``: with the port, ``stop`` can recognise the process
    (see ``process_running``) even when the state file is gone.

    A throwaway shell starts it in the background and exits, so the server's parent becomes
    init: nothing is left for this process to reap, and the server keeps running after the
    command that started it has returned.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    script = (f"{shlex.join(command)} </dev/null >>{shlex.quote(str(log_path))} 2>&1 & "
              "echo $!")
    launched = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                              check=True, cwd=PROJECT_ROOT, start_new_session=True)
    pid = int(launched.stdout.strip())
    pid_path.write_text(f"{pid} {port}\n")
    return pid


def process_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (``/proc/<pid>/stat``'s state field)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] not in ("Z", "X")


def wait_until_serving(pid: int, port: int, log_path: Path, timeout: float = 60.0) -> None:
    """Block until ``pid`` accepts connections on ``port``; fail fast if it exits.

    The pid is the one ``spawn`` just started, so it is whether the process lives that
    counts, not its arguments: until the launching shell's child has exec'd the server, its
    arguments are the shell's (``sh -c <script>``), and a check of the server's own arguments
    (``process_running``) took a slow start for an exit."""
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if not process_alive(pid):
            raise StackError(f"process {pid} exited during start-up; see {log_path}")
        if time.monotonic() > deadline:
            raise StackError(f"process {pid} does not listen on {port} after {timeout}s; "
                             f"see {log_path}")
        time.sleep(0.05)


def terminate(pid: int, markers: Sequence[str], timeout: float = 10.0) -> bool:
    """SIGTERM ``pid`` if it is ours, SIGKILL it after ``timeout``; True if it was running."""
    if not process_running(pid, markers):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_running(pid, markers):
                return True
            time.sleep(0.05)
    raise StackError(f"process {pid} survived SIGKILL")


# --- PostgreSQL -----------------------------------------------------------------------------


def postgres_markers(data_dir: Path) -> list[str]:
    return [str(PG_BIN / "postgres"), str(data_dir)]


def running_postgres(data_dir: Path) -> PostgresServer | None:
    """The cluster serving ``data_dir``, from its ``postmaster.pid``.

    ``local.postgres.running_server`` asks ``pg_ctl status``, which refuses to run as root;
    the lock file holds the postmaster's pid (line 1) and port (line 4) for anyone.
    """
    data_dir = data_dir.resolve()
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    if not process_running(pid, postgres_markers(data_dir)) or not port_open(port):
        return None
    return PostgresServer(data_dir=data_dir, port=port)


def postgres_pid(data_dir: Path) -> int:
    """The postmaster's pid from its lock file (line 1); 0 if there is none."""
    try:
        return int((data_dir.resolve() / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return 0


def ensure_postgres(data_dir: Path, previous_port: int | None) -> PostgresServer:
    """The running cluster in ``data_dir``, started if needed (on its old port if free)."""
    running = running_postgres(data_dir)
    if running is not None:
        return running
    # A killed postmaster leaves its lock files (the data dir's and its socket's, which lives
    # in the data dir too); while the dead process is still a zombie, pg_ctl and a new
    # postmaster take it for a running server. It does not run (``running_postgres`` checked
    # its command line), so the files are stale: drop them.
    data_dir = data_dir.resolve()
    for stale in [data_dir / "postmaster.pid", *data_dir.glob(".s.PGSQL.*")]:
        stale.unlink(missing_ok=True)
    log.info("local stack: starting PostgreSQL 15 (%s)", data_dir)
    return start_postgres(data_dir, port=preferred_port(previous_port))


def stop_postgres_cluster(data_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the cluster in ``data_dir`` (fast shutdown); True if it was running."""
    data_dir = data_dir.resolve()
    pid = postgres_pid(data_dir)
    markers = postgres_markers(data_dir)
    if not process_running(pid, markers):
        return False
    command = [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w",
               "-t", str(int(timeout)), "stop"]
    if os.geteuid() == 0:  # pg_ctl refuses to run as root
        command = ["runuser", "-u", SUPERUSER, "--", *command]
    subprocess.run(command, capture_output=True, check=False)
    if process_running(pid, markers):  # pg_ctl failed: immediate shutdown, then kill
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            return True
        terminate(pid, markers, timeout=5.0)
    return True


# --- moto -----------------------------------------------------------------------------------


def moto_markers(port: int) -> list[str]:
    return ["local.moto_server", str(port)]


def start_moto(port: int, log_path: Path, pid_path: Path) -> int:
    log.info("local stack: starting moto on port %d", port)
    pid = spawn([sys.executable, "-m", "local.moto_server", "-H", "127.0.0.1", "-p", str(port)],
                port, log_path, pid_path)
    wait_until_serving(pid, port, log_path)
    return pid


# --- Redshift Data API stand-in -------------------------------------------------------------


def redshift_data_markers(state_dir: Path) -> list[str]:
    return ["local.redshift_data_api", str(state_dir)]


def start_redshift_data(state_dir: Path, port: int, pg: PostgresServer, s3_endpoint: str,
                        log_path: Path, pid_path: Path) -> int:
    """Run the stand-in's ``serve`` over the warehouse cluster, with moto for COPY."""
    log.info("local stack: starting the Redshift Data API stand-in on port %d", port)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "endpoint.json").unlink(missing_ok=True)  # a killed run's leftover
    command = [sys.executable, "-m", "local.redshift_data_api", "serve",
               "--state-dir", str(state_dir), "--port", str(port),
               "--pg-conninfo", f"host={pg.host} port={pg.port} user={pg.user}",
               "--s3-endpoint-url", s3_endpoint,
               # Authenticate like the Data API: secrets and caller identities from moto.
               "--authenticate", "--secrets-endpoint-url", s3_endpoint,
               "--sts-endpoint-url", s3_endpoint,
               "--workgroup", WORKGROUP_NAME, "--cluster", CLUSTER_IDENTIFIER]
    pid = spawn(command, port, log_path, pid_path)
    wait_until_serving(pid, port, log_path)
    return pid
