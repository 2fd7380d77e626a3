"""The PII functions themselves (``shared.pii``): masks, tokens, digests, redaction."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from shared.pii import mask_digits, pii_function, tokenizer, unkeyed_sha256

KEY = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)


# --- mask_digits ----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "masked"), [
    ("+1-786-503-2802x2357", "+*-***-***-****x****"),  # the README's example
    ("(555) 010 4477", "(***) *** ****"),
    ("no digits here", "no digits here"),
    ("", ""),
])
def test_mask_turns_every_ascii_digit_into_a_star_and_keeps_the_rest(value: str,
                                                                      masked: str) -> None:
    assert mask_digits(value) == masked


def test_mask_covers_digits_of_other_scripts_too() -> None:
    # Arabic-Indic and full-width digits are decimal digits (Unicode category Nd) and would
    # give the number away as surely as ASCII ones; a superscript two is not a digit.
    assert mask_digits("\u0660\u0661\u0662-\uff13\uff14 \u00b2é") == "***-** \u00b2é"


def test_mask_keeps_the_length_and_the_layout() -> None:
    value = "+44 20 7946 0958"
    masked = mask_digits(value)
    assert len(masked) == len(value)
    assert [c for c in masked if c != "*"] == [c for c in value if not c.isdigit()]


# --- tokens ---------------------------------------------------------------------------------

def test_token_is_hmac_sha256_of_the_trimmed_lower_cased_value_as_hex() -> None:
    expected = hmac.new(KEY, b"teresa@example.com", hashlib.sha256).hexdigest()
    tokenize = tokenizer(KEY)
    assert tokenize("teresa@example.com") == expected
    assert tokenize("  Teresa@Example.COM ") == expected
    assert len(expected) == 64 and expected == expected.lower()


def test_token_is_deterministic_across_tokenizers_and_depends_on_the_key() -> None:
    assert tokenizer(KEY)("a@b.example") == tokenizer(KEY)("a@b.example")
    other_key = bytes(reversed(KEY))
    assert tokenizer(other_key)("a@b.example") != tokenizer(KEY)("a@b.example")
    assert tokenizer(KEY)("a@b.example") != tokenizer(KEY)("c@b.example")


def test_token_of_non_ascii_text_hashes_its_utf8_bytes() -> None:
    expected = hmac.new(KEY, "zoë@example.com".encode(), hashlib.sha256).hexdigest()
    assert tokenizer(KEY)("Zoë@Example.com") == expected


def test_a_short_hmac_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        tokenizer(b"fifteen-bytes!!")


# --- unkeyed digest -------------------------------------------------------------------------

def test_unkeyed_sha256_is_plain_sha256_of_the_normalized_value() -> None:
    # FIPS 180-2, appendix B.1: SHA-256("abc").
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert unkeyed_sha256("abc") == abc
    assert unkeyed_sha256(" ABC ") == abc


# --- rule lookup ----------------------------------------------------------------------------

def test_each_rule_applies_its_function() -> None:
    value = " Teresa@Example.com "
    assert pii_function("tokenize", KEY)(value) == tokenizer(KEY)(value)
    assert pii_function("mask", None)("+1 555") == "+* ***"
    assert pii_function("redact", None)(value) is None
    assert pii_function("sha256", None)(value) == unkeyed_sha256(value)


def test_tokenize_without_a_key_and_unknown_rules_are_errors() -> None:
    with pytest.raises(ValueError, match="no HMAC key"):
        pii_function("tokenize", None)
    with pytest.raises(ValueError, match="unknown PII rule 'scramble'"):
        pii_function("scramble", KEY)
