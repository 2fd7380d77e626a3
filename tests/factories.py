"""Event and spec factories for the tests (record builders: ``local.record_builders``)."""

import tomllib
from typing import Any

from local.record_builders import (
    BASE_TIME,
    DmsStream,
    activity,
    customer,
    encode,
    iso,
    sport_event,
    ticket,
)
from shared.records import StreamRecord
from shared.spec import DEFAULT_SPEC_PATH

# A spec with char(n) columns (ASCII only, "Character types", Amazon Redshift Database
# Developer Guide), for the tests of how a non-ASCII char value is rejected.
CHAR_COLUMNS_SPEC = """
[pipeline]
source_schema = "public"
replica_schema = "cdc_replica"
target_schema = "public"
[tables.country]
key = ["code"]
columns = { code = "char(2)", currency = "char(3)", name = "varchar(64)" }
"""


def spec_document() -> dict[str, Any]:
    """The shipped spec as a fresh TOML document, for tests to edit and ``parse_spec``."""
    return tomllib.loads(DEFAULT_SPEC_PATH.read_text(encoding="utf-8"))


def bad_records(stream: DmsStream) -> list[tuple[StreamRecord, str]]:
    """Records the decoder rejects, added to ``stream``, each with the start of its reason."""

    def with_data(table: str, operation: str, data: dict[str, object]) -> StreamRecord:
        return stream.add(table, operation, data)

    return [
        (StreamRecord("%%% not base64 %%%", "s1"), "record data is not valid base64"),
        (
            stream.add_raw(b"{not json"),
            "record data is not valid JSON (JSON is malformed: "
            "object keys must be strings (byte 1))",
        ),
        (stream.add_raw({"data": {"a": 1}}), "not a DMS record: no valid 'metadata' object"),
        (stream.add_raw([1, 2]), "not a DMS record: no valid 'metadata' object"),
        (
            stream.add_raw({"data": {}, "metadata": {"record-type": "weird"}}),
            "not a DMS record: record-type is neither 'data' nor 'control'",
        ),
        (
            with_data("customer", "insert", {"name": "No Key", "email": "nokey@example.com"}),
            "customer: missing key column 'customer_id'",
        ),
        (
            with_data("customer", "insert", customer(1) | {"customer_id": "abc"}),
            "customer: column 'customer_id': expected `int`, got `str`",
        ),
        (
            with_data("customer", "insert", customer(1) | {"email": 42}),
            "customer: column 'email': expected `str`, got `int`",
        ),
        (
            with_data("customer", "insert", customer(1) | {"phone": "9" * 65}),
            "customer: column 'phone': expected `str` of length <= 64",
        ),
        (
            with_data("sport_event", "insert", sport_event(1) | {"start_date": "next friday"}),
            "sport_event: column 'start_date': expected a date (ISO 8601)",
        ),
        (
            with_data("ticket", "insert", ticket(1, 1, ticket_price="12345678901.5")),
            "ticket: column 'ticket_price': value does not fit decimal(12,2)",
        ),
        (with_data("ticket", "upsert", ticket(1, 1)), "ticket: unknown data operation"),
        (
            with_data("ticket_activity", "insert", activity(1, 2, created_at="2021-13-45 99:00")),
            "ticket_activity: column 'created_at': expected a date-time (ISO 8601)",
        ),
    ]


__all__ = ["BASE_TIME", "CHAR_COLUMNS_SPEC", "DmsStream", "activity", "bad_records", "customer",
           "encode", "iso", "spec_document", "sport_event", "ticket"]
