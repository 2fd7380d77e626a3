"""A handler for ``test_sqs_event_source_mapping``'s execution-environment test, in a module of
its own so that the environment (a fresh process) imports little: it logs its process and the
bodies it got to the file the test names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    line = {"pid": os.getpid(), "bodies": [r["body"] for r in event["Records"]]}
    with Path(os.environ["SQS_ESM_TEST_LOG"]).open("a") as out:
        out.write(json.dumps(line) + "\n")
    return {"batchItemFailures": []}
