"""ListDatabases, ListSchemas, ListTables and DescribeTable, answered from the warehouse's
catalog as Redshift answers them (botocore ``redshift-data`` 2019-12-20 shapes).

Redshift reads these from its system views (SVV_REDSHIFT_DATABASES, SVV_ALL_SCHEMAS,
SVV_ALL_TABLES, SVV_ALL_COLUMNS); here they come from PostgreSQL's catalog, with Redshift's
names for types (``varchar``, ``int4``, ``numeric`` ...) and for table kinds (the model's
``TABLE``, ``VIEW``, ``SYSTEM TABLE``, ``LOCAL TEMPORARY`` ...). The stand-in's own
``rs_varchar_<n>`` and ``rs_varbyte_<n>`` domains show as the ``varchar(n)`` and
``varbyte`` of length n they implement. Like
``information_schema``, a table is listed only to users holding some privilege on it.
``SchemaPattern`` / ``TablePattern`` are LIKE patterns (``%`` and ``_``).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from local.redshift_data_api.executor import redshift_type_name
from local.redshift_data_api.translate import VARBYTE_DEFAULT_LENGTH, VARBYTE_DOMAIN

Conn = psycopg.Connection[tuple[Any, ...]]

# Databases of the local PostgreSQL cluster that a Redshift namespace does not have.
HIDDEN_DATABASES = ("postgres",)
_HIDDEN_SCHEMAS = "n.nspname !~ '^pg_(toast|temp_)'"
_PRECISION = {"int2": 5, "int4": 10, "int8": 19, "float4": 8, "float8": 17, "bool": 1,
              "date": 13, "timestamp": 29, "timestamptz": 35, "time": 15, "timetz": 21}
_SIGNED = {"int2", "int4", "int8", "float4", "float8", "numeric"}
_STRINGS = {"varchar", "bpchar", "name", "char"}
_VARBYTE_LIMIT = re.compile(VARBYTE_DOMAIN + r"(\d+)")

_TABLE_KIND = """
CASE WHEN c.relpersistence = 't' THEN 'LOCAL TEMPORARY'
     WHEN n.nspname IN ('pg_catalog', 'information_schema') AND c.relkind IN ('v', 'm')
          THEN 'SYSTEM VIEW'
     WHEN n.nspname IN ('pg_catalog', 'information_schema') THEN 'SYSTEM TABLE'
     WHEN c.relkind IN ('v', 'm') THEN 'VIEW'
     ELSE 'TABLE' END"""
_VISIBLE = ("c.relkind IN ('r', 'p', 'v', 'm', 'f') AND " + _HIDDEN_SCHEMAS + " AND "
            "(pg_has_role(c.relowner, 'USAGE') OR has_table_privilege(c.oid, "
            "'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'))")


def list_databases(conn: Conn) -> list[str]:
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn "
        "AND datname <> ALL(%s) ORDER BY datname", (list(HIDDEN_DATABASES),)).fetchall()
    return [str(r[0]) for r in rows]


def list_schemas(conn: Conn, schema_pattern: str | None) -> list[str]:
    rows = conn.execute(
        f"SELECT n.nspname FROM pg_namespace n WHERE {_HIDDEN_SCHEMAS} "
        "AND n.nspname LIKE %s ORDER BY n.nspname", (schema_pattern or "%",)).fetchall()
    return [str(r[0]) for r in rows]


def list_tables(conn: Conn, schema_pattern: str | None,
                table_pattern: str | None) -> list[dict[str, str]]:
    rows = conn.execute(
        f"SELECT c.relname, {_TABLE_KIND}, n.nspname FROM pg_class c "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {_VISIBLE} "
        "AND n.nspname LIKE %s AND c.relname LIKE %s ORDER BY n.nspname, c.relname",
        (schema_pattern or "%", table_pattern or "%")).fetchall()
    return [{"name": str(name), "type": str(kind), "schema": str(schema)}
            for name, kind, schema in rows]


def _column(row: tuple[Any, ...]) -> dict[str, Any]:
    schema, table, name, base_type, typmod, not_null, default, domain = row
    type_name = redshift_type_name(str(base_type))
    precision, scale, length = _PRECISION.get(type_name, 0), 0, 0
    if type_name == "varbyte":  # the byte limit is in the domain's name (see translate)
        limit = _VARBYTE_LIMIT.fullmatch(str(domain or ""))
        precision = length = int(limit.group(1)) if limit else VARBYTE_DEFAULT_LENGTH
    elif type_name in ("varchar", "bpchar") and typmod >= 4:
        precision = length = typmod - 4
    elif type_name == "varchar":  # no declared length: Redshift's VARCHAR is VARCHAR(256)
        precision = length = 256
    elif type_name == "numeric":
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        if typmod < 4:
            precision, scale = 18, 0
    column: dict[str, Any] = {
        "isCaseSensitive": type_name in _STRINGS,
        "isCurrency": False,
        "isSigned": type_name in _SIGNED,
        "label": str(name),
        "length": length,
        "name": str(name),
        "nullable": 0 if not_null else 1,
        "precision": precision,
        "scale": scale,
        "schemaName": str(schema),
        "tableName": str(table),
        "typeName": type_name,
    }
    if default is not None:
        column["columnDefault"] = str(default)
    return column


def describe_columns(conn: Conn, schema: str | None, table: str | None) -> list[dict[str, Any]]:
    """The columns of the matching tables, in table then column order.

    A single named table is also read (``LIMIT 0``) as a driver's metadata call would be: a
    table under another transaction's exclusive ``LOCK`` cannot be described until that
    transaction ends, which the caller's timeout turns into QueryTimeoutException.
    """
    rows = conn.execute(
        "SELECT n.nspname, c.relname, a.attname, bt.typname, "
        "CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END, "
        "a.attnotnull OR (t.typtype = 'd' AND t.typnotnull), pg_get_expr(d.adbin, d.adrelid), "
        "CASE WHEN t.typtype = 'd' THEN t.typname END "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype "
        "ELSE a.atttypid END "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        f"WHERE a.attnum > 0 AND NOT a.attisdropped AND {_VISIBLE} "
        "AND n.nspname LIKE %s AND c.relname LIKE %s ORDER BY n.nspname, c.relname, a.attnum",
        (schema or "%", table or "%")).fetchall()
    tables = {(r[0], r[1]) for r in rows}
    if table and len(tables) == 1:
        [(schema_name, table_name)] = tables
        readable = conn.execute("SELECT has_table_privilege(format('%%I.%%I', %s::text, "
                                "%s::text), 'SELECT')", (schema_name, table_name)).fetchone()
        if readable and readable[0]:
            quoted = ".".join('"' + part.replace('"', '""') + '"'
                              for part in (schema_name, table_name))
            conn.execute(f"SELECT * FROM {quoted} LIMIT 0".encode())
    return [_column(r) for r in rows]
