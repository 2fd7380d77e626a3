"""The sample Kinesis events in ``events/``, built reproducibly (``make events``).

One source history of the sports-ticketing schema, cut into Lambda Kinesis events that are
meant to be applied in ``EVENT_ORDER``: a full load, then CDC batches that each show one
thing. The same inputs (fixed seed, fixed clock, fixed sequence numbers) give the same bytes,
so the committed files can be checked against the generator.

State after each event, in the wide table (one row per purchase = ticket_activity row):

- full_load: events 1-3, customers 1-5, tickets 1-8, purchases 1-8 (customer 1 owns 1, 3, 6).
- inserts: event 4, tickets 9-10 and their purchases.
- updates: ticket 3 upgraded (price, level), event 2 postponed, purchase 4 resold to customer 5.
- delete: purchase 5 and its ticket deleted (row 5 disappears).
- primary_key_change: purchase 6 moves to the new ticket 11 (row 6 gone, row 11 appears).
- customer_change: customer 1's email and phone change (rows 1, 3 and 11 rewritten).
- fact_before_dimension: purchase 12 of ticket 12 by customer 6, neither of which exists yet
  (row 12 with empty ticket, event and customer columns).
- mixed_poison: ticket 12 and customer 6 arrive (row 12 completed), amid six poison records.
- control_records: DMS control records only (skipped, nothing changes).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from local.record_builders import (
    DmsStream,
    activity,
    customer,
    lambda_event,
    sport_event,
    ticket,
)
from shared.records import StreamRecord

SEED = 20210815
SHARD_ID = "shardId-000000000000"
EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"
EVENT_ORDER = (
    "full_load", "inserts", "updates", "delete", "primary_key_change", "customer_change",
    "fact_before_dimension", "mixed_poison", "control_records",
)
# What each poison record in mixed_poison.json is (by position among its poison records).
POISON_KINDS = ("not_base64", "not_json", "missing_key", "wrong_type", "not_dms", "too_long")

_EVENTS = [(1, "Baseball", "2021-09-01", "Seattle, US"),
           (2, "Football", "2021-09-05", "San Francisco, US"),
           (3, "Basketball", "2021-09-10", "Chicago, US")]
_CUSTOMERS = [(1, "Teresa Stein"), (2, "Caleb Houston"), (3, "Ana O'Brien"),
              (4, "Kenji Tanaka"), (5, "Zoë Müller")]
_TICKET_EVENTS = [1, 1, 2, 2, 3, 3, 1, 2]          # ticket n (1-based) is for this event
_PURCHASED_BY = [1, 2, 1, 3, 4, 1, 5, 2]           # purchase n was made by this customer


def _partition_key(record: StreamRecord) -> str:
    """DMS's partition key (``partition-key-value``), or a placeholder for undecodable data."""
    try:
        message = json.loads(base64.b64decode(record.data, validate=True))
        return str(message["metadata"]["partition-key-value"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return "unknown"


def _event(stream: DmsStream) -> dict[str, Any]:
    """The records added since the last event, as Lambda delivers them from one shard."""
    records = [dataclasses.replace(r, partition_key=_partition_key(r), shard_id=SHARD_ID)
               for r in stream.take()]
    arrival: datetime = stream.clock + timedelta(seconds=1)
    return lambda_event(records, arrival=arrival)


def _phone(rng: random.Random) -> str:
    return f"+1-{rng.randrange(200, 999)}-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"


def build_events() -> dict[str, dict[str, Any]]:
    """Every sample event by name, in ``EVENT_ORDER``."""
    rng = random.Random(SEED)
    stream = DmsStream()
    events: dict[str, dict[str, Any]] = {}

    # --- full load ------------------------------------------------------------------------
    for event_id, sport, start, place in _EVENTS:
        stream.add("sport_event", "load", sport_event(event_id, sport, start, place))
    customers = {}
    for customer_id, name in _CUSTOMERS:
        email = f"{name.split()[0].lower()}{customer_id}@example.com"
        customers[customer_id] = customer(customer_id, name, email, _phone(rng))
        stream.add("customer", "load", customers[customer_id])
    tickets, purchases = {}, {}
    for ticket_id, event_id in enumerate(_TICKET_EVENTS, start=1):
        level = rng.choice(["Standard", "Standard", "Premium"])
        price = "300.00" if level == "Premium" else "100.00"
        tickets[ticket_id] = ticket(ticket_id, event_id, level, f"{level[0]}-{ticket_id}", price)
        stream.add("ticket", "load", tickets[ticket_id])
    for ticket_id, buyer in enumerate(_PURCHASED_BY, start=1):
        created = f"2021-08-{rng.randrange(1, 15):02d} {rng.randrange(8, 20):02d}:00:00"
        purchases[ticket_id] = activity(ticket_id, buyer, created)
        stream.add("ticket_activity", "load", purchases[ticket_id])
    events["full_load"] = _event(stream)

    # --- inserts --------------------------------------------------------------------------
    stream.add("sport_event", "insert", sport_event(4, "Hockey", "2021-09-20", "Boston, US"))
    stream.add("ticket", "insert", ticket(9, 4, "Premium", "P-9", "320.00"))
    stream.add("ticket_activity", "insert", activity(9, 3, "2021-08-16 09:30:00"))
    stream.add("ticket", "insert", ticket(10, 2, "Standard", "S-10", "95.00"))
    stream.add("ticket_activity", "insert", activity(10, 2, "2021-08-16 09:45:00"))
    events["inserts"] = _event(stream)

    # --- updates (the before image holds the old row, as with DMS BeforeImageSettings) ----
    upgraded = {**tickets[3], "seat_level": "Premium", "ticket_price": "150.00"}
    stream.add("ticket", "update", upgraded, before=tickets[3])
    stream.add("sport_event", "update", sport_event(2, "Football", "2021-09-06",
                                                     "San Francisco, US"),
               before=sport_event(2, "Football", "2021-09-05", "San Francisco, US"))
    resold = activity(4, 5, purchases[4]["created_at"], "2021-08-17 12:00:00")
    stream.add("ticket_activity", "update", resold, before=purchases[4])
    events["updates"] = _event(stream)

    # --- delete ---------------------------------------------------------------------------
    stream.add("ticket_activity", "delete", {"ticket_id": 5})
    stream.add("ticket", "delete", {"ticket_id": 5})
    events["delete"] = _event(stream)

    # --- primary key change: purchase 6 moves to the new seat 11 ---------------------------
    stream.add("ticket", "insert", ticket(11, 3, "Standard", "S-11", "100.00"))
    moved = activity(11, 1, purchases[6]["created_at"], "2021-08-18 15:00:00")
    stream.add("ticket_activity", "update", moved, before=purchases[6])
    events["primary_key_change"] = _event(stream)

    # --- customer change: new email and phone, every purchase of theirs is rewritten -------
    changed = {**customers[1], "email": "teresa.stein@example.org", "phone": "+1-206-555-0142"}
    stream.add("customer", "update", changed, before=customers[1])
    events["customer_change"] = _event(stream)

    # --- a fact before its dimensions -----------------------------------------------------
    stream.add("ticket_activity", "insert", activity(12, 6, "2021-08-19 18:00:00"))
    events["fact_before_dimension"] = _event(stream)

    # --- good records (the missing dimensions) amid poison --------------------------------
    not_base64 = stream.add_raw(b"placeholder")
    stream.records[-1] = dataclasses.replace(not_base64, data="%%% not base64 %%%")
    stream.add("ticket", "insert", ticket(12, 4, "Standard", "S-12", "110.00"))
    stream.add_raw(b"this is not JSON")
    stream.add("customer", "insert", {"name": "No Key", "email": "nokey@example.com"})
    stream.add("customer", "insert", customer(6, "Liam Novak", "liam6@example.com",
                                              "+1-305-555-0199"))
    stream.add("customer", "insert", {**customer(7, "Wrong Type"), "customer_id": "seven"})
    stream.add_raw({"hello": "not a DMS record"})
    stream.add("ticket", "insert", ticket(13, 4, "Standard", "S-" + "9" * 100, "110.00"))
    events["mixed_poison"] = _event(stream)

    # --- control records ------------------------------------------------------------------
    stream.control("add-column", "customer")
    stream.control("column-type-change", "ticket")
    stream.control("create-table", "ticket_refund")
    events["control_records"] = _event(stream)

    assert tuple(events) == EVENT_ORDER
    return events


def render(event: dict[str, Any]) -> str:
    """The file text of one event (stable: fixed key order, 2-space indent, final newline)."""
    return json.dumps(event, indent=2, ensure_ascii=False) + "\n"


def write_events(out_dir: Path = EVENTS_DIR) -> list[Path]:
    """Write every event to ``out_dir/<name>.json``; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, event in build_events().items():
        path = out_dir / f"{name}.json"
        path.write_text(render(event), encoding="utf-8")
        paths.append(path)
    return paths
