"""A MySQL (or MariaDB) source for ``spec init`` and ``spec check``: its catalog from
``information_schema`` through PyMySQL (the ``mysql`` extra), and its types in spec types.

    python -m tools.spec_init --source mysql://me:secret@db.example.com:3306/shop --out shop.toml

The spec's ``source_schema`` is the MySQL database (DMS's ``schema-name`` for MySQL). Types
follow what DMS sends for each ("Source data types for MySQL" in "Using a MySQL-compatible
database as a source for AWS DMS",
https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.MySQL.html):

- tinyint, smallint, mediumint, int, bigint: the smallest spec integer that holds the range,
  unsigned included (``bigint unsigned`` -> decimal(20,0)); ``tinyint(1)`` stays a number,
  as DMS sends it, with a note that it is often a boolean; ``bit(1)`` -> boolean;
- decimal(p,s) -> decimal(p,s) up to 38 digits; float -> real; double -> double;
- char(n), varchar(n) -> char(n), varchar(n) (n in characters, as for PostgreSQL); the text
  types -> text; binary, varbinary and the blob types -> varbyte; json -> super (MariaDB's
  JSON is LONGTEXT, so it lands as text);
- date -> date; datetime -> timestamp; timestamp -> timestamp (DMS sends a MySQL TIMESTAMP as
  a DATETIME); time -> time (MySQL's TIME runs to 838:59:59: longer durations are
  dead-lettered); year -> smallint; MariaDB's uuid -> uuid;
- enum -> varchar of its longest label, set -> varchar of all labels joined, both rounded up
  as for PostgreSQL enums;
- anything else (spatial types, MariaDB's inet4/inet6, bit(n) with n > 1, ...) has no spec type.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from tools.source_catalog import (
    MAX_DECIMAL_PRECISION,
    MAX_VARCHAR_BYTES,
    ForeignKey,
    Source,
    SourceCatalog,
    SourceColumn,
    SourceTable,
    SourceUnreachable,
    TypeMapping,
    enum_length,
    unreachable,
)

_PARAMS = re.compile(r"^\w+\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")
_LABEL = re.compile(r"'((?:[^']|'')*)'")
# (signed, unsigned) spec type of each integer type
_INTEGERS = {
    "tinyint": ("smallint", "smallint"),
    "smallint": ("smallint", "integer"),
    "mediumint": ("integer", "integer"),
    "int": ("integer", "bigint"),
    "integer": ("integer", "bigint"),
    "bigint": ("bigint", "decimal(20,0)"),
}
_SAME = {
    "float": "real", "double": "double", "real": "double", "double precision": "double",
    "tinytext": "text", "text": "text", "mediumtext": "text", "longtext": "text",
    "binary": "varbyte", "varbinary": "varbyte", "tinyblob": "varbyte", "blob": "varbyte",
    "mediumblob": "varbyte", "longblob": "varbyte", "json": "super", "date": "date",
    "datetime": "timestamp", "year": "smallint", "uuid": "uuid",
}


def enum_labels(column_type: str) -> tuple[str, ...]:
    """The labels of ``enum('a','b''c')`` or ``set(...)`` (quotes doubled inside)."""
    inside = column_type[column_type.index("(") + 1:column_type.rindex(")")]
    return tuple(label.replace("''", "'") for label in _LABEL.findall(inside))


def map_mysql_type(column: SourceColumn) -> TypeMapping:
    """The spec type of a MySQL column: ``type_text`` is its COLUMN_TYPE (``int(10) unsigned``,
    ``varchar(64)``, ``enum('a','b')``), ``base_type`` its DATA_TYPE (``int``, ``varchar``)."""
    declared = column.type_text
    data_type = (column.base_type or declared.split("(")[0].split()[0]).lower()
    params = _PARAMS.match(declared.lower())
    unsigned = " unsigned" in f" {declared.lower()}"
    if data_type in _INTEGERS:
        spec_type = _INTEGERS[data_type][1 if unsigned else 0]
        if data_type == "tinyint" and params and params.group(1) == "1":
            return TypeMapping(spec_type, note="tinyint(1): often a boolean; DMS sends a number")
        return TypeMapping(spec_type, note=declared if unsigned else "")
    if data_type in ("decimal", "numeric", "dec", "fixed"):
        precision = int(params.group(1)) if params else 10
        scale = int(params.group(2)) if params and params.group(2) else 0
        if precision > MAX_DECIMAL_PRECISION:
            return TypeMapping(None, problem=f"type {declared} has no spec type (more than "
                                             f"{MAX_DECIMAL_PRECISION} digits)")
        return TypeMapping(f"decimal({precision},{scale})")
    if data_type == "bit":
        if params and params.group(1) == "1":
            return TypeMapping("boolean", note=declared)
        return TypeMapping(None, problem=f"type {declared} has no spec type")
    if data_type in ("char", "varchar"):
        length = int(params.group(1)) if params else 1
        if length == 0:
            return TypeMapping(None, problem=f"type {declared} has no spec type (no length)")
        if length > MAX_VARCHAR_BYTES:
            return TypeMapping("text", note=declared)
        return TypeMapping(f"{data_type}({length})")
    if data_type in ("enum", "set"):
        labels = column.enum_labels or enum_labels(declared)
        joined = (",".join(labels),) if data_type == "set" else labels
        return TypeMapping(f"varchar({enum_length(joined)})", note=data_type)
    if data_type == "time":
        return TypeMapping("time", note="MySQL time: values past 24:00:00 are dead-lettered")
    if data_type == "timestamp":
        return TypeMapping("timestamp", note="MySQL timestamp: DMS sends it as a datetime")
    if data_type in _SAME:
        return TypeMapping(_SAME[data_type])
    return TypeMapping(None, problem=f"type {declared} has no spec type")


_TABLES_SQL = """
SELECT TABLE_NAME FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME
"""
_COLUMNS_SQL = """
SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""
# Primary keys and unique indexes (no prefix or functional parts), columns in index order.
_INDEXES_SQL = """
SELECT TABLE_NAME, INDEX_NAME, COLUMN_NAME, NULLABLE, SUB_PART
FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s AND NON_UNIQUE = 0
ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX
"""
_FOREIGN_KEYS_SQL = """
SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA = %s AND REFERENCED_TABLE_SCHEMA = %s AND REFERENCED_TABLE_NAME IS NOT NULL
ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION
"""


