"""PII suggestions of ``spec init``: from column names, from sampled values, the rule each kind
gets within what the spec allows, tentative suggestions, and no sampled value in any output."""

from __future__ import annotations

import pytest

from shared.schema_evolution import PERSONAL_NAME_PARTS
from tools.pii_suggest import kind_from_values, suggest

EMAILS = ["teresa.smith1@example.com", "  CALEB.JONES2@EXAMPLE.COM ", "ana3@example.org"]
PHONES = ["+1-786-503-2802x2357", "+1-212-555-0100", "(415) 555-0199", "+44 20 7946 0958"]


@pytest.mark.parametrize(("column", "type_kind", "kind", "rule"), [
    ("email", "varchar", "an email address", "tokenize"),
    ("contact_email_address", "text", "an email address", "tokenize"),
    ("e_mail", "varchar", "an email address", "tokenize"),
    ("phone", "varchar", "a phone number", "mask"),
    ("mobile_number", "text", "a phone number", "mask"),
    ("phone", "bigint", "a phone number", "tokenize"),  # mask needs a character column
    ("ssn", "char", "a national identity number", "tokenize"),
    ("passport_number", "varchar", "a national identity number", "tokenize"),
    ("national_id", "bigint", "a national identity number", "tokenize"),
    ("date_of_birth", "date", "a date of birth", "redact"),
    ("birthdate", "timestamp", "a date of birth", "redact"),
    ("dob", "date", "a date of birth", "redact"),
    ("place_of_birth", "varchar", "a place of birth", "redact"),
    ("home_address", "text", "a postal address", "redact"),
    ("address_line1", "varchar", "a postal address", "redact"),
    ("postal_code", "varchar", "a postal address", "redact"),
    ("first_name", "varchar", "a person's name", "redact"),
    ("surname", "varchar", "a person's name", "redact"),
    ("customer_name", "varchar", "a person's name", "redact"),
    ("ip_address", "varchar", "an IP address", "tokenize"),
    ("iban", "varchar", "a bank account or card number", "tokenize"),
    ("credit_card_number", "varchar", "a bank account or card number", "tokenize"),
    ("gender", "varchar", "sensitive personal data", "redact"),
    ("salary", "decimal", "sensitive personal data", "redact"),
])
def test_a_personal_column_name_gets_a_rule(column: str, type_kind: str, kind: str,
                                            rule: str) -> None:
    found = suggest("t", column, type_kind)
    assert found is not None
    assert (found.kind, found.rule, found.evidence, found.tentative) == (kind, rule, "name", False)
    assert found.comment == f"suggested: looks like {kind} (name)"


@pytest.mark.parametrize(("column", "type_kind"), [
    ("event_id", "bigint"), ("sport_type", "varchar"), ("location", "varchar"),
    ("seat_location", "varchar"), ("ticket_price", "decimal"), ("created_at", "timestamp"),
    ("email_verified", "boolean"),  # a flag about the email, not the email
    ("emailed_at", "timestamp"),
    ("product_name", "varchar"), ("team_name", "varchar"),
    ("mail_count", "integer"), ("hotel", "varchar"),
])
def test_other_column_names_get_none(column: str, type_kind: str) -> None:
    assert suggest("t", column, type_kind) is None


@pytest.mark.parametrize("part", PERSONAL_NAME_PARTS)
def test_every_name_schema_evolution_redacts_gets_a_suggestion(part: str) -> None:
    """A column added later with such a name lands redacted (shared.schema_evolution); the
    same name in ``spec init`` is never suggested clear."""
    assert suggest("t", part, "varchar") is not None


def test_a_bare_name_is_tentative_in_a_table_of_people_and_nothing_elsewhere() -> None:
    found = suggest("customer", "name", "varchar")
    assert found is not None and found.tentative and found.rule == "redact"
    assert found.comment == ("to consider: may be a person's name (name); "
                             "uncomment to redact it")
    assert suggest("sport_event", "name", "varchar") is None
    assert suggest("product", "name", "varchar") is None


@pytest.mark.parametrize("column", ["full_name", "phone", "birth_date"])
def test_a_personal_key_column_is_tokenized_not_redacted_or_masked(column: str) -> None:
    found = suggest("people", column, "varchar", is_key=True)
    assert found is not None and found.rule == "tokenize"


def test_sampled_values_find_personal_columns_whose_names_do_not_say() -> None:
    found = suggest("account", "login", "varchar", samples=EMAILS)
    assert found is not None
    assert (found.kind, found.rule, found.evidence) == ("an email address", "tokenize",
                                                        "sampled values")
    phone = suggest("account", "contact", "text", samples=PHONES)
    assert phone is not None and (phone.kind, phone.rule) == ("a phone number", "mask")
    ssn = suggest("account", "ref", "char", samples=["078-05-1120", "219-09-9999"])
    assert ssn is not None and ssn.kind == "a national identity number"
    ip = suggest("hits", "origin", "varchar", samples=["10.0.0.1", "2001:db8::1", "192.168.1.20"])
    assert ip is not None and ip.kind == "an IP address"
    cards = ["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009"]  # test numbers
    card = suggest("payment", "instrument", "varchar", samples=cards)
    assert card is not None and (card.kind, card.rule) == ("a bank account or card number",
                                                           "tokenize")
    iban = suggest("payment", "payee", "varchar", samples=["GB82 WEST 1234 5698 7654 32",
                                                            "DE89370400440532013000"])
    assert iban is not None and iban.kind == "a bank account or card number"


def test_values_that_agree_with_the_name_are_named_as_evidence() -> None:
    found = suggest("customer", "email", "varchar", samples=EMAILS)
    assert found is not None and found.evidence == "name and sampled values"
    assert found.comment == "suggested: looks like an email address (name and sampled values)"


def test_values_that_contradict_a_tentative_name_win() -> None:
    found = suggest("customer", "name", "varchar", samples=EMAILS)
    assert found is not None and not found.tentative and found.kind == "an email address"


@pytest.mark.parametrize("samples", [
    ["2024-01-15", "2023-12-31"],               # ISO dates are not phone numbers
    ["12345678", "87654321"],                   # plain numbers (no grouping)
    ["A-12-5", "B-3-77"],                       # seat locations
    ["Seattle, US", "Zürich, CH"],
    ["3.14159", "2.71828"],
    ["4111111111111112", "1234567890123456"],  # 16 digits failing the card check digit
    ["GB00WEST12345698765432"],                 # an IBAN shape with wrong check digits
    [],
    ["", "   "],
])
def test_values_that_are_not_personal_suggest_nothing(samples: list[str]) -> None:
    assert kind_from_values(samples) is None
    assert suggest("t", "info", "varchar", samples=samples) is None


def test_a_few_personal_values_among_many_others_are_not_enough() -> None:
    samples = [*EMAILS[:1], *(f"note {i}" for i in range(9))]
    assert kind_from_values(samples) is None


def test_values_are_only_looked_at_in_character_columns() -> None:
    assert suggest("t", "amount", "decimal", samples=PHONES) is None


def test_no_suggestion_carries_a_sampled_value() -> None:
    for column, samples in (("email", EMAILS), ("login", EMAILS), ("phone", PHONES),
                            ("contact", PHONES)):
        found = suggest("customer", column, "varchar", samples=samples)
        assert found is not None
        shown = f"{found!r} {found.comment}"
        for value in samples:
            assert value.strip() not in shown
            assert value.strip().lower() not in shown.lower()
