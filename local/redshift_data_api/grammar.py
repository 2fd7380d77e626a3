"""The Redshift grammar check run on every statement before PostgreSQL sees it.

PostgreSQL 15 accepts much that Redshift rejects (a richer MERGE, ``ON CONFLICT``,
``RETURNING``, ``E''`` strings, ...), so a test against PostgreSQL alone would not prove
that Redshift accepts our SQL. :func:`check_redshift_sql` rejects those constructs with
Redshift-like error text. Where the real wording is unknown the text keeps Redshift's
``ERROR: syntax error at or near "..."`` shape and adds a hint in parentheses.

sqlglot's ``redshift`` dialect parses the statement kinds it handles well (queries, DML,
MERGE, CREATE/ALTER TABLE) after the Redshift-only storage attributes it trips over are
stripped and literals are neutralised; other statements get the token-level checks only,
so valid Redshift that sqlglot does not know is not rejected.
"""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from local.redshift_data_api.copy_parse import parse_copy
from local.redshift_data_api.errors import RedshiftSqlError
from local.redshift_data_api.lexer import (
    Kind,
    LexError,
    Token,
    split_statements,
    tokenize,
    top_level_word,
)
from local.redshift_data_api.translate import strip_attributes, translate_to_postgres

__all__ = [
    "RedshiftSqlError",
    "check_outside_transaction_block",
    "check_redshift_sql",
    "translate_to_postgres",
]

logging.getLogger("sqlglot").setLevel(logging.ERROR)

_PARSED_KINDS = ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "ALTER")
_UNSUPPORTED_TYPES = {
    exp.DataType.Type.SERIAL, exp.DataType.Type.BIGSERIAL, exp.DataType.Type.SMALLSERIAL,
    exp.DataType.Type.JSON, exp.DataType.Type.JSONB, exp.DataType.Type.UUID,
    exp.DataType.Type.ARRAY, exp.DataType.Type.INET, exp.DataType.Type.MONEY,
    exp.DataType.Type.XML,
}
_MERGE_HINT = (
    "Redshift MERGE takes exactly one WHEN MATCHED THEN UPDATE SET ...|DELETE clause "
    "followed by exactly one WHEN NOT MATCHED THEN INSERT ... clause, without AND "
    "conditions, or REMOVE DUPLICATES"
)


def syntax_error(near: str | None, hint: str = "") -> RedshiftSqlError:
    """Redshift's syntax error text; ``near=None`` means the statement ended too early."""
    text = "ERROR: syntax error at end of input" if near is None else (
        f'ERROR: syntax error at or near "{near}"'
    )
    return RedshiftSqlError(f"{text} ({hint})" if hint else text)


def check_redshift_sql(sql: str) -> None:
    """Raise :class:`RedshiftSqlError` if Redshift would reject ``sql``.

    ``sql`` is one statement as sent to ExecuteStatement (parameters already bound).
    """
    try:
        statements = split_statements(tokenize(sql))
    except LexError as exc:
        raise RedshiftSqlError(f"ERROR: {exc}") from None
    if not statements:
        return
    if len(statements) > 1:
        raise RedshiftSqlError("ERROR: cannot insert multiple commands into a prepared statement")
    tokens = statements[0]
    sig = [t for t in tokens if t.significant]
    _check_tokens(tokens, sig)
    first = sig[0].upper
    new_type = _alter_column_type(sig)
    if new_type is not None and not sig[new_type].is_word("VARCHAR", "CHARACTER", "NVARCHAR"):
        raise RedshiftSqlError(
            f'ERROR: target data type "{sig[new_type].text.lower()}" is not supported '
            "(ALTER COLUMN ... TYPE only changes the size of a VARCHAR column)"
        )
    if first == "COPY":
        parse_copy(sql)
        return
    if first == "CREATE" and any(t.is_word("PROCEDURE") for t in sig[1:5]):
        for statement in procedure_body_statements(sql):
            check_redshift_sql(statement)
        return
    if first == "MERGE" or (first == "WITH" and top_level_word(sig, "MERGE") is not None):
        _check_merge(tokens, sig)
        return
    if first in _PARSED_KINDS and _parsed_by_sqlglot(sig):
        parsed = _parse(tokens)
        if isinstance(parsed, exp.Create | exp.Alter):
            _check_column_types(parsed)
        if isinstance(parsed, exp.Alter):
            _check_one_added_column(parsed)


_BODY_COMMANDS = ("MERGE", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "LOCK", "ALTER")
_BODY_CONTROL = ("THEN", "ELSE", "LOOP", "BEGIN")


