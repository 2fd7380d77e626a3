"""Write one reduced batch to Redshift: land it, then apply every landed batch in one call.

The batch's changes (and truncates) are landed in the generic ``_cdc_landing`` table (one COPY
from S3, or a few multi-row INSERTs: ``shared.landing``), ending with its end row; the call
``_cdc_apply_pending`` applies every pending batch (``shared.apply_procedures``), after a LOCK
of the landing table only (docs/warehouse-apply.md). Two ways to reach the call:

- inline (``stage_and_merge`` without a queue, and the Glue job's ``merge_staged``): LOCK,
  landing and call in one transaction when they fit one BatchExecuteStatement; otherwise the
  landing is committed first and only the call changes what analysts see;
- through the applier (``stage_and_merge`` with an ``ApplierQueue``): the consumer puts the
  batch's JSON lines in S3 and a message on the applier's queue, and sends no SQL at all; the
  applier (``apply_landed``) COPYs every queued object through one manifest and calls once, so
  the warehouse's work follows the applier's pace, not the number of shards.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared import apply_procedures as procedures
from shared import warehouse_sql as sql
from shared.apply_procedures import known_columns as known_columns_of
from shared.data_api import RedshiftDataApi, StatementFailed
from shared.landing import (
    MAX_STATEMENTS,
    json_lines,
    newest_truncates,
    plan_landing,
)
from shared.records import ADD_COLUMNS, Change, TableEvent
from shared.schema_evolution import evolved_spec
from shared.spec import PipelineSpec


@dataclass(frozen=True)
class S3Stager:
    """Puts staging files in S3 and writes the COPY that loads them."""

    client: Any
    bucket: str
    prefix: str
    iam_role_arn: str

    def put(self, batch_id: str, body: bytes) -> str:
        key = f"{self.prefix.strip('/')}/{batch_id}.json".lstrip("/")
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        return key

    def copy_statement(self, spec: PipelineSpec, key: str) -> str:
        """COPY the landing rows in the object ``key`` (or every object under that prefix, or
        the objects of the manifest ``key``)."""
        return procedures.copy_landing_statement(spec, f"s3://{self.bucket}/{key}",
                                                 self.iam_role_arn)

    def put_manifest(self, name: str, keys: Sequence[str]) -> str:
        """A COPY manifest of ``keys`` ("Using a manifest to specify data files", Amazon
        Redshift Database Developer Guide). Entries are not mandatory: an object already
        applied and deleted (its message delivered again) is skipped, not an error."""
        entries = [{"url": f"s3://{self.bucket}/{k}", "mandatory": False} for k in keys]
        key = f"{self.prefix.strip('/')}/manifests/{name}.manifest".lstrip("/")
        self.client.put_object(Bucket=self.bucket, Key=key,
                               Body=json.dumps({"entries": entries}).encode())
        return key

    def _marker_key(self) -> str:
        return f"{self.prefix.strip('/')}/{ADDED_COLUMNS_MARKER}".lstrip("/")

    def added_columns_marker(self) -> str | None:
        """The ETag of the added-columns marker (None: no column added yet). A HEAD request
        of a missing object answers 404 when the caller may list the bucket ("HeadObject",
        Amazon S3 API Reference), which the consumers' role allows on the staging prefix."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._marker_key())
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return str(head["ETag"])

    def mark_added_columns(self, known: str) -> None:
        """Rewrite the marker after adding a source column (its body: the columns known)."""
        self.client.put_object(Bucket=self.bucket, Key=self._marker_key(), Body=known.encode())

    def delete(self, keys: Sequence[str]) -> None:
        """Delete ``keys``, at most 1,000 per request ("DeleteObjects", Amazon S3 API
        Reference: "up to 1,000 keys")."""
        for start in range(0, len(keys), DELETE_OBJECTS_MAX):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[start:start + DELETE_OBJECTS_MAX]],
                "Quiet": True})


