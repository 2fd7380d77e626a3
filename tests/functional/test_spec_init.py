"""``spec init`` and ``spec check`` on real PostgreSQL sources: the demo's source database gives
back the shipped spec's tables, keys and PII rules; a database with every supported type gives
a spec that loads and has no differences until the source changes; bad input gets a message
that says what to do."""

from __future__ import annotations

import tomllib
from pathlib import Path

import psycopg
import pytest

from local.ports import free_port
from local.postgres import PostgresServer
from local.workload import Workload
from shared.spec import PipelineSpec, load_spec, parse_spec
from tests.functional.source_helpers import fresh_source
from tools import spec_check, spec_init

SHIPPED = load_spec()

EVERY_TYPE_DDL = """
CREATE TYPE mood AS ENUM ('happy', 'sad', 'in_between');
CREATE DOMAIN us_zip AS varchar(10);
CREATE TABLE person (
    person_id bigint PRIMARY KEY, first_name varchar(80), email text, phone varchar(32),
    ssn char(11), birth_date date, home_address text);
CREATE TABLE every_type (
    region smallint, id integer, seq bigint,
    price numeric(12,2), wide numeric(38,0), loose numeric, ratio real, score double precision,
    active boolean, code char(3), label varchar(40), free varchar, body text,
    day date, at_time time(3), at timestamp(6), at_tz timestamptz, uid uuid,
    doc json, docb jsonb, ints integer[], tags text[], blob bytea, feeling mood, zip us_zip,
    person_id bigint REFERENCES person,
    PRIMARY KEY (region, id));
CREATE TABLE page_view (viewed_at timestamptz NOT NULL, url text, session_id uuid NOT NULL);
CREATE UNIQUE INDEX page_view_session ON page_view (session_id);
"""
EVERY_TYPE_SPEC_TYPES = {
    "region": "smallint", "id": "integer", "seq": "bigint", "price": "decimal(12,2)",
    "wide": "decimal(38,0)", "loose": "decimal(38,10)", "ratio": "real", "score": "double",
    "active": "boolean", "code": "char(3)", "label": "varchar(40)", "free": "text",
    "body": "text", "day": "date", "at_time": "time", "at": "timestamp",
    "at_tz": "timestamptz", "uid": "uuid", "doc": "super", "docb": "super", "ints": "super",
    "tags": "super", "blob": "varbyte(64000)", "feeling": "varchar(16)", "zip": "varchar(10)",
    "person_id": "bigint",
}


@pytest.fixture
def source_dsn(pg_server: PostgresServer) -> str:
    return fresh_source(pg_server)


def execute(dsn: str, sql: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql)


def init(dsn: str, out: Path, *args: str) -> int:
    return spec_init.main(["--source", dsn, "--out", str(out), *args])


def pii_rules(spec: PipelineSpec) -> dict[tuple[str, str], str]:
    return {(t.name, c.name): c.pii for t in spec.tables.values() for c in t.columns
            if c.pii is not None}


