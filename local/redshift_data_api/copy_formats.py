"""Decode the files of a COPY (JSON 'auto', CSV, Parquet) into rows of text values.

Each value is handed to PostgreSQL as text (``None`` is NULL), so PostgreSQL's input
functions do the type conversion, as Redshift's do. Redshift rules applied here:
character columns measure their length in bytes (``String length exceeds DDL length``
unless TRUNCATECOLUMNS), empty fields of non-character columns load as NULL, and
EMPTYASNULL / BLANKSASNULL / NULL AS apply to character columns.

VARBYTE columns load "from a file in CSV, Parquet, and ORC format. For CSV, the data is
loaded from a file in hexadecimal representation of the VARBYTE data" (Amazon Redshift
Database Developer Guide, "Loading a column of the VARBYTE data type"): JSON is not among
them, so a COPY FORMAT JSON into a VARBYTE column fails here. A SUPER column takes the JSON
value of its field as it is (a string stays a SUPER string).
"""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.redshift_data_api.errors import RedshiftSqlError

if TYPE_CHECKING:
    from local.redshift_data_api.copy_parse import CopyCommand

Row = tuple[str | None, ...]


@dataclass(frozen=True)
class TableColumn:
    name: str
    type_name: str  # format_type(), e.g. "character varying(10)"
    category: str  # pg_type.typcategory: S string, N numeric, B bool, D datetime, ...
    typmod: int
    identity: bool = False

    @property
    def max_bytes(self) -> int | None:
        return self.typmod - 4 if self.category == "S" and self.typmod > 4 else None


class LoadError(RedshiftSqlError):
    pass


def load_error(cmd: CopyCommand, reason: str) -> LoadError:
    return LoadError(
        f"ERROR: Load into table '{cmd.table_label}' failed. Check 'sys_load_error_detail' "
        f"system table for details. (stand-in: {reason})"
    )


def _finish(value: str | None, col: TableColumn, cmd: CopyCommand, where: str) -> str | None:
    if value is None:
        return None
    if col.category != "S":
        return None if value.strip() == "" else value
    if value == "" and cmd.empty_as_null:
        return None
    if value != "" and value.strip() == "" and cmd.blanks_as_null:
        return None
    limit = col.max_bytes
    if limit is not None:
        encoded = value.encode("utf-8")
        if len(encoded) > limit:
            if not cmd.truncate_columns:
                raise load_error(
                    cmd, f"String length exceeds DDL length for column {col.name} at {where}"
                )
            value = encoded[:limit].decode("utf-8", errors="ignore")
    return value


def _text(data: bytes, cmd: CopyCommand, url: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise load_error(cmd, f"Invalid UTF8 data in {url}") from None


def _json_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _super_value(value: Any) -> str | None:
    """A JSON field as the text of the SUPER (``jsonb``) value it loads as."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _hex_value(value: str | None, col: TableColumn, cmd: CopyCommand,
               where: str) -> str | None:
    """A VARBYTE field (hexadecimal digits) as PostgreSQL's bytea input."""
    if value is None:
        return None
    try:
        bytes.fromhex(value)
    except ValueError:
        raise load_error(cmd, f"Invalid hexadecimal VARBYTE value for column {col.name} at "
                              f"{where}") from None
    return "\\x" + value


def _json_rows(cmd: CopyCommand, url: str, text: str, columns: list[TableColumn]) -> Iterator[Row]:
    """Newline-delimited or simply concatenated JSON objects, keys matched to column names."""
    binary = [c.name for c in columns if c.type_name == "bytea"]
    if binary:
        raise load_error(cmd, f"VARBYTE column {binary[0]} loads from CSV, Parquet or ORC "
                              "files only, not JSON")
    decoder = json.JSONDecoder()
    pos, n, record = 0, len(text), 0
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            return
        record += 1
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise load_error(cmd, f"Invalid JSON in {url} record {record}: {exc.msg}") from None
        if not isinstance(obj, dict):
            raise load_error(cmd, f"{url} record {record} is not a JSON object")
        if cmd.json_ignorecase:
            obj = {str(k).lower(): v for k, v in obj.items()}
        where = f"{url} record {record}"
        yield tuple(
            _super_value(obj.get(c.name)) if c.type_name == "jsonb"
            else _finish(_json_value(obj.get(c.name)), c, cmd, where)
            for c in columns)


def _csv_rows(cmd: CopyCommand, url: str, text: str, columns: list[TableColumn]) -> Iterator[Row]:
    null_as = cmd.null_as if cmd.null_as is not None else "\\N"
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=cmd.delimiter or ",", quotechar=cmd.quote or '"'
    )
    try:
        for number, record in enumerate(reader, start=1):
            if number <= cmd.ignore_header or not record:
                continue
            where = f"{url} line {reader.line_num}"
            if len(record) < len(columns):
                raise load_error(cmd, f"Delimiter not found at {where}")
            if len(record) > len(columns):
                raise load_error(cmd, f"Extra column(s) found at {where}")
            yield tuple(
                _hex_value(_finish(None if field == null_as else field, col, cmd, where),
                           col, cmd, where) if col.type_name == "bytea"
                else _finish(None if field == null_as else field, col, cmd, where)
                for field, col in zip(record, columns, strict=True)
            )
    except csv.Error as exc:
        raise load_error(cmd, f"Invalid CSV in {url}: {exc}") from None


