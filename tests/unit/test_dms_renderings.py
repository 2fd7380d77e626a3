"""Every rendering real DMS produces for a column type decodes to one value.

The shapes come from the AWS DMS User Guide ("Using Amazon Kinesis Data Streams as a target":
BigInt values of more than 16 digits are sent in scientific notation; "Using Apache Kafka as a
target": its MySQL example message), and published captures of DMS Kinesis output
(``"created_at": "2020-01-09T04:13:38Z"``: DMS maps PostgreSQL ``timestamp`` and
``timestamptz`` and MySQL ``DATETIME``/``TIMESTAMP`` to its one ``DATETIME`` type); the facts
are collected in ../shared/reference/dms-kinesis-records.md. The round trips at the end take
each PostgreSQL type's text through the DMS stand-in's rendering (``local/dms/records.py``,
which cites "Source data types for PostgreSQL" for each shape) to the decoded value.
"""

from __future__ import annotations

import base64
import tomllib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from local.dms.records import dms_value
from shared.spec import parse_spec
from shared.transform import Transformer
from tests.factories import DmsStream

SPEC = parse_spec(tomllib.loads("""
[tables.reading]
key = ["reading_id"]
[tables.reading.columns]
reading_id = "bigint"
small = "smallint"
price = "decimal(20,4)"
flag = "boolean"
taken_at = "timestamp"
taken_at_tz = "timestamptz"
day = "date"
ratio = "double"
"""))
KEY = b"unit-test-hmac-key-0123456789abcdef"
WIDE_SPEC = parse_spec(tomllib.loads("""
[tables.wide]
key = ["wide_id"]
columns = { wide_id = "bigint", amount = "decimal(38,10)" }
"""))


