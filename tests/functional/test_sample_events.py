"""The sample events, applied in their documented order through the core and the writer, tell
the story events/README.md tells; replaying them all changes nothing."""

from __future__ import annotations

import json
from typing import Any

from local.sample_events import EVENT_ORDER, EVENTS_DIR, POISON_KINDS
from shared.records import StreamRecord
from tests.functional.conftest import Pipeline


def records(name: str) -> list[StreamRecord]:
    event = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return [StreamRecord(r["kinesis"]["data"], r["kinesis"]["sequenceNumber"],
                         r["kinesis"]["partitionKey"], r["eventID"].split(":", 1)[0])
            for r in event["Records"]]


def rows(pipeline: Pipeline) -> dict[int, dict[str, Any]]:
    return {int(r["ticket_id"]): r for r in pipeline.wide()}


def test_the_events_in_order(pipeline: Pipeline) -> None:
    seen: dict[str, dict[int, dict[str, Any]]] = {}
    for name in EVENT_ORDER:
        result, _ = pipeline.apply(records(name))
        seen[name] = rows(pipeline)
        if name == "mixed_poison":
            assert len(result.rejects) == len(POISON_KINDS)
        elif name == "control_records":
            assert result.change_count == 0 and sum(result.skipped.values()) == 3
        else:
            assert not result.rejects and not result.skipped, name

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

    final = pipeline.snapshot()
    for name in EVENT_ORDER:
        pipeline.apply(records(name))
    assert pipeline.snapshot() == final
