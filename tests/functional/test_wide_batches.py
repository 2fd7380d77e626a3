"""Batches that touch many tables, through the writer into the Data API stand-in (which refuses
more than 40 statements per BatchExecuteStatement and statements over 100,000 bytes): every
row lands, with or without a staging bucket, in one transaction and one Data API call (the
landing table and the apply procedures of ``shared.apply_procedures``)."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from typing import Any

from shared.spec import PipelineSpec, parse_spec
from tests.factories import DmsStream

DIMENSIONS = [f"dim_{n:02d}" for n in range(1, 15)]


def fifteen_table_spec() -> PipelineSpec:
    """One fact table joined to 14 dimensions: 15 source tables, one wide target."""
    fact_columns = ", ".join(["order_id = \"bigint\"", "amount = \"decimal(38,10)\""]
                             + [f"{d}_id = \"bigint\"" for d in DIMENSIONS])
    lines = [
        "[pipeline]",
        'source_schema = "public"',
        'replica_schema = "cdc_replica"',
        'target_schema = "public"',
        "[tables.orders]",
        'key = ["order_id"]',
        f"columns = {{ {fact_columns} }}",
    ]
    for dim in DIMENSIONS:
        lines += [f"[tables.{dim}]", 'key = ["id"]',
                  'columns = { id = "bigint", label = "varchar(64)", price = "decimal(12,2)" }']
    joins = ", ".join(f'{{ table = "{d}", from = "orders", on = {{ {d}_id = "id" }} }}'
                      for d in DIMENSIONS)
    lines += ["[targets.order_wide]", 'fact = "orders"', f"joins = [ {joins} ]",
              "[targets.order_wide.columns]", 'order_id = "orders.order_id"',
              'amount = "orders.amount"']
    lines += [f'{d}_label = "{d}.label"' for d in DIMENSIONS]
    return parse_spec(tomllib.loads("\n".join(lines)))


def one_row_per_table(stream: DmsStream | None = None) -> DmsStream:
    stream = stream or DmsStream()
    for n, dim in enumerate(DIMENSIONS, start=1):
        stream.add(dim, "insert", {"id": n, "label": f"{dim} 'label' \u00e9", "price": f"{n}.25"})
    stream.add("orders", "insert", {"order_id": 1, "amount": "123456789012345678.0123456789",
                                    **{f"{d}_id": n for n, d in enumerate(DIMENSIONS, start=1)}})
    return stream


def assert_every_row_landed(pipeline: Any) -> None:
    for n, dim in enumerate(DIMENSIONS, start=1):
        rows = pipeline.sql(f'SELECT id, label, price FROM "cdc_replica"."{dim}"')
        assert rows == [{"id": n, "label": f"{dim} 'label' \u00e9", "price": Decimal(f"{n}.25")}]
    [wide] = pipeline.sql('SELECT * FROM "public"."order_wide" WHERE order_id = 1')
    assert wide == {"order_id": 1, "amount": Decimal("123456789012345678.0123456789"),
                    **{f"{d}_label": f"{d} 'label' \u00e9" for d in DIMENSIONS}}


def test_a_batch_touching_fifteen_tables_lands_without_a_bucket(make_pipeline: Any) -> None:
    pipeline = make_pipeline(spec=fifteen_table_spec())
    _, report = pipeline.apply(one_row_per_table().take())

    assert_every_row_landed(pipeline)
    assert (report.transactions, report.data_api_calls) == (1, 1)
    print(f"15-table batch without a bucket: {report.transactions} transactions, "
          f"{report.statements} statements")


def test_a_batch_touching_fifteen_tables_lands_with_a_bucket(
    make_pipeline: Any, staging_bucket: Any
) -> None:
    from shared.redshift_writer import S3Stager

    s3, bucket = staging_bucket
    stager = S3Stager(s3, bucket, "staging/wide", "arn:aws:iam::123456789012:role/copy")
    pipeline = make_pipeline(spec=fifteen_table_spec(), stager=stager)
    stream = one_row_per_table()
    for order_id in range(2, 2600):  # more than 2,000 changes: the batch is staged through S3
        stream.add("orders", "insert", {"order_id": order_id, "amount": "0.0000000001",
                                        **{f"{d}_id": 99 for d in DIMENSIONS}})
    _, report = pipeline.apply(stream.take())

    assert pipeline.sql('SELECT count(*) AS n FROM "public"."order_wide"') == [{"n": 2599}]
    assert pipeline.sql('SELECT amount FROM "public"."order_wide" WHERE order_id = 2') == [
        {"amount": Decimal("0.0000000001")}]
    assert_every_row_landed(pipeline)
    assert (report.transactions, report.data_api_calls, report.statements) == (1, 1, 3)
    assert report.staged_through_s3
    print(f"15-table batch with a bucket: {report.transactions} transactions, "
          f"{report.statements} statements")


def test_a_wide_batch_applies_its_truncate_first_and_once(make_pipeline: Any) -> None:
    """The truncate of one of the 15 tables is applied before the batch's changes, which it
    guards: rows older than the truncate stay deleted, the newer one lands."""
    pipeline = make_pipeline(spec=fifteen_table_spec())
    stream = one_row_per_table()
    pipeline.apply(stream.take())
    one_row_per_table(stream)
    stream.control("truncate-table", table="dim_14", details=True)
    stream.add("dim_14", "insert", {"id": 7, "label": "after", "price": "7.00"})
    stream.add("orders", "update", {"order_id": 1, "amount": "2.5",
                                    **{f"{d}_id": n for n, d in enumerate(DIMENSIONS, start=1)},
                                    "dim_14_id": 7})
    result = pipeline.core.transform(stream.take())
    report = pipeline.writer.stage_and_merge(result.changes, result.table_events)

    assert report.transactions == 1
    live = pipeline.sql('SELECT id, label FROM "cdc_replica"."dim_14" WHERE NOT _cdc_deleted')
    assert live == [{"id": 7, "label": "after"}]
    [wide] = pipeline.sql('SELECT amount, dim_01_label, dim_14_label FROM "public"."order_wide"')
    assert wide == {"amount": Decimal("2.5"), "dim_01_label": "dim_01 'label' \u00e9",
                    "dim_14_label": "after"}
