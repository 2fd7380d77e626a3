"""The pipeline spec: the shipped default loads; every kind of bad spec fails at load, naming
the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.spec import SpecError, load_spec, parse_spec
from tests.factories import spec_document


def spec_with(change: Any) -> dict[str, Any]:
    raw = spec_document()
    change(raw)
    return raw


def test_default_spec_describes_the_sports_use_case() -> None:
    spec = load_spec()
    assert list(spec.tables) == ["sport_event", "ticket", "customer", "ticket_activity"]
    assert spec.tables["customer"].column("email").pii == "tokenize"
    assert spec.tables["customer"].column("phone").pii == "mask"
    target = spec.targets["sport_event_activity"]
    assert [c.name for c in target.columns] == [
        "ticket_id",
        "event_id",
        "sport_type",
        "start_date",
        "location",
        "seat_level",
        "seat_location",
        "ticket_price",
        "purchased_by",
        "name",
        "email_address",
        "phone_number",
        "created_at",
        "updated_at",
    ]
    assert target.key == ("ticket_id",)
    assert [j.alias for j in target.join_path("sport_event")] == ["ticket", "sport_event"]


def test_adding_a_column_and_a_dimension_is_a_spec_edit(tmp_path: Path) -> None:
    def add(raw: dict[str, Any]) -> None:
        raw["tables"]["venue"] = {
            "key": ["venue_id"],
            "columns": {"venue_id": "int", "capacity": "integer"},
        }
        raw["tables"]["sport_event"]["columns"]["venue_id"] = "int"
        target = raw["targets"]["sport_event_activity"]
        target["joins"].append(
            {"table": "venue", "from": "sport_event", "on": {"venue_id": "venue_id"}}
        )
        target["columns"]["venue_capacity"] = "venue.capacity"

    spec = parse_spec(spec_with(add))
    assert spec.targets["sport_event_activity"].columns[-1].name == "venue_capacity"
    assert [j.alias for j in spec.targets["sport_event_activity"].join_path("venue")] == [
        "ticket",
        "sport_event",
        "venue",
    ]


def _set(path: str, value: Any) -> Any:
    def change(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("tables/customer/key", _DELETE), "tables.customer: missing key"),
        (_set("tables/customer/key", ["customer_no"]), "key column 'customer_no'"),
        (
            _set("targets/sport_event_activity/columns/email_address", "customer.mail"),
            "unknown column 'customer.mail'",
        ),
        (
            _set("targets/sport_event_activity/columns/x", "venue.name"),
            "unknown table or alias 'venue'",
        ),
        (
            _set("pii/customer.fax", "mask"),
            "pii.customer.fax: column 'fax' is not a column of customer",
        ),
        (_set("pii/client.email", "mask"), "table 'client' is not a table of the spec"),
        (_set("pii/customer.email", "sha256"), "unkeyed digest"),
        (_set("pii/customer.email", "scramble"), "unknown rule 'scramble'"),
        (_set("pii/customer.customer_id", "mask"), "'mask' needs a varchar or char column"),
        (_set("tables/customer/columns/phone", "varchar"), "has no length"),
        (_set("tables/customer/columns/phone", "char"), "needs a size"),
        (_set("tables/customer/columns/phone", "interval"), "unknown type 'interval'"),
        (_set("tables/customer/columns/Phone", "varchar(5)"), "not a valid identifier"),
        (_set("tables/customer/columns/_cdc_x", "int"), "reserved"),
        (_set("targets/sport_event_activity/fact", "fan"), "fact 'fan' is not a table"),
        (
            _set("targets/sport_event_activity/joins/0/on", {"ticket_id": "event_id"}),
            "must join on the whole key of ticket",
        ),
        (
            _set("targets/sport_event_activity/joins/2/on", {"fax": "customer_id"}),
            "unknown column ticket_activity.fax",
        ),
        (
            _set("targets/sport_event_activity/columns/ticket_id", _DELETE),
            "the fact key ticket_activity.ticket_id must be one of its columns",
        ),
        (_set("pipeline/delete_mode", "soft"), "delete_mode"),
        (_set("tables", {}), "must name its source tables"),
    ],
)
def test_bad_spec_fails_at_load_naming_the_problem(change: Any, message: str) -> None:
    with pytest.raises(SpecError, match=None) as error:
        parse_spec(spec_with(change))
    assert message in str(error.value)


def test_join_cycle_is_named() -> None:
    def cycle(raw: dict[str, Any]) -> None:
        raw["targets"]["sport_event_activity"]["joins"] = [
            {"alias": "t1", "table": "ticket", "from": "t2", "on": {"ticket_id": "ticket_id"}},
            {"alias": "t2", "table": "ticket", "from": "t1", "on": {"ticket_id": "ticket_id"}},
        ]
        raw["targets"]["sport_event_activity"]["columns"] = {
            "ticket_id": "ticket_activity.ticket_id"
        }

    with pytest.raises(SpecError, match="join cycle t1 -> t2 -> t1"):
        parse_spec(spec_with(cycle))


def test_unkeyed_sha256_is_an_explicit_opt_in() -> None:
    def opt_in(raw: dict[str, Any]) -> None:
        raw["pipeline"]["allow_unkeyed_sha256"] = True
        raw["pii"]["customer.email"] = "sha256"

    assert parse_spec(spec_with(opt_in)).tables["customer"].column("email").pii == "sha256"


def test_spec_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[tables.x\n")
    with pytest.raises(SpecError, match=r"bad\.toml: not valid TOML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.toml")
