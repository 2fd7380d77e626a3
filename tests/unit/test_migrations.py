"""Column type changes: Redshift's ALTER COLUMN ... TYPE only widens a VARCHAR, never a key
column, never inside a transaction block (ALTER TABLE,
https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html); anything else is a
MigrationError that says what to do."""

from __future__ import annotations

import tomllib

import pytest

from local.redshift_data_api.grammar import check_outside_transaction_block, check_redshift_sql
from shared import warehouse_sql as sql
from shared.migrations import MigrationError, plan_migration
from shared.spec import PipelineSpec, parse_spec


def spec_with(code: str, label: str, amount: str) -> PipelineSpec:
    return parse_spec(tomllib.loads(f"""
[pipeline]
source_schema = "public"
replica_schema = "cdc_replica"
target_schema = "public"
[tables.item]
key = ["code"]
columns = {{ code = "{code}", label = "{label}", amount = "{amount}" }}
"""))


def existing(spec: PipelineSpec) -> dict[tuple[str, str], dict[str, str]]:
    """The warehouse as the migration of ``spec`` left it."""
    tables = {("cdc_replica", t.name): dict(sql.replica_columns(t)) for t in spec.tables.values()}
    tables[("cdc_replica", sql.TABLE_STATE)] = dict(sql.table_state_columns())
    tables[("cdc_replica", sql.ADDED_COLUMNS)] = dict(sql.added_columns_columns())
    return tables


BEFORE = spec_with("varchar(8)", "varchar(16)", "decimal(12,2)")


def test_a_longer_varchar_is_widened_in_its_own_statement() -> None:
    plan = plan_migration(spec_with("varchar(8)", "varchar(64)", "decimal(12,2)"),
                          existing(BEFORE))
    [alter] = [s for s in plan.statements if s.startswith("ALTER")]
    assert alter == 'ALTER TABLE "cdc_replica"."item" ALTER COLUMN "label" TYPE VARCHAR(64)'
    check_redshift_sql(alter)
    with pytest.raises(Exception, match="cannot run inside a transaction block"):
        check_outside_transaction_block(alter)  # so migrate() runs it alone, not in a batch


def test_a_shorter_varchar_keeps_the_wider_column() -> None:
    plan = plan_migration(spec_with("varchar(8)", "varchar(4)", "decimal(12,2)"),
                          existing(BEFORE))
    assert not [s for s in plan.statements if s.startswith("ALTER")]


def test_a_key_column_is_not_widened_in_place() -> None:
    with pytest.raises(MigrationError) as info:
        plan_migration(spec_with("varchar(32)", "varchar(16)", "decimal(12,2)"), existing(BEFORE))
    text = str(info.value)
    assert "cdc_replica.item.code is a key column" in text
    assert "create a new table with the wider key" in text


@pytest.mark.parametrize(("amount", "label"), [("decimal(18,4)", "varchar(16)"),
                                               ("decimal(12,2)", "char(16)")])
def test_other_type_changes_say_what_to_do(amount: str, label: str) -> None:
    with pytest.raises(MigrationError, match="only to widen a VARCHAR: add a new column"):
        plan_migration(spec_with("varchar(8)", label, amount), existing(BEFORE))
