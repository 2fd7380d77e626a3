"""The core on one batch: every DMS record shape, order keys, PII, reduction and rejects."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import date
from decimal import Decimal

import pytest

from shared.records import StreamRecord
from shared.spec import load_spec
from shared.transform import Transformer
from tests.factories import (
    DmsStream,
    activity,
    bad_records,
    customer,
    encode,
    sport_event,
    ticket,
)

KEY = b"unit-test-hmac-key-0123456789abcdef"
SPEC = load_spec()


@pytest.fixture
def core() -> Transformer:
    return Transformer(SPEC, KEY)


@pytest.fixture
def stream() -> DmsStream:
    return DmsStream()


def token(email: str) -> str:
    return hmac.new(KEY, email.strip().lower().encode(), hashlib.sha256).hexdigest()


def test_every_data_operation_becomes_a_change(core: Transformer, stream: DmsStream) -> None:
    stream.add("sport_event", "load", sport_event(1))
    stream.add("ticket", "insert", ticket(10, 1, ticket_price="300.50"))
    stream.add("customer", "update", customer(7, email="Teresa@Example.com"))
    stream.add(
        "ticket_activity",
        "delete",
        {"ticket_id": 10, "purchased_by": None, "created_at": None, "updated_at": None},
    )
    result = core.transform(stream.take())

    assert result.rejects == [] and result.records_in == 4
    event = result.changes["sport_event"][0]
    assert (event.operation, event.deleted, event.values["start_date"]) == (
        "load",
        False,
        date(2021, 9, 1),
    )
    assert result.changes["ticket"][0].values["ticket_price"] == Decimal("300.50")
    person = result.changes["customer"][0].values
    assert person["email"] == token("teresa@example.com")
    assert person["phone"] == "+*-***-***-****"
    gone = result.changes["ticket_activity"][0]
    assert gone.deleted and gone.key == (10,) and gone.values["purchased_by"] is None


def test_pii_never_survives_the_transform(core: Transformer, stream: DmsStream) -> None:
    stream.add(
        "customer", "insert", customer(3, email="raymond@example.net", phone="+1-786-503-2802x2357")
    )
    values = core.transform(stream.take()).changes["customer"][0].values
    assert re.fullmatch(r"[0-9a-f]{64}", values["email"])
    assert values["phone"] == "+*-***-***-****x****"
    assert "raymond" not in repr(values) and "786" not in repr(values)


def test_tokens_are_keyed_and_deterministic(stream: DmsStream) -> None:
    stream.add("customer", "insert", customer(3, email="a@example.com"))
    records = stream.take()
    first = Transformer(SPEC, KEY).transform(records).changes["customer"][0].values["email"]
    again = Transformer(SPEC, KEY).transform(records).changes["customer"][0].values["email"]
    other = Transformer(SPEC, b"another-key-0123456789").transform(records)
    assert first == again != other.changes["customer"][0].values["email"]
    assert first != hashlib.sha256(b"a@example.com").hexdigest()


def test_newest_change_per_key_wins_by_source_position(
    core: Transformer, stream: DmsStream
) -> None:
    stream.add("customer", "insert", customer(1, name="First"))
    stream.add("customer", "update", customer(1, name="Second"))
    stream.add("customer", "update", customer(2, name="Other"))
    records = stream.take()
    result = core.transform(list(reversed(records)))  # arrival order must not matter
    names = sorted(c.values["name"] for c in result.changes["customer"])
    assert names == ["Other", "Second"] and result.changes_in == 3


def test_order_comes_from_the_commit_not_the_message_timestamp(core: Transformer) -> None:
    stream = DmsStream()
    older = stream.message("customer", "update", customer(1, name="Older"))
    newer = stream.message("customer", "update", customer(1, name="Newer"))
    # DMS built the newer change's message first (e.g. after a task restart).
    newer["metadata"]["timestamp"], older["metadata"]["timestamp"] = (
        older["metadata"]["timestamp"],
        newer["metadata"]["timestamp"],
    )
    result = core.transform([encode(older, "1"), encode(newer, "2")])
    assert result.changes["customer"][0].values["name"] == "Newer"


def test_full_load_sorts_before_any_cdc_change_of_the_row(core: Transformer) -> None:
    stream = DmsStream()
    cdc = stream.add("customer", "update", customer(1, name="From CDC"))
    load = stream.add("customer", "load", customer(1, name="From load"))  # built later
    result = core.transform([cdc, load])
    assert result.changes["customer"][0].values["name"] == "From CDC"


def test_changes_of_one_transaction_order_by_record_id(core: Transformer) -> None:
    stream = DmsStream()
    first = stream.message("customer", "update", customer(1, name="A"), record_id=1)
    second = dict(
        first,
        data=customer(1, name="B"),
        metadata=dict(first["metadata"], **{"transaction-record-id": 2}),
    )
    result = core.transform([encode(second, "2"), encode(first, "1")])
    assert result.changes["customer"][0].values["name"] == "B"


def test_without_transaction_details_the_sequence_number_breaks_ties(core: Transformer) -> None:
    stream = DmsStream()
    one = stream.message("customer", "update", customer(1, name="A"), details=False)
    two = dict(one, data=customer(1, name="B"))  # same message timestamp
    result = core.transform([encode(two, "200"), encode(one, "100")])
    assert result.changes["customer"][0].values["name"] == "B"


def test_primary_key_change_moves_the_row(core: Transformer, stream: DmsStream) -> None:
    stream.add("ticket_activity", "update", activity(45, 222), before={"ticket_id": 46})
    changes = core.transform(stream.take()).changes["ticket_activity"]
    by_key = {c.key: c for c in changes}
    assert by_key[(46,)].deleted and by_key[(45,)].values["purchased_by"] == 222
    assert by_key[(46,)].order_key == by_key[(45,)].order_key


@pytest.mark.parametrize("before", [{}, {"ticket_id": 45}, {"purchased_by": 3}])
def test_before_image_without_a_key_change_is_just_an_update(
    core: Transformer, stream: DmsStream, before: dict[str, int]
) -> None:
    stream.add("ticket_activity", "update", activity(45, 222), before=before)
    changes = core.transform(stream.take()).changes["ticket_activity"]
    assert [(c.key, c.deleted) for c in changes] == [((45,), False)]


def test_control_records_and_foreign_tables_are_skipped_and_counted_by_name(
    core: Transformer, stream: DmsStream
) -> None:
    stream.control("create-table")
    stream.control("drop-column")
    stream.control("some-future-operation")
    stream.control("create-table", table="audit_log")
    stream.add("awsdms_apply_exceptions", "insert", {"TASK_NAME": "x"})
    stream.add("audit_log", "insert", {"id": 1})
    other_schema = DmsStream(schema="sales")
    stream.records.append(other_schema.add("customer", "insert", customer(1)))
    stream.add("customer", "insert", customer(9))
    result = core.transform(stream.take())
    assert result.skipped == {
        "control:create-table:ticket_activity": 1,
        "control:drop-column:ticket_activity": 1,
        "control:some-future-operation:ticket_activity": 1,
        "control:create-table": 1,
        "dms-internal-table": 1,
        "table-not-in-spec:public.audit_log": 1,
        "table-not-in-spec:sales.customer": 1,
    }
    assert [c.key for c in result.changes["customer"]] == [(9,)] and result.rejects == []
    assert result.table_events == []


def test_a_dropped_spec_table_is_a_reject_that_says_the_warehouse_kept_it(
    core: Transformer, stream: DmsStream
) -> None:
    record = stream.control("drop-table", table="ticket")
    (reject,) = core.transform(stream.take()).rejects
    assert reject.table == "ticket" and reject.payload == record.data
    assert reject.reason == (
        "ticket: the source dropped the table (drop-table); the warehouse keeps its replica and "
        "wide rows: drop or archive them by hand, or restore the table")


def test_a_truncate_is_an_event_for_the_writer(
    core: Transformer, stream: DmsStream
) -> None:
    stream.add("ticket", "insert", ticket(1, 1))
    stream.add("ticket", "insert", ticket(2, 1))
    truncate = stream.control("truncate-table", table="ticket", details=True)
    stream.add("ticket", "insert", ticket(2, 1, seat_level="After"))
    stream.add("customer", "insert", customer(5))
    result = core.transform(stream.take())
    (event,) = result.table_events
    assert (event.table, event.kind, event.sequence_number) == (
        "ticket", "TRUNCATE", truncate.sequence_number)
    assert {c.key for c in result.changes["ticket"]} == {(1,), (2,)}  # the guard decides
    assert [c.key for c in result.changes["customer"]] == [(5,)]


def test_an_added_source_column_is_an_event_with_its_warehouse_type(
    core: Transformer, stream: DmsStream
) -> None:
    stream.control("add-column", table="ticket", details=True, columns={
        "ticket_id": {"type": "INT64", "nullable": False},
        "section": {"type": "STRING", "length": 16, "nullable": True},
        "discount": {"type": "NUMERIC", "precision": 5, "scale": 2},
    })
    (event,) = core.transform(stream.take()).table_events
    assert (event.table, event.kind) == ("ticket", "ADD_COLUMNS")
    assert event.columns == (("section", "varchar(64)"), ("discount", "decimal(5,2)"))


def test_a_reload_row_read_after_the_recorded_load_start_beats_older_cdc_changes(
    core: Transformer, stream: DmsStream
) -> None:
    stream.add("ticket", "update", ticket(1, 1, seat_level="Before reload"))
    stream.add("ticket", "load", ticket(1, 1, seat_level="Reloaded"))
    stream.add("ticket", "load", ticket(2, 1, seat_level="Loaded"))
    records = stream.take()
    initial = core.transform(records).changes["ticket"]
    assert {c.key: c.values["seat_level"] for c in initial} == {
        (1,): "Before reload", (2,): "Loaded"}  # no load start: a load row loses to CDC
    reloaded = core.transform(records, load_starts={"ticket": "2021-08-15T10:00:00.015000Z"})
    by_key = {c.key: c for c in reloaded.changes["ticket"]}
    assert by_key[(1,)].values["seat_level"] == "Reloaded"
    assert by_key[(1,)].order_key[1:28] == "2021-08-15T10:00:00.015000Z"
    assert by_key[(1,)].row.cdc_order_key == by_key[(1,)].order_key


def test_bad_records_are_rejected_with_reasons_and_the_rest_goes_on(core: Transformer) -> None:
    stream = DmsStream()
    stream.add("customer", "insert", customer(100))
    bad = bad_records(stream)
    stream.add("customer", "insert", customer(101))
    records = [stream.records[0], *(r for r, _ in bad), stream.records[-1]]
    result = core.transform(records)

    assert sorted(c.key for c in result.changes["customer"]) == [(100,), (101,)]
    assert len(result.rejects) == len(bad)
    for reject, (record, reason) in zip(result.rejects, bad, strict=True):
        assert reject.reason.startswith(reason), reject.reason
        assert reject.payload == record.data and reject.sequence_number == record.sequence_number


def test_reject_reasons_never_quote_the_value(core: Transformer, stream: DmsStream) -> None:
    secret = "teresa.secret@example.com"
    stream.add("customer", "insert", customer(1, email=secret, phone=secret * 3))
    stream.add("customer", "insert", {"customer_id": secret, "email": secret})
    result = core.transform(stream.take())
    assert len(result.rejects) == 2
    for reject in result.rejects:
        assert "teresa" not in reject.reason and "example" not in reject.reason
        assert secret in base64.b64decode(reject.payload).decode()  # replayable


def test_raw_bytes_from_a_kinesis_reader_are_accepted(core: Transformer, stream: DmsStream) -> None:
    record = stream.add("customer", "insert", customer(5))
    raw = StreamRecord(base64.b64decode(record.data), record.sequence_number)
    assert core.transform([raw]).changes["customer"][0].key == (5,)


def test_values_arrive_in_every_json_shape(core: Transformer, stream: DmsStream) -> None:
    name = "O'Brien'); DROP TABLE x;-- \\ \u00e9\u6f22\n\U0001f600"
    stream.add("customer", "insert", customer(9_223_372_036_854_775_807, name=name))
    stream.add("customer", "insert", {"customer_id": "42", "name": None, "email": None})
    stream.add("ticket", "insert", ticket(1, 1, ticket_price=99.999))
    result = core.transform(stream.take())
    by_key = {c.key: c.values for c in result.changes["customer"]}
    assert by_key[(9_223_372_036_854_775_807,)]["name"] == name
    assert by_key[(42,)] == {"customer_id": 42, "name": None, "email": None, "phone": None}
    assert str(result.changes["ticket"][0].values["ticket_price"]) == "100.00"


def test_varchar_limits_count_utf8_bytes_like_redshift(
    core: Transformer, stream: DmsStream
) -> None:
    stream.add("customer", "insert", customer(1, phone="\u6f22" * 21))  # 63 bytes: fits
    stream.add("customer", "insert", customer(2, phone="\u6f22" * 22))  # 66 bytes > 64
    stream.add("customer", "insert", customer(3, name="nul\x00byte"))
    result = core.transform(stream.take())
    assert [c.key for c in result.changes["customer"]] == [(1,)]
    assert [r.reason for r in result.rejects] == [
        "customer: column 'phone': value too long (66 bytes, limit 64)",
        "customer: column 'name': value holds a NUL character",
    ]


def test_nul_characters_are_rejected_even_in_short_records(
    core: Transformer, stream: DmsStream
) -> None:
    stream.add("sport_event", "insert", {"event_id": 1, "location": "a\x00b"})
    assert [r.reason for r in core.transform(stream.take()).rejects] == [
        "sport_event: column 'location': value holds a NUL character"]
