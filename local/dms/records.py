"""DMS Kinesis records, as AWS DMS writes them with the template's endpoint and task settings.

The template's ``KinesisSettings``: ``MessageFormat=json`` (tab-indented, several lines),
``IncludeTransactionDetails``, ``IncludePartitionValue``, ``PartitionIncludeSchemaTable``,
``IncludeTableAlterOperations``, ``IncludeControlDetails``, ``IncludeNullAndEmpty`` (every
column, nulls included); task settings ``BeforeImageSettings`` with ``ColumnFilter=pk-only``;
``TableMappings`` as shared/dms_table_mappings.py generates them: a selection rule and an
object-mapping rule (``map-record-to-record``, ``partition-key-type: primary-key``) per table.

Every shape below follows the AWS DMS User Guide and published captures of real DMS output,
not our consumer (the facts are collected in ../shared/reference/dms-kinesis-records.md):

[K] AWS DMS User Guide, "Using Amazon Kinesis Data Streams as a target"
    (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.Kinesis.html)
[P] AWS DMS User Guide, "Using a PostgreSQL database as an AWS DMS source"
    (https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Source.PostgreSQL.html)
[C1] captures of DMS (PostgreSQL source, Kinesis target) in crate/commons-codec,
    tests/transform/test_aws_dms.py
[C2] captures "from RDS PostgreSQL via Kinesis" in crate/cratedb-toolkit, tests/io/kinesis/data.py
[C3] a MySQL-source capture (kingshark8848.gitbook.io, "AWS DMS"): ``"2020-01-09T04:13:38Z"``
[C4] a capture of a DMS task partitioning by primary key (yhyyz/kafka-cdc-redshift,
    README.md): an ``update`` with ``"partition-key-type": "primary-key"`` and
    ``"partition-key-value": "test_db.product.2"``, in the usual data / metadata message

Partitioning. The object-mapping rule asks for ``partition-key-type`` ``primary-key`` ([K],
"Using object mapping to migrate data to a Kinesis data stream"), so every data record,
full-load and CDC alike, carries ``"partition-key-type": "primary-key"`` and
``"partition-key-value": "schema.table.key"`` ([K]: ``PartitionIncludeSchemaTable``
"prefixes schema and table names to partition values, when the partition type is
primary-key-type"; ``IncludePartitionValue`` "shows the partition value within the Kinesis
message output"; [C1], [C2] for loads, [C4] for CDC), and that value is the record's Kinesis
partition key ([C2]: a load record with ``partition-key-value`` ``public.demo.393`` stored
under the Kinesis partition key ``public.demo.393``). ``map-record-to-record`` without
``exclude-columns`` or ``attribute-mappings`` keeps every column ([K]: it "creates an
attribute for each column in the source database"), so the record's other fields are as
before. The key is the row's key in ``data``: an insert's and an update's new row (an update
that moves the row to a new key goes under its NEW key, the old one being only in the before
image), a delete's key columns. Three choices are ours, as neither [K] nor a capture shows
them: the new key for a moved row; a composite key's values joined with ``.`` in key order;
and a table without a primary key (for which DMS sends inserts only, [P]) partitioned as
DMS does without an object mapping, ``schema-table`` with the Kinesis partition key
``SchemaName.TableName`` ([K], Limitations) and no ``partition-key-value`` ([K]:
IncludePartitionValue "unless the partition type is schema-table-type"). Control records are
``task-id`` with the task id as value ([C1], [C2]); the Kinesis partition key of a table's
control record is ``TaskId.SchemaName.TableName`` ([K]: "Specifying a partition-key value in
the object mapping has no impact on the partition-key for a control record"; [C2]).

Values. Integers are JSON numbers, except ``bigint`` values of more than 16 digits, which DMS
sends "in the scientific notation form" ([K], Limitations): a JSON number with an exponent,
precision lost as in a double. Numerics are exact JSON numbers up to 15 significant digits and
strings beyond; booleans JSON booleans; dates ``YYYY-MM-DD``. ``timestamp`` and
``timestamptz`` are both DMS ``DATETIME`` and come out alike ([C3]): ``T``, ``Z``, no
fraction when it is zero, else the fraction with the column's precision (PostgreSQL keeps
microseconds: 6 digits unless the column says ``timestamp(p)``); ``timestamp`` gives the
wall-clock value the source stored (the ``Z`` does not mean UTC), ``timestamptz`` gives UTC.
Everything else is the source's text ([P], "Source data types for PostgreSQL": TIME is DMS
``TIME``, UUID and ENUM ``STRING``, TEXT, JSON, JSONB, ARRAY and HSTORE ``NCLOB``), so these
reach Kinesis as PostgreSQL writes them: ``10:30:00.5``, a lower-case UUID, the enum's label,
json/jsonb as their JSON text ([C1]: ``"attributes": "{\"foo\": \"bar\"}"``, jsonb's own
spacing) and arrays in PostgreSQL's array text (``{1,2,3}``, ``{"a b",NULL}``).

BYTEA is DMS ``BLOB`` ([P]); its JSON form is not documented for Kinesis and no capture
shows one. DMS descends from Attunity Replicate, whose JSON message format writes binary
values "as hexadecimal digits" (Qlik Replicate, "Supported data types" of its Kafka, Kinesis
and Pub/Sub targets; pingcap/tiflow issue 9373 also reports that DMS reads hex-encoded binary,
not base64), so the stand-in sends the bytes as hexadecimal digits, without PostgreSQL's
backslash-x prefix. An assumption to check against a real capture (the consumer also accepts
the prefixed form).

PostgreSQL ``stream-position`` ([C1]): ``LSN.n.LSN`` with the same LSN on both sides (here
the transaction's commit LSN, shared by its changes) and a small number that is not a
sequence: 3 for an insert, 2 for an update or a delete. No capture shows a control record's
position; the stand-in uses 2. ``transaction-record-id`` is the record's place in its
transaction, ``transaction-id`` the source's transaction id as a JSON number, and
``prev-transaction-*`` name the record built before it (absent on the first, as in [C1]).
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

from local.dms.wal2json import Column, RowChange, Transaction, format_lsn

BEFORE_IMAGE_FIELD = "before-image"
KINESIS_MAX_PARTITION_KEY = 256
NUMBER_MAX_DIGITS = 15  # a numeric with more significant digits goes out as a string
BIGINT_MAX_DIGITS = 16  # [K]: BigInt values with more digits go out in scientific notation
DEFAULT_TIMESTAMP_PRECISION = 6
POSITION_COUNTERS = {"insert": 3, "update": 2, "delete": 2}  # [C1]
CONTROL_POSITION_COUNTER = 2  # no capture shows one: an assumption
# DMS's own control table, announced with a create-table record at the start of a task ([C1]).
APPLY_EXCEPTIONS_TABLE = "awsdms_apply_exceptions"
APPLY_EXCEPTIONS_COLUMNS: dict[str, dict[str, Any]] = {
    "TASK_NAME": {"type": "STRING", "length": 128, "nullable": False},
    "TABLE_OWNER": {"type": "STRING", "length": 128, "nullable": False},
    "TABLE_NAME": {"type": "STRING", "length": 128, "nullable": False},
    "ERROR_TIME": {"type": "TIMESTAMP", "nullable": False},
    "STATEMENT": {"type": "STRING", "nullable": False},
    "ERROR": {"type": "STRING", "nullable": False},
}

_ENCODER = msgspec.json.Encoder(decimal_format="number")
_INDENT = re.compile(rb"(?m)^( +)")
_TYPE_ARGS = re.compile(r"\((\d+)(?:,(\d+))?\)")
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?$")

_INT_TYPES = frozenset(("smallint", "integer", "bigint", "oid"))
_FLOAT_TYPES = frozenset(("real", "double precision"))
_TIMESTAMP_TYPES = frozenset(("timestamp without time zone", "timestamp with time zone"))
# Column types of a control record's table-def, as the captures show them ([C1], [C2]).
_DMS_TYPES = {
    "smallint": "INT16", "integer": "INT32", "bigint": "INT64", "oid": "UINT32",
    "real": "REAL4", "double precision": "REAL8", "boolean": "BOOLEAN", "date": "DATE",
    "time without time zone": "TIME", "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP", "bytea": "BLOB",
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


@dataclass(frozen=True, slots=True)
class TableDef:
    """A source table as a control record describes it; ``columns`` are
    (name, PostgreSQL ``format_type``, nullable) in column order."""

    schema: str
    name: str
    columns: tuple[tuple[str, str, bool], ...]
    key: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ControlChange:
    """A table-level event inside a source transaction, sent as a control record:
    ``truncate-table``, ``add-column``, ``drop-column``, ``column-type-change``,
    ``create-table`` or ``drop-table``. ``table_def`` is the table after the event (none for
    truncate and drop, whose ``control`` object is empty, as [C1] shows for drop-table)."""

    operation: str
    schema: str
    table: str
    table_def: TableDef | None = None


def base_type(pg_type: str) -> str:
    """``character varying(64)`` -> ``character varying``; ``numeric(12,2)`` -> ``numeric``."""
    return _TYPE_ARGS.sub("", pg_type).strip()


def _precision(pg_type: str) -> int:
    args = _TYPE_ARGS.search(pg_type)
    return int(args.group(1)) if args else DEFAULT_TIMESTAMP_PRECISION


def _fraction(digits: str, precision: int) -> str:
    """The fraction DMS writes: none when it is zero, else the column's precision."""
    significant = digits.rstrip("0")
    if not significant or precision == 0:
        return ""
    return "." + significant.ljust(precision, "0")


