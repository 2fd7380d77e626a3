"""DMS Kinesis records, as AWS DMS writes them with the template's endpoint settings.

``MessageFormat=json`` (tab-indented, several lines; ``json-unformatted`` would be one line),
``IncludeTransactionDetails``, ``IncludePartitionValue``, ``PartitionIncludeSchemaTable``,
partitioning by primary key, ``IncludeNullAndEmpty`` (every column, nulls included) and
``BeforeImageSettings`` with ``ColumnFilter=pk-only`` (the old key columns on updates).
See /work/shared/reference/dms-kinesis-records.md for the record format itself.

Values keep DMS's JSON shapes: integers and floats as JSON numbers, numerics as exact JSON
numbers up to 15 significant digits and as strings beyond, booleans as JSON booleans, dates
and timestamps as strings (``YYYY-MM-DD``, ``YYYY-MM-DD HH:MM:SS[.ffffff]``), everything else
as the source's text.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from local.dms.wal2json import Column, Transaction, format_lsn

BEFORE_IMAGE_FIELD = "before-image"
KINESIS_MAX_PARTITION_KEY = 256
NUMBER_MAX_DIGITS = 15  # a numeric with more significant digits goes out as a string

_ENCODER = msgspec.json.Encoder(decimal_format="number")
_INDENT = re.compile(rb"(?m)^( +)")
_TYPE_ARGS = re.compile(r"\((\d+)(?:,(\d+))?\)")
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d{1,6}))?$")

_INT_TYPES = frozenset(("smallint", "integer", "bigint", "oid"))
_FLOAT_TYPES = frozenset(("real", "double precision"))
_DMS_TYPES = {
    "smallint": "INT16", "integer": "INT32", "bigint": "INT64", "oid": "UINT32",
    "real": "REAL4", "double precision": "REAL8", "boolean": "BOOLEAN", "date": "DATE",
    "time without time zone": "TIME", "timestamp without time zone": "DATETIME",
    "timestamp with time zone": "DATETIME", "text": "NCLOB", "bytea": "BLOB",
}


@dataclass(frozen=True, slots=True)
class KinesisEntry:
    """One record ready for PutRecords: the DMS JSON and its Kinesis partition key."""

    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        """What counts against Kinesis's 1 MiB record and 5 MiB request limits."""
        return len(self.data) + len(self.partition_key.encode("utf-8"))


def base_type(pg_type: str) -> str:
    """``character varying(64)`` -> ``character varying``; ``numeric(12,2)`` -> ``numeric``."""
    return _TYPE_ARGS.sub("", pg_type).strip()


def _timestamp_text(text: str) -> str:
    match = _TIMESTAMP.match(text)
    if match is None:
        return text  # infinity, BC dates: as the source wrote them
    whole, fraction = match.groups()
    return f"{whole}.{fraction.ljust(6, '0')}" if fraction else whole


def _timestamptz_text(text: str) -> str:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    utc = parsed.astimezone(UTC)
    fraction = f".{utc.microsecond:06d}" if utc.microsecond else ""
    return f"{utc:%Y-%m-%d %H:%M:%S}{fraction}+00:00"


def dms_value(pg_type: str, value: Any) -> Any:
    """A source value (wal2json's JSON value, or the column's text from a full-load SELECT)
    in the JSON shape DMS gives it. Both inputs give the same output, so a full-load row and
    a CDC change of the same row look alike."""
    if value is None:
        return None
    base = base_type(pg_type)
    if base in _INT_TYPES:
        return int(value)
    if base == "numeric":
        try:
            number = value if isinstance(value, Decimal) else Decimal(str(value))
        except InvalidOperation:
            return str(value)
        if not number.is_finite():
            return None  # wal2json writes NaN and Infinity as null
        return number if len(number.as_tuple().digits) <= NUMBER_MAX_DIGITS else str(number)
    if base in _FLOAT_TYPES:
        real = float(value)
        return real if math.isfinite(real) else None
    if base == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in ("t", "true")
    if base == "timestamp without time zone":
        return _timestamp_text(str(value))
    if base == "timestamp with time zone":
        return _timestamptz_text(str(value))
    return value if isinstance(value, str) else str(value)


def dms_column_type(pg_type: str, nullable: bool) -> dict[str, Any]:
    """A column of a ``create-table`` control record's ``table-def``."""
    base = base_type(pg_type)
    args = _TYPE_ARGS.search(pg_type)
    column: dict[str, Any]
    if base == "numeric":
        column = {"type": "NUMERIC"}
        if args:
            column["precision"] = int(args.group(1))
            column["scale"] = int(args.group(2) or 0)
    elif base in ("character varying", "character"):
        column = {"type": "WSTRING"}
        if args:
            column["length"] = int(args.group(1))
    else:
        column = {"type": _DMS_TYPES.get(base, "STRING")}
    column["nullable"] = nullable
    return column


