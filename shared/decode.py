"""Decode DMS Kinesis records into typed, validated, PII-applied changes.

``RecordDecoder`` is built once per spec and HMAC key; ``decode`` turns one stream record into
zero, one or two changes (a primary-key change is a tombstone of the old key plus the new row),
or raises ``Rejected`` / ``Skipped``. It never puts a record value into a reason or a log.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from shared.order_key import BadOrderKey, order_key
from shared.pii import PiiFunction, pii_function
from shared.records import Change, StreamRecord
from shared.spec import PipelineSpec, Table
from shared.values import BadValue, Converter, converter_for

DATA_OPERATIONS = frozenset(("load", "insert", "update", "delete"))


class Rejected(Exception):
    """The record can never be applied; ``reason`` names why without quoting values."""

    def __init__(self, reason: str, table: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.table = table


class Skipped(Exception):
    """The record is not ours to apply (control record, table not in the spec)."""

    def __init__(self, category: str) -> None:
        super().__init__(category)
        self.category = category


@dataclass(frozen=True, slots=True)
class _ColumnPlan:
    name: str
    convert: Converter
    pii: PiiFunction | None


@dataclass(frozen=True, slots=True)
class _TablePlan:
    table: Table
    columns: tuple[_ColumnPlan, ...]
    key_columns: tuple[_ColumnPlan, ...]
    key_names: frozenset[str]


def raw_bytes(record: StreamRecord) -> bytes:
    """The record's JSON bytes (base64-decoding Lambda's text form)."""
    if isinstance(record.data, bytes | bytearray | memoryview):
        return bytes(record.data)
    try:
        return binascii.a2b_base64(record.data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise Rejected("record data is not valid base64") from None


def payload_text(record: StreamRecord) -> str:
    """The original record data as base64 text, for a replayable dead-letter message."""
    if isinstance(record.data, str):
        return record.data
    return base64.b64encode(bytes(record.data)).decode("ascii")


class RecordDecoder:
    def __init__(self, spec: PipelineSpec, hmac_key: bytes | None) -> None:
        self.spec = spec
        self._before_image_field = spec.before_image_field
        self._plans: dict[tuple[str, str], _TablePlan] = {}
        pii_cache: dict[str, PiiFunction] = {}
        for table in spec.tables.values():
            columns = []
            for col in table.columns:
                pii = None
                if col.pii is not None:
                    if col.pii not in pii_cache:
                        pii_cache[col.pii] = pii_function(col.pii, hmac_key)
                    pii = pii_cache[col.pii]
                columns.append(_ColumnPlan(col.name, converter_for(col.type), pii))
            by_name = {c.name: c for c in columns}
            self._plans[(spec.source_schema, table.name)] = _TablePlan(
                table=table,
                columns=tuple(columns),
                key_columns=tuple(by_name[k] for k in table.key),
                key_names=frozenset(table.key),
            )

    def decode(self, record: StreamRecord) -> list[Change]:
        data = raw_bytes(record)
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise Rejected(f"record data is not valid JSON ({_position_of(exc)})") from None
        if type(message) is not dict or type(message.get("metadata")) is not dict:
            raise Rejected("not a DMS record: no 'metadata' object")
        metadata = message["metadata"]
        record_type = metadata.get("record-type")
        if record_type == "control" or "control" in message:
            raise Skipped(f"control:{metadata.get('operation', 'unknown')}")
        if record_type != "data":
            raise Rejected("not a DMS record: record-type is neither 'data' nor 'control'")
        table_name = metadata.get("table-name")
        plan = self._plans.get((metadata.get("schema-name"), table_name))
        if plan is None:
            if isinstance(table_name, str) and table_name.startswith("awsdms_"):
                raise Skipped("dms-internal-table")
            raise Skipped("table-not-in-spec")
        name = plan.table.name
        operation = metadata.get("operation")
        if operation not in DATA_OPERATIONS:
            raise Rejected(f"{name}: unknown data operation", name)
        row = message.get("data")
        if type(row) is not dict:
            raise Rejected(f"{name}: DMS record without a 'data' object", name)
        try:
            key_order = order_key(metadata, record.sequence_number)
        except BadOrderKey as exc:
            raise Rejected(f"{name}: {exc}", name) from None
        commit_ts = metadata.get("commit-timestamp")
        deleted = operation == "delete"
        values = self._key_values(plan, row) if deleted else self._row_values(plan, row)
        key = tuple(values[c.name] for c in plan.key_columns)
        change = Change(name, key, values, deleted, key_order, operation, record.sequence_number,
                        commit_ts)
        before = message.get(self._before_image_field)
        if operation == "update" and type(before) is dict and before:
            old = self._old_key_tombstone(plan, before, change)
            if old is not None:
                return [old, change]
        return [change]

    def _row_values(self, plan: _TablePlan, row: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        key_names = plan.key_names
        for col in plan.columns:
            raw = row.get(col.name)
            if raw is None:
                if col.name in key_names:
                    raise Rejected(f"{plan.table.name}: missing key column {col.name!r}",
                                   plan.table.name)
                values[col.name] = None
                continue
            try:
                value = col.convert(raw)
            except BadValue as exc:
                raise Rejected(f"{plan.table.name}: column {col.name!r}: {exc}",
                               plan.table.name) from None
            values[col.name] = value if col.pii is None else col.pii(str(value))
        return values

    def _key_values(self, plan: _TablePlan, row: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = dict.fromkeys(plan.table.column_names)
        for col in plan.key_columns:
            raw = row.get(col.name)
            if raw is None:
                raise Rejected(f"{plan.table.name}: missing key column {col.name!r}",
                               plan.table.name)
            try:
                value = col.convert(raw)
            except BadValue as exc:
                raise Rejected(f"{plan.table.name}: key column {col.name!r}: {exc}",
                               plan.table.name) from None
            values[col.name] = value if col.pii is None else col.pii(str(value))
        return values

    def _old_key_tombstone(
        self, plan: _TablePlan, before: dict[str, Any], change: Change
    ) -> Change | None:
        """A tombstone for the old key when an update moved the row to a new primary key."""
        if not plan.key_names.issubset(before):
            return None
        old_values = self._key_values(plan, before)
        old_key = tuple(old_values[c.name] for c in plan.key_columns)
        if old_key == change.key:
            return None
        return Change(change.table, old_key, old_values, True, change.order_key, "update",
                      change.sequence_number, change.commit_timestamp)


def _position_of(exc: orjson.JSONDecodeError) -> str:
    return f"line {exc.lineno} column {exc.colno}"
