"""Write one reduced batch to Redshift: land it, then apply it with one procedure call.

The batch's changes (and truncates) are landed in the generic ``_cdc_landing`` table (one COPY
from S3, or a few multi-row INSERTs: ``shared.landing``), then ``_cdc_apply_batch`` applies
them (``shared.apply_procedures``). When landing and call fit one BatchExecuteStatement they
are one transaction; otherwise the landing is committed first and only the call changes what
analysts see. Either way the number of Data API calls does not grow with the number of tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared import apply_procedures as procedures
from shared import warehouse_sql as sql
from shared.data_api import RedshiftDataApi, StatementFailed
from shared.landing import LANDED_COLUMNS, MAX_STATEMENTS, newest_truncates, plan_landing
from shared.records import ADD_COLUMNS, Change, TableEvent
from shared.schema_evolution import evolved_spec
from shared.spec import PipelineSpec
from shared.staging import sql_literal


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
        """COPY the landing rows in the object ``key`` (or every object under that prefix)."""
        cols = ", ".join(sql.ident(c) for c in LANDED_COLUMNS)
        role = self.iam_role_arn.replace("'", "''")
        return (
            f"COPY {sql.replica_table(spec, sql.LANDING)} ({cols}) "
            f"FROM 's3://{self.bucket}/{key}' IAM_ROLE '{role}' FORMAT AS JSON 'auto'"
        )

    def delete(self, keys: list[str]) -> None:
        if keys:
            self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )


@dataclass
class WriteReport:
    changes: dict[str, int] = field(default_factory=dict)
    transactions: int = 0
    statements: int = 0
    data_api_calls: int = 0
    staged_through_s3: bool = False


class AddedColumnsChanged(Exception):
    """Another consumer added source columns since this writer read them: reload, decode
    the batch again and write it again (nothing of it was applied)."""


AddedColumns = dict[str, list[tuple[str, str]]]


def read_added_columns(api: RedshiftDataApi, spec: PipelineSpec) -> AddedColumns:
    """The source columns schema evolution added, per table, in the order they were added."""
    added: AddedColumns = {}
    for row in api.query(f"SELECT table_name, column_name, column_type FROM "
                         f"{sql.replica_table(spec, sql.ADDED_COLUMNS)} "
                         "ORDER BY table_name, added_key, column_name"):
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
        self, spec: PipelineSpec, api: RedshiftDataApi, stager: S3Stager | None = None
    ) -> None:
        self.base_spec = spec
        self.spec = spec
        self.api = api
        self.stager = stager
        self.added_columns: AddedColumns | None = None  # None: not read yet
        self.fingerprint = procedures.procedures_fingerprint(spec)

    # -- the warehouse's pipeline state --

    def load_added_columns(self) -> PipelineSpec:
        """Read the columns schema evolution added; return (and use) the evolved spec."""
        if self.base_spec.evolve == "off":
            self.added_columns = {}
            return self.spec
        added = read_added_columns(self.api, self.base_spec)
        self.added_columns = added
        self.spec = evolved_spec(self.base_spec, added)
        return self.spec

    def load_starts(self) -> dict[str, str]:
        """The recorded load start of every table being reloaded (``tools.table_reload``)."""
        rows = self.api.query(
            f"SELECT table_name, load_started FROM "
            f"{sql.replica_table(self.base_spec, sql.TABLE_STATE)} WHERE load_started IS NOT NULL")
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
        added_table = sql.replica_table(self.base_spec, sql.ADDED_COLUMNS)
        for _ in range(10):
            evolved = self.load_added_columns()
            known = self._added_known() or 0
            try:
                self.api.run_transaction([
                    f"LOCK {added_table}",
                    f"SELECT 1 / (CASE WHEN COUNT(*) = {known} THEN 1 ELSE 0 END) "
                    f"FROM {added_table}",
                    procedures.table_procedure_statement(evolved, evolved.tables[table]),
                ])
                return
            except StatementFailed as exc:
                if "by zero" not in str(exc).lower():
                    raise
        raise RuntimeError(f"could not refresh the apply procedure of {table}: source columns "
                           "kept being added while it ran")

    def _added_known(self) -> int | None:
        if self.base_spec.evolve == "off" or self.added_columns is None:
            return None
        return sum(len(cols) for cols in self.added_columns.values())

    def _apply(self, statements: list[str]) -> None:
        try:
            self.api.run_transaction(statements)
        except StatementFailed as exc:
            if procedures.ADDED_COLUMNS_CHANGED in str(exc):
                raise AddedColumnsChanged(str(exc)) from None
            raise

    # -- batches --

    def stage_and_merge(self, changes: Mapping[str, list[Change]],
                        events: Sequence[TableEvent] = ()) -> WriteReport:
        """Apply the newest-per-key changes of one batch, after its truncates; idempotent and
        order-guarded, all in one transaction."""
        batch = {t: changes[t] for t in self.spec.tables if changes.get(t)}
        truncates = newest_truncates(self.spec, events)
        if not batch and not truncates:
            return WriteReport()
        batch_id = uuid.uuid4().hex
        landing = plan_landing(self.spec, batch_id, batch, truncates,
                               copy_available=self.stager is not None)
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
        report.changes = {t: len(rows) for t, rows in batch.items()}
        report.staged_through_s3 = bool(uploaded)
        return report

    def merge_staged(self, batch_id: str, prefix: str, changes: Mapping[str, int],
                     events: Sequence[TableEvent] = ()) -> WriteReport:
        """Apply a batch whose landing rows are already in S3 under ``prefix`` (the Glue job's
        executors wrote them, ``shared.landing.landing_line`` with ``batch_id``): one COPY of
        the prefix and the batch's truncates, then the apply call, in one transaction.
        ``changes`` counts the staged rows per table."""
        if self.stager is None:
            raise ValueError("merging S3-staged rows needs a staging bucket (S3Stager)")
        truncates = newest_truncates(self.spec, events)
        staged = {t: n for t, n in changes.items() if n}
        if not staged and not truncates:
            return WriteReport()
        statements = [self.stager.copy_statement(self.spec, prefix)] if staged else []
        if truncates:
            landing = plan_landing(self.spec, batch_id, {}, truncates, copy_available=False)
            assert landing.statements is not None
            statements += landing.statements
        report = self._land_and_apply(batch_id, statements)
        report.changes = dict(staged)
        report.staged_through_s3 = bool(staged)
        return report

    def _land_and_apply(self, batch_id: str, landing: list[str]) -> WriteReport:
        """Lock, land and apply in one transaction when it fits one BatchExecuteStatement;
        otherwise land in transactions of their own first (a failure then removes the batch's
        landed rows; the apply procedure also removes rows of batches that never got applied,
        a day later), then lock and apply.

        The LOCK comes first in the transaction: a serializable transaction's snapshot is taken
        at its first statement, so a writer that waited for another must not have read or
        written anything before (else "1023 Serializable isolation violation")."""
        lock = sql.lock_statement(self.spec)
        call = procedures.apply_batch_call(self.spec, batch_id, self._added_known(),
                                           self.fingerprint)
        if len(landing) + 2 <= MAX_STATEMENTS:
            self._apply([lock, *landing, call])
            return WriteReport(transactions=1, statements=len(landing) + 2, data_api_calls=1)
        calls = 0
        try:
            for start in range(0, len(landing), MAX_STATEMENTS):
                self.api.run_transaction(landing[start:start + MAX_STATEMENTS])
                calls += 1
            self._apply([lock, call])
        except Exception:
            self.api.execute(
                f"DELETE FROM {sql.replica_table(self.spec, sql.LANDING)} "
                f"WHERE batch_id = {sql_literal(batch_id)}")
            raise
        return WriteReport(transactions=calls + 1, statements=len(landing) + 2,
                           data_api_calls=calls + 1)
