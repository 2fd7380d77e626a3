"""A spec as wide as a real replication task, and one batch touching every table of it.

``many_table_spec(n)``: ``n`` source tables and three wide targets: a table with every column
type a source has (``typed``), a composite key (``order_line``), a table without a key
(``audit_log``, append-only), a table whose long text is truncated (``note``), three facts each
joined to two dimensions, and filler tables up to ``n``. Used by the functional test of both
paths (tests/functional/test_many_tables.py) and by ``bench.tables_bench``.
"""

from __future__ import annotations

import tomllib
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from local.record_builders import DmsStream
from shared.spec import PipelineSpec, parse_spec

TYPED_COLUMNS = {
    "id": "bigint", "small": "smallint", "medium": "integer", "amount": "decimal(38,10)",
    "ratio": "real", "measure": "double", "flag": "boolean", "code": "char(8)",
    "label": "varchar(64)", "body": "text", "day": "date", "at_time": "time",
    "happened": "timestamp", "happened_tz": "timestamptz", "uid": "uuid", "doc": "super",
    "tags": "super", "blob": "varbyte(64)", "mood": "varchar(16)",
}
FACTS = ("fact_a", "fact_b", "fact_c")


def filler_tables(n_tables: int) -> list[str]:
    fixed = 4 + len(FACTS) * 3
    return [f"filler_{k:03d}" for k in range(n_tables - fixed)]


def many_table_spec(n_tables: int = 200) -> PipelineSpec:
    return parse_spec(tomllib.loads(many_table_spec_text(n_tables)))


def many_table_spec_text(n_tables: int = 200) -> str:
    """The spec's TOML text."""
    columns = ", ".join(f'{c} = "{t}"' for c, t in TYPED_COLUMNS.items())
    lines = [
        "[pipeline]", 'source_schema = "public"', 'replica_schema = "cdc_replica"',
        'target_schema = "public"',
        "[tables.typed]", 'key = ["id"]', f"columns = {{ {columns} }}",
        "[tables.order_line]", 'key = ["order_id", "line_no"]',
        'columns = { order_id = "bigint", line_no = "integer", sku = "varchar(32)" }',
        "[tables.audit_log]", "append_only = true",
        'columns = { actor = "varchar(32)", action = "varchar(32)" }',
        "[tables.note]", 'key = ["id"]', 'long_text = "truncate"',
        'columns = { id = "bigint", body = "text" }',
    ]
    for fact in FACTS:
        lines += [f"[tables.{fact}]", 'key = ["id"]',
                  'columns = { id = "bigint", left_id = "bigint", right_id = "bigint", '
                  'amount = "decimal(12,2)" }']
        for side in ("left", "right"):
            lines += [f"[tables.{fact}_{side}]", 'key = ["id"]',
                      'columns = { id = "bigint", name = "varchar(64)" }']
    for name in filler_tables(n_tables):
        lines += [f"[tables.{name}]", 'key = ["id"]',
                  'columns = { id = "bigint", value = "varchar(32)" }']
    for fact in FACTS:
        lines += [
            f"[targets.{fact}_wide]", f'fact = "{fact}"',
            f'joins = [ {{ table = "{fact}_left", from = "{fact}", on = {{ left_id = "id" }} }}, '
            f'{{ table = "{fact}_right", from = "{fact}", on = {{ right_id = "id" }} }} ]',
            f"[targets.{fact}_wide.columns]", f'id = "{fact}.id"', f'amount = "{fact}.amount"',
            f'left_name = "{fact}_left.name"', f'right_name = "{fact}_right.name"',
        ]
    return "\n".join(lines)


LONG_BODY = "\u00e9" * 40_000  # 80,000 bytes of UTF-8: past VARCHAR(65535)

TYPED_ROW = {  # as DMS renders a PostgreSQL row (docs/spec.md, the type table)
    "id": 1, "small": -7, "medium": 2_000_000, "amount": "12345678901234567890.0123456789",
    "ratio": 0.5, "measure": 1.25, "flag": True, "code": "AB-12", "label": "O'Brien \\ \u6f22",
    "body": "long text " * 100, "day": "2020-01-09", "at_time": "04:13:38.250000",
    "happened": "2020-01-09T04:13:38Z", "happened_tz": "2020-01-09T04:13:38.123456Z",
    "uid": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "doc": '{"a": [1, 2], "b": "x"}',
    "tags": "{red,\"light blue\"}", "blob": "DEADBEEF", "mood": "happy",
}
TYPED_EXPECTED = {
    "id": 1, "small": -7, "medium": 2_000_000, "amount": Decimal("12345678901234567890.0123456789"),
    "ratio": 0.5, "measure": 1.25, "flag": True, "code": "AB-12   ", "label": "O'Brien \\ \u6f22",
    "body": "long text " * 100, "day": date(2020, 1, 9), "at_time": time(4, 13, 38, 250000),
    "happened": datetime(2020, 1, 9, 4, 13, 38),
    "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "doc": {"a": [1, 2], "b": "x"},
    "tags": ["red", "light blue"], "blob": b"\xde\xad\xbe\xef", "mood": "happy",
}