def _timestamp_text(text: str, precision: int) -> str:
    match = _TIMESTAMP.match(text)
    if match is None:
        return text  # infinity, BC dates: as the source wrote them (no DMS form documented)
    day, clock, fraction = match.groups()
    return f"{day}T{clock}{_fraction(fraction or '', precision)}Z"


def _timestamptz_text(text: str, precision: int) -> str:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    utc = parsed.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}{_fraction(f'{utc.microsecond:06d}', precision)}Z"


def dms_value(pg_type: str, value: Any) -> Any:
    """A source value (wal2json's JSON value, or the column's text from a full-load SELECT)
    in the JSON shape DMS gives it. Both inputs give the same output, so a full-load row and
    a CDC change of the same row look alike."""
    if value is None:
        return None
    base = base_type(pg_type)
    if base in _INT_TYPES:
        number = int(value)
        if base == "bigint" and len(str(abs(number))) > BIGINT_MAX_DIGITS:
            return float(number)  # scientific notation, e.g. 1.2345678901234568e16
        return number
    if base == "numeric":
        try:
            decimal = value if isinstance(value, Decimal) else Decimal(str(value))
        except InvalidOperation:
            return str(value)
        if not decimal.is_finite():
            return None  # wal2json writes NaN and Infinity as null
        return decimal if len(decimal.as_tuple().digits) <= NUMBER_MAX_DIGITS else str(decimal)
    if base in _FLOAT_TYPES:
        real = float(value)
        return real if math.isfinite(real) else None
    if base == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in ("t", "true")
    if base == "timestamp without time zone":
        return _timestamp_text(str(value), _precision(pg_type))
    if base == "timestamp with time zone":
        return _timestamptz_text(str(value), _precision(pg_type))
    if base == "bytea":
        return _hex_digits(str(value))
    return value if isinstance(value, str) else str(value)


