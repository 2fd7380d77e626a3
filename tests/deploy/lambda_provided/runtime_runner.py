"""Run a built Lambda handler as the python3.12 runtime would, in a clean interpreter.

    <clean venv>/bin/python -I runtime_runner.py REQUEST.json

REQUEST.json: ``{"task": DIR, "layers": [DIR, ...], "handler": "app.lambda_handler",
"environment": {...}, "event": {...}, "extra_paths": [DIR, ...]}``. The interpreter is started
with ``-I`` (no PYTHONPATH, no user site, not even this script's directory), in a virtualenv that
holds only what the runtime provides (boto3 and its dependencies). Like Lambda's python runtime
this sets the function's environment, puts the function's code and each layer's
``python/lib/python3.12/site-packages`` and ``python`` first on ``sys.path`` ("Lambda layers",
https://docs.aws.amazon.com/lambda/latest/dg/packaging-layers.html#packaging-layers-paths),
imports the handler's module and calls it with the event and a context. ``extra_paths`` come
last: the modules Lambda itself adds for inline code (``cfnresponse``).

The last line of stdout is the response as JSON; a failure is reported the way Lambda reports it
(``errorType``/``errorMessage``): ``Runtime.ImportModuleError`` when the module cannot be
imported, the exception's class name when the handler raises.
"""

import importlib
import json
import os
import sys
import time
import traceback
import uuid


class Context:
    def __init__(self, name: str, timeout_seconds: float = 300.0) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main(request_path: str) -> int:
    with open(request_path) as fh:
        request = json.load(fh)
    os.environ.update(request.get("environment", {}))
    paths = [request["task"]]
    for layer in request.get("layers", []):
        paths += [os.path.join(layer, "python/lib/python3.12/site-packages"),
                  os.path.join(layer, "python")]
    sys.path[:0] = paths
    sys.path += request.get("extra_paths", [])
    module_name, _, function_name = request["handler"].rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:
        response = {"errorType": "Runtime.ImportModuleError",
                    "errorMessage": f"Unable to import module '{module_name}': {exc}"}
    else:
        try:
            response = handler(request["event"], Context(request.get("function_name", "fn")))
        except Exception as exc:
            traceback.print_exc()
            response = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
    sys.stdout.write("\n" + json.dumps(response, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
