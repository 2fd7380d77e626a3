"""A source database's catalog (tables, columns, types, keys) and its mapping to spec types.

``read_postgres_catalog`` reads PostgreSQL's system catalogs (the edge); the rest is pure:
``map_type`` turns a source column into a spec type (or says why it cannot), and
``spec_name`` into a spec identifier. ``spec init`` and ``spec check`` share both, so a spec
that ``spec init`` wrote has no differences from the source it was made from.

Type mapping (docs/spec.md, "Making a spec from your database"), following what DMS sends for
each PostgreSQL type ("Source data types for PostgreSQL" in "Using a PostgreSQL database as an
AWS DMS source", https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html):

- integers, real, double precision, boolean, date, time, timestamp(tz), uuid: the same type;
- numeric(p,s) with p <= 38: decimal(p,s); DMS sends a precision of 39 or more as a string,
  beyond Redshift's DECIMAL (38 digits): unsupported, map it by hand;
- numeric without precision: decimal(38,10). DMS gives an unbounded numeric NUMERIC(28,6)
  unless the endpoint setting MapUnboundedNumericAsString is on; (38,10) holds every such
  value and 10 fractional digits of the string form; narrow it when the range is known;
- char(n) -> char(n), varchar(n) -> varchar(n) (n as declared: PostgreSQL counts characters,
  Redshift bytes, so text that is not mostly ASCII may need a wider column), varchar without
  a length and text -> text;
- json, jsonb and every array -> super; bytea -> varbyte; an enum -> varchar of its longest
  label's UTF-8 length rounded up to a power of two (at least 16), so a new label of similar
  length still fits; a domain -> its base type's mapping;
- anything else (interval, money, geometric and network types, xml, tsvector, ranges,
  composite types, time with time zone, ...) is unsupported: the column is named with what to
  do (leave it out or map it to a type that holds the text DMS sends).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_SPEC_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,126}$")
_NUMERIC = re.compile(r"^numeric\((\d+),(-?\d+)\)$")
_SIZED = re.compile(r"^(character varying|character|bit varying|bit)\((\d+)\)$")
_PRECISION = re.compile(r"\(\d+\)")
MAX_DECIMAL_PRECISION = 38
MAX_CHAR_LENGTH = 4096
MAX_VARCHAR_BYTES = 65535
UNBOUNDED_NUMERIC = "decimal(38,10)"

_SAME_NAME = {
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "real": "real",
    "double precision": "double",
    "boolean": "boolean",
    "date": "date",
    "uuid": "uuid",
    "text": "text",
    "character varying": "text",
    "json": "super",
    "jsonb": "super",
    "bytea": "varbyte",
    "time without time zone": "time",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    '"char"': "char(1)",
}


@dataclass(frozen=True)
class SourceColumn:
    """A column as the source's catalog describes it.

    ``type_text`` is the declared type as the database prints it (``character varying(64)``,
    ``integer[]``, ``mood``); ``base_type`` the same for the type it stores (a domain's base
    type, else ``type_text``); ``category`` PostgreSQL's ``typcategory`` of that type (``A``
    arrays, ``E`` enums); ``enum_labels`` an enum's labels.
    """

    name: str
    type_text: str
    base_type: str = ""
    category: str = ""
    enum_labels: tuple[str, ...] = ()
    not_null: bool = False

    @property
    def stored_type(self) -> str:
        return self.base_type or self.type_text


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[SourceColumn, ...]
    key: tuple[str, ...] = ()  # the primary key; empty when the table has none
    # Unique indexes on NOT NULL columns only (no expressions, no predicates): the key a table
    # without a primary key could name.
    unique_keys: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    replica_identity_full: bool = False
    partitioned: bool = False  # a PostgreSQL partitioned table (its partitions are its rows)

    def column(self, name: str) -> SourceColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


@dataclass(frozen=True)
class SourceCatalog:
    engine: str
    database: str
    schema: str
    tables: dict[str, SourceTable] = field(default_factory=dict)


@dataclass(frozen=True)
class TypeMapping:
    """A source column's spec type, with a note for the spec; or ``problem`` when it has none."""

    spec_type: str | None
    note: str = ""
    problem: str = ""


def spec_name(name: str) -> str | None:
    """The spec identifier of a source name, or None when it has none.

    Lower-cased: the pipeline matches DMS's names case-insensitively by default
    (``pipeline.source_names``), so ``Orders`` in the source is ``orders`` in the spec. A name
    with other characters (spaces, dashes, non-ASCII) has no spec identifier.
    """
    lowered = name.lower()
    if not _SPEC_IDENTIFIER.match(lowered) or lowered.startswith("_cdc_"):
        return None
    return lowered


def enum_length(labels: tuple[str, ...]) -> int:
    """Longest label in UTF-8 bytes, rounded up to a power of two, at least 16."""
    longest = max((len(label.encode("utf-8")) for label in labels), default=1)
    size = 16
    while size < longest:
        size *= 2
    return min(size, MAX_VARCHAR_BYTES)