def one_batch_touching_every_table(spec: PipelineSpec, stream: DmsStream | None = None,
                                   rows_per_table: int = 1, long_note: bool = True) -> DmsStream:
    """``long_note``: the note's body is past VARCHAR(65535) (only a COPY can land such a row:
    without a staging bucket a shorter one is sent)."""
    stream = stream or DmsStream()
    stream.add("typed", "insert", TYPED_ROW)
    stream.add("order_line", "insert", {"order_id": 1, "line_no": 1, "sku": "A"})
    stream.add("order_line", "insert", {"order_id": 1, "line_no": 2, "sku": "B"})
    stream.add("audit_log", "insert", {"actor": "ann", "action": "login"})
    stream.add("audit_log", "insert", {"actor": "ann", "action": "login"})  # a second, equal row
    stream.add("note", "insert", {"id": 1, "body": LONG_BODY if long_note else "short"})
    for fact in FACTS:
        stream.add(f"{fact}_left", "insert", {"id": 1, "name": f"{fact} left"})
        stream.add(f"{fact}_right", "insert", {"id": 2, "name": f"{fact} right"})
        stream.add(fact, "insert", {"id": 10, "left_id": 1, "right_id": 2, "amount": "9.99"})
    for name in spec.tables:
        if name.startswith("filler_"):
            for k in range(1, rows_per_table + 1):
                stream.add(name, "insert", {"id": k, "value": f"{name} {k}"})
    return stream


def sample_row(table: str, n: int) -> dict[str, Any]:
    """A row ``n`` of any table of the spec, as DMS renders it."""
    if table == "typed":
        return {**TYPED_ROW, "id": n}
    if table == "order_line":
        return {"order_id": n, "line_no": 1, "sku": f"sku {n}"}
    if table == "audit_log":
        return {"actor": "ann", "action": f"action {n}"}
    if table == "note":
        return {"id": n, "body": f"note {n}"}
    if table in FACTS:
        return {"id": n, "left_id": n, "right_id": n, "amount": "9.99"}
    if table.endswith(("_left", "_right")):
        return {"id": n, "name": f"{table} {n}"}
    return {"id": n, "value": f"{table} {n}"}


def assert_every_table_applied(sql: Any, spec: PipelineSpec, long_note: bool = True) -> None:
    [typed] = sql("SELECT * FROM cdc_replica.typed")
    got = {c: typed[c] for c in TYPED_EXPECTED}
    assert got == TYPED_EXPECTED
    assert typed["happened_tz"].isoformat() == "2020-01-09T04:13:38.123456+00:00"
    assert sql("SELECT order_id, line_no, sku FROM cdc_replica.order_line ORDER BY line_no") == [
        {"order_id": 1, "line_no": 1, "sku": "A"}, {"order_id": 1, "line_no": 2, "sku": "B"}]
    assert sql("SELECT actor, action FROM cdc_replica.audit_log") == [
        {"actor": "ann", "action": "login"}] * 2
    [note] = sql("SELECT body, _cdc_truncated FROM cdc_replica.note")
    if long_note:
        assert note["_cdc_truncated"] is True and LONG_BODY.startswith(note["body"])
        assert len(note["body"].encode()) <= 65535
    else:
        assert note == {"body": "short", "_cdc_truncated": False}
    for fact in FACTS:
        assert sql(f"SELECT * FROM public.{fact}_wide") == [
            {"id": 10, "amount": Decimal("9.99"), "left_name": f"{fact} left",
             "right_name": f"{fact} right"}]
    fillers = [n for n in spec.tables if n.startswith("filler_")]
    counts = sql(" UNION ALL ".join(f"SELECT count(*) AS n FROM cdc_replica.{n}" for n in fillers))
    assert all(r["n"] >= 1 for r in counts) and len(counts) == len(fillers)
