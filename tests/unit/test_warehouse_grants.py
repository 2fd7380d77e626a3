"""The consumer user's SQL: Redshift's grammar, escaped passwords, exactly the needed grants."""

from __future__ import annotations

import pytest

from local.redshift_data_api.grammar import check_redshift_sql
from shared import warehouse_grants as grants
from shared.spec import load_spec


def test_statements_pass_redshifts_grammar_and_grant_only_what_consumers_need() -> None:
    spec = load_spec()
    login = grants.ConsumerLogin("cdc_consumer", "Pa'ss\\word-1")
    statements = grants.consumer_access_statements(spec, login, "warehouse", user_exists=False)
    for statement in statements:
        check_redshift_sql(statement)
    assert statements[0] == "CREATE USER \"cdc_consumer\" PASSWORD 'Pa''ss\\\\word-1'"
    assert statements[1:] == [
        'GRANT USAGE ON SCHEMA "cdc_replica" TO "cdc_consumer"',
        'GRANT USAGE ON SCHEMA "public" TO "cdc_consumer"',
        'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE "cdc_replica"."sport_event", '
        '"cdc_replica"."ticket", "cdc_replica"."customer", "cdc_replica"."ticket_activity", '
        '"public"."sport_event_activity", "cdc_replica"."_cdc_tables", '
        '"cdc_replica"."_cdc_columns", "cdc_replica"."_cdc_landing", '
        '"cdc_replica"."_cdc_applied", '
        '"cdc_replica"."_cdc_stage_sport_event", "cdc_replica"."_cdc_stage_ticket", '
        '"cdc_replica"."_cdc_stage_customer", "cdc_replica"."_cdc_stage_ticket_activity" '
        'TO "cdc_consumer"',
        'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "cdc_replica" '
        'TO "cdc_consumer"',
        'GRANT TEMP ON DATABASE "warehouse" TO "cdc_consumer"',
        # The apply procedures (shared.apply_procedures) run with the caller's rights.
        'GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA "cdc_replica" TO "cdc_consumer"',
        # Schema evolution: only an owner may ALTER TABLE ... ADD COLUMN on Redshift.
        *(f'ALTER TABLE "cdc_replica"."{prefix}{t}" OWNER TO "cdc_consumer"'
          for t in ("sport_event", "ticket", "customer", "ticket_activity")
          for prefix in ("", "_cdc_stage_")),
        # ... and an added column recreates its table's apply procedure.
        'GRANT CREATE ON SCHEMA "cdc_replica" TO "cdc_consumer"',
        *(f'ALTER PROCEDURE "cdc_replica"."_cdc_apply_{t}"(BOOLEAN) '
          'OWNER TO "cdc_consumer"'
          for t in ("sport_event", "ticket", "customer", "ticket_activity")),
    ]
    again = grants.consumer_access_statements(spec, login, "warehouse", user_exists=True)
    assert again[0] == "ALTER USER \"cdc_consumer\" PASSWORD 'Pa''ss\\\\word-1'"
    assert again[1:] == statements[1:]
    check_redshift_sql(again[0])
    creates = [s for s in statements if "CREATE ON" in s]  # schema evolution's procedures
    assert creates == ['GRANT CREATE ON SCHEMA "cdc_replica" TO "cdc_consumer"']
    assert not any(word in " ".join(statements) for word in ("ALL PRIVILEGES", "SUPERUSER"))
    assert not any("OWNER" in s and '"public"' in s for s in statements)  # wide tables: no


def test_bad_logins_are_refused_and_never_shown() -> None:
    with pytest.raises(grants.GrantError, match="user name"):
        grants.ConsumerLogin('x"; DROP TABLE t; --', "long-enough-1")
    with pytest.raises(grants.GrantError, match="8 to 64"):
        grants.ConsumerLogin("cdc_consumer", "short")
    with pytest.raises(grants.GrantError, match="database name"):
        grants.grant_statements(load_spec(), "cdc_consumer", 'db"; --')
    assert "secret-pw-1" not in repr(grants.ConsumerLogin("cdc_consumer", "secret-pw-1"))