def message_time(now: datetime | None = None) -> str:
    """The ``timestamp`` DMS stamps on a message: when it was built, not when it committed."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_text(values: Sequence[Any]) -> str:
    """The key part of ``partition-key-value`` (composite keys joined with ``.``)."""
    return ".".join("" if v is None else str(v) for v in values)


def kinesis_partition_key(partition_key_value: str) -> str:
    """Kinesis accepts at most 256 characters; a longer value is replaced by its SHA-256,
    which still sends every change of one row to one shard."""
    if len(partition_key_value) <= KINESIS_MAX_PARTITION_KEY:
        return partition_key_value
    return hashlib.sha256(partition_key_value.encode("utf-8")).hexdigest()


def encode(message: Mapping[str, Any]) -> bytes:
    """``MessageFormat=json``: JSON indented with tabs, one member per line."""
    formatted = msgspec.json.format(_ENCODER.encode(message), indent=1)
    return _INDENT.sub(lambda m: b"\t" * len(m.group(1)), formatted)


def _entry(message: dict[str, Any]) -> KinesisEntry:
    return KinesisEntry(encode(message), kinesis_partition_key(
        message["metadata"]["partition-key-value"]))


def _row(columns: Sequence[Column]) -> dict[str, Any]:
    return {c.name: dms_value(c.type, c.value) for c in columns}


def load_record(schema: str, table: str, row: dict[str, Any], key: Sequence[str],
                now: datetime | None = None) -> KinesisEntry:
    """A full-load row (``operation: load``; DMS adds no transaction details to these)."""
    metadata = {
        "timestamp": message_time(now),
        "record-type": "data",
        "operation": "load",
        "partition-key-type": "primary-key",
        "partition-key-value": f"{schema}.{table}.{key_text([row[k] for k in key])}",
        "schema-name": schema,
        "table-name": table,
    }
    return _entry({"data": row, "metadata": metadata})


def create_table_record(schema: str, table: str, columns: Sequence[tuple[str, str, bool]],
                        key: Sequence[str], task_id: str,
                        now: datetime | None = None) -> KinesisEntry:
    """The ``create-table`` control record DMS sends when a table's full load starts;
    ``columns`` are (name, PostgreSQL type, nullable)."""
    table_def = {
        "columns": {name: dms_column_type(pg_type, nullable)
                    for name, pg_type, nullable in columns},
        "primary-key": list(key),
    }
    metadata = {
        "timestamp": message_time(now),
        "record-type": "control",
        "operation": "create-table",
        "partition-key-type": "task-id",
        "partition-key-value": task_id,
        "schema-name": schema,
        "table-name": table,
    }
    return _entry({"control": {"table-def": table_def}, "metadata": metadata})


@dataclass
class TransactionCursor:
    """The previous change DMS emitted, for ``prev-transaction-id`` / ``-record-id``."""

    transaction_id: int = 0
    record_id: int = 0


_OPERATIONS = {"I": "insert", "U": "update", "D": "delete"}


def cdc_records(tx: Transaction, key_of: Mapping[str, Sequence[str]],
                previous: TransactionCursor, before_image_field: str = BEFORE_IMAGE_FIELD,
                now: datetime | None = None) -> list[KinesisEntry]:
    """The DMS records of one committed transaction, in the order of its changes.

    ``key_of`` gives each table's key columns when wal2json reported none (a table without a
    primary key). ``previous`` is advanced past the records built. Truncates are not sent: DMS
    sends them only with ``IncludeTableAlterOperations``, which the template leaves off.
    """
    entries: list[KinesisEntry] = []
    position = format_lsn(tx.commit_lsn)
    built = message_time(now)
    record_id = 0
    for change in tx.changes:
        operation = _OPERATIONS.get(change.action)
        if operation is None:
            continue
        key = change.pk or tuple(key_of.get(change.table, ()))
        message: dict[str, Any]
        if operation == "delete":
            old = _row(change.identity)
            data = {c.name: (old.get(c.name) if c.name in key else None)
                    for c in change.identity}
            message = {"data": data}
        else:
            data = _row(change.columns)
            if operation == "update" and change.identity:
                old = _row(change.identity)
                if len(old) > len(data):
                    # wal2json leaves out unchanged TOASTed values from the new row; under
                    # REPLICA IDENTITY FULL the old row has them (DMS sends the whole row).
                    data = {name: data.get(name, value)
                            for name, value in old.items()}
            message = {"data": data}
            if operation == "update":
                # pk-only before imaging: the old key columns (the new ones when the source
                # did not log the old row, i.e. the key did not change).
                old = _row(change.identity) if change.identity else data
                message[before_image_field] = {k: old.get(k) for k in key}
        record_id += 1
        message["metadata"] = {
            "timestamp": built,
            "record-type": "data",
            "operation": operation,
            "partition-key-type": "primary-key",
            "partition-key-value":
                f"{change.schema}.{change.table}.{key_text([data.get(k) for k in key])}",
            "schema-name": change.schema,
            "table-name": change.table,
            "commit-timestamp": tx.commit_time,
            "stream-position": f"{position}.{record_id}.{format_lsn(change.lsn)}",
            "transaction-id": tx.xid,
            "transaction-record-id": record_id,
            "prev-transaction-id": previous.transaction_id,
            "prev-transaction-record-id": previous.record_id,
        }
        previous.transaction_id, previous.record_id = tx.xid, record_id
        entries.append(_entry(message))
    return entries


def truncates(tx: Transaction) -> int:
    """How many truncates the transaction holds (counted, not sent)."""
    return sum(1 for c in tx.changes if c.action == "T")