def _parquet_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date | decimal.Decimal | int | float):
        return str(value)
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _parquet_compatible(arrow_type: Any, col: TableColumn) -> bool:
    import pyarrow as pa  # type: ignore[import-untyped, import-not-found, unused-ignore]

    t = pa.types
    if t.is_string(arrow_type) or t.is_large_string(arrow_type):
        return col.category == "S"
    if t.is_integer(arrow_type):
        return col.category == "N"
    if t.is_floating(arrow_type):
        return col.type_name in ("real", "double precision")
    if t.is_decimal(arrow_type):
        return col.type_name.startswith("numeric")
    if t.is_boolean(arrow_type):
        return col.category == "B"
    if t.is_timestamp(arrow_type):
        return col.type_name.startswith("timestamp")
    if t.is_date(arrow_type):
        return col.type_name == "date"
    if t.is_binary(arrow_type) or t.is_large_binary(arrow_type):
        return col.type_name == "bytea"
    return False


def _parquet_rows(cmd: CopyCommand, url: str, data: bytes,
                  columns: list[TableColumn]) -> Iterator[Row]:
    """Parquet columns map to the table's columns by position, as on Redshift."""
    try:
        import pyarrow as pa  # type: ignore[import-untyped, import-not-found, unused-ignore]
        import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise RedshiftSqlError(
            "ERROR: COPY FORMAT AS PARQUET needs pyarrow in the stand-in's environment"
        ) from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise load_error(cmd, f"{url} is not a valid Parquet file: {exc}") from None
    if table.num_columns != len(columns):
        raise RedshiftSqlError(
            f"ERROR: Spectrum Scan Error. File '{url}' has {table.num_columns} columns, the "
            f"target column list has {len(columns)}; Parquet columns map by position"
        )
    for field, col in zip(table.schema, columns, strict=True):
        if not _parquet_compatible(field.type, col):
            raise RedshiftSqlError(
                f"ERROR: Spectrum Scan Error. File '{url}' has an incompatible Parquet schema "
                f"for column '{url}.{field.name}'. Column type: {col.type_name.upper()}, "
                f"Parquet schema: {field.type}"
            )
    names = table.column_names
    for number, record in enumerate(table.to_pylist(), start=1):
        where = f"{url} row {number}"
        yield tuple(
            _finish(_parquet_value(record[name]), col, cmd, where)
            for name, col in zip(names, columns, strict=True)
        )


def decode_rows(cmd: CopyCommand, url: str, data: bytes,
                columns: list[TableColumn]) -> Iterator[Row]:
    """The rows of one (already decompressed) file."""
    if cmd.fmt == "PARQUET":
        yield from _parquet_rows(cmd, url, data, columns)
    elif cmd.fmt == "JSON":
        yield from _json_rows(cmd, url, _text(data, cmd, url), columns)
    else:
        yield from _csv_rows(cmd, url, _text(data, cmd, url), columns)