def procedure_body_statements(sql: str) -> list[str]:
    """The SQL commands inside a ``CREATE PROCEDURE ... AS $$ ... $$`` body (after any
    IF ... THEN / ELSE / LOOP / BEGIN that opens them), for the grammar check: the PL/pgSQL
    around them (assignments, SELECT INTO, dynamic EXECUTE, CALL) is not checked."""
    body = next((t.text for t in tokenize(sql) if t.kind is Kind.DOLLAR_QUOTE), None)
    if body is None:
        return []
    tag_end = body.index("$", 1) + 1
    found = []
    for piece in split_statements(tokenize(body[tag_end:-tag_end])):
        sig = [t for t in piece if t.significant]
        for k, tok in enumerate(sig):
            if tok.is_word(*_BODY_COMMANDS) and (k == 0 or sig[k - 1].is_word(*_BODY_CONTROL)):
                start = tok.pos
                found.append("".join(t.text for t in piece if t.pos >= start))
                break
    return found


def _alter_column_type(sig: list[Token]) -> int | None:
    """Where the new type starts in ``ALTER TABLE t ALTER [COLUMN] c TYPE <type>``."""
    if len(sig) < 6 or not (sig[0].is_word("ALTER") and sig[1].is_word("TABLE")):
        return None
    for k in range(2, len(sig) - 1):
        if sig[k].is_word("TYPE") and any(t.is_word("ALTER") for t in sig[2:k]):
            return k + 1
    return None


def check_outside_transaction_block(sql: str) -> None:
    """Statements Redshift refuses inside a transaction block (a batch, or BEGIN ... END)."""
    try:
        sig = [t for t in tokenize(sql) if t.significant]
    except LexError:
        return
    if sig and _alter_column_type(sig) is not None:
        raise RedshiftSqlError(
            "ERROR: ALTER TABLE ALTER COLUMN cannot run inside a transaction block"
        )
    if sig and sig[0].is_word("VACUUM"):
        raise RedshiftSqlError("ERROR: VACUUM cannot run inside a transaction block")


def _parsed_by_sqlglot(sig: list[Token]) -> bool:
    """CREATE/ALTER only for tables: sqlglot knows little of Redshift's other DDL."""
    if sig[0].is_word("CREATE"):
        words = [t.upper for t in sig[1:6]]
        return "TABLE" in words and not any(w in ("FUNCTION", "PROCEDURE") for w in words)
    if sig[0].is_word("ALTER"):
        return len(sig) > 3 and sig[1].is_word("TABLE") and top_level_word(sig, "ADD") is not None
    return True


def _check_tokens(tokens: list[Token], sig: list[Token]) -> None:
    """PostgreSQL-only syntax visible at the token level."""
    first = sig[0].upper
    routine = first == "CREATE" and any(t.is_word("FUNCTION", "PROCEDURE") for t in sig[1:5])
    for k, tok in enumerate(tokens):
        if tok.kind is Kind.DOLLAR_QUOTE and not routine:
            raise syntax_error(tok.text[:20], "dollar-quoted strings are not supported")
        if tok.kind is Kind.POSITIONAL:
            raise RedshiftSqlError(f"ERROR: there is no parameter {tok.text}")
        if (tok.kind is Kind.STRING and k > 0 and tokens[k - 1].is_word("E")):
            raise syntax_error(tok.text[:20], "E'...' escape strings are not supported")
    for k, tok in enumerate(sig[:-1]):
        nxt = sig[k + 1]
        if tok.is_word("ON") and nxt.is_word("CONFLICT"):
            raise syntax_error("ON", "INSERT ... ON CONFLICT is not supported; use MERGE")
        if tok.is_word("ON") and nxt.is_word("COMMIT"):
            raise syntax_error("ON", "ON COMMIT is not supported")
        if tok.is_word("IF") and nxt.is_word("NOT") and first == "ALTER":
            raise syntax_error("NOT", "ADD COLUMN IF NOT EXISTS is not supported")
    returning = top_level_word(sig, "RETURNING")
    if first in ("INSERT", "UPDATE", "DELETE", "MERGE", "WITH") and returning is not None:
        raise syntax_error("RETURNING", "RETURNING is not supported")
    if first == "CREATE" and any(t.is_word("INDEX") for t in sig[1:3]):
        raise syntax_error("INDEX", "Redshift has no indexes")


def _neutral_sql(tokens: list[Token]) -> str:
    """The statement for sqlglot: storage attributes stripped, literals reduced to 's'.

    Literal contents never matter to the grammar, and reducing them sidesteps any
    difference between sqlglot's and Redshift's backslash handling.
    """
    parts: list[str] = []
    for tok in strip_attributes(tokens):
        if tok.kind is Kind.STRING:
            parts.append("'s'")
        elif tok.kind is Kind.COMMENT:
            parts.append(" ")
        else:
            parts.append(tok.text)
    return "".join(parts)


