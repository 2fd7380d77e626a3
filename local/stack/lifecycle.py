"""Start, stop and inspect the local stack in a state dir.

``start`` reuses every part that still runs and (re)starts the rest: PostgreSQL first (its
data dir persists, so the warehouse survives restarts), then moto, then the Data API stand-in
(restarted whenever PostgreSQL's or moto's address changed, since it holds both), then
provisions. Start and stop hold an exclusive lock on the state dir, so concurrent
``make sql`` / ``make invoke`` runs start one stack, not two.

The warehouse follows a pipeline spec: the packaged one, or the file given to ``start`` /
``ensure_stack`` (``spec_path``), which the stack records (``StackInfo.spec_path``: the
consumer's ``PIPELINE_SPEC_PATH`` on it) and migrates to again on a restart. Giving a spec to
a running stack migrates its warehouse to it (the migrations are idempotent).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from local.postgres import PostgresServer, create_database
from local.stack import processes as proc
from local.stack.provision import (
    migrate_warehouse,
    prepare_namespace,
    provision_aws,
    warehouse_passwords,
)
from local.stack.state import (
    ADMIN_USER,
    DATABASE,
    DEFAULT_STATE_DIR,
    LOCK_FILE,
    LOG_DIR,
    PG_DIR,
    PID_FILES,
    REGION,
    RSD_DIR,
    WORKGROUP_NAME,
    StackInfo,
    read_state,
    record_spec_path,
    recorded_spec_path,
    remove_state,
    write_state,
)

log = logging.getLogger("local.stack")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int
    endpoint: str


def _prepare(state_dir: Path) -> Path:
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)  # PostgreSQL may run as the postgres OS user and must get in
    return state_dir


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with open(state_dir / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _components(info: StackInfo) -> list[ComponentStatus]:
    state_dir = info.state_dir
    pg = proc.running_postgres(state_dir / PG_DIR)
    moto_port, rsd_port = _port(info.moto_endpoint), _port(info.redshift_data_endpoint)
    moto_pid, rsd_pid = info.pids.get("moto", 0), info.pids.get("redshift_data", 0)
    return [
        ComponentStatus("postgres", pg is not None and pg.port == info.postgres_port
                        and proc.postgres_pid(state_dir / PG_DIR) == info.pids.get("postgres"),
                        info.pids.get("postgres", 0), f"127.0.0.1:{info.postgres_port}"),
        ComponentStatus("moto", proc.process_running(moto_pid, proc.moto_markers(moto_port))
                        and proc.port_open(moto_port), moto_pid, info.moto_endpoint),
        ComponentStatus("redshift_data",
                        proc.process_running(rsd_pid,
                                             proc.redshift_data_markers(state_dir / RSD_DIR))
                        and proc.port_open(rsd_port), rsd_pid, info.redshift_data_endpoint),
    ]


def running_stack(state_dir: Path = DEFAULT_STATE_DIR) -> StackInfo | None:
    """The stack recorded in ``state_dir`` if every part of it runs, else None (no side effects)."""
    info = read_state(state_dir.resolve())
    if info is None or not all(c.running for c in _components(info)):
        return None
    return info


def stack_status(state_dir: Path = DEFAULT_STATE_DIR) -> list[ComponentStatus]:
    """Each part of the recorded stack and whether it runs (empty when nothing is recorded)."""
    info = read_state(state_dir.resolve())
    return [] if info is None else _components(info)


def _spec_file(spec_path: str | Path | None) -> str | None:
    """The spec file as an absolute path (the consumer may run in another directory), checked
    to load before anything starts; None for "no spec given"."""
    if not spec_path:
        return None
    from shared.spec import load_spec

    path = str(Path(spec_path).resolve())
    load_spec(path)  # a bad spec fails here with its SpecError, naming the problem
    return path


def start_stack(state_dir: Path = DEFAULT_STATE_DIR,
                spec_path: str | Path | None = None) -> StackInfo:
    """Start the stack (or reuse it) and return it; idempotent. With ``spec_path``, the
    warehouse is migrated to that spec (also when the stack already runs)."""
    spec_file = _spec_file(spec_path)
    state_dir = _prepare(state_dir)
    with _locked(state_dir):
        info = running_stack(state_dir)
        if info is not None:
            return info if spec_file is None else _migrate(info, spec_file)
        try:
            return _start(state_dir, spec_file)
        except BaseException:
            log.error("local stack: start failed; stopping what was started")
            _stop(state_dir)
            raise


def ensure_stack(state_dir: Path = DEFAULT_STATE_DIR,
                 spec_path: str | Path | None = None) -> StackInfo:
    """The running stack in ``state_dir``, started first if it does not run; with
    ``spec_path``, its warehouse migrated to that spec first."""
    if not spec_path:
        running = running_stack(state_dir)
        if running is not None:
            return running
    return start_stack(state_dir, spec_path)


def _migrate(info: StackInfo, spec_file: str) -> StackInfo:
    """Migrate a running stack's warehouse to ``spec_file`` and record it."""
    pg = PostgresServer(info.state_dir / PG_DIR, info.postgres_port)
    ddl = migrate_warehouse(info.redshift_data_endpoint, info.moto_endpoint, info.region,
                            info.database, info.workgroup_name, info.resources, pg, spec_file)
    log.info("local stack: warehouse migrated to %s (%d DDL statements)", spec_file, ddl)
    migrated = replace(info, spec_path=spec_file)
    record_spec_path(info.state_dir, spec_file)
    write_state(migrated)
    return migrated


