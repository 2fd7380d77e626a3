"""Golden tests: the exact SQL of every warehouse statement builder on a small spec.

Each builder's text is compared with ``tests/unit/golden/<builder>.sql``, so a change of the
SQL the pipeline sends shows in review as a diff of those files. To accept an intended change:
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_sql_golden.py`` and commit the files.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import apply_procedures as procedures
from shared import warehouse_grants as grants
from shared import warehouse_sql as sql
from shared.landing import insert_statements
from shared.records import Change
from shared.redshift_writer import S3Stager
from shared.row_types import row_type
from shared.schema_evolution import evolved_spec
from shared.spec import PipelineSpec, parse_spec

GOLDEN = Path(__file__).parent / "golden"
KEY = "2" + "2024-01-01T00:00:00.000000Z" + "P00000002/7C007178" + "0" * 26 + "0" * 10
SPEC_TEXT = """
[pipeline]
replica_schema = "cdc_replica"
target_schema = "analytics"
[tables.shop]
key = ["shop_id"]
columns = { shop_id = "bigint", name = "varchar(64)", opened = "date" }
[tables.sale]
key = ["shop_id", "sale_no"]
keep_when_null = ["note"]
[tables.sale.columns]
shop_id = "bigint"
sale_no = "integer"
amount = "decimal(12,2)"
note = "text"
doc = "super"
blob = "varbyte(16)"
at = "timestamptz"
[tables.event_log]
append_only = true
columns = { actor = "varchar(32)", action = "varchar(32)" }
[targets.sale_wide]
fact = "sale"
joins = [ { table = "shop", from = "sale", on = { shop_id = "shop_id" } } ]
[targets.sale_wide.columns]
shop_id = "sale.shop_id"
sale_no = "sale.sale_no"
amount = "sale.amount"
shop_name = "shop.name"
"""


def spec() -> PipelineSpec:
    return parse_spec(tomllib.loads(SPEC_TEXT))


def _landing(s: PipelineSpec) -> list[str]:
    row = row_type(s.tables["shop"])
    shop = row.struct(shop_id=1, name="O'Brien", opened=None, cdc_order_key=KEY,
                      cdc_deleted=False)
    change = Change("shop", (1,), shop, False, KEY, "insert", "1", None)
    return insert_statements(s, "b" * 32, {"shop": [change]}, {"sale": KEY},
                             known=",shop.city,") or []


BUILDERS: dict[str, Callable[[PipelineSpec], list[str]]] = {
    "create_schema": sql.create_schema_statements,
    "create_replicas": lambda s: [sql.create_replica_statement(s, t) for t in s.tables.values()],
    "create_target": lambda s: [sql.create_target_statement(s, s.targets["sale_wide"])],
    "create_landing": lambda s: [procedures.create_landing_statement(s)],
    "recreate_stages": lambda s: [x for t in s.tables.values()
                                  for x in sql.recreate_stage_statements(s, t)],
    "create_applied": lambda s: [sql.create_applied_statement(s)],
    "applier_lock": lambda s: [sql.applier_lock_statement(s)],
    "table_procedures": lambda s: [procedures.table_procedure_statement(s, t)
                                   for t in s.tables.values()],
    "target_procedure": lambda s: [procedures.target_procedure_statement(s,
                                                                         s.targets["sale_wide"])],
    "table_procedure_with_added_column": lambda s: [procedures.table_procedure_statement(
        evolved_spec(s, {"shop": [("city", "varchar(32)")]}), evolved_spec(
            s, {"shop": [("city", "varchar(32)")]}).tables["shop"], s.tables["shop"])],
    "apply_pending_procedure": lambda s: [procedures.apply_pending_procedure_statement(
        s, procedures.procedures_fingerprint(s))],
    "apply_pending_call": lambda s: [procedures.apply_pending_call(
        s, procedures.procedures_fingerprint(s))],
    "replaced_procedures": procedures.replaced_procedure_statements,
    "landing_insert": _landing,
    "landing_copy": lambda s: [S3Stager(None, "bucket", "staging", "arn:aws:iam::1:role/copy")
                               .copy_statement(s, "staging/b.json"),
                               S3Stager(None, "bucket", "staging", "arn:aws:iam::1:role/copy")
                               .copy_statement(s, "staging/manifests/m.manifest")],
    "truncate": lambda s: sql.truncate_statements(s, s.tables["sale"], sql.sql_literal(KEY)),
    "add_column": lambda s: sql.add_replica_column_statements(s, "shop", "city", "varchar(32)",
                                                              KEY),
    "reload": lambda s: [*sql.reload_start_statements(s, "shop", KEY[1:28]),
                         sql.reload_stale_rows_query(s, "shop", KEY[1:28]),
                         *sql.reload_sweep_statements(s, s.tables["shop"], KEY[1:28])],
    "rebuild_target": lambda s: sql.rebuild_target_statements(s, s.targets["sale_wide"]),
    "grants": lambda s: grants.grant_statements(s, "cdc_consumer", "warehouse"),
    "writer_state": lambda s: [sql.added_columns_query(s), sql.load_starts_query(s),
                               *sql.added_columns_still_statements(s, 2),
                               sql.delete_landed_batch_statement(s, "b" * 32)],
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_sql_of_each_builder_is_the_golden_text(name: str) -> None:
    text = "\n\n".join(BUILDERS[name](spec())) + "\n"
    path = GOLDEN / f"{name}.sql"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), (
        f"the SQL of {name} changed; if intended, accept it: UPDATE_GOLDEN=1 "
        ".venv/bin/pytest tests/unit/test_sql_golden.py, and commit tests/unit/golden/")
