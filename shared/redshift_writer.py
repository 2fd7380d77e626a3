"""Write one reduced batch to Redshift: stage, order-guard, MERGE, in one transaction.

``shared.stage_plan`` decides per table between inline INSERTs and S3 + COPY; with no staging
bucket and a batch too big for one BatchExecuteStatement, the batch is split into smaller
transactions (each one idempotent and order-guarded, so a crash between them is repaired by
the retry).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared import warehouse_sql as sql
from shared.data_api import RedshiftDataApi, StatementFailed
from shared.records import ADD_COLUMNS, Change, TableEvent
from shared.schema_evolution import evolved_spec
from shared.spec import PipelineSpec
from shared.stage_plan import MAX_STATEMENTS, CopyLoad, InlineLoad, plan_stage_loads
from shared.staging import staging_columns


@dataclass(frozen=True)
class S3Stager:
    """Puts staging files in S3 and writes the COPY that loads them."""

    client: Any
    bucket: str
    prefix: str
    iam_role_arn: str

    def put(self, batch_id: str, table: str, body: bytes) -> str:
        key = f"{self.prefix.strip('/')}/{batch_id}/{table}.json".lstrip("/")
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        return key

    def copy_statement(self, stage: str, columns: tuple[str, ...], key: str) -> str:
        cols = ", ".join(sql.ident(c) for c in columns)
        role = self.iam_role_arn.replace("'", "''")
        return (
            f"COPY {stage} ({cols}) FROM 's3://{self.bucket}/{key}' IAM_ROLE '{role}' "
            "FORMAT AS JSON 'auto' TIMEFORMAT 'auto' DATEFORMAT 'auto'"
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
    staged_through_s3: list[str] = field(default_factory=list)

    def add(self, other: WriteReport) -> None:
        for table, count in other.changes.items():
            self.changes[table] = self.changes.get(table, 0) + count
        self.transactions += other.transactions
        self.statements += other.statements
        self.staged_through_s3.extend(other.staged_through_s3)


class AddedColumnsChanged(Exception):
    """Another consumer added source columns since this writer read them: reload, decode
    the batch again and write it again (nothing of it was applied)."""


AddedColumns = dict[str, list[tuple[str, str]]]


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

    # -- the warehouse's pipeline state --

    def load_added_columns(self) -> PipelineSpec:
        """Read the columns schema evolution added; return (and use) the evolved spec."""
        if self.base_spec.evolve == "off":
            self.added_columns = {}
            return self.spec
        added: AddedColumns = {}
        rows = self.api.query(
            f"SELECT table_name, column_name, column_type FROM "
            f"{sql.replica_table(self.base_spec, sql.ADDED_COLUMNS)} "
            "ORDER BY table_name, added_key, column_name")
        for row in rows:
            added.setdefault(str(row["table_name"]), []).append(
                (str(row["column_name"]), str(row["column_type"])))
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
                rows = self.api.query(sql.rows_newer_than_query(
                    self.base_spec, event.table, event.order_key))
                done.append(AddedColumn(event.table, column, spec_type, int(rows[0]["n"])))
        if done:
            self.spec = evolved_spec(self.base_spec, self.added_columns)
        return done

    def _added_known(self) -> int | None:
        if self.base_spec.evolve == "off" or self.added_columns is None:
            return None
        return sum(len(cols) for cols in self.added_columns.values())

    def _run(self, statements: list[str]) -> None:
        try:
            self.api.run_transaction(statements)
        except StatementFailed as exc:
            text = str(exc).lower()
            if self._added_known() is not None and text.startswith("statement 2 of") and (
                    "by zero" in text):
                raise AddedColumnsChanged(str(exc)) from None
            raise

    # -- batches --

    def stage_and_merge(self, changes: Mapping[str, list[Change]],
                        events: Sequence[TableEvent] = ()) -> WriteReport:
        """Apply the newest-per-key changes of one batch, after its truncates; idempotent and
        order-guarded."""
        batch = {t: changes[t] for t in self.spec.tables if changes.get(t)}
        if not batch and not events:
            return WriteReport()
        loads = plan_stage_loads(self.spec, batch, copy_available=self.stager is not None,
                                 events=events, added_columns_known=self._added_known())
        if loads is None:
            return self._split(batch, events)
        batch_id = uuid.uuid4().hex
        statements: dict[str, list[str]] = {}
        uploaded: list[str] = []
        try:
            for name, load in loads.items():
                if isinstance(load, InlineLoad):
                    statements[name] = load.statements
                    continue
                assert self.stager is not None
                key = self.stager.put(batch_id, name, load.body)
                uploaded.append(key)
                table = self.spec.tables[name]
                statements[name] = [
                    self.stager.copy_statement(sql.stage_table(name), staging_columns(table), key)
                ]
            transaction = sql.batch_statements(self.spec, statements, events,
                                               self._added_known())
            self._run(transaction)
        finally:
            if self.stager is not None:
                self.stager.delete(uploaded)
        return WriteReport(
            changes={t: len(rows) for t, rows in batch.items()},
            transactions=1,
            statements=len(transaction),
            staged_through_s3=sorted(n for n, load in loads.items() if isinstance(load, CopyLoad)),
        )

    def merge_staged(self, staged: Mapping[str, str], changes: Mapping[str, int],
                     events: Sequence[TableEvent] = ()) -> WriteReport:
        """Apply tables already staged in S3 (``staged``: table -> object key or key prefix, as
        the Glue job's executors wrote them) in the same one transaction: one COPY per table,
        then the statements ``stage_and_merge`` runs. ``changes`` counts the staged rows."""
        if self.stager is None:
            raise ValueError("merging S3-staged tables needs a staging bucket (S3Stager)")
        statements = {
            name: [self.stager.copy_statement(sql.stage_table(name),
                                              staging_columns(self.spec.tables[name]),
                                              staged[name])]
            for name in self.spec.tables if staged.get(name)
        }
        if not statements and not events:
            return WriteReport()
        transaction = sql.batch_statements(self.spec, statements, events, self._added_known())
        self._run(transaction)
        return WriteReport(
            changes={t: changes.get(t, 0) for t in statements},
            transactions=1,
            statements=len(transaction),
            staged_through_s3=sorted(statements),
        )

    def _split(self, batch: dict[str, list[Change]], events: Sequence[TableEvent]) -> WriteReport:
        """Write a batch that does not fit one BatchExecuteStatement (no staging bucket) as two
        transactions, each idempotent and order-guarded, so a crash between them is repaired
        by the retry of the whole batch. The batch's truncates go with the first part only:
        the truncate guard of the later parts reads what the first one recorded.

        Rows are halved while that can help (the fixed statements of the batch's tables fit the
        budget); otherwise the tables are divided, which always shrinks the batch. Between the
        parts an analyst may see a wide row built from the first part only."""
        tables = [t for t in self.spec.tables if batch.get(t)]
        fixed = sql.fixed_statement_count(self.spec, tables, events, self._added_known())
        rows_can_shrink = any(len(batch[t]) > 1 for t in tables)
        if rows_can_shrink and fixed + len(tables) <= MAX_STATEMENTS:
            first = {t: batch[t][: len(batch[t]) // 2] for t in tables}
            second = {t: batch[t][len(batch[t]) // 2 :] for t in tables}
        elif len(tables) > 1:
            half = len(tables) // 2
            first = {t: batch[t] for t in tables[:half]}
            second = {t: batch[t] for t in tables[half:]}
        else:
            raise ValueError(
                f"a batch of {sum(len(batch[t]) for t in tables)} change(s) to {tables} and "
                f"{len(events)} table event(s) needs more than {MAX_STATEMENTS} statements in "
                "one transaction; configure a staging bucket")
        report = self.stage_and_merge(first, events)
        report.add(self.stage_and_merge(second))
        return report