def _hex_digits(text: str) -> str:
    """A bytea value's hexadecimal digits: the full load's ``::text`` (``bytea_output`` hex,
    set by the task's session) has PostgreSQL's backslash-x prefix; wal2json's value has
    the digits only (tests/functional/test_local_dms_types.py shows both)."""
    return text[2:] if text.startswith("\\x") else text


def dms_column_type(pg_type: str, nullable: bool) -> dict[str, Any]:
    """A column of a control record's ``table-def``: strings as ``STRING`` with their length
    (like ``awsdms_apply_exceptions`` in [C1]), text as ``STRING`` ([C1], [C2])."""
    base = base_type(pg_type)
    args = _TYPE_ARGS.search(pg_type)
    column: dict[str, Any]
    if base == "numeric":
        column = {"type": "NUMERIC"}
        if args:
            column["precision"] = int(args.group(1))
            column["scale"] = int(args.group(2) or 0)
    elif base in ("character varying", "character"):
        column = {"type": "STRING"}
        if args:
            column["length"] = int(args.group(1))
    else:
        column = {"type": _DMS_TYPES.get(base, "STRING")}
    column["nullable"] = nullable
    return column


def table_def_json(table: TableDef) -> dict[str, Any]:
    """``control.table-def``: every column with its DMS type, and the primary key."""
    return {
        "columns": {name: dms_column_type(pg_type, nullable)
                    for name, pg_type, nullable in table.columns},
        "primary-key": list(table.key),
    }


