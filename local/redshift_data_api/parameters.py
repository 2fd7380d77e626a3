"""Data API named parameters (``:name``) bound into SQL text.

The real service binds the values server-side, always as strings that Redshift converts
implicitly to the type the context needs. We get the same effect by substituting each
``:name`` with an untyped string literal (escaped the way Redshift escapes, since every
connection runs with ``standard_conforming_strings = off``): PostgreSQL resolves an untyped
literal to the type its context needs, just like Redshift's implicit conversion.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from local.redshift_data_api.lexer import Kind, LexError, quote_literal, tokenize

_NAME = re.compile(r"[0-9a-zA-Z_]+")


class ParameterError(ValueError):
    """The request's parameters do not fit its SQL (a ValidationException)."""


def parse_parameters(raw: Any) -> dict[str, str]:
    """Validate the request's ``Parameters`` list and return name -> value."""
    if raw is None:
        return {}
    if not isinstance(raw, list) or not raw:
        raise ParameterError("Parameters must be a non-empty list of {name, value} objects.")
    values: dict[str, str] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise ParameterError("Each parameter must be an object with a name and a value.")
        name, value = item.get("name"), item.get("value")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ParameterError(f"Parameter name must match [0-9a-zA-Z_]+: {name!r}.")
        if not isinstance(value, str):
            raise ParameterError(f"Parameter '{name}' must have a string value.")
        if value == "":
            raise ParameterError(
                f"Parameter '{name}' has an empty value; parameter values must not be empty."
            )
        if name in values:
            raise ParameterError(f"Parameter '{name}' is specified more than once.")
        values[name] = value
    return values


def referenced_names(sql: str) -> list[str]:
    """The ``:name`` placeholders in ``sql`` outside literals and comments."""
    try:
        return [t.text[1:] for t in tokenize(sql) if t.kind is Kind.PARAM]
    except LexError:
        return []


def bind(sql: str, values: Mapping[str, str]) -> str:
    """Substitute every ``:name`` in ``sql`` with its value as a string literal.

    Without parameters the SQL is returned untouched (a stray ``:name`` then fails in the
    database, as on Redshift). With parameters, every placeholder must have a value.
    """
    if not values:
        return sql
    try:
        tokens = tokenize(sql)
    except LexError:
        return sql  # the grammar check / database reports the lexical error
    out: list[str] = []
    for tok in tokens:
        if tok.kind is Kind.PARAM:
            name = tok.text[1:]
            if name not in values:
                raise ParameterError(
                    f"The SQL references parameter ':{name}', which is not in Parameters."
                )
            out.append(quote_literal(values[name]))
        else:
            out.append(tok.text)
    return "".join(out)


def check_all_used(sqls: Sequence[str], values: Mapping[str, str]) -> None:
    """Every supplied parameter must be referenced by at least one statement."""
    used = {name for sql in sqls for name in referenced_names(sql)}
    unused = [name for name in values if name not in used]
    if unused:
        raise ParameterError(
            f"Parameter '{unused[0]}' is not referenced by the SQL; every parameter in "
            "Parameters must be used."
        )
