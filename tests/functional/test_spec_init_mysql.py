"""``spec init`` and ``spec check`` on a MySQL-protocol source (a throwaway MariaDB): the
reference schema gives back the shipped spec's tables, keys and PII rules; every common MySQL
type gives a spec that loads and has no differences until the source changes; bad input says
what to do."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.ports import free_port
from shared.spec import load_spec
from tests.functional.mysql_server import MysqlServer, mysql_server
from tools import spec_check, spec_init

SHIPPED = load_spec()

REFERENCE_DDL = (
    "CREATE TABLE sport_event (event_id bigint PRIMARY KEY, sport_type varchar(64), "
    "start_date date, location varchar(256))",
    "CREATE TABLE ticket (ticket_id bigint PRIMARY KEY, event_id bigint, seat_level varchar(64), "
    "seat_location varchar(64), ticket_price decimal(12,2))",
    "CREATE TABLE customer (customer_id bigint PRIMARY KEY, name varchar(256), "
    "email varchar(320), phone varchar(64))",
    "CREATE TABLE ticket_activity (ticket_id bigint PRIMARY KEY, purchased_by bigint, "
    "created_at datetime, updated_at datetime)",
    "INSERT INTO customer VALUES (1, 'Teresa Smith', 'teresa.smith1@example.com', "
    "'+1-786-503-2802x2357'), (2, 'Caleb Jones', '  CALEB.JONES2@EXAMPLE.COM ', "
    "'+1-212-555-0100')",
)
EVERY_TYPE_DDL = (
    "CREATE TABLE person (person_id bigint unsigned PRIMARY KEY, first_name varchar(80), "
    "email varchar(320), phone varchar(32), birth_date date)",
    "CREATE TABLE every_type (region smallint NOT NULL, id int NOT NULL, tiny tinyint, "
    "small_u smallint unsigned, mid mediumint, int_u int unsigned, big bigint, "
    "big_u bigint unsigned, flag tinyint(1), bit1 bit(1), price decimal(12,2), "
    "wide decimal(38,0), ratio float, score double, code char(3), label varchar(40), "
    "body text, long_body longtext, raw varbinary(16), blob_col blob, day date, "
    "at_time time, at datetime(6), at_ts timestamp(3) NULL, yr year, doc json, "
    "feeling enum('happy','sad','in_between'), tags set('a','bb'), uid uuid, "
    "person_id bigint unsigned, PRIMARY KEY (region, id), "
    "FOREIGN KEY (person_id) REFERENCES person (person_id))",
    "CREATE TABLE page_view (viewed_at datetime NOT NULL, url text, session_id char(36) NOT NULL, "
    "UNIQUE KEY page_view_session (session_id))",
    "CREATE VIEW recent_views AS SELECT url FROM page_view",
)
EVERY_TYPE_SPEC_TYPES = {
    "region": "smallint", "id": "integer", "tiny": "smallint", "small_u": "integer",
    "mid": "integer", "int_u": "bigint", "big": "bigint", "big_u": "decimal(20,0)",
    "flag": "smallint", "bit1": "boolean", "price": "decimal(12,2)", "wide": "decimal(38,0)",
    "ratio": "real", "score": "double", "code": "char(3)", "label": "varchar(40)",
    "body": "text", "long_body": "text", "raw": "varbyte(64000)", "blob_col": "varbyte(64000)",
    "day": "date", "at_time": "time", "at": "timestamp", "at_ts": "timestamp",
    "yr": "smallint", "doc": "text",  # MariaDB's JSON is LONGTEXT
    "feeling": "varchar(16)", "tags": "varchar(16)", "uid": "uuid",
    "person_id": "decimal(20,0)",
}


@pytest.fixture(scope="module")
def mysql() -> Iterator[MysqlServer]:
    with tempfile.TemporaryDirectory(prefix="cdc-tests-mysql-") as root, \
            mysql_server(Path(root)) as server:
        yield server


@pytest.fixture
def database(mysql: MysqlServer) -> str:
    name = f"src_{uuid.uuid4().hex[:12]}"
    mysql.execute(f"CREATE DATABASE {name}")
    return name


def test_the_reference_schema_gives_back_the_shipped_spec(
        mysql: MysqlServer, database: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    mysql.execute(*REFERENCE_DDL, database=database)
    out = tmp_path / "spec.toml"

    assert spec_init.main(["--source", mysql.url(database), "--out", str(out)]) == 0

    drafted = load_spec(out)
    assert drafted.source_schema == database  # DMS's schema-name for MySQL is the database
    assert {n: t.key for n, t in drafted.tables.items()} == \
        {n: t.key for n, t in SHIPPED.tables.items()}
    for name, table in SHIPPED.tables.items():
        assert drafted.tables[name].columns == table.columns
    text = out.read_text()
    assert "from the MySQL database" in text
    assert '# "customer.name" = "redact"' in text
    printed = capsys.readouterr()
    for value in ("teresa.smith1@example.com", "CALEB.JONES2", "+1-786-503-2802x2357",
                  "Teresa Smith"):
        assert value not in text and value not in printed.out + printed.err


def test_every_type_gives_a_spec_that_loads_and_matches_the_source(
        mysql: MysqlServer, database: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    mysql.execute(*EVERY_TYPE_DDL, database=database)
    out = tmp_path / "spec.toml"
    url = mysql.url(database)

    assert spec_init.main(["--source", url, "--out", str(out)]) == 0

    spec = load_spec(out)
    assert set(spec.tables) == {"person", "every_type", "page_view"}  # not the view
    table = spec.tables["every_type"]
    assert {c.name: c.type.spec_name for c in table.columns} == EVERY_TYPE_SPEC_TYPES
    assert table.key == ("region", "id")
    assert spec.tables["page_view"].append_only
    assert 'key = ["session_id"]' in out.read_text()
    assert {(t.name, c.name): c.pii for t in spec.tables.values() for c in t.columns
            if c.pii} == {("person", "first_name"): "redact", ("person", "email"): "tokenize",
                          ("person", "phone"): "mask", ("person", "birth_date"): "redact"}
    capsys.readouterr()

    assert spec_check.main(["--source", url, "--spec", str(out)]) == 0
    assert capsys.readouterr().out.startswith("no differences")

    mysql.execute("ALTER TABLE every_type ADD COLUMN note varchar(20)",
                  "ALTER TABLE every_type MODIFY COLUMN label varchar(80)",
                  "ALTER TABLE every_type MODIFY COLUMN feeling "
                  "enum('happy','sad','in_between','somewhat_in_between')",
                  "ALTER TABLE page_view ADD PRIMARY KEY (session_id)",
                  database=database)

    assert spec_check.main(["--source", url, "--spec", str(out)]) == 1
    assert capsys.readouterr().out.splitlines()[:-1] == [
        "every_type.label: type: spec varchar(40), source varchar(80) "
        "(varchar(80) in the spec)",
        "every_type.feeling: enum('happy','sad','in_between','somewhat_in_between') has a "
        "label of 19 bytes, longer than the spec's varchar(16)",
        "every_type.note: in the source (varchar(20), varchar(20) in the spec), not in the spec",
        "page_view: key: the source has a primary key (session_id); the spec says append_only",
    ]


def test_bad_input_says_what_to_do(mysql: MysqlServer, database: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    mysql.execute("CREATE TABLE geo (id int PRIMARY KEY, spot point, addr inet6, name text)",
                  database=database)
    out = tmp_path / "spec.toml"

    assert spec_init.main(["--source", mysql.url(database), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "geo.spot: type point has no spec type" in err
    assert "geo.addr: type inet6 has no spec type" in err
    assert "--exclude-columns geo.spot,geo.addr" in err

    assert spec_init.main(["--source", mysql.url(database), "--out", str(out),
                           "--exclude-columns", "geo.spot", "--map-type",
                           "geo.addr=varchar(45)"]) == 0

    port = free_port()
    assert spec_init.main(["--source", f"mysql://me:s3cret@127.0.0.1:{port}/shop", "--out",
                           str(tmp_path / "other.toml")]) == 2
    err = capsys.readouterr().err
    assert f"cannot connect to MySQL at 127.0.0.1:{port} (database shop)" in err
    assert "Is the database running" in err and "s3cret" not in err

    assert spec_init.main(["--source", "mysql://127.0.0.1:3306", "--out",
                           str(tmp_path / "other.toml")]) == 2
    assert "mysql://user:password@host:3306/database" in capsys.readouterr().err
