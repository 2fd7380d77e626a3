"""Command line: run the Redshift Data API stand-in in the background or the foreground.

    python -m local.redshift_data_api start --state-dir DIR [--pg-conninfo ...]
                                            [--s3-endpoint-url URL] [--port N]
    python -m local.redshift_data_api stop --state-dir DIR
    python -m local.redshift_data_api serve --state-dir DIR [...]

``start`` launches ``serve`` as a detached process, waits until it answers, prints the
endpoint URL and returns; a second ``start`` prints the running server's URL. Without
``--pg-conninfo`` the server starts (and on stop, stops) its own PostgreSQL cluster under
``DIR/pg``. ``DIR/endpoint.json`` records endpoint_url, pid and pg_conninfo.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from local.atomic_file import replace_text
from local.ports import wait_for_port
from local.redshift_data_api.operations import DEFAULT_CLUSTERS, DEFAULT_WORKGROUPS

STATE_FILE = "endpoint.json"
LOG_FILE = "server.log"


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(state_dir: Path) -> dict[str, Any] | None:
    state = _read_state(state_dir)
    if state is None or not _alive(int(state.get("pid", 0))):
        return None
    return state


def _stop_cluster(data_dir: Path) -> None:
    """Stop the PostgreSQL cluster in ``data_dir`` if it runs.

    ``local.postgres.stop_postgres`` cannot tell that a cluster runs when we are root
    (its ``pg_ctl status`` refuses to run as root), so run ``pg_ctl stop`` as the server's
    OS user here.
    """
    from local.postgres import PG_BIN, SUPERUSER

    if not (data_dir / "postmaster.pid").exists():
        return
    command = [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", SUPERUSER, "--", *command]
    subprocess.run(command, capture_output=True, check=False)


def serve(args: argparse.Namespace) -> int:
    from local.postgres import create_database, start_postgres
    from local.redshift_data_api.auth import AuthSettings
    from local.redshift_data_api.server import RedshiftDataApiServer

    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    owned_pg: Path | None = None
    conninfo = args.pg_conninfo
    if not conninfo:
        state_dir.chmod(0o755)  # PostgreSQL may run as the postgres OS user
        owned_pg = state_dir / "pg"
        pg = start_postgres(owned_pg)
        create_database(pg, "dev")  # Redshift's default database
        conninfo = f"host={pg.host} port={pg.port} user={pg.user}"
    auth = None
    if args.authenticate:
        auth = AuthSettings(secrets_endpoint_url=args.secrets_endpoint_url,
                            sts_endpoint_url=args.sts_endpoint_url,
                            region=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    server = RedshiftDataApiServer(pg_conninfo=conninfo, s3_endpoint_url=args.s3_endpoint_url,
                                   port=args.port, strict_sql=not args.no_strict_sql,
                                   auth=auth,
                                   workgroups=tuple(args.workgroup or DEFAULT_WORKGROUPS),
                                   clusters=tuple(args.cluster or DEFAULT_CLUSTERS))
    server.start()
    state = {"endpoint_url": server.endpoint_url, "pid": os.getpid(), "pg_conninfo": conninfo,
             "pg_data_dir": str(owned_pg) if owned_pg else None}
    replace_text(state_dir / STATE_FILE, json.dumps(state, indent=2))
    print(server.endpoint_url, flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    if owned_pg is not None:
        _stop_cluster(owned_pg)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


def start(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    running = _running(state_dir)
    if running is not None:
        print(running["endpoint_url"])
        return 0
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    command = [sys.executable, "-m", "local.redshift_data_api", "serve",
               "--state-dir", str(state_dir)]
    for flag, value in (("--pg-conninfo", args.pg_conninfo),
                        ("--s3-endpoint-url", args.s3_endpoint_url), ("--port", args.port),
                        ("--secrets-endpoint-url", args.secrets_endpoint_url),
                        ("--sts-endpoint-url", args.sts_endpoint_url)):
        if value:
            command += [flag, str(value)]
    for name in args.workgroup or ():
        command += ["--workgroup", name]
    for name in args.cluster or ():
        command += ["--cluster", name]
    if args.no_strict_sql:
        command.append("--no-strict-sql")
    if args.authenticate:
        command.append("--authenticate")
    with open(state_dir / LOG_FILE, "ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        state = _read_state(state_dir)
        if state is not None:
            wait_for_port(int(state["endpoint_url"].rsplit(":", 1)[1]), timeout=10)
            print(state["endpoint_url"])
            return 0
        if process.poll() is not None:
            print(f"the server exited; see {state_dir / LOG_FILE}", file=sys.stderr)
            return 1
        time.sleep(0.1)
    process.terminate()
    print(f"the server did not start in {args.timeout}s; see {state_dir / LOG_FILE}",
          file=sys.stderr)
    return 1


def stop(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    state = _read_state(state_dir)
    if state is None:
        print("not running")
        return 0
    pid = int(state.get("pid", 0))
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    if state.get("pg_data_dir"):
        _stop_cluster(Path(state["pg_data_dir"]))
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    print("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.redshift_data_api",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "serve", "stop"):
        sub = commands.add_parser(name)
        sub.add_argument("--state-dir", type=Path, required=True)
        sub.add_argument("--timeout", type=float, default=60.0)
        if name != "stop":
            sub.add_argument("--pg-conninfo", default=os.environ.get("RSD_PG_CONNINFO"),
                             help="libpq conninfo without dbname; default: own cluster")
            sub.add_argument("--s3-endpoint-url",
                             default=os.environ.get("AWS_ENDPOINT_URL_S3")
                             or os.environ.get("AWS_ENDPOINT_URL"))
            sub.add_argument("--port", type=int, default=None)
            sub.add_argument("--no-strict-sql", action="store_true",
                             help="skip the Redshift grammar check")
            sub.add_argument("--authenticate", action="store_true",
                             help="run each request as the database user AWS would: "
                                  "SecretArn, DbUser or the caller's IAM identity")
            sub.add_argument("--secrets-endpoint-url",
                             default=os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER")
                             or os.environ.get("AWS_ENDPOINT_URL"))
            sub.add_argument("--sts-endpoint-url",
                             default=os.environ.get("AWS_ENDPOINT_URL_STS")
                             or os.environ.get("AWS_ENDPOINT_URL"))
            sub.add_argument("--workgroup", action="append",
                             help="a workgroup name that exists (repeatable; default "
                                  f"{DEFAULT_WORKGROUPS[0]})")
            sub.add_argument("--cluster", action="append",
                             help="a cluster identifier that exists (repeatable; default "
                                  f"{DEFAULT_CLUSTERS[0]})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    handlers = {"start": start, "serve": serve, "stop": stop}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
