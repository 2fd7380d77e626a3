"""Both consumers log a batch with the same field names and values
(``shared.batch_log.batch_fields``): the Lambda handler's "batch processed" line and the Glue
job's line per micro-batch, so one log query reads either path."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from typing import Any

from functions.kinesis_consumer import app
from shared.batch_log import batch_fields
from shared.consumer import BatchOutcome
from shared.glue.job import batch_log
from shared.redshift_writer import AddedColumn, WriteReport

FIELDS = {
    "records_in", "changes_applied", "rejected", "reject_reasons", "skipped", "table_events",
    "added_columns", "transactions", "staged_through_s3", "data_api_calls",
    "newest_commit_timestamp", "newest_commit_by_table", "failure",
}


def outcome() -> BatchOutcome:
    return BatchOutcome(
        records_in=12, changes_applied=9, rejected=1, skipped=Counter({"awsdms_apply": 2}),
        reject_reasons=Counter({"customer: email is longer than 320 characters": 1}),
        newest_commit_timestamp="2021-08-15T10:00:00Z",
        write_report=WriteReport(changes={"customer": 9}, transactions=1, statements=2,
                                 data_api_calls=1, staged_through_s3=True),
        table_events=Counter({"add-column:ticket": 1}),
        added_columns=[AddedColumn("ticket", "section", "varchar(16)", 0)],
        newest_commit_by_table={"customer": "2021-08-15T10:00:00Z"},
    )


def lambda_lines(log: Any) -> list[dict[str, Any]]:
    """The JSON lines the Lambda handler's logger writes while ``log`` runs."""
    stream = io.StringIO()
    previous = app.logger.registered_handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        log()
    finally:
        app.logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_both_paths_log_the_same_batch_fields() -> None:
    batch = outcome()
    lambda_line = next(line for line in lambda_lines(lambda: app.log_outcome(batch))
                       if line["message"] == "batch processed")
    plain = lambda_lines(lambda: app.logger.info("batch processed"))[0]
    lambda_fields = {k: v for k, v in lambda_line.items() if k not in plain}
    glue_line = batch_log(batch, 7, time.perf_counter())
    glue_fields = {k: v for k, v in glue_line.items()
                   if k not in {"message", "batch_id", "latency_ms"}}

    assert set(batch_fields(batch)) == set(glue_fields) == FIELDS
    # Powertools' JSON formatter leaves out keys whose value is None
    # (LambdaPowertoolsFormatter._strip_none_records): here only "failure".
    glue_values = json.loads(json.dumps(glue_fields))
    assert lambda_fields == {k: v for k, v in glue_values.items() if v is not None}
    assert FIELDS - lambda_fields.keys() == {"failure"}
    assert glue_fields["added_columns"] == [{"table": "ticket", "column": "section",
                                             "type": "varchar(16)",
                                             "rows_written_without_it": 0}]
    assert (glue_line["message"], glue_line["batch_id"]) == ("batch processed", 7)


def test_a_failed_batch_says_why_on_both_paths() -> None:
    batch = BatchOutcome(records_in=3, failed_from="49590338271490256608559692538361571095921575",
                         failure="the Redshift Data API is unavailable")
    lambda_line = next(line for line in lambda_lines(lambda: app.log_outcome(batch))
                       if line["message"] == "batch processed")
    glue_line = batch_log(batch, 8, time.perf_counter())
    assert lambda_line["failure"] == glue_line["failure"] == "the Redshift Data API is unavailable"
    assert glue_line["message"] == "batch failed"
    assert lambda_line["transactions"] == glue_line["transactions"] == 0