def _start(state_dir: Path, spec_file: str | None = None) -> StackInfo:
    previous = read_state(state_dir)
    # A restart keeps the spec the warehouse was last migrated to.
    spec_path = spec_file or recorded_spec_path(state_dir)
    if spec_path and not Path(spec_path).is_file():
        log.warning("local stack: the spec %s it followed is gone; using the packaged spec",
                    spec_path)
        spec_path = ""
    logs = state_dir / LOG_DIR
    logs.mkdir(exist_ok=True)

    pg = proc.ensure_postgres(state_dir / PG_DIR, previous.postgres_port if previous else None)
    create_database(pg, DATABASE)
    prepare_namespace(pg, DATABASE, warehouse_passwords(state_dir)[ADMIN_USER])

    moto_pid, moto_port = proc.read_pid_file(state_dir / PID_FILES["moto"])
    if not (proc.process_running(moto_pid, proc.moto_markers(moto_port))
            and proc.port_open(moto_port)):
        proc.terminate(moto_pid, proc.moto_markers(moto_port))  # a half-dead leftover of ours
        moto_port = proc.preferred_port(moto_port)
        moto_pid = proc.start_moto(moto_port, logs / "moto.log", state_dir / PID_FILES["moto"])
    moto_endpoint = f"http://127.0.0.1:{moto_port}"

    rsd_dir = state_dir / RSD_DIR
    rsd_markers = proc.redshift_data_markers(rsd_dir)
    rsd_pid, rsd_port = proc.read_pid_file(state_dir / PID_FILES["redshift_data"])
    reusable = (previous is not None and previous.postgres_port == pg.port
                and previous.moto_endpoint == moto_endpoint
                and proc.process_running(rsd_pid, rsd_markers) and proc.port_open(rsd_port))
    if not reusable:
        proc.terminate(rsd_pid, rsd_markers)
        rsd_port = proc.preferred_port(rsd_port)
        rsd_pid = proc.start_redshift_data(rsd_dir, rsd_port, pg, moto_endpoint,
                                           logs / "redshift-data.log",
                                           state_dir / PID_FILES["redshift_data"])
    rsd_endpoint = f"http://127.0.0.1:{rsd_port}"

    resources = provision_aws(moto_endpoint, REGION, state_dir)
    ddl = migrate_warehouse(rsd_endpoint, moto_endpoint, REGION, DATABASE, WORKGROUP_NAME,
                            resources, pg, spec_path)
    record_spec_path(state_dir, spec_path)
    log.info("local stack: provisioned; %d warehouse DDL statements applied", ddl)
    info = StackInfo(
        state_dir=state_dir, region=REGION, moto_endpoint=moto_endpoint,
        redshift_data_endpoint=rsd_endpoint, postgres_port=pg.port, database=DATABASE,
        workgroup_name=WORKGROUP_NAME,
        pids={"postgres": proc.postgres_pid(pg.data_dir), "moto": moto_pid,
              "redshift_data": rsd_pid},
        resources=resources, spec_path=spec_path,
    )
    write_state(info)
    return info


def stop_stack(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Stop every part of the stack; the names of those that were running.

    Keeps the warehouse data and the HMAC key; a later ``start`` brings both back.
    """
    state_dir = state_dir.resolve()
    if not state_dir.is_dir():
        return []
    with _locked(state_dir):
        return _stop(state_dir)


def _stop(state_dir: Path) -> list[str]:
    """Stop by pid files (not only the state file), so a half-started stack goes too."""
    stopped = []
    rsd_pid, _ = proc.read_pid_file(state_dir / PID_FILES["redshift_data"])
    if proc.terminate(rsd_pid, proc.redshift_data_markers(state_dir / RSD_DIR)):
        stopped.append("redshift_data")
    moto_pid, moto_port = proc.read_pid_file(state_dir / PID_FILES["moto"])
    if proc.terminate(moto_pid, proc.moto_markers(moto_port)):
        stopped.append("moto")
    if proc.stop_postgres_cluster(state_dir / PG_DIR):
        stopped.append("postgres")
    for name in PID_FILES.values():
        (state_dir / name).unlink(missing_ok=True)
    (state_dir / RSD_DIR / "endpoint.json").unlink(missing_ok=True)
    remove_state(state_dir)
    return stopped
