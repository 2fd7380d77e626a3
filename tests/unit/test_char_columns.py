"""``char(n)`` columns: Redshift's CHAR holds single-byte characters only ("Character types":
https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html, a CHAR column "can
only contain single-byte characters"), so a non-ASCII value is a reject with a reason (dead
letter), never a batch that fails on every retry."""

from __future__ import annotations

import tomllib

from shared.spec import parse_spec
from shared.transform import Transformer
from tests.factories import CHAR_COLUMNS_SPEC, DmsStream


def test_non_ascii_char_values_are_rejected_per_row_without_quoting_them() -> None:
    core = Transformer(parse_spec(tomllib.loads(CHAR_COLUMNS_SPEC)), b"k" * 32)
    stream = DmsStream()
    stream.add("country", "insert", {"code": "DE", "currency": "EUR", "name": "Deutschland"})
    stream.add("country", "insert", {"code": "FR", "currency": "\u20ac\u20ac", "name": "France"})
    stream.add("country", "insert", {"code": "IS", "currency": "ISK", "name": "\u00cdsland"})
    stream.add_raw(b'{"data": {"code": "ES", "currency": "\\u00a3", "name": "Espa\\u00f1a"}, '
                   b'"metadata": {"record-type": "data", "operation": "insert", '
                   b'"partition-key-type": "schema-table", "schema-name": "public", '
                   b'"table-name": "country", "timestamp": "2021-08-16T09:12:03.100950Z"}}')
    stream.add("country", "delete", {"code": "\u00d6S"})
    result = core.transform(stream.take())

    assert sorted(c.key for c in result.changes["country"]) == [("DE",), ("IS",)]
    reasons = [r.reason for r in result.rejects]
    assert reasons[:2] == [
        "country: column 'currency': char(n) holds single-byte (ASCII) characters only; "
        "declare the column varchar(n) in the spec"] * 2
    assert reasons[2].startswith("country: column 'code': char(n) holds single-byte")
    assert len(reasons) == 3
    assert all("\u20ac" not in r and "\u00a3" not in r and "\u00d6" not in r for r in reasons)


def test_tokens_in_char_64_are_hex() -> None:
    """A tokenized column becomes char(64): its value is an HMAC's hex digest, ASCII."""
    spec = parse_spec(tomllib.loads(CHAR_COLUMNS_SPEC + '[pii]\n"country.name" = "tokenize"\n'))
    core = Transformer(spec, b"k" * 32)
    stream = DmsStream()
    stream.add("country", "insert", {"code": "IS", "currency": "ISK", "name": "\u00cdsland"})
    [change] = core.transform(stream.take()).changes["country"]
    token = change.values["name"]
    assert len(token) == 64 and set(token) <= set("0123456789abcdef")
