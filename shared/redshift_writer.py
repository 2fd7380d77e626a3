"""Write one reduced batch to Redshift: stage, order-guard, MERGE, in one transaction.

Small batches are staged inline (multi-row INSERTs of escaped literals, each statement under
the Data API's 100 KB limit); when the transaction would need more than the 40 statements a
BatchExecuteStatement allows, the biggest tables are staged through S3 and COPY instead. With
no staging bucket configured, the batch is split into smaller transactions (each one is
idempotent and order-guarded, so a crash between them is repaired by the retry).
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
from shared.staging import insert_statements, json_lines, staging_columns

MAX_STATEMENTS = 40
MAX_SQL_BYTES = 100 * 1024 - 512  # the Data API's limit, with room for the statement head


@dataclass(frozen=True)
class S3Stager:
    """Puts staging files in S3 and writes the COPY that loads them."""

    client: Any
    bucket: str
    prefix: str
    iam_role_arn: str

    def put(self, batch_id: str, table: str, body: bytes) -> str:
        key = f"{self.prefix.strip('/')}/{batch_id}/{table}.json.gz".lstrip("/")
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        return key

    def copy_statement(self, stage: str, columns: tuple[str, ...], key: str) -> str:
        cols = ", ".join(sql.ident(c) for c in columns)
        role = self.iam_role_arn.replace("'", "''")
        return (
            f"COPY {stage} ({cols}) FROM 's3://{self.bucket}/{key}' IAM_ROLE '{role}' "
            "FORMAT AS JSON 'auto' GZIP TIMEFORMAT 'auto' DATEFORMAT 'auto'"
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
        loads = {
            name: insert_statements(
                sql.stage_table(name), self.spec.tables[name], rows, MAX_SQL_BYTES
            )
            for name, rows in batch.items()
        }
        fixed = sql.fixed_statement_count(self.spec, batch)
        if fixed + sum(len(v) for v in loads.values()) <= MAX_STATEMENTS:
            return self._run(batch, loads, [])
        if self.stager is not None:
            return self._run_with_copy(batch, loads, fixed)
        return self._split(batch)

    def _run_with_copy(
        self, batch: dict[str, list[Change]], loads: dict[str, list[str]], fixed: int
    ) -> WriteReport:
        assert self.stager is not None
        batch_id = uuid.uuid4().hex
        keys: list[str] = []
        via_s3: list[str] = []
        for name in sorted(loads, key=lambda t: len(loads[t]), reverse=True):
            if fixed + sum(len(v) for v in loads.values()) <= MAX_STATEMENTS:
                break
            table = self.spec.tables[name]
            key = self.stager.put(batch_id, name, json_lines(table, batch[name]))
            keys.append(key)
            via_s3.append(name)
            loads[name] = [
                self.stager.copy_statement(sql.stage_table(name), staging_columns(table), key)
            ]
        try:
            return self._run(batch, loads, via_s3)
        finally:
            self.stager.delete(keys)

    def _split(self, batch: dict[str, list[Change]]) -> WriteReport:
        first = {t: rows[: len(rows) // 2] for t, rows in batch.items()}
        second = {t: rows[len(rows) // 2 :] for t, rows in batch.items()}
        report = self.stage_and_merge(first)
        report.add(self.stage_and_merge(second))
        return report

    def _run(
        self, batch: dict[str, list[Change]], loads: dict[str, list[str]], via_s3: list[str]
    ) -> WriteReport:
        statements = sql.batch_statements(self.spec, loads)
        self.api.run_transaction(statements)
        return WriteReport(
            changes={t: len(rows) for t, rows in batch.items()},
            transactions=1,
            statements=len(statements),
            staged_through_s3=via_s3,
        )