def personal_values(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT name, email, phone FROM customer").fetchall()
    return [value.strip() for row in rows for value in row]


@pytest.mark.parametrize("loose", [True, False], ids=["demo-schema", "strict-schema"])
def test_spec_init_on_the_demo_source_gives_back_the_shipped_spec(
        source_dsn: str, tmp_path: Path, loose: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    workload = Workload(source_dsn, SHIPPED, seed=3)
    workload.create_schema(loose=loose)  # the demo's source has looser types (local.cdc)
    workload.seed_data(customers=30, events=5, purchases=40)
    out = tmp_path / "spec.toml"

    assert init(source_dsn, out) == 0

    drafted = load_spec(out)
    assert set(drafted.tables) == set(SHIPPED.tables)
    assert {n: t.key for n, t in drafted.tables.items()} == \
        {n: t.key for n, t in SHIPPED.tables.items()}
    assert pii_rules(drafted) == pii_rules(SHIPPED)
    assert drafted.targets == {}
    for name, table in SHIPPED.tables.items():
        assert drafted.tables[name].column_names == table.column_names
        if not loose:
            assert drafted.tables[name].columns == table.columns
    text = out.read_text()
    assert '# "customer.name" = "redact"  # to consider: may be a person\'s name (name)' in text
    assert '"customer.email" = "tokenize"  # suggested: looks like an email address ' \
           '(name and sampled values)' in text
    assert '"customer.phone" = "mask"  # suggested: looks like a phone number' in text
    printed = capsys.readouterr()
    assert "wrote" in printed.err and "2 PII rule(s) suggested, 1 to consider" in printed.err
    for value in personal_values(source_dsn):
        assert value not in text and value not in printed.out + printed.err


def test_a_database_with_every_type_gives_a_spec_that_loads_and_matches_the_source(
        source_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    execute(source_dsn, EVERY_TYPE_DDL)
    execute(source_dsn, "INSERT INTO page_view VALUES (now(), 'https://example.com/', "
                        "gen_random_uuid())")
    out = tmp_path / "spec.toml"

    assert init(source_dsn, out) == 0

    spec = load_spec(out)
    table = spec.tables["every_type"]
    assert {c.name: c.type.spec_name for c in table.columns} == EVERY_TYPE_SPEC_TYPES
    assert table.key == ("region", "id")
    page_view = spec.tables["page_view"]
    assert page_view.append_only and page_view.key == ()
    assert pii_rules(spec) == {
        ("person", "first_name"): "redact", ("person", "email"): "tokenize",
        ("person", "phone"): "mask", ("person", "ssn"): "tokenize",
        ("person", "birth_date"): "redact", ("person", "home_address"): "redact",
        ("every_type", "zip"): "redact",
    }
    text = out.read_text()
    assert 'feeling = "varchar(16)"  # enum mood' in text
    assert 'key = ["session_id"]' in text  # the unique index, offered as the key to name
    assert "page_view: no primary key; written as append_only = true" in capsys.readouterr().err

    assert spec_check.main(["--source", source_dsn, "--spec", str(out)]) == 0
    assert capsys.readouterr().out.startswith("no differences")

    execute(source_dsn, "ALTER TABLE every_type ADD COLUMN note varchar(20)")
    execute(source_dsn, "ALTER TABLE every_type ALTER COLUMN label TYPE varchar(80)")
    execute(source_dsn, "ALTER TABLE person DROP COLUMN ssn")
    execute(source_dsn, "ALTER TABLE page_view ADD PRIMARY KEY (session_id)")
    execute(source_dsn, "CREATE TABLE refund (refund_id bigint PRIMARY KEY)")
    execute(source_dsn, "ALTER TYPE mood ADD VALUE 'somewhat_in_between'")  # 19 bytes

    assert spec_check.main(["--source", source_dsn, "--spec", str(out)]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert printed[:-1] == [
        "every_type.label: type: spec varchar(40), source character varying(80) "
        "(varchar(80) in the spec)",
        "every_type.feeling: enum mood has a label of 19 bytes, longer than the spec's "
        "varchar(16)",
        "every_type.note: in the source (character varying(20), varchar(20) in the spec), "
        "not in the spec",
        "page_view: key: the source has a primary key (session_id); the spec says append_only",
        "person.ssn: in the spec, not in the source",
        "table refund: in the source, not in the spec",
    ]
    assert printed[-1].startswith("6 difference(s)")
    assert spec_check.main(["--source", source_dsn, "--spec", str(out),
                            "--only-spec-tables"]) == 1
    assert "refund" not in capsys.readouterr().out


def test_the_target_hint_loads_once_uncommented(source_dsn: str, tmp_path: Path) -> None:
    execute(source_dsn, EVERY_TYPE_DDL)
    out = tmp_path / "spec.toml"
    assert init(source_dsn, out, "--no-sample") == 0
    text = out.read_text()
    hint = text[text.index("e.g.:\n") + len("e.g.:\n"):]
    uncommented = "\n".join(line.removeprefix("#").removeprefix(" ")
                            for line in hint.splitlines())

    spec = parse_spec(tomllib.loads(text + uncommented))

    target = spec.targets["every_type_wide"]
    assert target.fact == "every_type"
    assert [(j.table, j.on) for j in target.joins] == [("person", (("person_id", "person_id"),))]


def test_chosen_tables_mixed_case_names_and_an_existing_file(
        source_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    execute(source_dsn, 'CREATE TABLE "Orders" ("OrderId" bigint PRIMARY KEY, total numeric(9,2))')
    execute(source_dsn, "CREATE TABLE other (id int PRIMARY KEY)")
    out = tmp_path / "spec.toml"

    assert init(source_dsn, out, "--tables", "orders") == 0
    spec = load_spec(out)
    assert list(spec.tables) == ["orders"] and spec.tables["orders"].key == ("orderid",)
    assert spec.source_names == "case-insensitive"

    assert init(source_dsn, out, "--tables", "orders") == 2
    assert "exists; choose another --out, or --force" in capsys.readouterr().err
    assert init(source_dsn, out, "--tables", "Orders,other", "--force") == 0
    assert set(load_spec(out).tables) == {"orders", "other"}


def test_an_unreachable_database_names_host_and_port(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    dsn = f"host=127.0.0.1 port={port} dbname=shop user=me password=s3cret-not-shown"

    assert init(dsn, tmp_path / "spec.toml") == 2
    err = capsys.readouterr().err
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port} (database shop)" in err
    assert "Is the database running" in err and "Check the DSN given with --source" in err
    assert "s3cret" not in err
    assert not (tmp_path / "spec.toml").exists()

    assert spec_check.main(["--source", dsn, "--spec", str(Path(spec_init.__file__).parent.parent
                                                           / "shared/specs/sports_ticketing.toml")
                            ]) == 2
    assert f"127.0.0.1:{port}" in capsys.readouterr().err

    assert init("not a dsn at all", tmp_path / "spec.toml") == 2
    assert "--source is not a PostgreSQL DSN or URL" in capsys.readouterr().err


def test_unknown_tables_are_named_with_the_schema_s_tables(
        source_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    execute(source_dsn, "CREATE TABLE orders (id int PRIMARY KEY)")

    assert init(source_dsn, tmp_path / "spec.toml", "--tables", "orders,ordres") == 2
    assert "--tables: no table ordres in schema 'public' (its tables: orders)" in \
        capsys.readouterr().err

    assert init(source_dsn, tmp_path / "spec.toml", "--schema", "sales") == 2
    err = capsys.readouterr().err
    assert "schema 'sales' of database" in err and "has no tables" in err


def test_unsupported_types_are_named_with_what_to_do(
        source_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    execute(source_dsn, """
        CREATE TABLE odd (id int PRIMARY KEY, span interval, cost money, spot point,
                          page xml, words tsvector, at_tz time with time zone,
                          huge numeric(40,2), seen tstzrange, ok text)""")
    out = tmp_path / "spec.toml"

    assert init(source_dsn, out) == 2
    err = capsys.readouterr().err
    for column, type_text in (("span", "interval"), ("cost", "money"), ("spot", "point"),
                              ("page", "xml"), ("words", "tsvector"),
                              ("at_tz", "time with time zone"), ("huge", "numeric(40,2)"),
                              ("seen", "tstzrange")):
        assert f"odd.{column}: type {type_text} has no spec type" in err
    assert "more than 38 digits" in err
    assert ("--exclude-columns odd.span,odd.cost,odd.spot,odd.page,odd.words,odd.at_tz,"
            "odd.huge,odd.seen") in err
    assert "--map-type odd.span=varchar(256)" in err
    assert not out.exists()

    assert init(source_dsn, out, "--exclude-columns", "odd.cost,odd.spot,odd.page,odd.words,"
                "odd.at_tz,odd.huge,odd.seen", "--map-type", "odd.span=varchar(64)") == 0
    columns = load_spec(out).tables["odd"].columns
    assert {c.name: c.type.spec_name for c in columns} == {
        "id": "integer", "span": "varchar(64)", "ok": "text"}
    assert 'span = "varchar(64)"  # mapped by hand from interval' in out.read_text()


def test_bad_exclusions_and_mappings_are_refused(
        source_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    execute(source_dsn, "CREATE TABLE orders (id int PRIMARY KEY, note text)")
    out = tmp_path / "spec.toml"

    assert init(source_dsn, out, "--exclude-columns", "orders.id") == 2
    assert "orders.id: a key column cannot be left out" in capsys.readouterr().err
    assert init(source_dsn, out, "--exclude-columns", "orders.nope") == 2
    assert "orders.nope: no such column in the chosen tables" in capsys.readouterr().err
    assert init(source_dsn, out, "--map-type", "orders.note=blob(") == 2
    assert "unknown type" in capsys.readouterr().err
    assert init(source_dsn, out, "--map-type", "orders.note") == 2
    assert "write table.column=<spec type>" in capsys.readouterr().err


def test_names_that_cannot_be_spec_names_say_how_to_leave_them_out(
        source_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    execute(source_dsn, 'CREATE TABLE "order items" (id int PRIMARY KEY)')
    execute(source_dsn, 'CREATE TABLE orders (id int PRIMARY KEY, "unit-price" numeric(9,2))')
    out = tmp_path / "spec.toml"

    assert init(source_dsn, out) == 2
    err = capsys.readouterr().err
    assert "table 'order items': the name cannot be a spec name" in err
    assert "leave the table out with --tables" in err
    assert "orders.'unit-price': the name cannot be a spec name; leave it out with " \
           "--exclude-columns orders.unit-price" in err

    assert init(source_dsn, out, "--tables", "orders", "--exclude-columns",
                "orders.unit-price") == 0
    assert load_spec(out).tables["orders"].column_names == ("id",)


def test_a_partitioned_table_is_one_table_and_views_are_left_out(
        source_dsn: str, tmp_path: Path) -> None:
    execute(source_dsn, """
        CREATE TABLE measurement (id bigint, taken date, value real, PRIMARY KEY (id, taken))
            PARTITION BY RANGE (taken);
        CREATE TABLE measurement_2026 PARTITION OF measurement
            FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE VIEW recent AS SELECT * FROM measurement;
        CREATE MATERIALIZED VIEW totals AS SELECT count(*) AS n FROM measurement""")
    out = tmp_path / "spec.toml"

    assert init(source_dsn, out) == 0

    spec = load_spec(out)
    assert list(spec.tables) == ["measurement"]
    assert spec.tables["measurement"].key == ("id", "taken")
    assert "# Partitioned in the source: logical decoding names a change by its partition" in \
        out.read_text()