def message_time(now: datetime | None = None) -> str:
    """The ``timestamp`` DMS stamps on a message: when it was built, not when it committed."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_text(values: Sequence[Any]) -> str:
    """The key part of ``partition-key-value`` (composite keys joined with ``.``)."""
    return ".".join("" if v is None else str(v) for v in values)


def partition_key_value(schema: str, table: str, row: Mapping[str, Any],
                        key: Sequence[str]) -> str:
    """``schema.table.key`` of a primary-key partitioned record: the key columns' values in
    ``row`` (the record's ``data``), with the schema and table in front
    (``PartitionIncludeSchemaTable``)."""
    return f"{schema}.{table}.{key_text([row.get(k) for k in key])}"


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


def _entry(message: dict[str, Any], partition_key: str) -> KinesisEntry:
    return KinesisEntry(encode(message), kinesis_partition_key(partition_key))


def _row(columns: Sequence[Column]) -> dict[str, Any]:
    return {c.name: dms_value(c.type, c.value) for c in columns}


def load_record(schema: str, table: str, row: dict[str, Any], key: Sequence[str],
                now: datetime | None = None) -> KinesisEntry:
    """A full-load row (``operation: load``; no transaction details, primary-key partition
    with the schema and table in front, as [C1] and [C2] show)."""
    value = partition_key_value(schema, table, row, key)
    metadata = {
        "timestamp": message_time(now),
        "record-type": "data",
        "operation": "load",
        "partition-key-type": "primary-key",
        "partition-key-value": value,
        "schema-name": schema,
        "table-name": table,
    }
    return _entry({"data": row, "metadata": metadata}, value)


def _control_metadata(operation: str, schema: str, table: str, task_id: str,
                      built: str) -> dict[str, Any]:
    return {
        "timestamp": built,
        "record-type": "control",
        "operation": operation,
        "partition-key-type": "task-id",
        "partition-key-value": task_id,
        "schema-name": schema,
        "table-name": table,
    }


def create_table_record(table: TableDef, task_id: str,
                        now: datetime | None = None) -> KinesisEntry:
    """The ``create-table`` control record DMS sends before it loads a table ([C1], [C2])."""
    metadata = _control_metadata("create-table", table.schema, table.name, task_id,
                                 message_time(now))
    return _entry({"control": {"table-def": table_def_json(table)}, "metadata": metadata},
                  f"{task_id}.{table.schema}.{table.name}")


def apply_exceptions_record(task_id: str, now: datetime | None = None) -> KinesisEntry:
    """The ``create-table`` record of DMS's own ``awsdms_apply_exceptions`` table, schema
    ``""``, sent when a task starts ([C1]); a task-level record, keyed by the task id."""
    metadata = _control_metadata("create-table", "", APPLY_EXCEPTIONS_TABLE, task_id,
                                 message_time(now))
    return _entry({"control": {"table-def": {"columns": APPLY_EXCEPTIONS_COLUMNS}},
                   "metadata": metadata}, task_id)


@dataclass
class TransactionCursor:
    """The previous change DMS emitted, for ``prev-transaction-id`` / ``-record-id``
    (``transaction_id`` 0: none yet)."""

    transaction_id: int = 0
    record_id: int = 0


_OPERATIONS = {"I": "insert", "U": "update", "D": "delete"}


@dataclass(frozen=True, slots=True)
class CdcRecord:
    """A built CDC record and the table it belongs to (the stand-in holds back a reloading
    table's records until its load is sent)."""

    table: str
    entry: KinesisEntry


def _data_message(change: RowChange, key: Sequence[str],
                  before_image_field: str) -> tuple[str, dict[str, Any]]:
    operation = _OPERATIONS[change.action]
    if operation == "delete":
        # [C1]: a PostgreSQL delete carries every column, the key set and the rest null.
        old = _row(change.identity)
        return operation, {"data": {c.name: (old.get(c.name) if c.name in key else None)
                                    for c in change.identity}}
    data = _row(change.columns)
    if operation == "insert":
        return operation, {"data": data}
    old = _row(change.identity) if change.identity else {}
    if len(old) > len(data):
        # wal2json leaves unchanged TOASTed values out of the new row; under REPLICA
        # IDENTITY FULL the old row has them.
        data = {name: data.get(name, value) for name, value in old.items()}
    # pk-only before image ([K], [C1]): the old key when the update moved the row to a new
    # key, ``{}`` when the key stayed (nothing captured).
    moved = bool(old) and any(old.get(k) != data.get(k) for k in key)
    before = {k: old.get(k) for k in key} if moved else {}
    return operation, {before_image_field: before, "data": data}


def _partition(schema: str, table: str, data: Mapping[str, Any],
               key: Sequence[str]) -> dict[str, str]:
    """A CDC data record's partition metadata: primary-key with its value (the module's
    "Partitioning"); ``schema-table`` without one for a table that has no primary key. ``key``
    is the source's primary key (wal2json's ``pk``), the only key DMS knows, never the spec's
    key for a table without one."""
    if not key:
        return {"partition-key-type": "schema-table"}
    return {"partition-key-type": "primary-key",
            "partition-key-value": partition_key_value(schema, table, data, key)}


def cdc_records(tx: Transaction, key_of: Mapping[str, Sequence[str]],
                previous: TransactionCursor, task_id: str,
                before_image_field: str = BEFORE_IMAGE_FIELD,
                changes: Sequence[RowChange | ControlChange] | None = None,
                now: datetime | None = None) -> list[CdcRecord]:
    """The DMS records of one committed transaction, in the order of its changes.

    ``changes`` are the transaction's changes as the task sends them (default: its row
    changes, truncates as ``truncate-table`` control records); the caller replaces DDL
    capture rows with ``ControlChange`` entries. ``key_of`` gives each table's key columns
    when wal2json reported none. ``previous`` is advanced past the records built.
    """
    records: list[CdcRecord] = []
    position = format_lsn(tx.commit_lsn)
    built = message_time(now)
    record_id = 0
    for change in tx.changes if changes is None else changes:
        if isinstance(change, RowChange) and change.action == "T":
            change = ControlChange("truncate-table", change.schema, change.table)
        message: dict[str, Any]
        if isinstance(change, ControlChange):
            control = {} if change.table_def is None else {
                "table-def": table_def_json(change.table_def)}
            message = {"control": control}
            metadata = _control_metadata(change.operation, change.schema, change.table,
                                         task_id, built)
            counter = CONTROL_POSITION_COUNTER
            partition_key = f"{task_id}.{change.schema}.{change.table}"
        elif change.action in _OPERATIONS:
            key = change.pk or tuple(key_of.get(change.table, ()))
            operation, message = _data_message(change, key, before_image_field)
            metadata = {
                "timestamp": built,
                "record-type": "data",
                "operation": operation,
                **_partition(change.schema, change.table, message["data"], change.pk),
                "schema-name": change.schema,
                "table-name": change.table,
            }
            counter = POSITION_COUNTERS[operation]
            partition_key = str(metadata.get("partition-key-value")
                                or f"{change.schema}.{change.table}")
        else:
            continue
        record_id += 1
        metadata.update({
            "commit-timestamp": tx.commit_time,
            "stream-position": f"{position}.{counter}.{position}",
            "transaction-id": tx.xid,
            "transaction-record-id": record_id,
        })
        if previous.transaction_id:
            metadata["prev-transaction-id"] = previous.transaction_id
            metadata["prev-transaction-record-id"] = previous.record_id
        previous.transaction_id, previous.record_id = tx.xid, record_id
        message["metadata"] = metadata
        records.append(CdcRecord(change.table, _entry(message, partition_key)))
    return records
