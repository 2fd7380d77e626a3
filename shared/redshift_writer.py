"""Write one reduced batch to Redshift: stage, order-guard, MERGE, in one transaction.

``shared.stage_plan`` decides per table between inline INSERTs and S3 + COPY; with no staging
bucket and a batch too big for one BatchExecuteStatement, the batch is split into smaller
transactions (each one idempotent and order-guarded, so a crash between them is repaired by
the retry).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared import warehouse_sql as sql
from shared.data_api import RedshiftDataApi
from shared.records import Change
from shared.spec import PipelineSpec
from shared.stage_plan import CopyLoad, InlineLoad, plan_stage_loads
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


class RedshiftWriter:
    def __init__(
        self, spec: PipelineSpec, api: RedshiftDataApi, stager: S3Stager | None = None
    ) -> None:
        self.spec = spec
        self.api = api
        self.stager = stager

    def stage_and_merge(self, changes: Mapping[str, list[Change]]) -> WriteReport:
        """Apply the newest-per-key changes of one batch; idempotent and order-guarded."""
        batch = {t: changes[t] for t in self.spec.tables if changes.get(t)}
        if not batch:
            return WriteReport()
        loads = plan_stage_loads(self.spec, batch, copy_available=self.stager is not None)
        if loads is None:
            return self._split(batch)
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
            transaction = sql.batch_statements(self.spec, statements)
            self.api.run_transaction(transaction)
        finally:
            if self.stager is not None:
                self.stager.delete(uploaded)
        return WriteReport(
            changes={t: len(rows) for t, rows in batch.items()},
            transactions=1,
            statements=len(transaction),
            staged_through_s3=sorted(n for n, load in loads.items() if isinstance(load, CopyLoad)),
        )

    def merge_staged(self, staged: Mapping[str, str], changes: Mapping[str, int]) -> WriteReport:
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
        if not statements:
            return WriteReport()
        transaction = sql.batch_statements(self.spec, statements)
        self.api.run_transaction(transaction)
        return WriteReport(
            changes={t: changes.get(t, 0) for t in statements},
            transactions=1,
            statements=len(transaction),
            staged_through_s3=sorted(statements),
        )

    def _split(self, batch: dict[str, list[Change]]) -> WriteReport:
        first = {t: rows[: len(rows) // 2] for t, rows in batch.items()}
        second = {t: rows[len(rows) // 2 :] for t, rows in batch.items()}
        report = self.stage_and_merge(first)
        report.add(self.stage_and_merge(second))
        return report
