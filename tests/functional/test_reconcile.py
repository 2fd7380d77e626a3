"""Reconciliation: a source database and a warehouse loaded through the pipeline agree; every
kind of divergence is reported by key and column, never by value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest

from local.source_db import schema_statements
from shared.spec import PipelineSpec
from tests.functional.pipeline_helpers import HMAC_KEY, Pipeline, data_api
from tools.reconcile import read_source, reconcile


@pytest.fixture
def source_dsn(pg_server: Any, pipeline: Pipeline) -> str:
    name = "src_" + pipeline.sql("SELECT current_database() AS d")[0]["d"]
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg_server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in schema_statements(pipeline.spec):
            conn.execute(statement)
        conn.execute("INSERT INTO sport_event VALUES (1, 'Baseball', '2021-09-01', 'Seattle, US')")
        conn.execute("INSERT INTO ticket VALUES (10, 1, 'Standard', 'S-1', 100), "
                     "(11, 1, 'Premium', 'P-1', 300.5)")
        conn.execute("INSERT INTO customer VALUES (222, 'Teresa Stein', 'teresa@example.com', "
                     "'+1-296-605-8486'), (223, 'O''Brien', 'ob@example.com', NULL)")
        conn.execute("INSERT INTO ticket_activity VALUES (10, 222, '2021-08-15 10:00', "
                     "'2021-08-15 10:00'), (11, 223, '2021-08-16 11:00:00.25', "
                     "'2021-08-16 11:00:00.25'), (12, 999, '2021-08-17 12:00', '2021-08-17 12:00')")
    return dsn


def load_through_pipeline(pipeline: Pipeline, dsn: str) -> None:
    from tools.reconcile import _load_record

    source = read_source(dsn, pipeline.spec)
    records = [_load_record("public", t, r, n) for t, rows in source.items()
               for n, r in enumerate(rows)]
    pipeline.apply(records)


def run(pipeline: Pipeline, spec: PipelineSpec, dsn: str, redshift_data: Any,
        warehouse_db: str) -> dict[str, Any]:
    report = reconcile(spec, read_source(dsn, spec), HMAC_KEY, data_api(redshift_data,
                                                                         warehouse_db))
    return {t.name: t for t in report.tables}


def test_a_faithful_warehouse_reconciles_to_zero(
    pipeline: Pipeline, source_dsn: str, redshift_data: Any, warehouse_db: str
) -> None:
    load_through_pipeline(pipeline, source_dsn)
    report = run(pipeline, pipeline.spec, source_dsn, redshift_data, warehouse_db)
    assert {name: t.differences for name, t in report.items()} == {
        "cdc_replica.sport_event": 0, "cdc_replica.ticket": 0, "cdc_replica.customer": 0,
        "cdc_replica.ticket_activity": 0, "public.sport_event_activity": 0}
    assert report["public.sport_event_activity"].expected == 3


def test_divergences_are_named_by_key_and_column(
    pipeline: Pipeline, source_dsn: str, redshift_data: Any, warehouse_db: str
) -> None:
    load_through_pipeline(pipeline, source_dsn)
    pipeline.sql("UPDATE cdc_replica.customer SET name = 'Someone Else' WHERE customer_id = 222")
    pipeline.sql("UPDATE cdc_replica.ticket SET _cdc_deleted = TRUE WHERE ticket_id = 11")
    pipeline.sql("DELETE FROM public.sport_event_activity WHERE ticket_id = 12")
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute("UPDATE ticket SET ticket_price = 120 WHERE ticket_id = 10")
        conn.execute("INSERT INTO sport_event VALUES (2, 'Hockey', '2021-12-01', 'Boston, US')")
        conn.execute("DELETE FROM customer WHERE customer_id = 223")

    report = run(pipeline, pipeline.spec, source_dsn, redshift_data, warehouse_db)
    assert report["cdc_replica.customer"].different == [((222,), ["name"])]
    assert report["cdc_replica.customer"].extra == [(223,)]
    assert report["cdc_replica.ticket"].missing == [(11,)]
    assert report["cdc_replica.ticket"].different == [((10,), ["ticket_price"])]
    assert report["cdc_replica.sport_event"].missing == [(2,)]
    wide = report["public.sport_event_activity"]
    assert wide.missing == [(12,)]
    assert sorted(wide.different) == [((10,), ["ticket_price"]),
                                      ((11,), ["name", "email_address"])]
    text = "\n".join(t.summary() for t in report.values())
    assert "Someone" not in text and "Teresa" not in text and "120" not in text
    assert Decimal("120") not in [k for t in report.values() for k, _ in t.different]


def test_source_rows_the_spec_rejects_are_counted_not_expected(
    pipeline: Pipeline, source_dsn: str, redshift_data: Any, warehouse_db: str
) -> None:
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE customer ALTER COLUMN phone TYPE text")
    load_through_pipeline(pipeline, source_dsn)
    with psycopg.connect(source_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO customer VALUES (500, 'Long Phone', 'lp@example.com', %s)",
                     ("9" * 100,))
    report = reconcile(pipeline.spec, read_source(source_dsn, pipeline.spec), HMAC_KEY,
                       data_api(redshift_data, warehouse_db))
    assert report.differences == 0
    assert report.rejected_source_rows == {
        "customer: column 'phone': expected `str` of length <= 64": 1}
