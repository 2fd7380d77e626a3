"""``cdc``: one command line for the user-facing tasks (the console script of the project).

Each subcommand is one module's ``main(argv)``; this module only finds it, passes the
arguments through and adds ``--help`` text (what it does, an example). The commands that read
the consumer's configuration (``status``, ``reconcile``, ``dlq replay``, ``spec show``) take
``--stack-dir DIR`` for the local stack: its environment is set first, exactly what
``eval "$(python -m local.stack env)"`` does; without it they use the variables already set
(a deployed stack's, ``shared.settings``). With ``--stack-dir`` and ``--spec`` the local
warehouse is migrated to that spec first.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROG = "cdc"
CONFIGURATION_HINT = ("for the local stack give --stack-dir (e.g. .local-stack/stack), or set "
                      "the consumer's variables: eval \"$(python -m local.stack env)\"")


@dataclass(frozen=True)
class Command:
    name: str  # one or two words: "status", "dlq replay"
    module: str  # the module whose main(argv) runs it
    summary: str
    example: str
    leading: tuple[str, ...] = ()  # arguments put before the user's (a module's subcommand)
    configured: bool = False  # reads the consumer's configuration: takes --stack-dir


COMMANDS = (
    Command("demo", "local.cdc",
            "the pipeline end to end on a fresh local stack with a generated workload (with "
            "--source: your database instead), then reconciliation",
            'cdc demo --duration 30    # or: cdc demo --source "dbname=shop" --spec shop.toml',
            leading=("demo",)),
    Command("run", "local.cdc",
            "the local pipeline on your own PostgreSQL database: full load, CDC until Ctrl-C "
            "(or --duration), catch-up, reconciliation",
            'cdc run --source "host=localhost dbname=shop user=postgres" --spec shop.toml',
            leading=("run",)),
    Command("spec init", "tools.spec_init",
            "write a pipeline spec from your database's catalog (tables, keys, types, "
            "suggested PII rules)",
            'cdc spec init --source "host=localhost dbname=shop user=postgres" --out shop.toml'),
    Command("spec check", "tools.spec_check",
            "compare a spec with the live source database and name every difference",
            'cdc spec check --source "host=localhost dbname=shop user=postgres" '
            "--spec shop.toml"),
    Command("spec show", "tools.spec_show",
            "the spec as the warehouse holds it, with the columns the source added since",
            "cdc spec show --stack-dir .local-stack/stack", configured=True),
    Command("invoke", "local.invoke",
            "the Lambda handler on a Kinesis event file, on the local stack",
            "cdc invoke events/inserts.json    # --spec shop.toml for your own spec"),
    Command("sql", "local.sql",
            "one SQL statement on the local warehouse through the Data API, printed as CSV",
            'cdc sql "SELECT count(*) FROM public.sport_event_activity"'),
    Command("reconcile", "tools.reconcile",
            "compare the source database with the warehouse, table by table, by key and "
            "column",
            'cdc reconcile --stack-dir .local-stack/run/stack --source "dbname=shop"',
            configured=True),
    Command("dlq replay", "tools.dlq_replay",
            "send dead-lettered records through the core again; what now passes is written",
            "cdc dlq replay --stack-dir .local-stack/stack --dry-run", configured=True),
    Command("status", "tools.status",
            "per table: rows, lag, last applied source position, reload start; dead-letter "
            "queue depth",
            "cdc status --stack-dir .local-stack/run/stack", configured=True),
)


def find(argv: Sequence[str]) -> tuple[Command, list[str]] | None:
    """The command named by the first one or two words of ``argv``, and the rest."""
    for words in (2, 1):
        name = " ".join(argv[:words])
        for command in COMMANDS:
            if len(argv) >= words and command.name == name:
                return command, list(argv[words:])
    return None


def overview() -> str:
    width = max(len(c.name) for c in COMMANDS)
    lines = [f"usage: {PROG} <command> [options]    ({PROG} <command> --help for its options)",
             "", "commands:"]
    lines += [f"  {c.name.ljust(width)}  {c.summary}" for c in COMMANDS]
    return "\n".join(lines)


def command_help(command: Command) -> str:
    text = f"{PROG} {command.name}: {command.summary}\n\nexample:\n  {command.example}\n"
    if command.configured:
        text += ("\n--stack-dir DIR: use the local stack in DIR (started if needed); without "
                 "it, the consumer's variables (a deployed stack's)\n")
    return text


def _main_of(command: Command) -> Callable[..., int]:
    module = importlib.import_module(command.module)  # lazily: only the command's own imports
    entry: Callable[..., int] = module.main
    return entry


def _local_stack_environment(args: list[str]) -> list[str]:
    """Take ``--stack-dir`` out of ``args``; with it, set the local stack's consumer
    environment (migrated to ``--spec`` when given, which stays in the arguments)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--stack-dir", type=Path)
    parser.add_argument("--spec")
    known, rest = parser.parse_known_args(args)
    if known.stack_dir is None:
        return args
    from local.invoke import apply_environment
    from local.stack import ensure_stack, handler_environment

    apply_environment(handler_environment(ensure_stack(known.stack_dir, known.spec)))
    return rest + (["--spec", known.spec] if known.spec else [])


def run(command: Command, args: list[str]) -> int:
    """Call the command's ``main`` with ``args`` (usage lines say ``cdc <command>``)."""
    if "-h" in args or "--help" in args:
        print(command_help(command))
        args = ["--help"]
    elif command.configured:
        args = _local_stack_environment(args)
    entry = _main_of(command)
    prog = f"{PROG} {command.name}"
    saved = sys.argv[0]
    sys.argv[0] = prog  # argparse's default prog for the modules that take none
    try:
        if "prog" in inspect.signature(entry).parameters:
            return int(entry([*command.leading, *args], prog=PROG if command.leading else prog))
        return int(entry([*command.leading, *args]))
    except SystemExit as exc:  # argparse's --help and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.argv[0] = saved


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        return 0 if args else 2
    found = find(args)
    if found is None:
        print(f"{PROG}: unknown command {' '.join(args[:2])!r}\n\n{overview()}", file=sys.stderr)
        return 2
    command, rest = found
    from shared.settings import SettingsError
    from shared.spec import SpecError

    try:
        return run(command, rest)
    except SettingsError as exc:
        print(f"error: {exc}; {CONFIGURATION_HINT}", file=sys.stderr)
        return 2
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
