"""Command line of the local stack.

    python -m local.stack start  [--state-dir DIR]   start (or reuse) the stack, print endpoints
    python -m local.stack stop   [--state-dir DIR]   stop every process of the stack
    python -m local.stack status [--state-dir DIR]   each part and whether it runs (exit 1: not all)
    python -m local.stack env    [--state-dir DIR] [--json]
                                 the consumer's environment as `export NAME=value` lines
                                 (starts the stack first if it does not run)

    eval "$(python -m local.stack env)"   # a shell that talks to the local stack

Progress goes to stderr; stdout holds only the command's result.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from local.stack.environment import export_lines, handler_environment
from local.stack.lifecycle import ensure_stack, stack_status, start_stack, stop_stack
from local.stack.state import DEFAULT_STATE_DIR, StackInfo


def _describe(info: StackInfo) -> str:
    r = info.resources
    return "\n".join([
        f"postgres       127.0.0.1:{info.postgres_port} database {info.database} "
        f"(pid {info.pids['postgres']})",
        f"redshift-data  {info.redshift_data_endpoint} workgroup {info.workgroup_name} "
        f"(pid {info.pids['redshift_data']})",
        f"moto           {info.moto_endpoint} (pid {info.pids['moto']})",
        f"stream         {r.stream_arn}",
        f"dead letters   {r.dead_letter_queue_url}",
        f"staging        s3://{r.staging_bucket}/{r.staging_prefix}",
        f"hmac secret    {r.hmac_secret_arn}",
        f"warehouse      admin secret {r.admin_secret_arn}",
        f"               consumer secret {r.consumer_secret_arn}",
        f"state          {info.state_dir}",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.stack",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=["start", "stop", "status", "env"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--json", action="store_true", help="env: one JSON object instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    if args.command == "start":
        print(_describe(start_stack(args.state_dir)))
        return 0
    if args.command == "stop":
        stopped = stop_stack(args.state_dir)
        print(f"stopped: {', '.join(stopped)}" if stopped else "not running")
        return 0
    if args.command == "status":
        components = stack_status(args.state_dir)
        if not components:
            print("not running")
            return 1
        for c in components:
            print(f"{c.name:<14} {'running' if c.running else 'NOT RUNNING':<12} "
                  f"pid {c.pid:<8} {c.endpoint}")
        return 0 if all(c.running for c in components) else 1
    env = handler_environment(ensure_stack(args.state_dir))
    sys.stdout.write(json.dumps(env, indent=2) + "\n" if args.json else export_lines(env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
