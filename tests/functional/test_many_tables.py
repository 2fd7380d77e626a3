"""A 200-table spec with three wide targets, every column type, a composite key and a table
without a key: one batch touching every table is applied by the Lambda path and by the Glue
path, within the Data API's limits (the stand-in refuses more than 40 statements per
BatchExecuteStatement and statements over 100,000 bytes, so the test cannot pass by
accident), in one transaction and a number of Data API calls that does not grow with tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.wide_spec import (
    assert_every_table_applied,
    many_table_spec,
    many_table_spec_text,
    one_batch_touching_every_table,
)
from shared.glue.job import GlueBatchJob
from shared.redshift_writer import S3Stager
from tests.functional.glue_helpers import (
    batch_frame,
    glue_target,
)
from tests.functional.glue_helpers import endpoints_fixture as endpoints  # noqa: F401
from tests.functional.glue_helpers import spark_fixture as spark  # noqa: F401


@pytest.fixture(scope="module")
def spec() -> Any:
    return many_table_spec(200)


def test_the_lambda_path_applies_a_batch_touching_200_tables(
    make_pipeline: Any, staging_bucket: Any, spec: Any
) -> None:
    assert len(spec.tables) == 200 and len(spec.targets) == 3
    s3, bucket = staging_bucket
    stager = S3Stager(s3, bucket, "staging/many", "arn:aws:iam::123456789012:role/copy")
    pipeline = make_pipeline(spec=spec, stager=stager)
    records = one_batch_touching_every_table(spec).take()

    _, report = pipeline.apply(records)

    assert_every_table_applied(pipeline.sql, spec)
    assert (report.transactions, report.data_api_calls) == (1, 1)
    assert sum(report.changes.values()) == len(records)

    _, again = pipeline.apply(records)  # a redelivered batch changes nothing
    assert_every_table_applied(pipeline.sql, spec)
    assert again.data_api_calls == 1


def test_without_a_bucket_the_landing_is_split_but_the_apply_is_one_call(
    make_pipeline: Any, spec: Any
) -> None:
    pipeline = make_pipeline(spec=spec)
    records = one_batch_touching_every_table(spec, rows_per_table=110, long_note=False).take()
    _, report = pipeline.apply(records)

    assert_every_table_applied(pipeline.sql, spec, long_note=False)
    landing = pipeline.sql('SELECT count(*) AS n FROM cdc_replica."_cdc_landing"')
    assert landing == [{"n": 0}]  # applied batches leave nothing behind
    assert report.data_api_calls >= 2  # landing INSERTs in their own transactions, then the call
    assert report.statements <= report.data_api_calls * 40


def test_the_glue_path_applies_the_same_batch(
    spec: Any, tmp_path: Path, endpoints: None,  # noqa: F811 (the fixture imported above)
    moto_endpoint: str, redshift_api: str, redshift_data: Any, warehouse_db: str,
    warehouse_sql: Any, spark: Any,  # noqa: F811
) -> None:
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(many_table_spec_text(200))
    target = glue_target(moto_endpoint, redshift_api, redshift_data, warehouse_db, spec=spec)
    target.args["PIPELINE_SPEC_PATH"] = str(spec_path)
    job = GlueBatchJob.from_arguments(target.args, spark)
    outcome = job.process(batch_frame(spark, one_batch_touching_every_table(spec).take()), 0)

    assert outcome.failure is None and outcome.rejected == 0
    assert_every_table_applied(warehouse_sql, spec)
    assert outcome.write_report is not None
    assert (outcome.write_report.transactions, outcome.write_report.data_api_calls) == (1, 1)
