"""A throwaway PostgreSQL 15 server for the local stack and the tests.

Each server is its own cluster (``initdb``) in a directory of ours, listening on a free
loopback port with trust authentication, and with ``wal_level=logical`` so it can also act
as the CDC source. PostgreSQL refuses to run as root, so when we are root the server runs as
the ``postgres`` OS user that the Debian package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from local.ports import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"

_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "max_connections": "300",
    # Throwaway clusters: durability is not the point, speed is.
    "fsync": "off",
    "synchronous_commit": "off",
    # Logical decoding hands over a commit once its WAL is flushed. Without synchronous commit
    # the WAL writer flushes every wal_writer_delay (200 ms by default), which held each
    # source commit back from the local DMS by up to that long; a source on RDS commits
    # synchronously (its default), so DMS can read a commit at once.
    "wal_writer_delay": "10ms",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    # The apply procedures' joins are estimated large before their temp tables have
    # statistics, which made PostgreSQL JIT-compile them on every call (hundreds of ms each);
    # Redshift compiles a query's segments once and caches them.
    "jit": "off",
    # Redshift analyzes tables itself as they change ("Analyzing tables", automatic analyze);
    # PostgreSQL's autovacuum looks once a minute, so replicas that grew during a run were
    # planned with the statistics of their first rows (merge joins over whole tables).
    "autovacuum_naptime": "1s",
}


@dataclass(frozen=True)
class PostgresServer:
    """A running local PostgreSQL server."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"


def _run_as_server_user(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the server's OS user (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", SUPERUSER, "--", *args]
    return subprocess.run(args, check=check, capture_output=True, text=True)


def _prepare_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SUPERUSER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def start_postgres(data_dir: Path, port: int | None = None) -> PostgresServer:
    """Create the cluster if needed and start it; return the running server.

    A server that is already running in ``data_dir`` is reused (its port is read back).
    """
    data_dir = data_dir.resolve()
    if not (PG_BIN / "postgres").exists():
        raise RuntimeError(
            f"PostgreSQL 15 is not installed under {PG_BIN}; run scripts/bootstrap.sh"
        )
    running = running_server(data_dir)
    if running is not None:
        return running
    if not (data_dir / "PG_VERSION").exists():
        if data_dir.exists():
            shutil.rmtree(data_dir)
        _prepare_dir(data_dir)
        _run_as_server_user(
            [str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--locale=C.UTF-8"]
        )
    port = port or free_port()
    options = " ".join(f"-c {k}={v}" for k, v in _SERVER_SETTINGS.items())
    options += f" -p {port} -c unix_socket_directories={data_dir}"
    _run_as_server_user(
        [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "server.log"),
         "-o", options, "-w", "-t", "60", "start"]
    )
    (data_dir / "stack.port").write_text(str(port))
    return PostgresServer(data_dir=data_dir, port=port)


def running_server(data_dir: Path) -> PostgresServer | None:
    """The server running in ``data_dir``, or None."""
    data_dir = data_dir.resolve()
    port_file = data_dir / "stack.port"
    if not (data_dir / "postmaster.pid").exists() or not port_file.exists():
        return None
    status = _run_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "status"],
                                 check=False)
    if status.returncode != 0:
        return None
    return PostgresServer(data_dir=data_dir, port=int(port_file.read_text()))


def stop_postgres(data_dir: Path) -> None:
    """Stop the server in ``data_dir`` if it runs (fast shutdown)."""
    data_dir = data_dir.resolve()
    if running_server(data_dir) is None:
        return
    _run_as_server_user(
        [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"]
    )


def create_database(server: PostgresServer, name: str) -> None:
    """Create database ``name`` on ``server`` unless it exists."""
    import psycopg

    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
