"""PII rules suggested for a source column, from its name and (optionally) sampled values.

``spec init`` writes each suggestion into the drafted spec as a commented suggestion; the user
decides. Pure: names and values in, suggestions out. Sampled values only decide whether a
column looks personal; they are never returned, printed or logged (a suggestion names the
kind of data and whether the evidence was the name, the values or both).

Rules follow what the pipeline can do with each kind (``shared.pii``, docs/spec.md):

- values analysts join or count on (email, national id, IP address, bank account and card
  numbers): ``tokenize``, a keyed HMAC that stays joinable;
- phone numbers in a character column: ``mask`` (digits become ``*``, the shape stays);
- the rest (names, postal addresses, birth dates, gender, pay): ``redact``;
- a personal key column is tokenized: it cannot be redacted, and masked keys would collide.

The name words cover at least those with which schema evolution redacts a new column
(``shared.schema_evolution.PERSONAL_NAME_PARTS``), so a column is not suggested clear here and
redacted there.

A bare ``name`` column is ambiguous (a product's, an event's, a team's name) even in a table of
people, and values cannot tell a person's name from a stadium's; it gets a tentative
suggestion, written commented out, for the user to take or leave.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

STRING_KINDS = frozenset({"varchar", "char", "text"})
DATE_KINDS = frozenset({"date", "timestamp", "timestamptz"})
NUMBER_KINDS = frozenset({"smallint", "integer", "bigint", "decimal"})

# Share of non-empty sampled values that must look like a kind for the values to count.
VALUE_SHARE = 0.8

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
_PHONE_EXTENSION = re.compile(r"\s*(?:x|ext\.?|#)\s*\d{1,6}$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"^\+?[\d\s().\-/]+$")
_PHONE_GROUPS = re.compile(r"^\+|\d[\s.\-/]\d|\(\d+\)")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_SSN = re.compile(r"^\d{3}-\d{2}-\d{4}$")
_IPV4 = re.compile(r"^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$")
_IPV6 = re.compile(r"^[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}$", re.IGNORECASE)
_WORDS = re.compile(r"[a-z]+")

# Words of a table name that say its rows are people.
_PEOPLE = frozenset({
    "customer", "customers", "user", "users", "person", "persons", "people", "employee",
    "employees", "member", "members", "contact", "contacts", "patient", "patients", "client",
    "clients", "guest", "guests", "passenger", "passengers", "student", "students", "buyer",
    "buyers", "account", "accounts", "profile", "profiles", "subscriber", "subscribers",
    "applicant", "applicants", "staff", "author", "authors", "owner", "owners",
})
# "<word>_name" columns that name a person.
_PERSON_NAME_PREFIXES = frozenset({
    "first", "last", "full", "given", "family", "middle", "maiden", "customer", "client",
    "contact", "person", "employee", "patient", "member", "user", "buyer", "owner", "holder",
    "cardholder", "recipient", "sender", "guest", "passenger", "student", "legal", "birth",
})
_PERSON_NAME_WORDS = frozenset({"surname", "forename", "firstname", "lastname", "fullname",
                                "givenname", "familyname", "middlename", "maidenname"})
_PHONE_WORDS = frozenset({"phone", "telephone", "tel", "mobile", "cell", "cellphone", "fax",
                          "msisdn", "phonenumber", "mobilenumber"})
_ADDRESS_WORDS = frozenset({"address", "addr", "street", "postcode", "postal", "zip",
                            "zipcode", "housenumber", "streetaddress"})
_NATIONAL_ID_WORDS = frozenset({"ssn", "passport", "tin", "nin", "nino", "aadhaar", "cpf",
                                "pesel", "personnummer", "sin", "nhs", "license", "licence"})
_FINANCIAL_WORDS = frozenset({"iban", "card", "cardnumber", "creditcard", "pan"})
_FINANCIAL_JOINED = ("accountnumber", "bankaccount", "cardnumber", "creditcard", "debitcard",
                     "routingnumber", "sortcode")
# Special categories (GDPR art. 9) and pay: no analyst join needs them in clear.
_SENSITIVE_WORDS = frozenset({"gender", "sex", "salary", "income", "religion", "ethnicity",
                              "race", "diagnosis", "disability"})
_IBAN = re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$")
_CARD_CHARS = re.compile(r"^[\d\s-]+$")
_NATIONAL_ID_JOINED = ("socialsecurity", "nationalid", "nationalidentity", "taxid", "taxnumber",
                       "idcard", "identitycard", "personalid", "personalcode", "personalnumber",
                       "driverlicense", "driverslicense", "driverlicence", "driverslicence",
                       "drivinglicence", "drivinglicense", "passportnumber", "nhsnumber")


@dataclass(frozen=True)
class PiiSuggestion:
    """A rule suggested for ``table.column``: why (``kind``, ``evidence``) and how sure."""

    table: str
    column: str
    rule: str
    kind: str          # what the column looks like, e.g. "an email address"
    evidence: str      # "name", "sampled values" or "name and sampled values"
    tentative: bool = False  # written commented out: the user decides

    @property
    def comment(self) -> str:
        if self.tentative:
            return (f"to consider: may be {self.kind} ({self.evidence}); "
                    f"uncomment to {self.rule} it")
        return f"suggested: looks like {self.kind} ({self.evidence})"


def name_words(name: str) -> list[str]:
    """The lower-case words of an identifier (``address_line1`` -> address, line)."""
    return _WORDS.findall(name.lower())


def kind_from_name(table: str, column: str, type_kind: str) -> tuple[str, bool] | None:
    """The kind of personal data a column's name suggests, and whether that is tentative."""
    words = name_words(column)
    joined = "".join(words)
    word_set = set(words)
    is_string = type_kind in STRING_KINDS
    if ("email" in joined or "mail" in word_set) and is_string:
        return "an email address", False
    if "ip" in word_set and (len(words) == 1 or word_set & {"address", "addr"}) and is_string:
        return "an IP address", False
    if "ipaddress" in joined and is_string:
        return "an IP address", False
    string_or_number = is_string or type_kind in NUMBER_KINDS
    if (word_set & _PHONE_WORDS or "phone" in joined) and string_or_number:
        return "a phone number", False
    national_id = word_set & _NATIONAL_ID_WORDS or any(p in joined for p in _NATIONAL_ID_JOINED)
    if national_id and string_or_number:
        return "a national identity number", False
    financial = word_set & _FINANCIAL_WORDS or any(p in joined for p in _FINANCIAL_JOINED)
    if financial and string_or_number:
        return "a bank account or card number", False
    if word_set & _SENSITIVE_WORDS and (is_string or type_kind in NUMBER_KINDS
                                        or type_kind == "boolean"):
        return "sensitive personal data", False
    if "birth" in joined or word_set & {"dob", "birthday"}:
        if "place" in word_set or "city" in word_set or "country" in word_set:
            return ("a place of birth", False) if is_string else None
        if is_string or type_kind in DATE_KINDS or type_kind in NUMBER_KINDS:
            return "a date of birth", False
    if word_set & _ADDRESS_WORDS and is_string:
        return "a postal address", False
    if is_string and (word_set & _PERSON_NAME_WORDS or (
            len(words) >= 2 and words[-1] == "name" and words[-2] in _PERSON_NAME_PREFIXES)):
        return "a person's name", False
    if is_string and words == ["name"] and set(name_words(table)) & _PEOPLE:
        return "a person's name", True
    return None


