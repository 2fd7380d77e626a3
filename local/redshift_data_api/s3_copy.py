"""Redshift ``COPY ... FROM 's3://...'``, loaded from an S3-compatible endpoint (moto).

Supported::

    COPY [schema.]table [(col, ...)] FROM 's3://bucket/prefix'
      {IAM_ROLE {'arn' | DEFAULT} | CREDENTIALS [AS] '...'
       | ACCESS_KEY_ID '...' SECRET_ACCESS_KEY '...'}
      [FORMAT [AS]] {JSON [AS] 'auto' | JSON [AS] 'auto ignorecase'
                     | CSV [QUOTE [AS] 'c'] | PARQUET}
      [DELIMITER [AS] 'c'] [IGNOREHEADER [AS] n] [GZIP | BZIP2] [NULL [AS] '...']
      [TIMEFORMAT [AS] '...'] [DATEFORMAT [AS] '...'] [MANIFEST] [REGION [AS] '...']
      [TRUNCATECOLUMNS] [BLANKSASNULL] [EMPTYASNULL] [IGNOREBLANKLINES]
      [COMPUPDATE ...] [STATUPDATE ...] [ACCEPTINVCHARS [AS '?']]

As on Redshift, ``FROM`` is a key prefix (every object whose key starts with it is loaded)
or, with MANIFEST, the key of a manifest listing the files. Rows go in through PostgreSQL's
``COPY FROM STDIN`` on the statement's own connection, so a COPY inside a batch commits or
rolls back with it. Parsing lives in :mod:`.copy_parse`; file decoding in :mod:`.copy_formats`.
"""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as pgsql

from local.redshift_data_api.copy_formats import TableColumn, decode_rows
from local.redshift_data_api.copy_parse import CopyCommand, parse_copy
from local.redshift_data_api.errors import RedshiftSqlError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["CopyCommand", "parse_copy", "run_copy"]

FETCH_THREADS = 8

# Domains (the byte-limited VARCHARs) are resolved to their base type and length.
_COLUMNS_SQL = """
SELECT a.attname, format_type(b.oid, m.typmod), b.typcategory, m.typmod, a.attidentity = 'a'
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
CROSS JOIN LATERAL (SELECT CASE WHEN t.typtype = 'd' THEN t.typtypmod
                                ELSE a.atttypmod END AS typmod) m
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def _split_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise RedshiftSqlError(f"ERROR: Invalid S3 URL '{url}'")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def _s3_error(exc: Exception) -> RedshiftSqlError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    if code == "NoSuchBucket":
        return RedshiftSqlError(
            "ERROR: S3ServiceException:The specified bucket does not exist,Status 404,"
            "Error NoSuchBucket"
        )
    if code in ("NoSuchKey", "404"):
        return RedshiftSqlError(
            "ERROR: S3ServiceException:The specified key does not exist.,Status 404,"
            "Error NoSuchKey"
        )
    return RedshiftSqlError(f"ERROR: S3ServiceException:{exc}")


def _object_urls(cmd: CopyCommand, s3: S3Client) -> list[tuple[str, bool]]:
    """The s3:// URLs to load, each with whether it must exist: the objects under the prefix
    (which exist), or the manifest's entries (``mandatory`` as the manifest says)."""
    bucket, key = _split_s3_url(cmd.source)
    try:
        if cmd.manifest:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            try:
                entries = json.loads(body)["entries"]
                return [(str(e["url"]), bool(e.get("mandatory", False))) for e in entries]
            except (ValueError, KeyError, TypeError):
                raise RedshiftSqlError(
                    "ERROR: Manifest file is not in correct json format"
                ) from None
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            keys.extend(
                o["Key"] for o in page.get("Contents", [])
                if not (o["Key"].endswith("/") and o.get("Size", 0) == 0)
            )
    except RedshiftSqlError:
        raise
    except Exception as exc:  # botocore ClientError and connection errors
        raise _s3_error(exc) from None
    if not keys:
        raise RedshiftSqlError(f"ERROR: The specified S3 prefix '{key}' does not exist")
    return [(f"s3://{bucket}/{k}", True) for k in sorted(keys)]


def _read_object(url: str, mandatory: bool, cmd: CopyCommand, s3: S3Client) -> bytes | None:
    """The object's bytes (decompressed); None for a missing optional manifest entry."""
    bucket, key = _split_s3_url(url)
    try:
        data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        if cmd.manifest and code in ("NoSuchKey", "404"):
            if not mandatory:
                return None
            raise RedshiftSqlError(
                f"ERROR: Manifest file entry '{url}' is mandatory and does not exist"
            ) from None
        raise _s3_error(exc) from None
    try:
        if cmd.compression == "GZIP":
            return gzip.decompress(data)
        if cmd.compression == "BZIP2":
            return bz2.decompress(data)
    except (OSError, EOFError, ValueError):
        raise RedshiftSqlError(
            f"ERROR: Load into table '{cmd.table_label}' failed. Check 'sys_load_error_detail' "
            f"system table for details. (stand-in: '{url}' is not valid {cmd.compression} data)"
        ) from None
    return data


def table_columns(conn: psycopg.Connection[Any], cmd: CopyCommand) -> list[TableColumn]:
    try:
        rows = conn.execute(_COLUMNS_SQL, (cmd.table,)).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        raise RedshiftSqlError(f'ERROR: relation "{cmd.table_label}" does not exist') from None
    return [
        TableColumn(name=r[0], type_name=r[1], category=r[2], typmod=r[3], identity=r[4])
        for r in rows
    ]


def _target_columns(cmd: CopyCommand, all_columns: list[TableColumn]) -> list[TableColumn]:
    if cmd.columns is None:
        return [c for c in all_columns if not c.identity]
    by_name = {c.name: c for c in all_columns}
    chosen = []
    for name in cmd.columns:
        if name not in by_name:
            raise RedshiftSqlError(
                f'ERROR: column "{name}" of relation "{cmd.table_label}" does not exist'
            )
        chosen.append(by_name[name])
    return chosen


def _rows(cmd: CopyCommand, urls: list[tuple[str, bool]], columns: list[TableColumn],
          s3: S3Client) -> Iterator[tuple[str | None, ...]]:
    """The rows of every object, in the order of ``urls``; the objects are fetched
    concurrently, as Redshift loads a COPY's files in parallel ("Loading data from Amazon S3",
    Amazon Redshift Database Developer Guide)."""
    with ThreadPoolExecutor(max_workers=FETCH_THREADS) as pool:
        fetched = pool.map(lambda entry: _read_object(entry[0], entry[1], cmd, s3), urls)
        for (url, _), data in zip(urls, fetched, strict=True):
            if data is not None:
                yield from decode_rows(cmd, url, data, columns)


def run_copy(conn: psycopg.Connection[Any], sql: str, s3: S3Client) -> int:
    """Run the COPY statement ``sql`` on ``conn`` (inside its transaction); rows loaded."""
    cmd = parse_copy(sql)
    columns = _target_columns(cmd, table_columns(conn, cmd))
    urls = _object_urls(cmd, s3)
    copy_sql = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
        pgsql.SQL(cmd.table), pgsql.SQL(", ").join(pgsql.Identifier(c.name) for c in columns)
    )
    count = 0
    try:
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for row in _rows(cmd, urls, columns, s3):
                copy.write_row(row)
                count += 1
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        detail = (exc.diag.message_primary or str(exc)).strip()
        raise RedshiftSqlError(
            f"ERROR: Load into table '{cmd.table_label}' failed. Check 'sys_load_error_detail' "
            f"system table for details. (stand-in: {detail})"
        ) from None
    return count
