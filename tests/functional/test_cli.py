"""The ``cdc`` command line: every subcommand's help, ``sql`` / ``invoke`` / ``status`` on a
local stack that follows a user's spec, and ``cdc run`` on a user's own database.

The user's schema is not the reference one: a ``shop`` with a composite key
(``order_line``), a dimension joined by another name (``buyer_id``) and a PII rule, so
nothing can pass by leaning on the sports-ticketing tables.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.postgres import PostgresServer
from local.record_builders import DmsStream, lambda_event
from local.stack import running_stack, stop_stack
from local.stack.processes import moto_markers, process_running, read_pid_file
from tools import cli

ROOT = Path(__file__).resolve().parents[2]
CDC = Path(sys.executable).parent / "cdc"

SHOP_SPEC = textwrap.dedent("""\
    [pipeline]
    name = "shop"
    source_schema = "public"
    replica_schema = "shop_replica"
    target_schema = "analytics"

    [tables.person]
    key = ["person_id"]
    columns = { person_id = "bigint", name = "varchar(128)", email = "varchar(256)" }

    [tables.product]
    key = ["sku"]
    columns = { sku = "varchar(32)", title = "varchar(128)", price = "decimal(10,2)" }

    [tables.order_line]
    key = ["order_id", "line_no"]
    [tables.order_line.columns]
    order_id = "bigint"
    line_no = "integer"
    sku = "varchar(32)"
    quantity = "integer"
    buyer_id = "bigint"

    [pii]
    "person.email" = "tokenize"

    [targets.sales]
    fact = "order_line"
    joins = [
        { table = "product", from = "order_line", on = { sku = "sku" } },
        { table = "person", from = "order_line", on = { buyer_id = "person_id" } },
    ]
    [targets.sales.columns]
    order_id = "order_line.order_id"
    line_no = "order_line.line_no"
    title = "product.title"
    quantity = "order_line.quantity"
    buyer_name = "person.name"
    buyer_email = "person.email"
    """)

SHOP_TABLES = (
    "CREATE TABLE person (person_id bigint PRIMARY KEY, name varchar(128), email varchar(256))",
    "CREATE TABLE product (sku varchar(32) PRIMARY KEY, title varchar(128), "
    "price numeric(10,2))",
    "CREATE TABLE order_line (order_id bigint, line_no integer, sku varchar(32), "
    "quantity integer, buyer_id bigint, PRIMARY KEY (order_id, line_no))",
)


def cdc(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    result = subprocess.run([str(CDC), *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"cdc {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def rows(csv_text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_text)))


def kill_leftovers(state: Path) -> None:
    """Stop the stack in ``state``; should that fail, kill what is left of it."""
    try:
        stop_stack(state)
    finally:
        moto_pid, moto_port = read_pid_file(state / "moto.pid")
        if process_running(moto_pid, moto_markers(moto_port)):
            os.kill(moto_pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="cdc-cli-test-"))
    root.chmod(0o755)  # PostgreSQL runs as the postgres OS user when we are root
    try:
        yield root
    finally:
        kill_leftovers(root / "stack")
        kill_leftovers(root / "run" / "stack")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def spec_file(workdir: Path) -> Path:
    path = workdir / "shop.toml"
    path.write_text(SHOP_SPEC)
    return path


def test_the_console_script_lists_every_command() -> None:
    result = cdc("--help")
    for command in cli.COMMANDS:
        assert f"  {command.name} " in result.stdout


@pytest.mark.parametrize("name", [c.name for c in cli.COMMANDS])
def test_each_subcommand_has_help_with_a_description_and_an_example(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*name.split(), "--help"]) == 0
    out = capsys.readouterr().out
    command = next(c for c in cli.COMMANDS if c.name == name)
    assert out.startswith(f"cdc {name}: {command.summary}")
    assert f"example:\n  cdc {name} " in out
    assert "usage:" in out and "options:" in out  # the module's own options follow


def test_an_unknown_command_says_what_there_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reconcil"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'reconcil'" in err and "  reconcile " in err


def test_status_without_configuration_says_how_to_point_it_at_a_stack(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("HMAC_KEY_SECRET_ARN", "REDSHIFT_DATABASE", "DEAD_LETTER_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["status"]) == 2
    err = capsys.readouterr().err
    assert "REDSHIFT_DATABASE is required" in err and "--stack-dir" in err


def shop_event() -> dict[str, Any]:
    stream = DmsStream()
    stream.add("person", "insert", {"person_id": 1, "name": "Ann O'Hara", "email": "ann@x.io"})
    stream.add("product", "insert", {"sku": "A-1", "title": "Anvil", "price": "99.50"})
    for line in (1, 2):
        stream.add("order_line", "insert", {"order_id": 7, "line_no": line, "sku": "A-1",
                                            "quantity": line, "buyer_id": 1})
    # A value the spec rejects: a dead letter, the rest of the batch lands.
    stream.add("order_line", "insert", {"order_id": 8, "line_no": 1, "sku": "A-1",
                                        "quantity": "many", "buyer_id": 1})
    records = [dataclasses.replace(r, partition_key="shop", shard_id="shardId-000000000000")
               for r in stream.take()]
    return lambda_event(records)


def test_invoke_sql_and_status_follow_the_users_spec(workdir: Path, spec_file: Path) -> None:
    state = workdir / "stack"
    event = workdir / "shop-event.json"
    event.write_text(json.dumps(shop_event()))

    response = json.loads(cdc("invoke", str(event), "--state-dir", str(state),
                              "--spec", str(spec_file)).stdout)
    assert response == {"batchItemFailures": []}

    sales = rows(cdc("sql", "--state-dir", str(state),
                     "SELECT order_id, line_no, title, quantity, buyer_name, buyer_email "
                     "FROM analytics.sales ORDER BY 1, 2").stdout)
    assert [(r["order_id"], r["line_no"], r["title"], r["quantity"], r["buyer_name"])
            for r in sales] == [("7", "1", "Anvil", "1", "Ann O'Hara"),
                                ("7", "2", "Anvil", "2", "Ann O'Hara")]
    assert len(sales[0]["buyer_email"]) == 64  # an HMAC token, not the address

    status = cdc("status", "--stack-dir", str(state)).stdout.splitlines()
    by_table = {line.split()[0]: line.split() for line in status if line.startswith("shop_")}
    assert set(by_table) == {"shop_replica.person", "shop_replica.product",
                             "shop_replica.order_line"}
    rows_, lag, position = by_table["shop_replica.order_line"][1:4]
    assert rows_ == "2"
    assert lag.endswith(("s", "m", "h", "d")) and lag != "-"  # the events' commit times
    newest = json.loads(base64.b64decode(shop_event()["Records"][3]["kinesis"]["data"]))
    lsn = newest["metadata"]["stream-position"].split(".")[-1]  # "LSN.n.LSN": the last LSN
    assert position == "/".join(f"{int(part, 16):X}" for part in lsn.split("/"))
    assert "wide table analytics.sales: 2 rows" in status
    assert "dead-letter queue: 1 messages" in status


def test_the_stack_keeps_following_the_spec_after_a_restart(workdir: Path,
                                                            spec_file: Path) -> None:
    state = workdir / "stack"
    cdc("sql", "--state-dir", str(state), "--spec", str(spec_file), "SELECT 1 AS one")
    stop_stack(state)
    env = cdc("sql", "--state-dir", str(state), "SELECT count(*) AS n FROM analytics.sales")
    assert rows(env.stdout) == [{"n": "2"}]  # the warehouse and its spec came back
    exported = subprocess.run([sys.executable, "-m", "local.stack", "env", "--state-dir",
                               str(state), "--json"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=120).stdout
    assert json.loads(exported)["PIPELINE_SPEC_PATH"] == str(spec_file.resolve())


# -- cdc run on a user's own database ---------------------------------------------------------

@pytest.fixture
def shop_source(pg_server: PostgresServer) -> Iterator[str]:
    """A database of the user's: the shop tables with some rows."""
    name = f"shop_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in SHOP_TABLES:
            conn.execute(statement)
        conn.execute("INSERT INTO person SELECT g, 'Person ' || g, 'p' || g || '@example.com' "
                     "FROM generate_series(1, 20) g")
        conn.execute("INSERT INTO product SELECT 'SKU-' || g, 'Item ' || g, g * 1.25 "
                     "FROM generate_series(1, 10) g")
        conn.execute("INSERT INTO order_line SELECT g / 3, g % 3, 'SKU-' || (g % 10 + 1), "
                     "g % 7, g % 20 + 1 FROM generate_series(1, 90) g")
    yield dsn
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE database = %s AND NOT active", (name,))
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def commit_changes(dsn: str) -> None:
    """Inserts, updates (a key change too) and deletes, in a few transactions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(1, 6):
            with conn.transaction():
                conn.execute("INSERT INTO person VALUES (%s, %s, %s)",
                             (100 + i, f"New {i}", f"new{i}@example.com"))
                conn.execute("INSERT INTO order_line VALUES (%s, 1, 'SKU-1', %s, %s)",
                             (500 + i, i, 100 + i))
                conn.execute("UPDATE order_line SET quantity = quantity + 10 "
                             "WHERE order_id = %s", (i,))
                conn.execute("DELETE FROM order_line WHERE order_id = %s AND line_no = 2",
                             (10 + i,))
        with conn.transaction():
            conn.execute("UPDATE person SET email = 'changed@example.com' WHERE person_id = 3")
            conn.execute("UPDATE product SET sku = 'SKU-99' WHERE sku = 'SKU-10'")
            conn.execute("DELETE FROM person WHERE person_id = 20")


def test_cdc_run_loads_streams_and_reconciles_a_users_database(
        workdir: Path, spec_file: Path, shop_source: str) -> None:
    state = workdir / "run"
    process = subprocess.Popen(  # no --duration: CDC until Ctrl-C
        [str(CDC), "run", "--source", shop_source, "--spec", str(spec_file),
         "--state-dir", str(state)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})  # lines as they are printed
    lines: list[str] = []
    changed = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("full load:"):
                commit_changes(shop_source)  # while CDC runs
                changed.set()
                time.sleep(1)
                process.send_signal(signal.SIGINT)  # Ctrl-C: catch up, reconcile, exit

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert process.wait(timeout=150) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    output = "".join(lines)
    assert changed.is_set(), output
    assert "full load: 120 rows" in output
    assert "stopping: catching up, then reconciling" in output
    assert '"_aws"' not in output  # the handler's EMF metrics go to its own log
    assert '"_aws"' in (state / "handler-output.log").read_text()
    assert "differences=0" in output
    assert "shop_replica.order_line: expected 90, warehouse 90, missing 0" in output

    info = running_stack(state / "stack")  # the run leaves the local stack up
    assert info is not None
    with psycopg.connect(info.postgres_conninfo) as conn:  # the warehouse, read directly
        sales = conn.execute("SELECT order_id, line_no, title, quantity, buyer_name FROM "
                             "analytics.sales WHERE order_id IN (1, 11, 501) "
                             "ORDER BY 1, 2").fetchall()
    assert sales == [(1, 0, "Item 4", 13, "Person 4"), (1, 1, "Item 5", 14, "Person 5"),
                     (1, 2, "Item 6", 15, "Person 6"), (11, 0, "Item 4", 5, "Person 14"),
                     (11, 1, "Item 5", 6, "Person 15"), (501, 1, "Item 1", 1, "New 1")]

    with psycopg.connect(shop_source, autocommit=True) as conn:
        slots = conn.execute("SELECT count(*) FROM pg_replication_slots "
                             "WHERE slot_name = 'cdc_local_run'").fetchone()
        trigger = conn.execute("SELECT count(*) FROM pg_event_trigger").fetchone()
    assert slots == (0,) and trigger == (0,)  # the run left nothing behind on the source


def test_cdc_run_refuses_a_database_without_the_specs_tables(
        workdir: Path, spec_file: Path, pg_server: PostgresServer) -> None:
    started = time.monotonic()
    result = cdc("run", "--source", pg_server.dsn(), "--spec", str(spec_file),
                 "--state-dir", str(workdir / "refused"), check=False)
    assert result.returncode == 2
    assert "table public.person of the spec is not in the database" in result.stderr
    assert "cdc spec check" in result.stderr
    assert not (workdir / "refused").exists()  # checked before anything started
    assert time.monotonic() - started < 30


def test_cdc_run_names_an_unreachable_database(workdir: Path, spec_file: Path) -> None:
    result = cdc("run", "--source", "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=2",
                 "--spec", str(spec_file), "--state-dir", str(workdir / "unreachable"),
                 check=False)
    assert result.returncode == 2
    assert "cannot connect to the source database" in result.stderr
    assert "check --source" in result.stderr
