"""Every statement the writer and the migrations emit is inside Redshift's grammar.

PostgreSQL accepts more than Redshift (conditional WHEN clauses, several WHEN MATCHED, CTEs
before MERGE, ON CONFLICT ...), so passing on the PostgreSQL stand-in proves nothing by itself;
this checks the SQL text with the same Redshift grammar check the stand-in applies.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.redshift_data_api.grammar import (
    RedshiftSqlError,
    check_redshift_sql,
    procedure_body_statements,
)
from shared import apply_procedures as procedures
from shared import warehouse_sql as sql
from shared.landing import insert_statements
from shared.migrations import plan_migration
from shared.redshift_writer import S3Stager
from shared.spec import PipelineSpec, load_spec, parse_spec
from shared.transform import Transformer
from tests.factories import DmsStream, activity, customer, spec_document, sport_event, ticket


def _hard_delete_spec() -> PipelineSpec:
    document = spec_document()
    document["pipeline"]["delete_mode"] = "hard"
    return parse_spec(document)


def _all_statements(spec: PipelineSpec) -> list[str]:
    stream = DmsStream()
    stream.add("sport_event", "insert", sport_event(1, location="O'Brien \\ 'x'"))
    stream.add("ticket", "insert", ticket(1, 1))
    stream.add("customer", "insert", customer(1, name="'); DROP TABLE x;--"))
    stream.add("ticket_activity", "insert", activity(1, 1))
    changes = Transformer(spec, b"k" * 32).transform(stream.take()).changes
    key = changes["ticket"][0].order_key
    landing = insert_statements(spec, "b" * 32, changes, {"sport_event": key})
    assert landing is not None
    statements = [*landing, procedures.apply_pending_call(spec, "f" * 32)]
    stager = S3Stager(None, "bucket", "prefix", "arn:aws:iam::1:role/r")
    statements.append(stager.copy_statement(spec, "prefix/b.json"))
    statements += plan_migration(spec, {}).statements
    statements += procedures.procedure_statements(spec)
    statements += procedures.replaced_procedure_statements(spec)
    statements.append(sql.create_applied_statement(spec))
    statements += [
        sql.add_column_statement('"cdc_replica"."customer"', "tier", "VARCHAR(16)"),
        sql.widen_varchar_statement('"cdc_replica"."customer"', "name", "VARCHAR(512)"),
    ]
    for target in spec.targets.values():
        statements += sql.rebuild_target_statements(spec, target)
    statements += sql.reload_sweep_statements(spec, spec.tables["customer"],
                                              "2024-01-01T00:00:00.000000Z")
    statements += sql.reload_start_statements(spec, "ticket", "2024-01-01T00:00:00.000000Z")
    statements += sql.add_replica_column_statements(spec, "ticket", "section", "varchar(64)",
                                                    key)
    statements.append(sql.rows_newer_than_query(spec, "ticket", key))
    return statements


def _with_bodies(statements: list[str]) -> list[str]:
    """The statements, then the SQL commands inside the procedures they create."""
    return statements + [b for s in statements for b in procedure_body_statements(s)]


@pytest.mark.parametrize("spec", [load_spec(), _hard_delete_spec()], ids=["tombstone", "hard"])
def test_every_emitted_statement_is_redshift_sql(spec: PipelineSpec) -> None:
    statements = _all_statements(spec)
    assert any(s.startswith("MERGE INTO") for s in _with_bodies(statements))
    for statement in statements:
        check_redshift_sql(statement)


@pytest.mark.parametrize(
    "statement",
    [
        'MERGE INTO t USING s ON t.k = s.k WHEN MATCHED AND s.o > t.o THEN UPDATE SET v = s.v '
        "WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)",
        "MERGE INTO t USING s ON t.k = s.k WHEN MATCHED THEN UPDATE SET v = s.v "
        "WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT (k, v) VALUES (s.k, s.v)",
        "WITH s AS (SELECT 1 AS k) MERGE INTO t USING s ON t.k = s.k WHEN MATCHED THEN DELETE "
        "WHEN NOT MATCHED THEN INSERT (k) VALUES (s.k)",
        "INSERT INTO t (k) VALUES (1) ON CONFLICT (k) DO NOTHING",
    ],
)
def test_the_check_rejects_what_postgresql_accepts_and_redshift_does_not(statement: str) -> None:
    with pytest.raises(RedshiftSqlError):
        check_redshift_sql(statement)


def test_merges_have_exactly_one_clause_of_each_kind() -> None:
    spec: Any = load_spec()
    for statement in _with_bodies(_all_statements(spec)):
        if statement.startswith("MERGE"):
            assert statement.count("WHEN MATCHED THEN") == 1
            assert statement.count("WHEN NOT MATCHED THEN INSERT") == 1


def test_every_wide_merge_reads_a_temp_table_made_in_the_same_transaction() -> None:
    """A Redshift MERGE source is a table (r_MERGE: "source_table: the temporary or permanent
    table supplying the rows"), so the recomputed wide rows go to a temp table first, on the
    batch path, the rebuild and the reload sweep alike."""
    spec = load_spec()
    target = spec.targets["sport_event_activity"]
    rows = sql.wide_rows_table(target.name)
    wide = procedures.target_procedure_statement(spec, target)
    batch = procedure_body_statements(wide)
    rebuild = sql.rebuild_target_statements(spec, target)
    sweep = sql.reload_sweep_statements(spec, spec.tables["customer"],
                                        "2024-01-01T00:00:00.000000Z")
    for statements in (batch, rebuild, sweep):
        create = next(k for k, s in enumerate(statements)
                      if s.startswith(f"CREATE TEMP TABLE {rows} AS SELECT "))
        merge = next(k for k, s in enumerate(statements)
                     if s.startswith('MERGE INTO "public"."sport_event_activity"'))
        assert create < merge
        assert statements[merge].startswith(
            f'MERGE INTO "public"."sport_event_activity" USING {rows} s ON ')
    merges = [s for s in _with_bodies(_all_statements(spec)) if s.startswith("MERGE INTO")]
    assert merges and all(" USING (" not in s for s in merges)