class ApplierQueue(Protocol):
    """Where a consumer announces a batch it landed in S3 for the applier."""

    def send(self, batch_id: str, key: str,
             newest_commit_by_table: Mapping[str, str] | None = None) -> None: ...


@dataclass
class WriteReport:
    changes: dict[str, int] = field(default_factory=dict)
    transactions: int = 0
    statements: int = 0
    data_api_calls: int = 0
    staged_through_s3: bool = False
    queued_for_applier: bool = False
    batches_applied: int = 0


AddedColumns = dict[str, list[tuple[str, str]]]
# How long a consumer without a staging bucket trusts its read of the added source columns
# (``added_columns_stale``); with one, a marker object says when to read them again.
ADDED_COLUMNS_MAX_AGE = 60.0
ADDED_COLUMNS_MARKER = "_state/added-columns"
DELETE_OBJECTS_MAX = 1000


def read_added_columns(api: RedshiftDataApi, spec: PipelineSpec) -> AddedColumns:
    """The source columns schema evolution added, per table, in the order they were added."""
    added: AddedColumns = {}
    for row in api.query(sql.added_columns_query(spec)):
        added.setdefault(str(row["table_name"]), []).append(
            (str(row["column_name"]), str(row["column_type"])))
    return added


@dataclass(frozen=True)
class AddedColumn:
    """A source column schema evolution added. ``written_without``: replica rows changed after
    the ``add-column`` that were written before it was known (a consumer of another shard read
    them first: DMS sends control records with their own partition key), so their value of the
    new column is missing; reload the table (``tools.table_reload``) to fill them."""

    table: str
    column: str
    spec_type: str
    written_without: int


