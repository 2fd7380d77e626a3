"""``python -m local.dms``: run the local DMS task until SIGTERM or SIGINT, ask the running
task to reload a table, or drop its slot.

    python -m local.dms run --source-dsn DSN --stream cdc-stream --state-dir DIR
                            [--slot cdc_local_dms] [--spec FILE] [--poll-interval 0.2]
                            [--no-truncate-records] [--ddl-schema public]
    python -m local.dms reload --state-dir DIR --table T [--slot cdc_local_dms]
    python -m local.dms drop-slot --source-dsn DSN [--slot cdc_local_dms]

``reload`` is DMS's ReloadTables: it leaves a request file in the state directory that the
running task picks up at its next poll (a create-table record, the table's rows as load
records, then the table's changes committed meanwhile); it returns at once.

The Kinesis client is a plain boto3 client: the endpoint comes from the standard
``AWS_ENDPOINT_URL_KINESIS`` (or ``AWS_ENDPOINT_URL``) variable, the region from
``AWS_DEFAULT_REGION`` or ``--region``. On SIGTERM/SIGINT the current poll finishes (its
records are put and its position confirmed) and the process exits 0; after a SIGKILL the
next start re-sends what was put but not confirmed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from types import FrameType

import boto3

from local.dms.capture import DEFAULT_DDL_SCHEMA, DEFAULT_SLOT, LocalDms
from local.dms.requests import request_reload
from shared.spec import load_spec


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local.dms", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="full load (once), then CDC until stopped")
    run.add_argument("--source-dsn", required=True, help="libpq conninfo of the source")
    run.add_argument("--stream", required=True, help="Kinesis stream name or ARN")
    run.add_argument("--state-dir", required=True, type=Path)
    run.add_argument("--slot", default=DEFAULT_SLOT, help="replication slot name")
    run.add_argument("--spec", default=None, help="pipeline spec (default: the packaged one)")
    run.add_argument("--poll-interval", type=float, default=0.2)
    run.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    run.add_argument("--no-truncate-records", dest="truncate_records", action="store_false",
                     help="leave TRUNCATE out of the stream, as the DMS User Guide documents "
                          "for a PostgreSQL source (default: a truncate-table record)")
    run.add_argument("--ddl-schema", default=DEFAULT_DDL_SCHEMA,
                     help="schema of DMS's DDL capture objects (awsdms_ddl_audit)")
    reload = commands.add_parser("reload", help="ask the running task to reload a table")
    reload.add_argument("--state-dir", required=True, type=Path)
    reload.add_argument("--table", required=True)
    reload.add_argument("--slot", default=DEFAULT_SLOT)
    drop = commands.add_parser("drop-slot", help="drop the replication slot (it keeps WAL)")
    drop.add_argument("--source-dsn", required=True)
    drop.add_argument("--slot", default=DEFAULT_SLOT)
    drop.add_argument("--state-dir", type=Path, default=Path("."))
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "reload":
        print(request_reload(args.state_dir, args.slot, args.table))
        return 0
    spec = load_spec(getattr(args, "spec", None))
    if args.command == "drop-slot":
        with LocalDms(args.source_dsn, spec, None, "", args.state_dir, args.slot) as dms:
            print("dropped" if dms.drop_slot() else "no such slot")
        return 0
    kinesis = boto3.client("kinesis", region_name=args.region)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("local.dms").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    dms = LocalDms(args.source_dsn, spec, kinesis, args.stream, args.state_dir, args.slot,
                   truncate_records=args.truncate_records, ddl_schema=args.ddl_schema)
    logging.getLogger("local.dms").info("local DMS started (pid %d, slot %s, stream %s)",
                                        os.getpid(), args.slot, args.stream)
    dms.run(stop, poll_interval=args.poll_interval)
    print(json.dumps(asdict(dms.counters), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
