"""Records which AWS API actions the deployed code performs, and as which role.

Installed by tests/deploy/conftest.py in the pytest process and, through PYTHONPATH (this
directory), in every Python subprocess the tests start (the end-to-end test's consumer
processes, Spark's Python workers), when ``CDC_API_CALLS_FILE`` names the file to append to.

A botocore ``before-call`` handler, registered on every botocore session as it is created,
appends one JSON line per call: ``{"role": ..., "action": "service:Operation"}``. The role is
that of the deployed entry point on the call stack -- the Kinesis consumer's handler
(KinesisConsumerRole), the schema migrator's (SchemaMigratorRole), the batch applier's
(BatchApplierRole), the Glue job or its batch
function (GlueJobRole); calls made by the tests themselves, the local stand-ins or the tools
have no such entry point and are not recorded.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
ENTRY_POINTS = (
    (str(REPO / "functions/kinesis_consumer") + os.sep, "KinesisConsumerRole"),
    (str(REPO / "functions/schema_migrator") + os.sep, "SchemaMigratorRole"),
    (str(REPO / "functions/batch_applier") + os.sep, "BatchApplierRole"),
    (str(REPO / "glue_job/cdc_streaming_job.py"), "GlueJobRole"),
    (str(REPO / "shared/glue") + os.sep, "GlueJobRole"),
)


def deployed_role() -> str | None:
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        for prefix, role in ENTRY_POINTS:
            if filename.startswith(prefix):
                return role
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _record(model: Any = None, **_kwargs: Any) -> None:
    path = os.environ.get("CDC_API_CALLS_FILE")
    if not path or model is None:
        return
    role = deployed_role()
    if role is None:
        return
    line = json.dumps({"role": role,
                       "action": f"{model.service_model.service_name}:{model.name}"}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def install() -> None:
    """Register the recorder on every botocore session created from now on (idempotent)."""
    try:
        import botocore.session
    except ImportError:
        return
    session_class = botocore.session.Session
    if getattr(session_class, "_cdc_api_recorder", False):
        return
    original_init = session_class.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.register("before-call", _record, unique_id="cdc-api-recorder")

    session_class.__init__ = init  # type: ignore[method-assign]
    session_class._cdc_api_recorder = True  # type: ignore[attr-defined]
    boto3 = sys.modules.get("boto3")
    default = getattr(boto3, "DEFAULT_SESSION", None)
    if default is not None:  # created before the recorder came
        default._session.register("before-call", _record, unique_id="cdc-api-recorder")


if os.environ.get("CDC_API_CALLS_FILE"):
    install()