def _unsupported(type_text: str, why: str = "") -> TypeMapping:
    reason = f"type {type_text} has no spec type" + (f" ({why})" if why else "")
    return TypeMapping(None, problem=reason)


def map_type(column: SourceColumn, engine: str = "postgresql") -> TypeMapping:
    """The spec type of a source column of ``engine`` (``postgresql``: the module docstring's
    table; ``mysql``: ``tools.mysql_catalog``)."""
    if engine == "mysql":
        from tools.mysql_catalog import map_mysql_type

        return map_mysql_type(column)
    return map_postgres_type(column)


def map_postgres_type(column: SourceColumn) -> TypeMapping:
    """The spec type of a PostgreSQL column (see the module docstring for the table)."""
    declared = column.type_text
    stored = column.stored_type.lower()
    domain = f"domain {declared} over {column.stored_type}" if column.base_type and \
        column.base_type != declared else ""
    if column.category == "A" or stored.endswith("[]"):
        return TypeMapping("super", note=domain or f"array {declared}")
    if column.category == "E" or column.enum_labels:
        if not column.enum_labels:
            return _unsupported(declared, "an enum without labels")
        size = enum_length(column.enum_labels)
        return TypeMapping(f"varchar({size})", note=f"enum {declared}")
    unsized = _PRECISION.sub("", stored)
    if unsized in _SAME_NAME and (stored == unsized or unsized.startswith(("time", "timestamp"))):
        return TypeMapping(_SAME_NAME[unsized], note=domain)
    if stored == "numeric":
        return TypeMapping(UNBOUNDED_NUMERIC, note=domain or "numeric without precision")
    numeric = _NUMERIC.match(stored)
    if numeric:
        precision, scale = int(numeric.group(1)), int(numeric.group(2))
        if precision > MAX_DECIMAL_PRECISION:
            return _unsupported(declared, f"more than {MAX_DECIMAL_PRECISION} digits: DMS sends "
                                          "it as a string and Redshift's DECIMAL holds 38")
        if not 0 <= scale <= precision:
            return _unsupported(declared, "a scale outside 0..precision")
        return TypeMapping(f"decimal({precision},{scale})", note=domain)
    sized = _SIZED.match(stored)
    if sized and sized.group(1) in ("character varying", "character"):
        length = int(sized.group(2))
        if sized.group(1) == "character" and length <= MAX_CHAR_LENGTH:
            return TypeMapping(f"char({length})", note=domain)
        if length <= MAX_VARCHAR_BYTES:
            return TypeMapping(f"varchar({length})", note=domain)
        return TypeMapping("text", note=domain or f"{declared}: longer than a Redshift VARCHAR")
    return _unsupported(declared)


# -- PostgreSQL ------------------------------------------------------------------------------

_TABLES_SQL = """
SELECT c.oid, c.relname, c.relreplident = 'f', c.relkind = 'p'
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""
# One row per column; a domain's base type and an enum's labels resolved here.
_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, a.attnotnull,
       format_type(a.atttypid, a.atttypmod),
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
       coalesce(bt.typcategory, t.typcategory),
       (SELECT array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e
         WHERE e.enumtypid = coalesce(bt.oid, t.oid))
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
# Primary keys and unique indexes over plain NOT NULL columns, columns in index order.
_INDEXES_SQL = """
SELECT i.indrelid, i.indisprimary, ic.relname,
       array_agg(a.attname ORDER BY k.ord), bool_and(a.attnotnull)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = ANY(%s) AND (i.indisprimary OR i.indisunique)
  AND i.indpred IS NULL AND i.indexprs IS NULL
GROUP BY i.indrelid, i.indisprimary, ic.relname
ORDER BY i.indrelid, ic.relname
"""
_FOREIGN_KEYS_SQL = """
SELECT con.conrelid, con.conname, rc.relname,
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o),
       array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_constraint con
JOIN pg_class rc ON rc.oid = con.confrelid
WHERE con.contype = 'f' AND con.conrelid = ANY(%s) AND rc.relnamespace = (
    SELECT relnamespace FROM pg_class WHERE oid = con.conrelid)