def _parse(tokens: list[Token]) -> exp.Expr:
    sql = _neutral_sql(tokens)
    try:
        parsed = sqlglot.parse_one(sql, read="redshift")
    except ParseError as exc:
        near = ""
        if exc.errors:
            near = str(exc.errors[0].get("highlight") or "")
        raise syntax_error(near or sql[:20]) from None
    return parsed


def _check_column_types(parsed: exp.Expression) -> None:
    table = parsed.find(exp.Table)
    table_name = table.name if table is not None else ""
    for col in parsed.find_all(exp.ColumnDef):
        kind = col.args.get("kind")
        if isinstance(kind, exp.DataType) and kind.this in _UNSUPPORTED_TYPES:
            type_name = kind.sql("postgres").lower()
            raise RedshiftSqlError(
                f'ERROR: Column "{table_name}.{col.name}" has unsupported type "{type_name}".'
            )


def _check_one_added_column(alter: exp.Alter) -> None:
    """Redshift's ALTER TABLE takes one ADD [COLUMN] per statement (the ALTER TABLE page,
    https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html: "ADD [ COLUMN ]
    column_name column_type ..." with no list form), PostgreSQL a comma-separated list."""
    added = [a for a in alter.args.get("actions") or [] if isinstance(a, exp.ColumnDef)]
    if len(added) > 1:
        raise syntax_error(",", "ALTER TABLE adds one column per statement")


def _check_merge_source_and_target(merge: exp.Merge) -> None:
    """The MERGE page (https://docs.aws.amazon.com/redshift/latest/dg/r_MERGE.html):
    ``MERGE INTO target_table USING source_table [ [ AS ] alias ]``: the source is a
    temporary or permanent table (AWS re:Post "merge statement with filter": not a view,
    subquery or CTE), and only the source takes an alias."""
    using = merge.args.get("using")
    if isinstance(using, exp.Subquery | exp.Select | exp.Union):
        raise syntax_error("(", "the source of a MERGE must be a table, not a subquery")
    target = merge.this
    if isinstance(target, exp.Table) and target.alias:
        raise syntax_error(target.alias, "a MERGE target table takes no alias")


def _check_merge(tokens: list[Token], sig: list[Token]) -> None:
    if sig[0].is_word("WITH"):
        raise syntax_error("MERGE", "a WITH clause cannot precede MERGE")
    for k, tok in enumerate(sig[:-1]):
        if tok.is_word("BY") and sig[k + 1].is_word("SOURCE", "TARGET"):
            raise syntax_error("BY", _MERGE_HINT)
        if tok.is_word("DO") and sig[k + 1].is_word("NOTHING"):
            raise syntax_error("DO", _MERGE_HINT)
    remove_duplicates = (
        len(sig) > 2 and sig[-2].is_word("REMOVE") and sig[-1].is_word("DUPLICATES")
    )
    if remove_duplicates:
        if top_level_word(sig, "WHEN") is not None:
            raise syntax_error("REMOVE", _MERGE_HINT)
        end = tokens.index(sig[-2])
        # Parse as an ordinary MERGE so the source can be checked like any other.
        filler = tokenize(" WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (1)")
        tokens = tokens[:end] + filler
    parsed = _parse(tokens)
    if not isinstance(parsed, exp.Merge):
        raise syntax_error("MERGE")
    whens_node = parsed.args.get("whens")
    whens = list(whens_node.expressions) if whens_node is not None else []
    for when in whens:
        if when.args.get("condition") is not None:
            raise syntax_error("AND", _MERGE_HINT)
    shape = [(bool(w.args.get("matched")), _then_kind(w)) for w in whens]
    if len(shape) != 2 or not shape[0][0] or shape[1][0]:
        raise syntax_error("WHEN" if len(shape) > 1 else None, _MERGE_HINT)
    if shape[0][1] not in ("UPDATE", "DELETE") or shape[1][1] != "INSERT":
        raise syntax_error("THEN", _MERGE_HINT)
    _check_merge_source_and_target(parsed)
    _check_source_not_target(parsed)


def _then_kind(when: exp.Expression) -> str:
    then = when.args.get("then")
    if isinstance(then, exp.Update):
        return "UPDATE"
    if isinstance(then, exp.Insert):
        return "INSERT"
    if isinstance(then, exp.Var):
        return str(then.this).upper()
    return type(then).__name__.upper()


def _check_source_not_target(merge: exp.Merge) -> None:
    target = merge.this
    using = merge.args.get("using")
    if not isinstance(target, exp.Table) or using is None:
        return
    name, schema = target.name.lower(), target.db.lower()
    for table in using.find_all(exp.Table):
        same_schema = not schema or not table.db or table.db.lower() == schema
        if table.name.lower() == name and same_schema:
            raise RedshiftSqlError(
                f'ERROR: Target table "{target.name}" cannot be referenced in the source of '
                "MERGE (the source must be a table, view or subquery that does not use the "
                "target)"
            )

