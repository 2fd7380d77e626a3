"""A user's own tables, not the shipped use case: composite keys, a dimension joined twice
under two aliases, and a PII rule on a column of a different table, end to end through the
core and the writer."""

from __future__ import annotations

from typing import Any

from local.record_builders import DmsStream
from shared.spec import parse_spec
from tests.functional.pipeline_helpers import Pipeline

SHOP = parse_spec({
    "pipeline": {"name": "shop", "replica_schema": "shop_replica", "target_schema": "analytics"},
    "tables": {
        "order_line": {"key": ["order_id", "line_no"], "columns": {
            "order_id": "bigint", "line_no": "integer", "sku": "varchar(32)",
            "quantity": "integer", "seller_id": "bigint", "buyer_id": "bigint"}},
        "person": {"key": ["person_id"], "columns": {
            "person_id": "bigint", "name": "varchar(128)", "email": "varchar(256)"}},
        "product": {"key": ["sku"], "columns": {"sku": "varchar(32)", "title": "varchar(128)",
                                                "price": "decimal(10,2)"}},
    },
    "pii": {"person.email": "tokenize"},
    "targets": {"sales": {
        "fact": "order_line",
        "joins": [
            {"table": "product", "on": {"sku": "sku"}},
            {"alias": "seller", "table": "person", "on": {"seller_id": "person_id"}},
            {"alias": "buyer", "table": "person", "on": {"buyer_id": "person_id"}},
        ],
        "columns": {"order_id": "order_line.order_id", "line_no": "order_line.line_no",
                    "title": "product.title", "price": "product.price",
                    "quantity": "order_line.quantity", "seller_name": "seller.name",
                    "buyer_name": "buyer.name", "buyer_email": "buyer.email"},
    }},
})


def sales(pipeline: Pipeline) -> list[dict[str, Any]]:
    return pipeline.sql("SELECT order_id, line_no, title, quantity, seller_name, buyer_name, "
                        "buyer_email FROM analytics.sales ORDER BY 1, 2")


def test_composite_keys_and_a_dimension_joined_twice(make_pipeline: Any) -> None:
    pipeline = make_pipeline(SHOP)
    stream = DmsStream()
    stream.add("person", "insert", {"person_id": 1, "name": "Sam Seller", "email": "s@x.io"})
    stream.add("person", "insert", {"person_id": 2, "name": "Bea Buyer", "email": "b@x.io"})
    stream.add("product", "insert", {"sku": "A-1", "title": "Anvil", "price": 99.5})
    for line in (1, 2):
        stream.add("order_line", "insert", {"order_id": 7, "line_no": line, "sku": "A-1",
                                            "quantity": line, "seller_id": 1, "buyer_id": 2})
    stream.add("order_line", "insert", {"order_id": 8, "line_no": 1, "sku": "B-2",
                                        "quantity": 5, "seller_id": 2, "buyer_id": 1})
    pipeline.apply(stream.take())

    rows = sales(pipeline)
    assert [(r["order_id"], r["line_no"], r["seller_name"], r["buyer_name"]) for r in rows] == [
        (7, 1, "Sam Seller", "Bea Buyer"), (7, 2, "Sam Seller", "Bea Buyer"),
        (8, 1, "Bea Buyer", "Sam Seller")]
    assert rows[2]["title"] is None  # product B-2 has not arrived yet
    assert len(rows[0]["buyer_email"]) == 64 and rows[0]["buyer_email"] != rows[2]["buyer_email"]

    stream.add("person", "update", {"person_id": 2, "name": "Bea Renamed", "email": "b@x.io"})
    stream.add("product", "insert", {"sku": "B-2", "title": "Bellows", "price": 12})
    stream.add("order_line", "delete", {"order_id": 7, "line_no": 2})
    stream.add("order_line", "update", {"order_id": 8, "line_no": 1, "sku": "B-2",
                                        "quantity": 6, "seller_id": 2, "buyer_id": 1})
    pipeline.apply(stream.take())

    rows = sales(pipeline)
    assert [(r["order_id"], r["line_no"], r["title"], r["quantity"], r["seller_name"],
             r["buyer_name"]) for r in rows] == [
        (7, 1, "Anvil", 1, "Sam Seller", "Bea Renamed"),
        (8, 1, "Bellows", 6, "Bea Renamed", "Sam Seller")]
    tombstone = pipeline.sql("SELECT _cdc_deleted FROM shop_replica.order_line "
                             "WHERE order_id = 7 AND line_no = 2")
    assert tombstone == [{"_cdc_deleted": True}]