def _phone_like(value: str) -> bool:
    text = _PHONE_EXTENSION.sub("", value.strip())
    if not _PHONE_CHARS.match(text) or _ISO_DATE.match(text):
        return False
    digits = sum(ch.isdigit() for ch in text)
    return 7 <= digits <= 15 and bool(_PHONE_GROUPS.search(text))


def _luhn(digits: str) -> bool:
    """The check digit of payment card numbers (ISO/IEC 7812-1)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _iban_like(text: str) -> bool:
    """An IBAN with valid check digits (ISO 13616: the rearranged number mod 97 is 1)."""
    compact = text.replace(" ", "").upper()
    if not _IBAN.match(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card_like(text: str) -> bool:
    if not _CARD_CHARS.match(text):
        return False
    digits = "".join(ch for ch in text if ch.isdigit())
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _value_kind(value: str) -> str | None:
    text = value.strip()
    if _EMAIL.match(text):
        return "an email address"
    if _card_like(text) or _iban_like(text):
        return "a bank account or card number"
    if _SSN.match(text):
        return "a national identity number"
    if _IPV4.match(text) or (":" in text and _IPV6.match(text) and text.count(":") >= 2):
        return "an IP address"
    if _phone_like(text):
        return "a phone number"
    return None


def kind_from_values(samples: Sequence[str]) -> str | None:
    """The kind most sampled values look like, if at least ``VALUE_SHARE`` of them do."""
    values = [v for v in samples if v.strip()]
    if not values:
        return None
    counts: dict[str, int] = {}
    for value in values:
        kind = _value_kind(value)
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
    if not counts:
        return None
    kind, hits = max(counts.items(), key=lambda item: item[1])
    return kind if hits >= VALUE_SHARE * len(values) else None


_RULES = {
    "an email address": "tokenize",
    "an IP address": "tokenize",
    "a national identity number": "tokenize",
    "a bank account or card number": "tokenize",
    "sensitive personal data": "redact",
    "a phone number": "mask",
    "a date of birth": "redact",
    "a place of birth": "redact",
    "a postal address": "redact",
    "a person's name": "redact",
}


def rule_for(kind: str, type_kind: str, is_key: bool) -> str:
    """The rule for a kind, within what the spec allows on the column: ``mask`` needs a
    character column; a key column cannot be redacted, and masking one would give different
    rows one key (every phone number of a shape masks alike), so a key is tokenized."""
    rule = _RULES[kind]
    if rule == "mask" and (type_kind not in STRING_KINDS or is_key):
        rule = "tokenize"
    if rule == "redact" and is_key:
        rule = "tokenize"
    return rule


def suggest(table: str, column: str, type_kind: str, is_key: bool = False,
            samples: Sequence[str] = ()) -> PiiSuggestion | None:
    """The suggested rule for one column, or None when neither its name nor its sampled
    values look personal. ``type_kind`` is the spec type's kind (``varchar``, ``date``, ...);
    ``samples`` are some of the column's values as text (only character columns are worth
    sampling)."""
    by_name = kind_from_name(table, column, type_kind)
    by_values = kind_from_values(samples) if type_kind in STRING_KINDS else None
    if by_name is not None and by_name[1] and by_values not in (None, by_name[0]):
        by_name = None  # values say more than an ambiguous name
    if by_name is not None:
        kind, tentative = by_name
        evidence = "name and sampled values" if by_values == kind else "name"
    elif by_values is not None:
        kind, tentative, evidence = by_values, False, "sampled values"
    else:
        return None
    return PiiSuggestion(table, column, rule_for(kind, type_kind, is_key), kind, evidence,
                         tentative)
