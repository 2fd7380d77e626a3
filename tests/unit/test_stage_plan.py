"""How a batch reaches its staging tables, within the Data API's limits."""

from __future__ import annotations

import json
from decimal import Decimal

from shared import warehouse_sql as sql
from shared.spec import load_spec
from shared.stage_plan import (
    DATA_API_MAX_SQL_BYTES,
    MAX_SQL_BYTES,
    MAX_STATEMENTS,
    InlineLoad,
    plan_stage_loads,
)
from shared.staging import json_lines
from shared.transform import Transformer
from tests.factories import DmsStream, customer, ticket
from tests.functional.test_wide_batches import fifteen_table_spec, one_row_per_table


def test_copy_input_carries_decimals_as_exact_strings() -> None:
    """COPY from JSON may read a JSON number as a float; a quoted decimal loads exactly."""
    spec = load_spec()
    stream = DmsStream()
    stream.add("ticket", "insert", ticket(1, 1, ticket_price="9999999999.99"))
    changes = Transformer(spec, b"k" * 32).transform(stream.take()).changes
    [line] = json_lines(changes["ticket"]).splitlines()
    row = json.loads(line)
    assert row["ticket_price"] == "9999999999.99"
    assert Decimal(row["ticket_price"]) == Decimal("9999999999.99")
    assert isinstance(row["ticket_id"], int)


def test_inline_statements_stay_under_the_data_api_limit() -> None:
    """100 KB read strictly: 100,000 bytes of UTF-8, less a margin."""
    assert DATA_API_MAX_SQL_BYTES == 100_000
    assert MAX_SQL_BYTES < DATA_API_MAX_SQL_BYTES
    spec = load_spec()
    stream = DmsStream()
    for i in range(3000):
        stream.add("customer", "insert", customer(i, "\u00e9\u6f22" * 50))
    changes = Transformer(spec, b"k" * 32).transform(stream.take()).changes
    loads = plan_stage_loads(spec, changes, copy_available=False)
    assert loads is not None
    load = loads["customer"]
    assert isinstance(load, InlineLoad) and len(load.statements) > 1
    assert all(len(s.encode("utf-8")) <= MAX_SQL_BYTES for s in load.statements)


def test_a_batch_of_too_many_tables_for_one_transaction_is_split_even_with_a_bucket() -> None:
    spec = fifteen_table_spec()
    changes = Transformer(spec, b"k" * 32).transform(one_row_per_table().take()).changes
    assert len(changes) == 15
    assert sql.fixed_statement_count(spec, changes) + len(changes) > MAX_STATEMENTS
    assert plan_stage_loads(spec, changes, copy_available=True) is None
    assert plan_stage_loads(spec, changes, copy_available=False) is None
    few = {t: changes[t] for t in list(changes)[:4]}
    assert plan_stage_loads(spec, few, copy_available=False) is not None
