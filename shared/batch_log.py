"""The per-batch log fields, one definition for both consumers.

The Lambda handler logs them with its "batch processed" line, the Glue job in its JSON line
per micro-batch (``shared.glue.job.batch_log``), so a query over either path's logs reads the
same names. Counts, reasons, table and column names and timestamps only: never a payload or a
personal value (reject reasons never quote the value).
"""

from __future__ import annotations

from typing import Any

from shared.consumer import BatchOutcome
from shared.redshift_writer import AddedColumn


def batch_fields(outcome: BatchOutcome) -> dict[str, Any]:
    """What is logged per batch, as JSON-ready values."""
    report = outcome.write_report
    return {
        "records_in": outcome.records_in,
        "changes_applied": outcome.changes_applied,
        "rejected": outcome.rejected,
        "reject_reasons": dict(outcome.reject_reasons),
        "skipped": dict(outcome.skipped),
        "table_events": dict(outcome.table_events),
        "added_columns": [added_column_fields(a) for a in outcome.added_columns],
        "transactions": report.transactions if report else 0,
        "staged_through_s3": report.staged_through_s3 if report else False,
        "data_api_calls": report.data_api_calls if report else 0,
        "newest_commit_timestamp": outcome.newest_commit_timestamp,
        "newest_commit_by_table": dict(outcome.newest_commit_by_table),
        "failure": outcome.failure,
    }


def added_column_fields(added: AddedColumn) -> dict[str, Any]:
    """A source column schema evolution added: names only (a column name is schema)."""
    return {"table": added.table, "column": added.column, "type": added.spec_type,
            "rows_written_without_it": added.written_without}
