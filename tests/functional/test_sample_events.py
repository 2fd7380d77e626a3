"""Every file in events/ goes through the Lambda handler, in the documented order, against the
local stack (moto + the Redshift stand-in on PostgreSQL): the warehouse rows and dead-letter
messages tell the story events/README.md tells, and replaying them all changes nothing."""

from __future__ import annotations

import json
from typing import Any

from local.sample_events import EVENT_ORDER, EVENTS_DIR, POISON_KINDS
from tests.functional.pipeline_helpers import Consumer

WIDE = "SELECT * FROM public.sport_event_activity ORDER BY ticket_id"


def event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def rows(consumer: Consumer) -> dict[int, dict[str, Any]]:
    return {int(r["ticket_id"]): r for r in consumer.sql(WIDE)}


def snapshot(consumer: Consumer) -> list[list[dict[str, Any]]]:
    tables = [
        "cdc_replica.sport_event",
        "cdc_replica.ticket",
        "cdc_replica.customer",
        "cdc_replica.ticket_activity",
        "public.sport_event_activity",
    ]
    return [consumer.sql(f"SELECT * FROM {t} ORDER BY 1") for t in tables]


def test_every_event_through_the_handler_in_order(consumer: Consumer) -> None:
    seen: dict[str, dict[int, dict[str, Any]]] = {}
    for name in EVENT_ORDER:
        response = consumer.invoke(event(name))
        assert response == {"batchItemFailures": []}, name
        seen[name] = rows(consumer)
        letters = consumer.dead_letters()
        if name == "mixed_poison":
            assert len(letters) == len(POISON_KINDS)
            poison = event(name)["Records"]
            by_seq = {r["kinesis"]["sequenceNumber"]: r["kinesis"]["data"] for r in poison}
            assert all(by_seq[m["sequenceNumber"]] == m["payload"] for m in letters)
            reasons = sorted(m["reason"] for m in letters)
            assert any(r == "record data is not valid base64" for r in reasons)
            assert any(r.startswith("record data is not valid JSON") for r in reasons)
            assert any("missing key column" in r for r in reasons)
        else:
            assert letters == [], name

    assert sorted(seen["full_load"]) == list(range(1, 9))
    assert sorted(seen["inserts"]) == list(range(1, 11))
    updated = seen["updates"]
    assert (updated[3]["seat_level"], str(updated[3]["ticket_price"])) == ("Premium", "150.00")
    assert str(updated[4]["start_date"]) == "2021-09-06"
    assert updated[4]["purchased_by"] == 5 and updated[4]["name"] == "Zoë Müller"
    assert 5 not in seen["delete"]
    moved = seen["primary_key_change"]
    assert 6 not in moved and moved[11]["purchased_by"] == 1
    before, after = seen["primary_key_change"], seen["customer_change"]
    for ticket_id in (1, 3, 11):
        assert after[ticket_id]["email_address"] != before[ticket_id]["email_address"]
    assert after[2]["email_address"] == before[2]["email_address"]
    orphan = seen["fact_before_dimension"][12]
    assert orphan["purchased_by"] == 6 and orphan["name"] is None and orphan["event_id"] is None
    completed = seen["mixed_poison"][12]
    assert completed["name"] == "Liam Novak" and completed["sport_type"] == "Hockey"
    assert seen["control_records"] == seen["mixed_poison"]
    assert sorted(seen["control_records"]) == [1, 2, 3, 4, 7, 8, 9, 10, 11, 12]

    final = snapshot(consumer)
    for name in EVENT_ORDER:
        consumer.invoke(event(name))
    assert snapshot(consumer) == final
