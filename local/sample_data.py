"""A consistent sample history of the sports-ticketing source, as DMS would stream it.

A full load (events, tickets, customers, purchases), then CDC batches with every operation:
new purchases, a purchase before its ticket and customer exist, a customer's email change,
an event's date change, a deleted purchase, a primary-key change, a replayed batch, control
records and a few records the spec rejects.
"""

from __future__ import annotations

import random

from local.dms_records import DmsStream, activity, customer, sport_event, ticket
from shared.records import StreamRecord

SPORTS = [
    ("Baseball", "Seattle, US"),
    ("Baseball", "New York, US"),
    ("Football", "San Francisco, US"),
    ("Basketball", "Chicago, US"),
    ("Hockey", "Boston, US"),
]
FIRST = ["Teresa", "Caleb", "Raymond", "Ana", "Kenji", "Fatima", "Liam", "Zoë", "Sean", "Priya"]
LAST = ["Stein", "Houston", "Turner", "O'Brien", "Tanaka", "Haddad", "Müller", "Novak"]


def sample_history(
    events: int = 5, customers: int = 20, purchases: int = 60, seed: int = 2021
) -> list[list[StreamRecord]]:
    """Consumer batches, in stream order: the full load first, then CDC."""
    rng = random.Random(seed)
    stream = DmsStream()
    stream.control("create-table", "sport_event")
    for event_id in range(1, events + 1):
        sport, place = SPORTS[(event_id - 1) % len(SPORTS)]
        stream.add(
            "sport_event", "load", sport_event(event_id, sport, f"2021-09-{event_id:02d}", place)
        )
    for customer_id in range(1, customers + 1):
        name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        stream.add(
            "customer",
            "load",
            customer(
                customer_id,
                name,
                f"{name.split()[0].lower()}{customer_id}@example.com",
                f"+1-{rng.randrange(200, 999)}-{rng.randrange(100, 999)}-"
                f"{rng.randrange(1000, 9999)}",
            ),
        )
    for ticket_id in range(1, purchases + 1):
        level = rng.choice(["Standard", "Standard", "Premium"])
        stream.add(
            "ticket",
            "load",
            ticket(
                ticket_id,
                rng.randrange(1, events + 1),
                level,
                f"{level[0]}-{ticket_id}",
                f"{100 if level == 'Standard' else 300}.00",
            ),
        )
        stream.add(
            "ticket_activity",
            "load",
            activity(
                ticket_id,
                rng.randrange(1, customers + 1),
                f"2021-08-{rng.randrange(1, 28):02d} 10:00:00",
            ),
        )
    batches = [stream.take()]

    new_id = purchases + 1
    stream.add("ticket", "insert", ticket(new_id, 1, "Premium", "P-99", "350.00"))
    stream.add("ticket_activity", "insert", activity(new_id, 1, "2021-08-30 09:00:00"))
    late_customer = customers + 1
    stream.add(
        "ticket_activity", "insert", activity(new_id + 1, late_customer, "2021-08-30 09:05:00")
    )
    stream.add(
        "customer",
        "update",
        customer(1, "Teresa Stein", "teresa.stein@example.org", "+1-296-605-8486"),
    )
    stream.add("sport_event", "update", sport_event(2, "Baseball", "2021-09-19", "New York, US"))
    batches.append(stream.take())

    stream.add("ticket", "insert", ticket(new_id + 1, 3, "Standard", "S-77", "100.00"))
    stream.add(
        "customer",
        "insert",
        customer(late_customer, "Late Larry", "larry@example.com", "087-237-9316x2670"),
    )
    stream.add("ticket_activity", "delete", {"ticket_id": 2})
    stream.add(
        "ticket_activity",
        "update",
        activity(new_id + 2, 3, "2021-08-02 10:00:00"),
        before={"ticket_id": 3},
    )
    stream.add("customer", "insert", {"customer_id": "not-a-number", "name": "Bad Row"})
    stream.add("ticket", "insert", ticket(new_id + 5, 1, "Standard", "S-1", "12345678901.00"))
    stream.add_raw(b"this is not JSON")
    stream.control("add-column", "customer")
    batch = stream.take()
    batches.append(batch)
    batches.append(list(batch))  # Kinesis redelivers: the replay must change nothing
    return batches
