"""A source table with every common PostgreSQL column type flows through the local DMS (full
load and CDC, wal2json on a real PostgreSQL) and the core decodes each value to one Python
value, whichever path the row took.

The DMS type of each PostgreSQL type: AWS DMS User Guide, "Using a PostgreSQL database as an
AWS DMS source", "Source data types for PostgreSQL"; the rendering of each is cited in
``local/dms/records.py``. A table without a primary key is append-only: DMS sends its inserts
only ("A captured table must have a primary key. If a table doesn't have a primary key, AWS
DMS ignores DELETE and UPDATE record operations for that table", same page, Limitations).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.dms import LocalDms
from local.postgres import PostgresServer
from shared.spec import parse_spec
from shared.transform import Transformer
from tests.functional.source_helpers import (
    create_stream,
    drop_slot,
    fresh_source,
    kinesis_client,
    read_stream,
    unique_slot,
)

HMAC_KEY = b"local-dms-types-test-hmac-key-0123456"
SPEC = parse_spec({
    "tables": {
        "every_type": {"key": ["id"], "columns": {
            "id": "uuid", "small": "smallint", "whole": "integer", "big": "bigint",
            "exact": "decimal(38,10)", "ratio": "real", "wide_ratio": "double",
            "flag": "boolean", "code": "char(3)", "label": "varchar(16)", "body": "text",
            "mood": "varchar(64)", "day": "date", "opens_at": "time", "seen_at": "timestamp",
            "seen_at_tz": "timestamptz", "attributes": "jsonb", "raw_json": "json",
            "scores": "integer[]", "tags": "text[]", "payload": "bytea",
        }},
        "event_log": {"append_only": True, "columns": {"event": "text", "at": "timestamp"}},
    },
})
DDL = [
    "CREATE TYPE mood AS ENUM ('sad', 'happy')",
    "CREATE TABLE every_type (id uuid PRIMARY KEY, small smallint, whole integer, big bigint, "
    "exact numeric(38,10), ratio real, wide_ratio double precision, flag boolean, "
    "code char(3), label varchar(16), body text, mood mood, day date, opens_at time, "
    "seen_at timestamp, seen_at_tz timestamptz, attributes jsonb, raw_json json, "
    "scores integer[], tags text[], payload bytea)",
    "ALTER TABLE every_type REPLICA IDENTITY FULL",
    "CREATE TABLE event_log (event text, at timestamp)",
]
ROW_ID = "0b9c5a3e-8f51-4e7c-9a0e-6c1d2f3a4b5c"
INSERT = (
    "INSERT INTO every_type VALUES (%s, -7, 2147483647, 9007199254740993, "
    "'1234567890123456789012345678.0123456789', 1.5, -0.25, true, 'abc', 'Zoë \"Z\"', "
    "E'line one\\nline two', 'happy', '2024-02-29', '10:30:00.5', "
    "'2024-08-15 10:00:00.123456', '2024-08-15 12:00:00+02', "
    "'{\"b\": {\"c\": null}, \"a\": [1, 2]}', '[1, \"two\"]', '{1,2,3}', "
    "'{plain,\"with space\",\"with,comma\",NULL}', '\\x00ff10'::bytea)"
)
EXPECTED: dict[str, Any] = {
    "id": ROW_ID, "small": -7, "whole": 2147483647, "big": 9007199254740993,
    "exact": Decimal("1234567890123456789012345678.0123456789"), "ratio": 1.5,
    "wide_ratio": -0.25, "flag": True, "code": "abc", "label": 'Zoë "Z"',
    "body": "line one\nline two", "mood": "happy", "day": date(2024, 2, 29),
    "opens_at": "10:30:00.500000", "seen_at": datetime(2024, 8, 15, 10, 0, 0, 123456),
    "seen_at_tz": datetime(2024, 8, 15, 10, 0, tzinfo=UTC),
    "attributes": {"a": [1, 2], "b": {"c": None}}, "raw_json": [1, "two"],
    "scores": [1, 2, 3], "tags": ["plain", "with space", "with,comma", None],
    "payload": b"\x00\xff\x10",
}


@pytest.fixture
def source(pg_server: PostgresServer) -> Iterator[tuple[str, str]]:
    dsn = fresh_source(pg_server)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in DDL:
            conn.execute(statement)
    slot = unique_slot()
    yield dsn, slot
    drop_slot(dsn, slot)


def commit(dsn: str, *statements: tuple[str, tuple[Any, ...]]) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("SET LOCAL synchronous_commit = on")
        for sql, params in statements:
            conn.execute(sql, params)


def test_every_type_arrives_through_full_load_and_cdc_as_one_value(
    source: tuple[str, str], moto_endpoint: str, tmp_path: Path
) -> None:
    dsn, slot = source
    kinesis = kinesis_client(moto_endpoint)
    stream = create_stream(kinesis, shards=1)
    commit(dsn, (INSERT, (ROW_ID,)), ("INSERT INTO event_log VALUES ('loaded', NULL)", ()))
    dms = LocalDms(dsn, SPEC, kinesis, stream, tmp_path, slot_name=slot)
    assert dms.full_load() == 2
    other_id = "1b9c5a3e-8f51-4e7c-9a0e-6c1d2f3a4b5c"
    commit(dsn, (INSERT, (other_id,)),
           ("INSERT INTO event_log VALUES ('a', '2024-01-01 00:00:00')", ()),
           ("INSERT INTO event_log VALUES ('a', '2024-01-01 00:00:00')", ()))
    commit(dsn, ("UPDATE every_type SET tags = '{}', attributes = '{}' WHERE id = %s",
                 (other_id,)))
    assert dms.capture_once() == 4
    dms.close()

    result = Transformer(SPEC, HMAC_KEY).transform(read_stream(kinesis, stream))
    assert result.rejects == []
    rows = {(c.operation, c.key): c.values for c in result.changes["every_type"]}
    assert rows[("load", (ROW_ID,))] == EXPECTED
    # CDC (wal2json) gives the same values as the full load (``::text``), and the update
    # wins over the insert of the same row.
    assert rows[("update", (other_id,))] == {**EXPECTED, "id": other_id, "tags": {},
                                             "attributes": {}}
    events = sorted((c.operation, c.values["event"]) for c in result.changes["event_log"])
    assert events == [("insert", "a"), ("insert", "a"), ("load", "loaded")]
