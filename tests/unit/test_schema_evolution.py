"""Source columns added after the spec: their types from DMS's, PII safety, the listing.

DMS types: AWS DMS User Guide, "Data types for AWS Database Migration Service"; the Kinesis
records spell sizes in bits (INT32, INT64), as the reference's create-table example shows.
"""

from __future__ import annotations

import pytest

from shared.schema_evolution import evolved_spec, looks_personal, new_columns, spec_type_of
from shared.spec import load_spec
from tools.spec_show import describe


@pytest.mark.parametrize(("dms", "spec_type"), [
    ({"type": "INT16"}, "smallint"), ({"type": "INT2"}, "smallint"),
    ({"type": "INT32"}, "integer"), ({"type": "INT4"}, "integer"),
    ({"type": "INT64"}, "bigint"), ({"type": "INT8"}, "bigint"),
    ({"type": "UINT8"}, "decimal(20,0)"),
    ({"type": "NUMERIC", "precision": 12, "scale": 2}, "decimal(12,2)"),
    ({"type": "NUMERIC", "precision": 60, "scale": 2}, "varchar(128)"),
    ({"type": "REAL8"}, "double"), ({"type": "BOOLEAN"}, "boolean"), ({"type": "DATE"}, "date"),
    ({"type": "DATETIME"}, "timestamp"),
    ({"type": "STRING", "length": 16}, "varchar(64)"),  # Redshift counts bytes
    ({"type": "WSTRING", "length": 20000}, "varchar(65535)"),
    ({"type": "NCLOB"}, "varchar(65535)"), ({"type": "SOMETHING-NEW"}, "varchar(65535)"),
])
def test_dms_types_map_to_a_warehouse_type_that_refuses_no_value(
    dms: dict[str, object], spec_type: str
) -> None:
    assert spec_type_of(dms) == spec_type


@pytest.mark.parametrize(("name", "personal"), [
    ("holder_email", True), ("phone_number", True), ("date_of_birth", True),
    ("home_address", True), ("ssn", True), ("section", False), ("emails_sent_count", False),
    ("zipper_size", False), ("card", True),
])
def test_personal_looking_names_are_whole_words_of_the_list(name: str, personal: bool) -> None:
    assert looks_personal(name) is personal


def test_added_columns_join_the_replica_and_personal_ones_are_redacted() -> None:
    spec = load_spec()
    added = new_columns(spec.tables["ticket"], {"columns": {
        "TICKET_ID": {"type": "INT64"}, "SECTION": {"type": "STRING", "length": 16},
        "Holder_Email": {"type": "STRING", "length": 100}, "_cdc_deleted": {"type": "BOOLEAN"},
        "bad-name": {"type": "INT32"}}})
    assert added == (("section", "varchar(64)"), ("holder_email", "varchar(400)"))
    evolved = evolved_spec(spec, {"ticket": list(added)})
    ticket = evolved.tables["ticket"]
    assert ticket.column_names[-2:] == ("section", "holder_email")
    assert ticket.column("holder_email").pii == "redact"
    assert ticket.column("section").pii is None
    assert evolved.targets == spec.targets
    assert describe(spec, evolved)[1:4] == [
        "ticket (key ticket_id): ticket_id, event_id, seat_level, seat_location, ticket_price",
        "  + section varchar(64) (added by the source)",
        "  + holder_email varchar(400) (added by the source)  redacted: name looks personal; "
        "give it a rule in [pii]",
    ]
