"""Decoding the column types DMS sends as text: time, uuid, super (json, jsonb, arrays),
varbyte, text, enums; text longer than its column (long_text); tables without a key.

DMS types per PostgreSQL type: AWS DMS User Guide, "Using a PostgreSQL database as an AWS DMS
source", "Source data types for PostgreSQL" (TIME -> TIME, UUID and ENUM -> STRING, TEXT,
JSON, JSONB and ARRAY -> NCLOB, BYTEA -> BLOB). The json text rendering follows a DMS capture
(crate/commons-codec tests/transform/test_aws_dms.py: ``"attributes": "{\\"foo\\": \\"bar\\"}"``);
array text follows the PostgreSQL manual, "Arrays" ("Array Value Input").
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from shared.row_types import parse_pg_array
from shared.spec import TRUNCATED_FLAG, parse_spec
from shared.transform import Transformer
from tests.factories import DmsStream

KEY = b"unit-test-hmac-key-0123456789abcdef"
SPEC = parse_spec(tomllib.loads("""
[tables.thing]
key = ["thing_id"]
[tables.thing.columns]
thing_id = "uuid"
opens_at = "time"
attributes = "jsonb"
tags = "text[]"
scores = "integer[]"
payload = "bytea"
small_blob = "varbyte(4)"
body = "text"
mood = "varchar(64)"
"""))


def decode(data: dict[str, Any], spec: Any = SPEC, table: str = "thing",
           operation: str = "insert") -> tuple[dict[str, Any] | None, str | None]:
    stream = DmsStream()
    stream.add(table, operation, data)
    result = Transformer(spec, KEY).transform(stream.take())
    if result.rejects:
        return None, result.rejects[0].reason
    (change,) = result.changes[table]
    return change.values, None


THING = "0b9c5a3e-8f51-4e7c-9a0e-6c1d2f3a4b5c"


def one(column: str, rendering: Any) -> Any:
    row, reason = decode({"thing_id": THING, column: rendering})
    assert reason is None and row is not None, reason
    return row[column]


def reason_for(column: str, rendering: Any) -> str | None:
    row, reason = decode({"thing_id": THING, column: rendering})
    assert row is None
    return reason


@pytest.mark.parametrize(("rendering", "value"), [
    ("10:30:00", "10:30:00"),
    ("10:30:00.5", "10:30:00.500000"),
    ("23:59:59.123456", "23:59:59.123456"),
    ("23:59:59.1234564", "23:59:59.123456"),
    ("00:00:00.000000", "00:00:00"),
    ("24:00:00", "24:00:00"),  # PostgreSQL's end of day
])
def test_a_time_is_kept_as_hours_minutes_seconds_and_microseconds(rendering: str,
                                                                  value: str) -> None:
    assert one("opens_at", rendering) == value


@pytest.mark.parametrize("rendering", ["10:30", "25:00:00", "10:61:00", "24:00:01", "noon"])
def test_a_time_that_is_no_time_of_day_is_rejected(rendering: str) -> None:
    reason = reason_for("opens_at", rendering)
    assert reason is not None and reason.startswith("thing: column 'opens_at': ")
    assert rendering not in reason


@pytest.mark.parametrize("rendering", [
    THING, THING.upper(), "{" + THING + "}", THING.replace("-", "")])
def test_a_uuid_lands_in_canonical_lower_case(rendering: str) -> None:
    assert one("thing_id", rendering) == THING


@pytest.mark.parametrize("rendering", [
    "not-a-uuid", THING[:-1], THING + "0", "{" + THING, "g" + THING[1:]])
def test_a_uuid_that_is_not_one_is_rejected_without_quoting_it(rendering: str) -> None:
    row, reason = decode({"thing_id": rendering})
    assert row is None
    assert reason == ("thing: column 'thing_id': expected a UUID (32 hexadecimal digits, "
                      "8-4-4-4-12)")


@pytest.mark.parametrize(("rendering", "value"), [
    ('{"foo": "bar"}', {"foo": "bar"}),           # the capture's jsonb rendering
    ('{"a": [1, 2.5, null, true]}', {"a": [1, 2.5, None, True]}),
    ('[1, "x"]', [1, "x"]),
    ('"just text"', "just text"),
    ("42", 42),
    ("{}", {}),
    ({"already": "json"}, {"already": "json"}),
])
def test_json_and_jsonb_text_becomes_the_json_value(rendering: Any, value: Any) -> None:
    assert one("attributes", rendering) == value


@pytest.mark.parametrize(("column", "rendering", "value"), [
    ("scores", "{1,2,3}", [1, 2, 3]),
    ("scores", "{{1,2},{3,4}}", [[1, 2], [3, 4]]),
    ("scores", "{1,NULL,-3.5e2}", [1, None, -350.0]),
    ("tags", '{a,"b c","d,e","f\\"g","h\\\\i",NULL,"NULL"}',
     ["a", "b c", "d,e", 'f"g', "h\\i", None, "NULL"]),
    ("tags", "[0:1]={x,y}", ["x", "y"]),
    ("tags", '{"{}"}', ["{}"]),
])
def test_postgresql_array_text_becomes_a_json_list(column: str, rendering: str,
                                                   value: Any) -> None:
    assert one(column, rendering) == value


@pytest.mark.parametrize("rendering", ["{1,2", "{a,,b}", "{1}x", "not json", "NaN"])
def test_super_text_that_is_neither_json_nor_an_array_is_rejected(rendering: str) -> None:
    assert reason_for("attributes", rendering) == (
        "thing: column 'attributes': expected JSON text or a PostgreSQL array")


def test_array_parsing_rejects_what_postgresql_would_not_write() -> None:
    with pytest.raises(ValueError):
        parse_pg_array('{"unterminated}')


@pytest.mark.parametrize(("rendering", "value"), [
    ("DEADBEEF", b"\xde\xad\xbe\xef"), ("deadbeef", b"\xde\xad\xbe\xef"), ("", b""),
    ("\\x0001", b"\x00\x01"),
])
def test_binary_arrives_as_hexadecimal_digits_and_lands_as_bytes(rendering: str,
                                                                 value: bytes) -> None:
    assert one("payload", rendering) == value


def test_binary_longer_than_its_varbyte_column_is_rejected() -> None:
    assert reason_for("small_blob", "0102030405") == (
        "thing: column 'small_blob': value too long (5 bytes, limit 4)")
    assert one("small_blob", "01020304") == b"\x01\x02\x03\x04"


def test_binary_that_is_not_hexadecimal_is_rejected() -> None:
    assert reason_for("payload", "3q2+7w==") == (
        "thing: column 'payload': expected binary data as hexadecimal digits")


def test_text_and_enum_labels_arrive_as_strings() -> None:
    row, reason = decode({"thing_id": THING, "body": "any length of text é", "mood": "happy"})
    assert reason is None and row is not None
    assert (row["body"], row["mood"]) == ("any length of text é", "happy")
    assert TRUNCATED_FLAG not in row


def test_text_longer_than_65535_bytes_is_dead_lettered_by_default() -> None:
    assert reason_for("body", "é" * 40000) == (
        "thing: column 'body': value too long (80000 bytes, limit 65535)")
    assert reason_for("body", "x" * 65536) is not None
    assert one("body", "x" * 65535) == "x" * 65535


TRUNCATING = parse_spec(tomllib.loads("""
[tables.note]
key = ["note_id"]
long_text = "truncate"
[tables.note.columns]
note_id = "varchar(8)"
title = "varchar(5)"
code = "char(2)"
body = "text"
"""))


def note(**values: Any) -> tuple[dict[str, Any] | None, str | None]:
    return decode({"note_id": "n1", **values}, TRUNCATING, "note")


@pytest.mark.parametrize(("title", "kept"), [
    ("abcdefgh", "abcde"),        # ASCII: cut at the byte limit
    ("abcé", "abcé"),             # 5 bytes: fits
    ("abcdé", "abcd"),            # 6 bytes: the 2-byte character does not fit whole
    ("ab€cd", "ab€"),             # 3-byte character kept whole
    ("a😀bc", "a😀"),             # 4-byte character
])
def test_truncate_cuts_at_a_character_boundary_and_flags_the_row(title: str, kept: str) -> None:
    row, reason = note(title=title)
    assert reason is None and row is not None
    assert row["title"] == kept
    assert row[TRUNCATED_FLAG] is (kept != title)


def test_truncate_cuts_text_beyond_65535_bytes() -> None:
    row, _ = note(body="ü" * 40000)
    assert row is not None and row[TRUNCATED_FLAG] is True
    assert row["body"] == "ü" * 32767 and len(row["body"].encode()) == 65534


def test_truncate_never_cuts_a_key_or_char_column() -> None:
    row, reason = decode({"note_id": "n" * 9}, TRUNCATING, "note")
    assert row is None and reason is not None and "note_id" in reason
    row, reason = note(code="abc")
    assert row is None and reason is not None and "code" in reason


def test_the_source_cannot_set_the_truncated_flag() -> None:
    row, _ = note(title="ok", **{TRUNCATED_FLAG: True})
    assert row is not None and row[TRUNCATED_FLAG] is False


APPEND_ONLY = parse_spec(tomllib.loads("""
[tables.event_log]
append_only = true
[tables.event_log.columns]
event = "varchar(32)"
at = "timestamp"
"""))


def test_an_append_only_table_keeps_every_change_as_its_own_row() -> None:
    stream = DmsStream()
    stream.add("event_log", "load", {"event": "a", "at": "2021-08-15T10:00:00Z"})
    stream.add("event_log", "load", {"event": "a", "at": "2021-08-15T10:00:00Z"})
    stream.add("event_log", "insert", {"event": "b", "at": "2021-08-15T10:00:01Z"})
    stream.add("event_log", "insert", {"event": "b", "at": "2021-08-15T10:00:01Z"})
    stream.add("event_log", "update", {"event": "c", "at": None})
    stream.add("event_log", "delete", {"event": "c", "at": None})
    result = Transformer(APPEND_ONLY, KEY).transform(stream.take())
    assert result.rejects == []
    changes = result.changes["event_log"]
    assert [(c.operation, c.values["event"], c.deleted) for c in changes] == [
        ("load", "a", False), ("load", "a", False), ("insert", "b", False),
        ("insert", "b", False), ("update", "c", False), ("delete", "c", True)]


def test_a_redelivered_change_of_an_append_only_table_is_kept_once() -> None:
    stream = DmsStream()
    record = stream.add("event_log", "insert", {"event": "b", "at": None})
    result = Transformer(APPEND_ONLY, KEY).transform([record, record])
    assert len(result.changes["event_log"]) == 1
