"""A throwaway MariaDB server for the MySQL-source tests (Debian's ``mariadb-server-core``,
which scripts/bootstrap.sh installs): its own data directory, a free loopback port, root
without a password. MariaDB speaks MySQL's protocol and ``information_schema``, which is all
``spec init`` reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql  # type: ignore[import-untyped]

from local.ports import free_port

MARIADBD = Path("/usr/sbin/mariadbd")
# Small files: the defaults (a 96 MB redo log, 128 MB of buffer pool) are for real servers.
_CONFIG = """[mysqld]
innodb_log_file_size = 8M
innodb_buffer_pool_size = 16M
performance_schema = OFF
skip_name_resolve = ON
"""


@dataclass(frozen=True)
class MysqlServer:
    port: int
    host: str = "127.0.0.1"
    user: str = "root"

    def url(self, database: str) -> str:
        return f"mysql://{self.user}@{self.host}:{self.port}/{database}"

    def execute(self, *statements: str, database: str | None = None) -> None:
        conn = pymysql.connect(host=self.host, port=self.port, user=self.user,
                               database=database, autocommit=True)
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()


@contextmanager
def mysql_server(root: Path) -> Iterator[MysqlServer]:
    """Initialise a data directory under ``root``, run mariadbd on it until the block ends."""
    if not MARIADBD.exists():
        raise RuntimeError("MariaDB is not installed: run scripts/bootstrap.sh "
                           "(Debian packages mariadb-server-core, mariadb-client-core)")
    data = root / "data"
    config = root / "my.cnf"
    config.write_text(_CONFIG)
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    install = shutil.which("mariadb-install-db") or "mariadb-install-db"
    subprocess.run([install, f"--defaults-file={config}", f"--datadir={data}",
                    "--auth-root-authentication-method=normal", "--skip-test-db", *as_root],
                   check=True, capture_output=True)
    port = free_port()
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        [str(MARIADBD), f"--defaults-file={config}", f"--datadir={data}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={root / 'mysqld.sock'}",
         f"--pid-file={root / 'mysqld.pid'}", *as_root],
        stdout=log, stderr=subprocess.STDOUT)
    server = MysqlServer(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.execute("SELECT 1")
                break
            except pymysql.err.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mariadbd did not start; see {root / 'server.log'}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