ORDER BY con.conrelid, con.conname
"""


def read_postgres_catalog(conn: Any, schema: str) -> SourceCatalog:
    """Every ordinary and partitioned table of ``schema`` (partitions are their parent's rows),
    from a psycopg connection. Reads the catalog only, never rows."""
    tables = conn.execute(_TABLES_SQL, (schema,)).fetchall()
    oids = [row[0] for row in tables]
    columns: dict[int, list[SourceColumn]] = {oid: [] for oid in oids}
    for relid, name, not_null, type_text, base_type, category, labels in conn.execute(
            _COLUMNS_SQL, (oids,)).fetchall():
        columns[relid].append(SourceColumn(name, type_text, base_type or "", category or "",
                                           tuple(labels or ()), bool(not_null)))
    keys: dict[int, tuple[str, ...]] = {}
    uniques: dict[int, list[tuple[str, ...]]] = {oid: [] for oid in oids}
    for relid, primary, _index, names, all_not_null in conn.execute(
            _INDEXES_SQL, (oids,)).fetchall():
        if primary:
            keys[relid] = tuple(names)
        elif all_not_null:
            uniques[relid].append(tuple(names))
    foreign: dict[int, list[ForeignKey]] = {oid: [] for oid in oids}
    for relid, _name, ref_table, cols, ref_cols in conn.execute(
            _FOREIGN_KEYS_SQL, (oids,)).fetchall():
        foreign[relid].append(ForeignKey(tuple(cols), ref_table, tuple(ref_cols)))
    database = conn.execute("SELECT current_database()").fetchone()[0]
    return SourceCatalog(
        engine="postgresql", database=str(database), schema=schema,
        tables={
            name: SourceTable(name, tuple(columns[oid]), keys.get(oid, ()),
                              tuple(uniques[oid]), tuple(foreign[oid]), bool(full),
                              bool(partitioned))
            for oid, name, full, partitioned in tables
        })


class SourceUnreachable(RuntimeError):
    """The source database cannot be reached; the message says where and what to check."""


@dataclass(frozen=True)
class Source:
    """An open source database: its engine, the schema a spec uses by default, and the two
    reads ``spec init`` and ``spec check`` make."""

    engine: str
    default_schema: str
    read_catalog: Callable[[str], SourceCatalog]
    # (schema, table, columns, limit) -> some non-null values of each column, as text
    sample: Callable[[str, str, Sequence[str], int], dict[str, list[str]]]


ENGINE_NAMES = {"postgresql": "PostgreSQL", "mysql": "MySQL"}


def unreachable(engine: str, host: str, port: str, database: str, error: Exception,
                ) -> SourceUnreachable:
    """The message for a source that refused or never answered (the DSN is never printed: it
    may hold a password)."""
    reason = " ".join(str(error).split()).rstrip(".")
    reason += "" if reason.endswith("?") else "."
    return SourceUnreachable(
        f"cannot connect to {ENGINE_NAMES[engine]} at {host}:{port} (database {database}): "
        f"{reason} Is the database running and reachable from here? Check the DSN given with "
        "--source (host, port, database, user, password).")


@contextmanager
def connect_source(dsn: str, application_name: str = "cdc-spec") -> Iterator[Source]:
    """The source a DSN names, open read-only: ``mysql://`` (or ``mariadb://``) URLs are MySQL
    (``tools.mysql_catalog``), anything else a PostgreSQL DSN or URL."""
    if dsn.strip().lower().startswith(("mysql://", "mariadb://")):
        from tools.mysql_catalog import connect_mysql

        with connect_mysql(dsn) as source:
            yield source
        return
    with connect_postgres(dsn, application_name) as conn:
        yield Source(
            "postgresql", "public",
            lambda schema: read_postgres_catalog(conn, schema),
            lambda schema, table, columns, limit: sample_rows(conn, schema, table, columns,
                                                              limit))


@contextmanager
def connect_postgres(dsn: str, application_name: str = "cdc-spec") -> Iterator[Any]:
    """A read-only, autocommit psycopg connection (every statement its own transaction, so
    one refused query spoils nothing)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise SourceUnreachable(
            "--source is not a PostgreSQL DSN or URL (nor a mysql:// URL); write it as "
            "'host=db.example.com port=5432 dbname=shop user=me', "
            "'postgresql://me@db.example.com:5432/shop' or "
            "'mysql://me@db.example.com:3306/shop'") from None
    host = str(params.get("host") or os.environ.get("PGHOST") or "localhost (socket)")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    database = str(params.get("dbname") or os.environ.get("PGDATABASE") or "(default)")
    timeout = params.get("connect_timeout") or 10
    try:
        conn = psycopg.connect(dsn, autocommit=True, application_name=application_name,
                               connect_timeout=timeout)
    except psycopg.OperationalError as exc:
        raise unreachable("postgresql", host, port, database, exc) from None
    with conn:
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.execute("SET statement_timeout = '60s'")
        yield conn


def sample_rows(conn: Any, schema: str, table: str, columns: Sequence[str],
                limit: int) -> dict[str, list[str]]:
    """Up to ``limit`` rows' non-null values of ``columns`` as text, by column: the first rows
    a scan meets, cheap on any table size. For PII suggestions only; the caller never prints
    them. A table the user may not read gives no values (suggestions then go by names)."""
    import psycopg
    from psycopg import sql

    query = sql.SQL("SELECT {cols} FROM {schema}.{table} LIMIT {limit}").format(
        cols=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c))
                                for c in columns),
        schema=sql.Identifier(schema), table=sql.Identifier(table), limit=sql.Literal(limit))
    try:
        rows = conn.execute(query).fetchall()
    except psycopg.Error:
        return {}
    return {name: [row[i] for row in rows if row[i] is not None]
            for i, name in enumerate(columns)}