def _rows(conn: Any, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_mysql_catalog(conn: Any, schema: str, database: str) -> SourceCatalog:
    """Every base table of the MySQL database ``schema``, from a PyMySQL connection (the
    catalog only, never rows)."""
    names = [_text(row[0]) for row in _rows(conn, _TABLES_SQL, (schema,))]
    columns: dict[str, list[SourceColumn]] = {name: [] for name in names}
    for table, name, data_type, column_type, nullable in _rows(conn, _COLUMNS_SQL, (schema,)):
        if _text(table) not in columns:
            continue  # a view's columns
        type_text = _text(column_type)
        labels = enum_labels(type_text) if _text(data_type) in ("enum", "set") else ()
        columns[_text(table)].append(SourceColumn(
            _text(name), type_text, _text(data_type), "", labels, _text(nullable) == "NO"))
    indexes: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for table, index, column, nullable, sub_part in _rows(conn, _INDEXES_SQL, (schema,)):
        usable = column is not None and sub_part is None and _text(nullable or "") != "YES"
        indexes.setdefault((_text(table), _text(index)), []).append(
            (_text(column) if column is not None else "", usable))
    keys: dict[str, tuple[str, ...]] = {}
    uniques: dict[str, list[tuple[str, ...]]] = {name: [] for name in names}
    for (table, index), parts in sorted(indexes.items()):
        if table not in uniques:
            continue
        if index == "PRIMARY":
            keys[table] = tuple(name for name, _ in parts)
        elif all(usable for _, usable in parts):
            uniques[table].append(tuple(name for name, _ in parts))
    foreign: dict[tuple[str, str], tuple[str, list[str], list[str]]] = {}
    for table, constraint, column, ref_table, ref_column in _rows(
            conn, _FOREIGN_KEYS_SQL, (schema, schema)):
        entry = foreign.setdefault((_text(table), _text(constraint)), (_text(ref_table), [], []))
        entry[1].append(_text(column))
        entry[2].append(_text(ref_column))
    fks: dict[str, list[ForeignKey]] = {name: [] for name in names}
    for (table, _constraint), (ref_table, cols, ref_cols) in sorted(foreign.items()):
        if table in fks:
            fks[table].append(ForeignKey(tuple(cols), ref_table, tuple(ref_cols)))
    # The binary log carries whole rows (binlog_row_image=FULL, which DMS requires), so large
    # values are never left out of an update: replica_identity_full.
    return SourceCatalog("mysql", database, schema, {
        name: SourceTable(name, tuple(columns[name]), keys.get(name, ()), tuple(uniques[name]),
                          tuple(fks[name]), replica_identity_full=True)
        for name in names})


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _pymysql() -> Any:
    """PyMySQL, imported when a MySQL source is used (the ``mysql`` extra; no type stubs)."""
    try:
        import pymysql  # type: ignore[import-untyped]
    except ImportError:
        raise SourceUnreachable("a MySQL source needs PyMySQL: pip install "
                                "'cdc-redshift-upserts[mysql]' (or PyMySQL)") from None
    return pymysql


def sample_mysql_rows(conn: Any, schema: str, table: str, columns: Sequence[str],
                      limit: int) -> dict[str, list[str]]:
    """As ``source_catalog.sample_rows``: some non-null values as text, never printed."""
    pymysql = _pymysql()
    query = (f"SELECT {', '.join(f'CAST({_quote(c)} AS CHAR)' for c in columns)} "
             f"FROM {_quote(schema)}.{_quote(table)} LIMIT {int(limit)}")
    try:
        rows = _rows(conn, query, ())
    except pymysql.err.MySQLError:
        return {}
    return {name: [_text(row[i]) for row in rows if row[i] is not None]
            for i, name in enumerate(columns)}


@contextmanager
def connect_mysql(url: str) -> Iterator[Source]:
    """A read-only MySQL session from ``mysql://user:password@host:port/database``."""
    pymysql = _pymysql()
    parts = urlsplit(url.strip())
    database = unquote(parts.path.lstrip("/"))
    try:
        port = parts.port or 3306
    except ValueError:
        port = 0
    if not database or not parts.hostname or not port:
        raise SourceUnreachable("write a MySQL source as mysql://user:password@host:3306/database")
    try:
        conn = pymysql.connect(
            host=parts.hostname, port=port, user=unquote(parts.username or ""),
            password=unquote(parts.password or ""), database=database, autocommit=True,
            connect_timeout=10, read_timeout=60, charset="utf8mb4")
    except pymysql.err.MySQLError as exc:
        raise unreachable("mysql", parts.hostname, str(port), database, exc) from None
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION READ ONLY")
        yield Source(
            "mysql", database,
            lambda schema: read_mysql_catalog(conn, schema, database),
            lambda schema, table, columns, limit: sample_mysql_rows(conn, schema, table,
                                                                    columns, limit))
    finally:
        conn.close()
