"""``make invoke EVENT=events/<name>.json``: call the Lambda handler on an event, locally.

    python -m local.invoke events/inserts.json [--state-dir DIR] [--spec FILE]
                           [--handler functions.kinesis_consumer.app:lambda_handler]

Starts the local stack if it does not run (with ``--spec``, migrates its warehouse to that
pipeline spec first, and the handler reads that spec through ``PIPELINE_SPEC_PATH``), puts
the consumer's environment on it into ``os.environ`` (as Lambda would set the function's
variables before the module loads), imports the handler and calls it with the event and a
stand-in ``LambdaContext``. stdout gets only the handler's response as JSON; everything the
handler writes (Powertools' JSON logs and metrics) goes to stderr. No Docker: the handler
runs in this Python process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local.event_source_mapping.context import LambdaContext
from local.stack import DEFAULT_STATE_DIR, ensure_stack, handler_environment
from local.stack.environment import CONFLICTING_VARIABLES
from shared.spec import SpecError

DEFAULT_HANDLER = "functions.kinesis_consumer.app:lambda_handler"
FUNCTION_NAME = "cdc-kinesis-consumer-local"

Handler = Callable[[dict[str, Any], Any], Any]


def lambda_context() -> LambdaContext:
    """A context like the deployed function's (ConsumerMemorySize, ConsumerTimeoutSeconds)."""
    return LambdaContext(function_name=FUNCTION_NAME,
                         invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:"
                                              f"{FUNCTION_NAME}")


def apply_environment(env: dict[str, str]) -> None:
    """Make ``os.environ`` the consumer's: its variables in, conflicting caller settings out."""
    for name in CONFLICTING_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(env)


def load_handler(spec: str) -> Handler:
    """``module:function`` -> the function (the module is imported now, with the new env)."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"--handler must be module:function, not {spec!r}")
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name)
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return handler  # type: ignore[no-any-return]


def invoke(event: dict[str, Any], handler_spec: str = DEFAULT_HANDLER,
           context: LambdaContext | None = None) -> Any:
    """Import the handler and call it; whatever it prints goes to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        handler = load_handler(handler_spec)
        return handler(event, context or lambda_context())


def main(argv: list[str] | None = None, prog: str = "python -m local.invoke") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("event", help="a Kinesis event file, e.g. events/inserts.json")
    parser.add_argument("--handler", default=DEFAULT_HANDLER, help="module:function")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help="the local stack's state dir (default: %(default)s)")
    parser.add_argument("--spec", help="pipeline spec file: the warehouse is migrated to it and "
                                       "the handler reads it (default: the one the stack "
                                       "follows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if not args.event.strip():
        parser.error("no event; use make invoke EVENT=events/<name>.json")
    try:
        event = json.loads(Path(args.event).read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the event {args.event}: {exc}", file=sys.stderr)
        return 2
    try:
        info = ensure_stack(args.state_dir, args.spec)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    apply_environment(handler_environment(info, handler=args.handler.replace(":", ".")))
    try:
        response = invoke(event, args.handler)
    except ModuleNotFoundError as exc:
        if exc.name and args.handler.startswith(exc.name):
            print(f"error: the handler module {exc.name} does not exist", file=sys.stderr)
            return 2
        raise
    print(json.dumps(response, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
