"""Repair a drifted replica with a DMS table reload: ``start`` before it, ``finish`` after.

A full load's rows carry no source log position (AWS DMS User Guide, "Using Amazon Kinesis Data
Streams as a target": transaction details are for CDC records only), so the pipeline cannot
tell on its own whether a load row is newer than a CDC change of the same row. The reload
gives it the watermark:

1. ``python -m tools.table_reload start --table T`` records the load start in the warehouse
   (``_cdc_tables.load_started``). From then on, full-load rows of T read after that time beat
   every CDC change committed before it; changes committed later (DMS caches them during the
   load and sends them after it) beat the load rows.
2. Reload the table in DMS: ``aws dms reload-tables --replication-task-arn ARN
   --tables-to-reload SchemaName=public,TableName=T`` (or the console's "Reload table data").
3. When DMS shows the table's load as completed (``aws dms describe-table-statistics``:
   ``TableState`` "Table completed") and the consumer has caught up (``IteratorAge`` near
   zero), ``python -m tools.table_reload finish --table T`` deletes the replica rows the
   reload did not read and no change touched since it started (rows deleted at the source
   while changes were missed), and recomputes the wide tables that join T. ``--dry-run``
   counts them first.

A replay of an old load never overwrites newer data: rows read before the recorded start
lose to every CDC change. Without ``start``, a reload's rows behave like the initial full
load's (they fill missing rows but never overwrite a CDC change).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import boto3

from shared import warehouse_sql as sql
from shared.data_api import RedshiftDataApi
from shared.spec import PipelineSpec
from tools.cli_settings import add_spec_argument, settings_and_spec


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def start(api: RedshiftDataApi, spec: PipelineSpec, table: str, started: str | None = None,
          ) -> str:
    """Record the load start of ``table``; return it."""
    started = started or now_utc()
    api.run_transaction(sql.reload_start_statements(spec, table, started))
    return started


def recorded_start(api: RedshiftDataApi, spec: PipelineSpec, table: str) -> str | None:
    rows = api.query(
        f"SELECT load_started FROM {sql.replica_table(spec, sql.TABLE_STATE)} "
        "WHERE table_name = :table_name AND load_started IS NOT NULL", {"table_name": table})
    return str(rows[0]["load_started"]) if rows else None


def stale_rows(api: RedshiftDataApi, spec: PipelineSpec, table: str, started: str) -> int:
    return int(api.query(sql.reload_stale_rows_query(spec, table, started))[0]["n"])


def finish(api: RedshiftDataApi, spec: PipelineSpec, table: str, dry_run: bool = False) -> int:
    """Delete what the reload showed is gone at the source; return how many rows."""
    started = recorded_start(api, spec, table)
    if started is None:
        raise SystemExit(f"no reload of {table} was started: run 'start' before the reload")
    count = stale_rows(api, spec, table, started)
    if not dry_run:
        api.run_transaction(sql.reload_sweep_statements(spec, spec.tables[table], started))
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("start", "finish"))
    parser.add_argument("--table", required=True, help="a table of the spec")
    add_spec_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="finish: count only")
    args = parser.parse_args(argv)
    settings, spec = settings_and_spec(args.spec)
    if args.table not in spec.tables:
        parser.error(f"{args.table!r} is not a table of the spec")
    api = RedshiftDataApi(boto3.client("redshift-data"), settings.target)
    if args.step == "start":
        print(f"{args.table}: reload starts at {start(api, spec, args.table)}; now reload the "
              "table in DMS")
        return 0
    count = finish(api, spec, args.table, args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{args.table}: {verb} {count} rows the reload did not see")
    return 0


if __name__ == "__main__":
    sys.exit(main())
