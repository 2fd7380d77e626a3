"""A handler for ``test_event_source_mapping``'s execution-environment test, in a module of
its own so that each environment (a fresh process) imports little: it logs its process, its
own count of invocations (a module global) and the records to the file the test names."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

_calls = 0


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _calls
    _calls += 1
    log = Path(os.environ["ESM_TEST_ENVIRONMENT_LOG"])
    if _calls == 1:
        # Hold the first invocation until a second environment is up, so the test sees two
        # run at once (60 s at most: the test then fails on the count).
        started = log.with_suffix(".started")
        with started.open("a") as out:
            out.write(f"{os.getpid()}\n")
        deadline = time.monotonic() + 60
        while len(started.read_text().split()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    line = {"pid": os.getpid(), "call": _calls, "request_id": context.aws_request_id,
            "event_ids": [r["eventID"] for r in event["Records"]]}  # shard:sequence number
    with log.open("a") as out:
        out.write(json.dumps(line) + "\n")
    return {"batchItemFailures": []}


def slow_once(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The first invocation (of any environment) hangs far past any timeout; later ones log
    their process and records and succeed."""
    log = Path(os.environ["ESM_TEST_ENVIRONMENT_LOG"])
    hung = log.with_suffix(".hung")
    if not hung.exists():
        hung.write_text(f"{os.getpid()}\n")
        time.sleep(600)
    with log.open("a") as out:
        out.write(json.dumps({"pid": os.getpid(),
                              "event_ids": [r["eventID"] for r in event["Records"]]}) + "\n")
    return {"batchItemFailures": []}
