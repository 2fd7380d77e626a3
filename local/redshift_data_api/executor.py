"""Running one Redshift statement on PostgreSQL, and the Data API's typing of its result.

Connections are set up like a Redshift session: backslash escapes in string literals
(``standard_conforming_strings = off``), serializable transactions, UTC. Errors come back
as :class:`ExecutionFailed` carrying the text Redshift would put in ``Error``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader

from local.redshift_data_api.copy_parse import parse_copy
from local.redshift_data_api.errors import RedshiftSqlError
from local.redshift_data_api.grammar import (
    check_outside_transaction_block,
    check_redshift_sql,
    translate_to_postgres,
)
from local.redshift_data_api.lexer import LexError, tokenize
from local.redshift_data_api.s3_copy import run_copy
from local.redshift_data_api.translate import BYTES_DOMAIN, VARBYTE_DOMAIN

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# plan_cache_mode: Redshift plans every query for the data it has; PostgreSQL would switch a
# procedure's statements to a generic plan after five runs (nested loops over tables that
# have grown since), which made the stand-in's apply slow down with the warehouse's size.
SESSION_OPTIONS = (
    "-c standard_conforming_strings=off -c escape_string_warning=off "
    "-c default_transaction_isolation=serializable -c TimeZone=UTC -c DateStyle=ISO,MDY "
    "-c extra_float_digits=1 -c bytea_output=hex -c plan_cache_mode=force_custom_plan"
)
# Loaded as PostgreSQL's text output, which is what the Data API returns for them.
_TEXT_TYPES = (
    "numeric", "date", "time", "timetz", "timestamp", "timestamptz", "interval", "json",
    "jsonb", "uuid", "float4", "inet", "cidr", "money", "oid",
)
_PRECISION = {"int2": 5, "int4": 10, "int8": 19, "float4": 8, "float8": 17, "bool": 1,
              "date": 13, "timestamp": 29, "timestamptz": 35, "time": 15, "timetz": 21}
_SIGNED = {"int2", "int4", "int8", "float4", "float8", "numeric"}
_STRINGS = {"varchar", "bpchar", "text", "name", "char"}
TX_CONTROL = ("BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT")
# Run outside of BEGIN/COMMIT when alone (PostgreSQL refuses them in a transaction block).
NO_TRANSACTION = ("VACUUM", "CREATE DATABASE", "DROP DATABASE", "ALTER DATABASE")

_DOMAIN_USE = re.compile(r"\bpublic\.(" + BYTES_DOMAIN + "|" + VARBYTE_DOMAIN + r")(\d+)\b")
_DOMAIN_NAME = re.compile("(" + BYTES_DOMAIN + "|" + VARBYTE_DOMAIN + r")(\d+)")
_DOMAIN_BASE = {BYTES_DOMAIN: "VARCHAR({length})", VARBYTE_DOMAIN: "bytea"}
_DOMAIN_TYPE = {BYTES_DOMAIN: "character varying", VARBYTE_DOMAIN: "varbyte"}


class HexLoader(TextLoader):
    """VARBYTE values as Redshift prints them: hexadecimal digits, without PostgreSQL's
    ``\\x`` (Amazon Redshift Database Developer Guide, "VARBYTE type": "Amazon Redshift uses
    the hex format to print VARBYTE values", ``select from_hex('6162')`` prints ``6162``)."""

    def load(self, data: Any) -> str:
        text = str(super().load(data))
        return text[2:] if text.startswith("\\x") else text

S3Factory = Callable[[str | None], "S3Client"]


class ExecutionFailed(Exception):
    """A statement failed; ``error`` is the Redshift-like ``Error`` text."""

    def __init__(self, error: str, cancelled: bool = False) -> None:
        super().__init__(error)
        self.error = error
        self.cancelled = cancelled


@dataclass
class ResultSet:
    columns: list[dict[str, Any]]
    rows: list[tuple[Any, ...]]
    size: int = 0


@dataclass
class Outcome:
    rows: int = 0
    result: ResultSet | None = None

    @property
    def has_result_set(self) -> bool:
        return self.result is not None


def connect(conninfo: str, database: str,
            user: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
    """A Redshift-like session on ``database`` (as ``user``, else the conninfo's user);
    raises :class:`ExecutionFailed`."""
    extra: dict[str, Any] = {"user": user} if user is not None else {}
    try:
        conn = psycopg.connect(conninfo, dbname=database, options=SESSION_OPTIONS,
                               autocommit=True, **extra)
    except psycopg.OperationalError as exc:
        text = str(exc)
        match = re.search(r"FATAL:\s+(.*)", text)
        message = match.group(1).strip() if match else text
        # PostgreSQL says "role"; Redshift says "user".
        message = re.sub(r'^role (".*") does not exist$', r"user \1 does not exist", message)
        raise ExecutionFailed(f"FATAL: {message}" if match else text) from None
    for name in _TEXT_TYPES:
        conn.adapters.register_loader(name, TextLoader)
    conn.adapters.register_loader("bytea", HexLoader)
    return conn


def first_word(sql: str, count: int = 1) -> str:
    """The first ``count`` words of ``sql``, upper case, space separated."""
    try:
        words = [t.upper for t in tokenize(sql) if t.significant][:count]
    except LexError:
        return ""
    return " ".join(words)


def target_table(sql: str) -> str:
    """The table a DML statement writes (for error texts); best effort."""
    try:
        sig = [t for t in tokenize(sql) if t.significant]
    except LexError:
        return "unknown"
    for k, tok in enumerate(sig[:-1]):
        if tok.is_word("INTO", "UPDATE", "LOCK", "COPY", "TABLE") or (
            tok.is_word("FROM") and k > 0 and sig[k - 1].is_word("DELETE")
        ):
            parts = [sig[k + 1].text]
            j = k + 2
            while j + 1 < len(sig) and sig[j].is_op("."):
                parts.append(sig[j + 1].text)
                j += 2
            return ".".join(parts)
    return "unknown"


def _ensure_domains(conn: psycopg.Connection[tuple[Any, ...]], pg_sql: str,
                    create_domain: Callable[[bytes], None] | None = None) -> None:
    """Create the byte-limited VARCHAR and VARBYTE domains ``pg_sql`` uses (see
    ``translate``).

    With ``create_domain`` (authenticated requests) the domain is created by the server's own
    user, outside the statement: it belongs to the stand-in, not to the requesting user, who
    may lack CREATE on schema public. Otherwise in a savepoint, so a concurrent creation of
    the same domain (the loser gets a duplicate error) does not abort the statement's
    transaction.
    """
    for prefix, length in sorted({(p, int(n)) for p, n in _DOMAIN_USE.findall(pg_sql)}):
        name = f"{prefix}{length}"
        if conn.execute("SELECT 1 FROM pg_type WHERE typname = %s AND typnamespace = "
                        "'public'::regnamespace", (name,)).fetchone():
            continue
        in_tx = conn.info.transaction_status is not TransactionStatus.IDLE
        base = _DOMAIN_BASE[prefix].format(length=length)
        create = (f"CREATE DOMAIN public.{name} AS {base} "
                  f"CHECK (octet_length(VALUE) <= {length})").encode()
        try:
            if create_domain is not None:
                create_domain(create)
            elif in_tx:
                with conn.transaction():
                    conn.execute(create)
            else:
                conn.execute(create)
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            pass


def error_text(exc: psycopg.Error, sql: str, pid: int, query_id: int) -> str:
    """What Redshift would report for the PostgreSQL error ``exc``."""
    if isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
        return (
            "ERROR: 1023 DETAIL: Serializable isolation violation on table - "
            f"{target_table(sql)}, transactions forming the cycle are: {pid} (pid:{pid})"
        )
    domain = _DOMAIN_NAME.fullmatch(exc.diag.datatype_name or "") if exc.diag else None
    if isinstance(exc, psycopg.errors.CheckViolation) and domain:
        kind = _DOMAIN_TYPE[domain.group(1)]
        return f"ERROR: value too long for type {kind}({domain.group(2)})"
    if isinstance(exc, psycopg.errors.CardinalityViolation):
        return "ERROR: Found multiple matches to update the same tuple."
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return f"ERROR: Query ({query_id}) cancelled on user's request"
    message = exc.diag.message_primary if exc.diag else None
    return f"ERROR: {(message or str(exc)).strip()}"


# PostgreSQL type names that Redshift reports under its own name: Redshift has no TEXT
# (it stores VARCHAR) and calls JSON values SUPER, binary VARBYTE; an untyped literal or NULL
# is a VARCHAR whose length is that of its value.
_REDSHIFT_TYPE_NAMES = {"text": "varchar", "unknown": "varchar", "json": "super",
                        "jsonb": "super", "bytea": "varbyte"}


def redshift_type_name(pg_type_name: str) -> str:
    return _REDSHIFT_TYPE_NAMES.get(pg_type_name, pg_type_name)


def _value_width(values: list[Any]) -> int:
    """The VARCHAR length Redshift gives an expression without one: its longest value in
    bytes (at least 1)."""
    return max([1, *(len(str(v).encode("utf-8")) for v in values if v is not None)])


def _numeric_shape(values: list[Any]) -> tuple[int, int]:
    """(precision, scale) of a NUMERIC expression without a declared one, from its values."""
    precision, scale = 1, 0
    for value in values:
        if value is None:
            continue
        digits = str(value).lstrip("-")
        whole, _, fraction = digits.partition(".")
        scale = max(scale, len(fraction))
        precision = max(precision, len(whole.lstrip("0") or "0") + len(fraction))
    return max(precision, scale), scale


def column_metadata(col: psycopg.Column, pg_type_name: str,
                    values: list[Any]) -> dict[str, Any]:
    """The Data API's ``ColumnMetadata`` of one result column, with Redshift's type name."""
    type_name = redshift_type_name(pg_type_name)
    precision = _PRECISION.get(type_name, 0)
    scale = 0
    if type_name == "numeric":
        if col.precision is not None:
            precision, scale = col.precision, col.scale or 0
        else:
            precision, scale = _numeric_shape(values)
    elif type_name in ("varchar", "bpchar"):
        precision = col.display_size or _value_width(values)
    return {
        "isCaseSensitive": type_name in _STRINGS,
        "isCurrency": False,
        "isSigned": type_name in _SIGNED,
        "label": col.name,
        "name": col.name,
        "nullable": 1,
        "precision": precision,
        "scale": scale,
        "schemaName": "",
        "tableName": "",
        "typeName": type_name,
        "length": 0,
    }


def _result(cur: psycopg.Cursor[tuple[Any, ...]]) -> ResultSet:
    assert cur.description is not None
    types = cur.connection.adapters.types
    type_names = []
    float4_at = []
    for k, col in enumerate(cur.description):
        info = types.get(col.type_code)
        type_names.append(info.name if info is not None else "unknown")
        if type_names[-1] == "float4":
            float4_at.append(k)
    rows = cur.fetchall()
    if float4_at:  # loaded as text so that 1.1 stays 1.1 and not 1.100000023841858
        rows = [tuple(float(v) if k in float4_at and v is not None else v
                      for k, v in enumerate(row)) for row in rows]
    size = sum(len(str(v)) for row in rows for v in row if v is not None)
    columns = [column_metadata(col, type_names[k], [row[k] for row in rows])
               for k, col in enumerate(cur.description)]
    return ResultSet(columns=columns, rows=rows, size=size)


def execute(conn: psycopg.Connection[tuple[Any, ...]], sql: str, *, strict: bool,
            s3: S3Factory, query_id: int, in_block: bool = False,
            create_domain: Callable[[bytes], None] | None = None) -> Outcome:
    """Run one Redshift statement on ``conn`` inside whatever transaction it is in.

    ``in_block`` tells whether Redshift would see the statement inside a transaction
    block (a batch, or an explicit BEGIN); a single ExecuteStatement is not.
    """
    try:
        if strict:
            check_redshift_sql(sql)
        if in_block:
            check_outside_transaction_block(sql)
        if first_word(sql) == "COPY":
            return Outcome(rows=run_copy(conn, sql, s3(parse_copy(sql).region)))
        outcome = Outcome()
        def schemas() -> frozenset[str]:
            rows = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
            return frozenset(str(r[0]) for r in rows)

        for pg_sql in translate_to_postgres(sql, functools.cache(schemas)):
            _ensure_domains(conn, pg_sql, create_domain)
            with conn.cursor() as cur:
                cur.execute(pg_sql.encode("utf-8"), prepare=False)
                if cur.description is not None:
                    outcome.result = _result(cur)
                    outcome.rows = len(outcome.result.rows)
                else:
                    outcome.result = None
                    outcome.rows = max(cur.rowcount, 0)
        return outcome
    except RedshiftSqlError as exc:
        raise ExecutionFailed(str(exc)) from None
    except psycopg.Error as exc:
        text = error_text(exc, sql, conn.info.backend_pid, query_id)
        raise ExecutionFailed(
            text, cancelled=isinstance(exc, psycopg.errors.QueryCanceled)
        ) from None


def run_control(conn: psycopg.Connection[tuple[Any, ...]], command: str, sql_for_errors: str,
                query_id: int) -> None:
    """BEGIN / COMMIT / ROLLBACK issued by us; a failing COMMIT is a statement failure."""
    try:
        conn.execute(command)
    except psycopg.Error as exc:
        raise ExecutionFailed(
            error_text(exc, sql_for_errors, conn.info.backend_pid, query_id),
            cancelled=isinstance(exc, psycopg.errors.QueryCanceled),
        ) from None

