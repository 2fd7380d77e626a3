"""``make demo``: the pipeline over a sample DMS history into the local warehouse.

Starts a throwaway PostgreSQL and the Redshift Data API stand-in, creates the warehouse schema
from the spec, runs the sample history through the shared core and the Redshift writer, prints
the first rows of the analyst table and a summary, and stops everything.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from local.postgres import create_database, start_postgres, stop_postgres
from local.redshift_data_api.server import RedshiftDataApiServer
from local.sample_data import sample_history
from shared.data_api import DataApiTarget, RedshiftDataApi
from shared.migrations import migrate
from shared.redshift_writer import RedshiftWriter
from shared.spec import load_spec
from shared.transform import Transformer

STATE_DIR = Path(".local-stack/demo")


def print_table(rows: list[dict[str, Any]], columns: list[str], width: int = 18) -> None:
    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return text if len(text) <= width else text[: width - 1] + "…"

    print(" | ".join(c[:width].ljust(width) for c in columns))
    print("-+-".join("-" * width for _ in columns))
    for row in rows:
        print(" | ".join(cell(row[c]).ljust(width) for c in columns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", help="pipeline spec (default: the sports-ticketing spec)")
    parser.add_argument("--rows", type=int, default=10, help="rows of the analyst table to show")
    args = parser.parse_args(argv)

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    spec = load_spec(args.spec)
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    STATE_DIR.mkdir(parents=True)
    STATE_DIR.chmod(0o755)
    print("starting PostgreSQL 15 and the Redshift Data API stand-in ...")
    server_pg = start_postgres(STATE_DIR / "warehouse-pg")
    api_server: RedshiftDataApiServer | None = None
    try:
        create_database(server_pg, "warehouse")
        api_server = RedshiftDataApiServer(
            pg_conninfo=f"host={server_pg.host} port={server_pg.port} user={server_pg.user}"
        )
        api_server.start()
        client = boto3.client(
            "redshift-data", endpoint_url=api_server.endpoint_url, region_name="us-east-1"
        )
        api = RedshiftDataApi(client, DataApiTarget(database="warehouse", workgroup_name="local"))
        plan = migrate(api, spec)
        print(f"warehouse schema: {len(plan.statements)} DDL statements")

        core = Transformer(spec, secrets.token_bytes(32))  # stands in for the stack's secret
        writer = RedshiftWriter(spec, api)
        totals: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        started = time.perf_counter()
        for batch in sample_history():
            result = core.transform(batch)
            report = writer.stage_and_merge(result.changes)
            totals.update(
                records=result.records_in,
                changes=result.change_count,
                rejected=len(result.rejects),
                skipped=sum(result.skipped.values()),
                transactions=report.transactions,
            )
            reasons.update(r.reason for r in result.rejects)
        elapsed = time.perf_counter() - started

        for target in spec.targets.values():
            columns = [c.name for c in target.columns]
            rows = api.query(
                f'SELECT * FROM "{spec.target_schema}"."{target.name}" '
                f"ORDER BY {', '.join(target.key)} LIMIT {args.rows}"
            )
            count = api.query(f'SELECT count(*) AS n FROM "{spec.target_schema}"."{target.name}"')
            print(
                f"\n{spec.target_schema}.{target.name}: first {len(rows)} of {count[0]['n']} rows"
            )
            print_table(rows, columns, width=14)
        print(
            f"\nsummary: {totals['records']} records in {totals['transactions']} transactions "
            f"({elapsed:.2f}s): {totals['changes']} changes applied, {totals['rejected']} "
            f"rejected, {totals['skipped']} skipped"
        )
        for reason, count_ in reasons.items():
            print(f"  rejected x{count_}: {reason}")
        return 0
    finally:
        if api_server is not None:
            api_server.stop()
        stop_postgres(STATE_DIR / "warehouse-pg")


if __name__ == "__main__":
    sys.exit(main())