def decode_one(column: str, rendering: Any, table: str = "reading",
               names: dict[str, str] | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """(the decoded row, None) or (None, the reject reason) for one rendering of one column."""
    stream = DmsStream()
    data = {"reading_id": 1, column: rendering} if column != "reading_id" else {column: rendering}
    if names:
        data = {names.get(k, k): v for k, v in data.items()}
    stream.add(table, "insert", data)
    result = Transformer(SPEC, KEY).transform(stream.take())
    if result.rejects:
        return None, result.rejects[0].reason
    (change,) = result.changes[table.lower()]
    return change.values, None


WALL_CLOCK = datetime(2020, 1, 9, 4, 13, 38)


@pytest.mark.parametrize("rendering", [
    "2020-01-09T04:13:38Z",          # the published capture's form
    "2020-01-09 04:13:38",
    "2020-01-09T04:13:38",
    "2020-01-09T04:13:38+00",
    "2020-01-09T04:13:38+00:00",
    "2020-01-09 04:13:38.000000Z",
    "2020-01-09T04:13:38.000000000Z",  # nine fractional digits
])
def test_a_timestamp_keeps_the_wall_clock_whatever_the_zone_suffix(rendering: str) -> None:
    row, reason = decode_one("taken_at", rendering)
    assert reason is None and row is not None
    assert row["taken_at"] == WALL_CLOCK and row["taken_at"].tzinfo is None


def test_a_timestamp_with_another_offset_keeps_the_clock_reading_as_written() -> None:
    row, _ = decode_one("taken_at", "2020-01-09T04:13:38-05:00")
    assert row is not None and row["taken_at"] == WALL_CLOCK


@pytest.mark.parametrize(("rendering", "utc"), [
    ("2020-01-09T04:13:38Z", datetime(2020, 1, 9, 4, 13, 38, tzinfo=UTC)),
    ("2020-01-09 04:13:38", datetime(2020, 1, 9, 4, 13, 38, tzinfo=UTC)),  # naive = UTC
    ("2020-01-09T04:13:38+00", datetime(2020, 1, 9, 4, 13, 38, tzinfo=UTC)),
    ("2020-01-09T06:13:38+02:00", datetime(2020, 1, 9, 4, 13, 38, tzinfo=UTC)),
    ("2020-01-09T06:13:38+02", datetime(2020, 1, 9, 4, 13, 38, tzinfo=UTC)),
    ("2020-01-08T23:13:38.5-05:00", datetime(2020, 1, 9, 4, 13, 38, 500000, tzinfo=UTC)),
])
def test_a_timestamptz_is_stored_in_utc(rendering: str, utc: datetime) -> None:
    row, reason = decode_one("taken_at_tz", rendering)
    assert reason is None and row is not None and row["taken_at_tz"] == utc


@pytest.mark.parametrize(("fraction", "micros"), [
    ("", 0), (".1", 100000), (".123", 123000), (".123456", 123456),
    (".1234564", 123456), (".123456789", 123457),
])
def test_zero_to_nine_fractional_digits_round_to_microseconds(fraction: str, micros: int) -> None:
    row, _ = decode_one("taken_at", f"2020-01-09T04:13:38{fraction}Z")
    assert row is not None and row["taken_at"] == WALL_CLOCK.replace(microsecond=micros)


@pytest.mark.parametrize("rendering", ["2021-08-15", "2021-08-15T00:00:00Z",
                                       "2021-08-15 00:00:00", "2021-08-15T00:00:00.000+00:00"])
def test_a_date_may_arrive_as_a_date_time_at_midnight(rendering: str) -> None:
    row, reason = decode_one("day", rendering)
    assert reason is None and row is not None and row["day"] == date(2021, 8, 15)


@pytest.mark.parametrize(("rendering", "value"), [
    (123456789012345, 123456789012345),
    ("123456789012345678", 123456789012345678),
    (1e2, 100),
    ("1.5E+3", 1500),
    ("42.000", 42),
    (1.23456789012345678e17, None),  # see the next test
])
def test_integers_arrive_as_numbers_strings_or_exact_exponent_notation(
    rendering: Any, value: int | None
) -> None:
    row, reason = decode_one("reading_id", rendering)
    if value is None:
        assert row is None and reason is not None
    else:
        assert reason is None and row is not None and row["reading_id"] == value


@pytest.mark.parametrize("rendering", [
    '1.2345678901234567E+17', '"1.2345678901234567E+17"', '9.223372036854776E18'])
def test_a_bigint_that_lost_digits_in_exponent_notation_is_rejected_saying_so(
    rendering: str
) -> None:
    stream = DmsStream()
    raw = ('{"data": {"reading_id": ' + rendering + '}, "metadata": '
           + '{"record-type": "data", "operation": "insert", "schema-name": "public", '
           + '"table-name": "reading", "timestamp": "2021-08-15T10:00:00.000000Z"}}')
    stream.add_raw(raw.encode())
    (reject,) = Transformer(SPEC, KEY).transform(stream.take()).rejects
    assert reject.reason == (
        "reading: column 'reading_id': an integer of more than 16 digits arrived in exponent "
        "notation and lost precision on the way (map the column to a string in the DMS task, "
        "or use a NUMERIC source type)")
    assert "12345" not in reject.reason and "9.22" not in reject.reason


@pytest.mark.parametrize(("rendering", "value"), [
    (12.5, Decimal("12.5000")), ("12.5", Decimal("12.5000")), ("1.25E+2", Decimal("125.0000")),
    (1e-2, Decimal("0.0100")), ("-0.00005", Decimal("-0.0001")),
    ("12345678901234.5678", Decimal("12345678901234.5678")),
])
def test_decimals_arrive_as_numbers_strings_or_exponent_notation(
    rendering: Any, value: Decimal
) -> None:
    row, reason = decode_one("price", rendering)
    assert reason is None and row is not None and row["price"] == value


@pytest.mark.parametrize(("rendering", "value"), [
    ("1234567890123456789012345678.0123456789", Decimal("1234567890123456789012345678.0123456789")),
    ("-0.00000000005", Decimal("-0.0000000001")),
])
def test_decimals_of_38_digits_stay_exact(rendering: str, value: Decimal) -> None:
    stream = DmsStream()
    stream.add("wide", "insert", {"wide_id": 1, "amount": rendering})
    (change,) = Transformer(WIDE_SPEC, KEY).transform(stream.take()).changes["wide"]
    assert change.values["amount"] == value


def test_a_decimal_beyond_any_redshift_precision_is_rejected() -> None:
    stream = DmsStream()
    stream.add("wide", "insert", {"wide_id": 1, "amount": "1e100"})
    (reject,) = Transformer(WIDE_SPEC, KEY).transform(stream.take()).rejects
    assert reject.reason == "wide: column 'amount': value does not fit decimal(38,10)"


@pytest.mark.parametrize(("rendering", "value"), [
    (True, True), (False, False), ("true", True), ("false", False), (1, True), (0, False)])
def test_booleans_arrive_as_dms_sends_them(rendering: Any, value: bool) -> None:
    row, reason = decode_one("flag", rendering)
    assert reason is None and row is not None and row["flag"] is value


@pytest.mark.parametrize(("column", "rendering", "reason"), [
    ("taken_at", "infinity",
     "reading: column 'taken_at': an infinite date-time (PostgreSQL 'infinity') has no "
     "Redshift value"),
    ("taken_at_tz", "-infinity",
     "reading: column 'taken_at_tz': an infinite date-time (PostgreSQL 'infinity') has no "
     "Redshift value"),
    ("day", "infinity",
     "reading: column 'day': an infinite date-time (PostgreSQL 'infinity') has no "
     "Redshift value"),
    ("taken_at", "0000-00-00 00:00:00",
     "reading: column 'taken_at': a zero date (MySQL '0000-00-00') is not a date"),
    ("day", "0000-00-00",
     "reading: column 'day': a zero date (MySQL '0000-00-00') is not a date"),
    ("day", "2021-08-15T10:30:00Z",
     "reading: column 'day': expected a date, got a date-time that is not midnight"),
    ("taken_at", "2021-02-30 10:00:00",
     "reading: column 'taken_at': not a valid calendar date-time"),
    ("small", 40000, "reading: column 'small': expected `int` <= 32767"),
    ("small", "1.5", "reading: column 'small': expected an integer, got a fraction"),
    ("flag", "maybe", "reading: column 'flag': expected `bool`, got `str`"),
])
def test_renderings_that_cannot_be_stored_are_rejected_with_a_reason(
    column: str, rendering: Any, reason: str
) -> None:
    row, got = decode_one(column, rendering)
    assert row is None and got == reason


def test_upper_case_oracle_identifiers_find_the_spec_tables() -> None:
    stream = DmsStream(schema="PUBLIC")
    stream.add("READING", "insert", {"READING_ID": 7, "TAKEN_AT": "2020-01-09T04:13:38Z",
                                     "PRICE": "1.5"})
    stream.add("READING", "delete", {"READING_ID": 8, "TAKEN_AT": None})
    stream.add("READING", "update", {"READING_ID": 10, "FLAG": True},
               before={"READING_ID": 9})
    result = Transformer(SPEC, KEY).transform(stream.take())
    assert result.rejects == [] and result.skipped == {}
    by_key = {c.key: c for c in result.changes["reading"]}
    assert by_key[(7,)].values["taken_at"] == WALL_CLOCK
    assert by_key[(7,)].values["price"] == Decimal("1.5000")
    assert by_key[(8,)].deleted and by_key[(9,)].deleted
    assert by_key[(10,)].values["flag"] is True


def test_exact_source_names_skip_other_cases_and_name_the_table_in_the_count() -> None:
    document = tomllib.loads("""
[pipeline]
source_names = "exact"
[tables.reading]
key = ["reading_id"]
columns = { reading_id = "bigint" }
""")
    stream = DmsStream(schema="PUBLIC")
    stream.add("READING", "insert", {"READING_ID": 7})
    result = Transformer(parse_spec(document), KEY).transform(stream.take())
    assert result.skipped == {"table-not-in-spec:PUBLIC.READING": 1}


def test_two_columns_differing_only_in_case_are_rejected() -> None:
    stream = DmsStream(schema="PUBLIC")
    stream.add("READING", "insert", {"READING_ID": 7, "reading_id": 8})
    (reject,) = Transformer(SPEC, KEY).transform(stream.take()).rejects
    assert reject.reason == "reading: two columns differ only in the case of their names"
    assert base64.b64decode(reject.payload)  # the payload stays replayable


# PostgreSQL text (what wal2json and the full load's ``::text`` give the stand-in) -> the DMS
# rendering (local/dms/records.py, each shape cited there) -> the decoded value.
ROUND_TRIPS: list[tuple[str, str, Any, Any]] = [
    # (PostgreSQL type, its text, DMS rendering, decoded value)
    ("smallint", "-7", -7, -7),
    ("integer", "2147483647", 2147483647, 2147483647),
    ("bigint", "9007199254740993", 9007199254740993, 9007199254740993),
    ("numeric(38,10)", "1234567890123456789012345678.0123456789",
     "1234567890123456789012345678.0123456789",
     Decimal("1234567890123456789012345678.0123456789")),
    ("numeric(12,2)", "100.50", Decimal("100.50"), Decimal("100.50")),
    ("real", "1.5", 1.5, 1.5),
    ("double precision", "-0.25", -0.25, -0.25),
    ("boolean", "t", True, True),
    ("character(3)", "abc", "abc", "abc"),
    ("character varying(64)", "Zoë \"Z\"", "Zoë \"Z\"", "Zoë \"Z\""),
    ("text", "line one\nline two", "line one\nline two", "line one\nline two"),
    ("mood", "happy", "happy", "happy"),  # an enum: its label
    ("date", "2024-02-29", "2024-02-29", date(2024, 2, 29)),
    ("time without time zone", "10:30:00.5", "10:30:00.5", "10:30:00.500000"),
    ("time without time zone", "23:59:59", "23:59:59", "23:59:59"),
    ("timestamp without time zone", "2024-08-15 10:00:00.123456",
     "2024-08-15T10:00:00.123456Z", datetime(2024, 8, 15, 10, 0, 0, 123456)),
    ("timestamp with time zone", "2024-08-15 12:00:00+02", "2024-08-15T10:00:00Z",
     datetime(2024, 8, 15, 10, 0, tzinfo=UTC)),
    ("uuid", "0b9c5a3e-8f51-4e7c-9a0e-6c1d2f3a4b5c", "0b9c5a3e-8f51-4e7c-9a0e-6c1d2f3a4b5c",
     "0b9c5a3e-8f51-4e7c-9a0e-6c1d2f3a4b5c"),
    ("jsonb", '{"a": [1, 2], "b": {"c": null}}', '{"a": [1, 2], "b": {"c": null}}',
     {"a": [1, 2], "b": {"c": None}}),
    ("json", '[1, "two"]', '[1, "two"]', [1, "two"]),
    ("integer[]", "{1,2,3}", "{1,2,3}", [1, 2, 3]),
    ("text[]", '{plain,"with space","with,comma",NULL}',
     '{plain,"with space","with,comma",NULL}', ["plain", "with space", "with,comma", None]),
    ("integer[]", "{{1,2},{3,4}}", "{{1,2},{3,4}}", [[1, 2], [3, 4]]),
    ("bytea", "\\x00ff10", "00ff10", b"\x00\xff\x10"),  # the full load's text
    ("bytea", "00ff10", "00ff10", b"\x00\xff\x10"),  # wal2json's
    ("bytea", "\\x", "", b""),
]
SPEC_TYPES = {
    "smallint": "smallint", "integer": "integer", "bigint": "bigint",
    "numeric(38,10)": "decimal(38,10)", "numeric(12,2)": "decimal(12,2)", "real": "real",
    "double precision": "double", "boolean": "boolean", "character(3)": "char(3)",
    "character varying(64)": "varchar(64)", "text": "text", "mood": "varchar(64)",
    "date": "date", "time without time zone": "time",
    "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz",
    "uuid": "uuid", "jsonb": "super", "json": "super", "integer[]": "super",
    "text[]": "super", "bytea": "varbyte",
}


@pytest.mark.parametrize(("pg_type", "pg_text", "rendering", "value"), ROUND_TRIPS)
def test_every_postgresql_type_renders_as_dms_does_and_decodes_to_one_value(
    pg_type: str, pg_text: str, rendering: Any, value: Any
) -> None:
    rendered = dms_value(pg_type, pg_text)
    assert rendered == rendering and type(rendered) is type(rendering)
    spec = parse_spec({"tables": {"typed": {"key": ["id"], "columns": {
        "id": "integer", "value": SPEC_TYPES[pg_type]}}}})
    stream = DmsStream()
    stream.add("typed", "insert", {"id": 1, "value": rendered})
    result = Transformer(spec, KEY).transform(stream.take())
    assert result.rejects == []
    decoded = result.changes["typed"][0].values["value"]
    assert decoded == value and type(decoded) is type(value)
