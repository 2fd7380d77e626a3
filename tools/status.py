"""How far the warehouse is behind the source, table by table.

    python -m tools.status [--spec FILE]     # configuration from the consumer's variables
    cdc status --stack-dir .local-stack/stack   # the same on the local stack

Per table of the spec: the live rows of its replica; the lag, now minus the commit time of
the newest change applied (the time part of the replica's newest ``_cdc_order_key``,
``shared.order_key``: a CDC change's ``commit-timestamp``, a full-load row's load start); the
last applied source log position (the position part of the newest positioned key, printed
the way the source writes it: a PostgreSQL LSN, a MySQL binlog file number and offset, ...);
and, for a table reloaded with ``tools.table_reload``, the reload's recorded start. Then each
wide table's rows and the dead-letter queue's depth (SQS ``ApproximateNumberOfMessages``,
"GetQueueAttributes", Amazon SQS API Reference: an approximate count).

It reads the warehouse through the Data API as the consumer does and the queue with a plain
SQS client, so it needs what every tool needs (``tools.cli_settings``): on AWS the deployed
consumer's variables (``REDSHIFT_*``, ``DEAD_LETTER_QUEUE_URL``, ``PIPELINE_SPEC_PATH``),
locally the stack's (``cdc status --stack-dir DIR`` sets them). The lag of a table whose newest
change is a hard delete (``delete_mode = "hard"`` keeps no row for it) is that of the change
before; a table with no row yet has none.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3

from shared import warehouse_sql as sql
from shared.data_api import RedshiftDataApi
from shared.order_key import (
    CLASS_POSITION,
    LOAD_TIME_UNKNOWN,
    POSITION_END,
    POSITION_START,
    TIME_END,
    TIME_START,
)
from shared.spec import PipelineSpec
from shared.staging import DELETED, ORDER_KEY, sql_literal
from tools.cli_settings import add_spec_argument, settings_and_spec

# Tables per UNION ALL query: each part is a few hundred bytes, far below the Data API's
# 100,000-byte statement limit even at this count.
TABLES_PER_QUERY = 100


@dataclass(frozen=True)
class TableStatus:
    name: str
    rows: int
    newest_time: str | None  # the 27-char UTC time of the newest applied change
    position: str | None  # the 44-char position part of the newest positioned change
    reload_started: str | None = None


def _time_sql(column: str) -> str:
    return f"SUBSTRING({column}, {TIME_START + 1}, {TIME_END - TIME_START})"


def replica_status_query(spec: PipelineSpec, tables: Sequence[str]) -> str:
    """One statement for ``tables``: per table its live rows (``live``), the newest change's
    time (``newest_time``) and the newest source log position (``position``)."""
    key, deleted = sql.ident(ORDER_KEY), sql.ident(DELETED)
    position = (f"SUBSTRING({key}, {POSITION_START + 1}, {POSITION_END - POSITION_START})")
    parts = [
        f"SELECT {sql_literal(name)} AS table_name, "
        f"SUM(CASE WHEN {deleted} THEN 0 ELSE 1 END) AS live, "
        f"MAX({_time_sql(key)}) AS newest_time, "
        f"MAX(CASE WHEN LEFT({key}, 1) = '{CLASS_POSITION}' THEN {position} END) AS position "
        f"FROM {sql.replica_table(spec, name)}"
        for name in tables
    ]
    return " UNION ALL ".join(parts)


def target_rows_query(spec: PipelineSpec, targets: Sequence[str]) -> str:
    return " UNION ALL ".join(
        f"SELECT {sql_literal(name)} AS target_name, COUNT(*) AS n "
        f"FROM {sql.target_table(spec, name)}" for name in targets)


def reload_starts_query(spec: PipelineSpec) -> str:
    return (f"SELECT table_name, load_started FROM {sql.replica_table(spec, sql.TABLE_STATE)} "
            "WHERE load_started IS NOT NULL")


def lag_seconds(newest_time: str | None, now: datetime) -> float | None:
    """Now minus the newest change's time; None when there is no known time."""
    if not newest_time or newest_time == LOAD_TIME_UNKNOWN:
        return None
    newest = datetime.strptime(newest_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (now - newest).total_seconds()


def format_lag(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def readable_position(part: str | None) -> str:
    """The order key's position part as the source writes it (the shapes of
    ``shared.order_key.position_part``); "-" when there is none."""
    if not part:
        return "-"
    shape = part[0]
    if shape == "P":  # the transaction's LSN, as pg_lsn prints it
        hi, lo = part[18:26], part[27:35]
        return f"{int(hi, 16):X}/{int(lo, 16):X}"
    if shape == "M":  # binlog file sequence : event position
        return f"binlog {int(part[1:11]):06d}:{int(part[11:31])}"
    if shape == "S":  # SQL Server LSN, VLF:block:slot
        return f"{part[1:9]}:{part[9:17]}:{part[17:21]}"
    if shape == "N":  # Oracle SCN (RAC: thread.SCN)
        scn, thread = int(part[1:31]), int(part[31:41] or "0")
        return f"{thread}.{scn}" if thread else str(scn)
    if shape == "D":  # Db2 LSN
        return "0x" + (part[1:33].lstrip("0") or "0")
    return part.rstrip("0")


def replica_statuses(api: RedshiftDataApi, spec: PipelineSpec) -> list[TableStatus]:
    names = list(spec.tables)
    rows: dict[str, Mapping[str, Any]] = {}
    for start in range(0, len(names), TABLES_PER_QUERY):
        for row in api.query(replica_status_query(spec, names[start:start + TABLES_PER_QUERY])):
            rows[str(row["table_name"])] = row
    reloads = {str(r["table_name"]): str(r["load_started"])
               for r in api.query(reload_starts_query(spec))}
    return [TableStatus(name, int(rows[name]["live"] or 0), rows[name]["newest_time"],
                        rows[name]["position"], reloads.get(name)) for name in names]


def target_rows(api: RedshiftDataApi, spec: PipelineSpec) -> dict[str, int]:
    if not spec.targets:
        return {}
    return {str(r["target_name"]): int(r["n"])
            for r in api.query(target_rows_query(spec, list(spec.targets)))}


def dead_letter_depth(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def render(spec: PipelineSpec, tables: Sequence[TableStatus], targets: Mapping[str, int],
           dead_letters: int, now: datetime) -> list[str]:
    """The report's lines (plain data in, text out)."""
    header = ("table", "rows", "lag", "last applied position", "reload started")
    body = [(f"{spec.replica_schema}.{t.name}", str(t.rows),
             format_lag(lag_seconds(t.newest_time, now)), readable_position(t.position),
             t.reload_started or "-") for t in tables]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in [header, *body]]
    for name, count in targets.items():
        lines.append(f"wide table {spec.target_schema}.{name}: {count} rows")
    lines.append(f"dead-letter queue: {dead_letters} messages")
    return lines


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_argument(parser)
    args = parser.parse_args(argv)
    settings, spec = settings_and_spec(args.spec)
    api = RedshiftDataApi(boto3.client("redshift-data"), settings.target)
    tables = replica_statuses(api, spec)
    targets = target_rows(api, spec)
    depth = dead_letter_depth(boto3.client("sqs"), settings.dead_letter_queue_url)
    print("\n".join(render(spec, tables, targets, depth, datetime.now(UTC))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
