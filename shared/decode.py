"""Decode DMS Kinesis records into typed, validated, PII-applied changes.

``RecordDecoder`` is built once per spec and HMAC key; ``decode`` turns one stream record into
one change, or two for a primary-key change (a tombstone of the old key plus the new row), or
raises ``Rejected`` / ``Skipped``. It never puts a record value into a reason or a log.

The record envelope and the table's row are parsed by msgspec straight into typed Structs
(``shared.row_types``), so every check on the hot path runs in C.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import msgspec

from shared.order_key import CLASS_LOAD, BadOrderKey, order_key
from shared.pii import PiiFunction, pii_function
from shared.records import ADD_COLUMNS, TRUNCATE, Change, StreamRecord, TableEvent
from shared.row_types import BadRow, RowType, row_type
from shared.schema_evolution import new_columns
from shared.spec import PipelineSpec

DATA_OPERATIONS = frozenset(("load", "insert", "update", "delete"))


class Rejected(Exception):
    """The record can never be applied; ``reason`` names why without quoting values."""

    def __init__(self, reason: str, table: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.table = table


DROP_TABLE_REASON = ("the source dropped the table (drop-table); the warehouse keeps its "
                     "replica and wide rows: drop or archive them by hand, or restore the table")


class TableControl(Exception):
    """A control record that changes a spec table as a whole; ``event`` says how."""

    def __init__(self, event: TableEvent) -> None:
        super().__init__(event.kind)
        self.event = event


class Skipped(Exception):
    """The record is not ours to apply (control record, table not in the spec)."""

    def __init__(self, category: str) -> None:
        super().__init__(category)
        self.category = category


class Metadata(msgspec.Struct, rename="kebab", gc=False):
    """The DMS ``metadata`` object (only what the consumer uses)."""

    record_type: str | None = None
    operation: str | None = None
    schema_name: str | None = None
    table_name: str | None = None
    timestamp: str | None = None
    commit_timestamp: str | None = None
    stream_position: str | int | None = None
    transaction_record_id: int | None = None


@dataclass(frozen=True, slots=True)
class _TablePlan:
    name: str
    rows: RowType
    key_of: Any  # attrgetter of the key columns (None for an append-only table)
    single_key: bool
    pii: tuple[tuple[str, PiiFunction], ...]


def payload_text(record: StreamRecord) -> str:
    """The original record data as base64 text, for a replayable dead-letter message."""
    if isinstance(record.data, str):
        return record.data
    return base64.b64encode(bytes(record.data)).decode("ascii")


def _envelope_type(before_image_field: str) -> type[msgspec.Struct]:
    return msgspec.defstruct(
        "DmsRecord",
        # An absent object decodes to an empty (falsy) Raw.
        [("metadata", Metadata | None, None), ("data", msgspec.Raw, msgspec.Raw()),
         ("control", msgspec.Raw, msgspec.Raw()), ("before_image", msgspec.Raw, msgspec.Raw())],
        rename={"before_image": before_image_field},
        gc=False,
    )


class RecordDecoder:
    def __init__(self, spec: PipelineSpec, hmac_key: bytes | None) -> None:
        self.spec = spec
        self._envelope: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            _envelope_type(spec.before_image_field)
        )
        self._schema = spec.source_schema
        self._exact_names = spec.source_names == "exact"
        self._plans: dict[str | None, _TablePlan] = {}
        pii_cache: dict[str, PiiFunction] = {}
        for table in spec.tables.values():
            pii = []
            for col in table.columns:
                if col.pii is not None:
                    if col.pii not in pii_cache:
                        pii_cache[col.pii] = pii_function(col.pii, hmac_key)
                    pii.append((col.name, pii_cache[col.pii]))
            self._plans[table.name] = _TablePlan(
                name=table.name,
                rows=row_type(table),
                key_of=attrgetter(*table.key) if table.key else None,
                single_key=len(table.key) == 1,
                pii=tuple(pii),
            )

    def decode(self, record: StreamRecord) -> list[Change]:
        """[change], or [old-key tombstone, new row] for a primary-key change."""
        data = record.data
        try:
            raw = binascii.a2b_base64(data, strict_mode=True) if type(data) is str else data
        except (binascii.Error, ValueError):
            raise Rejected("record data is not valid base64") from None
        try:
            message = self._envelope.decode(raw)
        except msgspec.ValidationError:
            raise Rejected("not a DMS record: no valid 'metadata' object") from None
        except msgspec.DecodeError as exc:
            raise Rejected(f"record data is not valid JSON ({exc})") from None
        metadata: Metadata | None = message.metadata
        if metadata is None:
            raise Rejected("not a DMS record: no valid 'metadata' object")
        if metadata.record_type != "data" or message.control:
            if metadata.record_type == "control" or message.control:
                self._control(metadata, message.control, record)
            raise Rejected("not a DMS record: record-type is neither 'data' nor 'control'")
        plan = self._plans.get(metadata.table_name)
        if plan is not None and metadata.schema_name == self._schema:
            names_as_spec = True  # the common case, without a call
        else:
            plan, names_as_spec = self._plan_of(metadata)
        operation = metadata.operation
        if operation not in DATA_OPERATIONS:
            raise Rejected(f"{plan.name}: unknown data operation", plan.name)
        if not message.data:
            raise Rejected(f"{plan.name}: DMS record without a 'data' object", plan.name)
        append_only = plan.key_of is None
        try:
            sort_key = order_key(metadata, record.sequence_number)
            if operation == "delete" and not append_only:
                row = plan.rows.decode_key(message.data, names_as_spec)
            else:
                row = plan.rows.decode(message.data, names_as_spec)
        except (BadOrderKey, BadRow) as exc:
            raise Rejected(f"{plan.name}: {exc}", plan.name) from None
        row.cdc_order_key = sort_key
        if operation == "delete":
            row.cdc_deleted = True
        if plan.pii:
            self._apply_pii(plan, row)
        if append_only:
            # Every change is its own row, keyed by where it sits in the source log, so only a
            # redelivery of the same change collapses into one; full-load rows carry no log
            # position (two may share a build time), so theirs adds the Kinesis record.
            load = record.sequence_number if sort_key[0] == CLASS_LOAD else ""
            return [Change(plan.name, (sort_key, load), row, operation == "delete", sort_key,
                           operation, record.sequence_number, metadata.commit_timestamp)]
        key = (plan.key_of(row),) if plan.single_key else plan.key_of(row)
        if None in key:
            self._reject_missing_key(plan, key)
        change = Change(plan.name, key, row, operation == "delete", sort_key, operation,
                        record.sequence_number, metadata.commit_timestamp)
        if operation == "update" and message.before_image:
            old = self._old_key_tombstone(plan, message.before_image, change, names_as_spec)
            if old is not None:
                return [old, change]
        return [change]

    def _plan_of(self, metadata: Metadata) -> tuple[_TablePlan, bool]:
        """The spec table of a record and whether its names are in the spec's case; raises
        ``Skipped`` (named) for other tables."""
        table_name = metadata.table_name
        plan = self._plans.get(table_name)
        if plan is not None and metadata.schema_name == self._schema:
            return plan, True
        if not self._exact_names:
            # Oracle and Db2 send upper-case identifiers (``TICKET.TICKET_ID``).
            plan = self._plans.get((table_name or "").lower())
            if plan is not None and (metadata.schema_name or "").lower() == self._schema.lower():
                return plan, False
        if (table_name or "").lower().startswith("awsdms_"):
            raise Skipped("dms-internal-table")
        # Named, so a near miss (another schema, another case) shows in the counts.
        raise Skipped(f"table-not-in-spec:{metadata.schema_name}.{table_name}")

    def _control(self, metadata: Metadata, control: bytes, record: StreamRecord) -> None:
        """Apply-worthy control records become ``TableControl``; always raises.

        DMS sends them with ``IncludeTableAlterOperations`` (and the table definition with
        ``IncludeControlDetails``): AWS DMS User Guide, "Using Amazon Kinesis Data Streams as
        a target", KinesisSettings.
        """
        operation = metadata.operation or "unknown"
        try:
            plan, _names_as_spec = self._plan_of(metadata)
        except Skipped:
            raise Skipped(f"control:{operation}") from None
        if operation == "drop-table":
            raise Rejected(f"{plan.name}: {DROP_TABLE_REASON}", plan.name)
        if operation == "truncate-table":
            raise TableControl(TableEvent(plan.name, TRUNCATE, self._control_key(
                plan, metadata, record), record.sequence_number))
        if operation == "add-column" and self.spec.evolve == "add-columns":
            try:
                body = json.loads(bytes(control)) if control else {}
            except ValueError:
                body = {}
            table_def = body.get("table-def") if isinstance(body, dict) else None
            if not isinstance(table_def, dict):
                raise Skipped(f"control:add-column-without-table-def:{plan.name}")
            added = new_columns(plan.rows.table, table_def)
            if added:
                raise TableControl(TableEvent(plan.name, ADD_COLUMNS, self._control_key(
                    plan, metadata, record), record.sequence_number, added))
        # create-table, drop-column, rename-column, column-type-change ...: the warehouse
        # keeps its data; counted by table, so the batch log reports them.
        raise Skipped(f"control:{operation}:{plan.name}")

    @staticmethod
    def _control_key(plan: _TablePlan, metadata: Metadata, record: StreamRecord) -> str:
        try:
            return order_key(metadata, record.sequence_number)
        except BadOrderKey as exc:
            raise Rejected(f"{plan.name}: {metadata.operation}: {exc}", plan.name) from None

    @staticmethod
    def _apply_pii(plan: _TablePlan, row: Any) -> None:
        for name, apply in plan.pii:
            value = getattr(row, name)
            if value is not None:
                setattr(row, name, apply(str(value)))

    @staticmethod
    def _reject_missing_key(plan: _TablePlan, key: tuple[Any, ...]) -> None:
        missing = [k for k, v in zip(plan.rows.table.key, key, strict=True) if v is None]
        raise Rejected(f"{plan.name}: missing key column {missing[0]!r}", plan.name)

    def _old_key_tombstone(self, plan: _TablePlan, before: bytes, change: Change,
                           names_as_spec: bool) -> Change | None:
        """A tombstone for the old key when an update moved the row to a new primary key."""
        if bytes(before) == b"null":
            return None
        try:
            old_row = plan.rows.decode_key(before, names_as_spec)
        except BadRow as exc:
            raise Rejected(f"{plan.name}: before image: {exc}", plan.name) from None
        raw_key = (plan.key_of(old_row),) if plan.single_key else plan.key_of(old_row)
        if None in raw_key:
            return None  # no (complete) old key captured: a plain update
        if plan.pii:
            self._apply_pii(plan, old_row)
        old_key = (plan.key_of(old_row),) if plan.single_key else plan.key_of(old_row)
        if old_key == change.key:
            return None
        old_row.cdc_order_key = change.order_key
        old_row.cdc_deleted = True
        return Change(change.table, old_key, old_row, True, change.order_key, "update",
                      change.sequence_number, change.commit_timestamp)
