"""``newer_sql`` says in SQL what ``is_newer`` says in Python, on a real PostgreSQL.

The keys sit in ``VARCHAR(142)`` columns as the replica's order-key column is declared
(``shared.warehouse_sql``), once with the database's default collation (the stand-in's
cluster is initialised with ``C.UTF-8``) and once with ``COLLATE "C"``: Redshift compares
these ASCII keys byte by byte, as PostgreSQL's "C" collation does. The expression itself must
pass the Redshift grammar check the Data API stand-in runs on every statement: only LEFT,
three-argument SUBSTRING ("SUBSTRING function", Amazon Redshift Database Developer Guide),
``||``, comparisons and AND/OR/NOT.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.postgres import PostgresServer
from local.redshift_data_api.grammar import check_redshift_sql
from shared.order_key import ORDER_KEY_MAX_LENGTH, is_newer, newer_sql
from tests.order_key_strategies import any_key

KEY_TYPE = f"VARCHAR({ORDER_KEY_MAX_LENGTH})"
QUERY = (
    f"SELECT id, {newer_sql('p.a', 'p.b')} AS newer, "
    f"{newer_sql('p.a_c', 'p.b_c')} AS newer_c FROM order_key_pairs p ORDER BY id"
)


@pytest.fixture(scope="module")
def keys_db(pg_server: PostgresServer) -> Iterator[psycopg.Connection]:
    """A fresh database with one table of key pairs, for this module."""
    name = f"order_keys_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(pg_server.dsn(name), autocommit=True) as conn:
            conn.execute(
                f'CREATE TABLE order_key_pairs (id integer, a {KEY_TYPE}, b {KEY_TYPE}, '
                f'a_c {KEY_TYPE} COLLATE "C", b_c {KEY_TYPE} COLLATE "C")'
            )
            yield conn
    finally:
        with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def evaluate(conn: psycopg.Connection, pairs: list[tuple[str | None, str | None]]
             ) -> list[tuple[bool | None, bool | None]]:
    with conn.transaction():
        conn.execute("DELETE FROM order_key_pairs")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO order_key_pairs VALUES (%s, %s, %s, %s, %s)",
                [(i, a, b, a, b) for i, (a, b) in enumerate(pairs)],
            )
        rows = conn.execute(QUERY).fetchall()
    return [(newer, newer_c) for _, newer, newer_c in rows]


def test_the_expression_is_redshift_sql() -> None:
    check_redshift_sql(QUERY)
    staged, stored = '"stage"."_cdc_order_key"', 'r."_cdc_order_key"'
    check_redshift_sql(
        'DELETE FROM "stage" USING "cdc_replica"."ticket" r '
        f'WHERE "stage"."ticket_id" = r."ticket_id" AND NOT {newer_sql(staged, stored)}'
    )


@settings(database=None, deadline=None, max_examples=60)
@given(st.lists(st.tuples(any_key(), any_key()), min_size=1, max_size=30))
def test_sql_and_python_agree_on_random_key_pairs(
    keys_db: psycopg.Connection, pairs: list[tuple[str, str]],
) -> None:
    cases = pairs + [(b, a) for a, b in pairs] + [(a, a) for a, _ in pairs]
    expected = [is_newer(a, b) for a, b in cases]
    assert evaluate(keys_db, cases) == [(e, e) for e in expected]  # type: ignore[arg-type]


def test_a_missing_key_is_never_newer_nor_older(keys_db: psycopg.Connection) -> None:
    key = "2" + "2024-07-29T00:58:17.974340Z" + "P" + "0" * 43 + "0" * 10
    assert evaluate(keys_db, [(None, key), (key, None), (None, None)]) == [(None, None)] * 3
