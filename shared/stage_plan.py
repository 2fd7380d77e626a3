"""Decide how each table of a batch reaches its staging table: inline INSERTs or S3 + COPY.

A BatchExecuteStatement holds at most 40 statements of at most 100,000 bytes each. When a
staging bucket exists, a batch of more than ``INLINE_ROWS_MAX`` changes goes through S3 entirely
(uncompressed JSON lines, one COPY per table: the load Redshift is built for, and cheaper to
encode than SQL literals). Otherwise tables are encoded inline smallest first while they fit
the statement budget, and a table that does not fit goes through S3. A batch that cannot fit
(without a bucket, or with too many tables for one transaction even at one COPY each) is
reported as such so the writer splits it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared import warehouse_sql as sql
from shared.records import Change, TableEvent
from shared.spec import PipelineSpec
from shared.staging import insert_statements, json_lines

MAX_STATEMENTS = 40
# The Data API refuses a statement over 100 KB ("Cannot process query string larger than
# 100kB", a ValidationException): taken as 100,000 bytes of UTF-8, with a margin.
DATA_API_MAX_SQL_BYTES = 100_000
MAX_SQL_BYTES = DATA_API_MAX_SQL_BYTES - 1_000
INLINE_ROWS_MAX = 2000


@dataclass(frozen=True)
class InlineLoad:
    statements: list[str]


@dataclass(frozen=True)
class CopyLoad:
    body: bytes  # uncompressed JSON lines (``shared.staging.json_lines``)


StageLoad = InlineLoad | CopyLoad


def plan_stage_loads(
    spec: PipelineSpec, batch: Mapping[str, list[Change]], copy_available: bool,
    events: Sequence[TableEvent] = (), added_columns_known: int | None = None,
) -> dict[str, StageLoad] | None:
    """How to fill each staging table, or None when the batch must be split."""
    tables = sorted((t for t in spec.tables if batch.get(t)), key=lambda t: len(batch[t]))
    budget = MAX_STATEMENTS - sql.fixed_statement_count(spec, tables, events,
                                                        added_columns_known)
    if tables and budget < len(tables):
        return None  # too many tables for one transaction, even with one COPY each
    if copy_available and sum(len(batch[t]) for t in tables) > INLINE_ROWS_MAX:
        return {name: CopyLoad(json_lines(batch[name])) for name in tables}
    loads: dict[str, StageLoad] = {}
    for position, name in enumerate(tables):
        still_to_place = len(tables) - position - 1  # each needs at least one statement
        allowed = budget - still_to_place
        statements = (
            insert_statements(sql.stage_table(name), spec.tables[name], batch[name],
                              MAX_SQL_BYTES, allowed)
            if allowed > 0 else None
        )
        if statements is not None:
            loads[name] = InlineLoad(statements)
            budget -= len(statements)
        elif copy_available:
            loads[name] = CopyLoad(json_lines(batch[name]))
            budget -= 1
        else:
            return None
    return loads
