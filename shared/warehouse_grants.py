"""The consumers' database user and its grants: SQL builders (pure, no I/O).

On Redshift each way of authenticating is its own database user (a secret's user, a DbUser,
``IAMR:<role>`` for an IAM role), and tables one user creates are not usable by another
without GRANTs. The schema migration runs as an administrator; the consumers (Lambda, Glue,
tools) run as a dedicated user that gets exactly what they need on everything the migration
created, and nothing else:

- USAGE on the replica and target schemas;
- SELECT, INSERT, UPDATE, DELETE on every replica, every wide table and every table of the
  replica schema (which holds the replicas and the pipeline's own control tables; it belongs
  to the pipeline, with the landing table) - the apply procedures LOCK, stage with ``LIKE``,
  MERGE and DELETE;
- TEMP on the database, for the staging tables;
- EXECUTE on the apply procedures (``shared.apply_procedures``), which run with the caller's
  rights (Redshift's default, SECURITY INVOKER).

No CREATE: the consumer cannot create tables, nor alter or drop the wide tables analysts
read. One exception, only with schema evolution on (``pipeline.evolve = "add-columns"``): the
consumer owns the replicas, their stages and their apply procedures, and may CREATE in the
replica schema (recreating a procedure needs it), because an ``add-column`` from the source
becomes an ``ALTER TABLE ... ADD COLUMN`` on its replica and Redshift lets only a table's
owner alter it (GRANT has no ALTER privilege for tables). The grants are re-issued on every
migration, so tables added later are covered.
Redshift syntax: https://docs.aws.amazon.com/redshift/latest/dg/r_GRANT.html and
https://docs.aws.amazon.com/redshift/latest/dg/r_CREATE_USER.html.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.apply_procedures import TABLE_PROCEDURE_PREFIX, procedure_name
from shared.spec import PipelineSpec
from shared.staging import sql_literal
from shared.warehouse_sql import (
    ADDED_COLUMNS,
    APPLIED,
    LANDING,
    TABLE_STATE,
    ident,
    replica_table,
    stage_table,
    target_table,
)

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Redshift user names: up to 127 bytes, letters, digits and a few punctuation characters;
# names of IAM identities (``IAMR:role``) contain a colon.
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$.@+:-]{0,126}")
_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,126}")


class GrantError(ValueError):
    """A consumer login that cannot be a Redshift user."""


@dataclass(frozen=True)
class ConsumerLogin:
    """The consumers' database user, as its Secrets Manager secret holds it."""

    username: str
    password: str

    def __post_init__(self) -> None:
        if not _USER_NAME.fullmatch(self.username):
            raise GrantError("the consumer secret's username is not a valid Redshift user name")
        if not 8 <= len(self.password) <= 64:
            raise GrantError("the consumer secret's password must have 8 to 64 characters")

    def __repr__(self) -> str:  # never show the password
        return f"ConsumerLogin(username={self.username!r})"


def user_exists_query(username: str) -> tuple[str, dict[str, str]]:
    """A query with a row when ``username`` exists (Data API parameters)."""
    return "SELECT usename FROM pg_user WHERE usename = :username", {"username": username}


def create_user_statement(login: ConsumerLogin) -> str:
    return f"CREATE USER {ident(login.username)} PASSWORD {sql_literal(login.password)}"


def consumer_tables(spec: PipelineSpec) -> list[str]:
    """The qualified tables the consumers write: every replica, every wide table and the
    pipeline's own tables (truncates, load starts, added columns, landing, stages)."""
    return ([replica_table(spec, name) for name in spec.tables]
            + [target_table(spec, name) for name in spec.targets]
            + [replica_table(spec, TABLE_STATE), replica_table(spec, ADDED_COLUMNS),
               replica_table(spec, LANDING), replica_table(spec, APPLIED)]
            + [stage_table(spec, name) for name in spec.tables])


def pipeline_owns_replica_schema(spec: PipelineSpec) -> bool:
    """True when the replica schema holds only the pipeline's tables (not ``public`` and not
    the target schema, where analysts keep tables of their own)."""
    return spec.replica_schema not in ("public", spec.target_schema)


def grant_statements(spec: PipelineSpec, username: str, database: str) -> list[str]:
    """GRANTs that give ``username`` exactly what the consumers need; idempotent."""
    if not _USER_NAME.fullmatch(username):
        raise GrantError("not a valid Redshift user name")
    if not _DATABASE_NAME.fullmatch(database):
        raise GrantError("not a valid Redshift database name")
    user = ident(username)
    privileges = ", ".join(TABLE_PRIVILEGES)
    schemas = list(dict.fromkeys((spec.replica_schema, spec.target_schema)))
    statements = [f"GRANT USAGE ON SCHEMA {ident(schema)} TO {user}" for schema in schemas]
    statements.append(f"GRANT {privileges} ON TABLE {', '.join(consumer_tables(spec))} "
                      f"TO {user}")
    if pipeline_owns_replica_schema(spec):
        statements.append(f"GRANT {privileges} ON ALL TABLES IN SCHEMA "
                          f"{ident(spec.replica_schema)} TO {user}")
    statements.append(f"GRANT TEMP ON DATABASE {ident(database)} TO {user}")
    statements.append(f"GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA {ident(spec.replica_schema)} "
                      f"TO {user}")
    if spec.evolve == "add-columns":
        statements += [f"ALTER TABLE {table} OWNER TO {user}" for name in spec.tables
                       for table in (replica_table(spec, name), stage_table(spec, name))]
        # An added column recreates its table's apply procedure (``CREATE OR REPLACE``: only
        # its owner may, with CREATE on its schema, the pipeline's replica schema).
        statements.append(f"GRANT CREATE ON SCHEMA {ident(spec.replica_schema)} TO {user}")
        statements += [f"ALTER PROCEDURE {procedure_name(spec, TABLE_PROCEDURE_PREFIX, name)}"
                       f"(BOOLEAN) OWNER TO {user}" for name in spec.tables]
    return statements


def consumer_access_statements(spec: PipelineSpec, login: ConsumerLogin, database: str,
                               user_exists: bool) -> list[str]:
    """The consumer user (created when missing, its password set from the secret otherwise)
    and its grants, as one transaction's statements."""
    # An existing user takes the secret's password: a new stack against an existing warehouse
    # generates a new consumer secret, and its consumers must be able to log in.
    login_statement = (f"ALTER USER {ident(login.username)} PASSWORD {sql_literal(login.password)}"
                       if user_exists else create_user_statement(login))
    return [login_statement, *grant_statements(spec, login.username, database)]