class RedshiftWriter:
    """Writes batches for one spec; ``spec`` is the spec plus the source columns schema
    evolution added (``load_added_columns``)."""

    def __init__(
        self, spec: PipelineSpec, api: RedshiftDataApi, stager: S3Stager | None = None,
        applier_queue: ApplierQueue | None = None,
    ) -> None:
        if applier_queue is not None and stager is None:
            raise ValueError("landing for the applier needs a staging bucket (S3Stager)")
        self.base_spec = spec
        self.spec = spec
        self.api = api
        self.stager = stager
        self.applier_queue = applier_queue
        self.added_columns: AddedColumns | None = None  # None: not read yet
        self._added_read_at = 0.0
        self._marker_seen: str | None = None
        self.fingerprint = procedures.procedures_fingerprint(spec)

    # -- the warehouse's pipeline state --

    def load_added_columns(self) -> PipelineSpec:
        """Read the columns schema evolution added; return (and use) the evolved spec."""
        if self.base_spec.evolve == "off":
            self.added_columns = {}
            return self.spec
        marker = self.stager.added_columns_marker() if self.stager is not None else None
        added = read_added_columns(self.api, self.base_spec)
        self.added_columns = added
        self._added_read_at = time.monotonic()
        self._marker_seen = marker
        self.spec = evolved_spec(self.base_spec, added)
        return self.spec

    def added_columns_stale(self) -> bool:
        """True when the added source columns must be read again before decoding: never read;
        another consumer added one since (the writer that adds a column rewrites a marker
        object in the staging bucket, ``S3Stager.mark_added_columns``, which every batch
        checks with one HEAD request, not a warehouse query); or, without a staging bucket,
        read longer ago than ``ADDED_COLUMNS_MAX_AGE``. A change decoded without a column
        keeps the replica's value of it (``shared.apply_procedures.known_columns``), so the
        check keeps such changes to the ones already in flight when the column was added."""
        if self.added_columns is None:
            return True
        if self.base_spec.evolve == "off":
            return False
        if self.stager is not None:
            return self.stager.added_columns_marker() != self._marker_seen
        return time.monotonic() - self._added_read_at > ADDED_COLUMNS_MAX_AGE

    def load_starts(self) -> dict[str, str]:
        """The recorded load start of every table being reloaded (``tools.table_reload``)."""
        rows = self.api.query(sql.load_starts_query(self.base_spec))
        return {str(r["table_name"]): str(r["load_started"]) for r in rows}

    def add_columns(self, events: Sequence[TableEvent]) -> list[AddedColumn]:
        """Add the new source columns of ``ADD_COLUMNS`` events to their replicas (one ALTER
        per column, Redshift's rule) and record them; return what was added. Columns another
        consumer added first are skipped."""
        if self.added_columns is None:
            self.load_added_columns()
        assert self.added_columns is not None
        done: list[AddedColumn] = []
        for event in events:
            if event.kind != ADD_COLUMNS or event.table not in self.base_spec.tables:
                continue
            known = {c for c, _ in self.added_columns.get(event.table, [])}
            known |= set(self.base_spec.tables[event.table].column_names)
            for column, spec_type in event.columns:
                if column in known:
                    continue
                statements = sql.add_replica_column_statements(
                    self.base_spec, event.table, column, spec_type, event.order_key)
                try:
                    self.api.run_transaction(statements)
                except StatementFailed:
                    self.load_added_columns()  # added by another consumer meanwhile?
                    if column not in {c for c, _ in self.added_columns.get(event.table, [])}:
                        raise
                    continue
                self.added_columns.setdefault(event.table, []).append((column, spec_type))
                known.add(column)
                self._refresh_table_procedure(event.table)
                if self.stager is not None:
                    self.stager.mark_added_columns(known_columns_of(self.added_columns))
                rows = self.api.query(sql.rows_newer_than_query(
                    self.base_spec, event.table, event.order_key))
                done.append(AddedColumn(event.table, column, spec_type, int(rows[0]["n"])))
        if done:
            self.spec = evolved_spec(self.base_spec, self.added_columns)
        return done

    def _refresh_table_procedure(self, table: str) -> None:
        """Recreate the table's apply procedure with every added column recorded. The
        transaction locks ``_cdc_columns`` and checks it still holds what was read (else
        reads again), so of two consumers adding columns at once the later one's procedure,
        which knows both, is the one that stays."""
        for _ in range(10):
            evolved = self.load_added_columns()
            known = sum(len(cols) for cols in (self.added_columns or {}).values())
            try:
                self.api.run_transaction([
                    *sql.added_columns_still_statements(self.base_spec, known),
                    procedures.table_procedure_statement(evolved, evolved.tables[table],
                                                         self.base_spec.tables[table]),
                ])
                return
            except StatementFailed as exc:
                if "by zero" not in str(exc).lower():
                    raise
        raise RuntimeError(f"could not refresh the apply procedure of {table}: source columns "
                           "kept being added while it ran")

    def known_columns(self) -> str:
        return known_columns_of(self.added_columns or {})

    # -- batches --

    def stage_and_merge(self, changes: Mapping[str, list[Change]],
                        events: Sequence[TableEvent] = (),
                        newest_commit_by_table: Mapping[str, str] | None = None) -> WriteReport:
        """Land the newest-per-key changes of one batch (and its truncates) and have them
        applied: inline, or by the applier when this writer has an ``ApplierQueue`` (the
        batch's newest source commit per table goes with it, for the applier's freshness)."""
        batch = {t: changes[t] for t in self.spec.tables if changes.get(t)}
        truncates = newest_truncates(self.spec, events)
        if not batch and not truncates:
            return WriteReport()
        batch_id = uuid.uuid4().hex
        counts = {t: len(rows) for t, rows in batch.items()}
        if self.applier_queue is not None:
            assert self.stager is not None
            key = self.stager.put(batch_id, json_lines(self.spec, batch_id, batch, truncates,
                                                       self.known_columns()))
            self.applier_queue.send(batch_id, key, newest_commit_by_table)
            return WriteReport(changes=counts, staged_through_s3=True, queued_for_applier=True)
        landing = plan_landing(self.spec, batch_id, batch, truncates,
                               copy_available=self.stager is not None,
                               known=self.known_columns())
        uploaded: list[str] = []
        try:
            if landing.statements is not None:
                statements = landing.statements
            else:
                assert self.stager is not None and landing.body is not None
                uploaded.append(self.stager.put(batch_id, landing.body))
                statements = [self.stager.copy_statement(self.spec, uploaded[0])]
            report = self._land_and_apply(batch_id, statements)
        finally:
            if self.stager is not None:
                self.stager.delete(uploaded)
        report.changes = counts
        report.staged_through_s3 = bool(uploaded)
        return report

    def merge_staged(self, batch_id: str, prefix: str, changes: Mapping[str, int],
                     events: Sequence[TableEvent] = ()) -> WriteReport:
        """Apply a batch whose landing rows are already in S3 under ``prefix`` (the Glue job's
        executors wrote them, ``shared.landing.landing_line`` with ``batch_id``): one COPY of
        the prefix, the batch's truncates and end row, then the apply call, in one
        transaction. ``changes`` counts the staged rows per table."""
        if self.stager is None:
            raise ValueError("merging S3-staged rows needs a staging bucket (S3Stager)")
        truncates = newest_truncates(self.spec, events)
        staged = {t: n for t, n in changes.items() if n}
        if not staged and not truncates:
            return WriteReport()
        statements = [self.stager.copy_statement(self.spec, prefix)] if staged else []
        landing = plan_landing(self.spec, batch_id, {}, truncates, copy_available=False,
                               known=self.known_columns())
        assert landing.statements is not None
        report = self._land_and_apply(batch_id, statements + landing.statements)
        report.changes = dict(staged)
        report.staged_through_s3 = bool(staged)
        return report

    def apply_landed(self, keys: Sequence[str]) -> WriteReport:
        """The applier: COPY the landed batches in ``keys`` (S3 objects the consumers put,
        listed in one manifest) and apply every pending batch, in one transaction after the
        LOCK of the landing table. A batch applied before (its message delivered again) is
        skipped by the procedure. The objects are deleted once applied."""
        if self.stager is None:
            raise ValueError("the applier needs the staging bucket (S3Stager)")
        if not keys:
            return WriteReport()
        manifest = self.stager.put_manifest(uuid.uuid4().hex, keys)
        try:
            report = self._land_and_apply("", [self.stager.copy_statement(self.spec, manifest)])
        finally:
            self.stager.delete([manifest])
        self.stager.delete(keys)
        report.staged_through_s3 = True
        report.batches_applied = len(keys)
        return report

    def _land_and_apply(self, batch_id: str, landing: list[str]) -> WriteReport:
        """Lock, land and apply in one transaction when it fits one BatchExecuteStatement;
        otherwise land in transactions of their own first (the end row in the last, so the
        batch is pending only once whole; a failure then removes the batch's landed rows),
        then lock and apply.

        The LOCK comes first in the transaction: a serializable transaction's snapshot is taken
        at its first statement, so an applier that waited for another must not have read or
        written anything before (else "1023 Serializable isolation violation")."""
        lock = sql.applier_lock_statement(self.spec)
        call = procedures.apply_pending_call(self.spec, self.fingerprint)
        if len(landing) + 2 <= MAX_STATEMENTS:
            self.api.run_transaction([lock, *landing, call])
            return WriteReport(transactions=1, statements=len(landing) + 2, data_api_calls=1)
        calls = 0
        try:
            for start in range(0, len(landing), MAX_STATEMENTS):
                self.api.run_transaction(landing[start:start + MAX_STATEMENTS])
                calls += 1
            self.api.run_transaction([lock, call])
        except Exception:
            self.api.execute(sql.delete_landed_batch_statement(self.spec, batch_id))
            raise
        return WriteReport(transactions=calls + 1, statements=len(landing) + 2,
                           data_api_calls=calls + 1)
