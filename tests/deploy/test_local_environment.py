"""The local stack's function environments agree with template.yaml: each Lambda function of
the template (CodeUri ``functions/<name>/``, Handler ``app.lambda_handler``) gets, locally, the
POWERTOOLS_SERVICE_NAME the template gives it, so the ``service`` dimension of its metrics is
the same locally and on AWS (Powertools reads it from that variable: "Metrics", Powertools for
AWS Lambda (Python))."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from local.stack.environment import (
    APPLIER_HANDLER,
    CONSUMER_HANDLER,
    HANDLERS_BY_LOGICAL_ID,
    SERVICE_NAMES,
    function_variables,
    handler_environment,
)
from local.stack.state import Resources, StackInfo
from tests.deploy.cfn_model import load_template


def template_service_names() -> dict[str, str]:
    """Handler (``package.module.function`` from the repository root) -> the template's
    POWERTOOLS_SERVICE_NAME, for every function under ``functions/``; each function's logical
    id names that handler in ``HANDLERS_BY_LOGICAL_ID`` (``make sam-invoke``)."""
    template: dict[str, Any] = load_template()
    names = {}
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        code = props.get("CodeUri")
        if resource["Type"] != "AWS::Serverless::Function" or not (
                isinstance(code, str) and code.startswith("functions/")):
            continue
        module, _, function = props["Handler"].rpartition(".")
        handler = f"{code.strip('/').replace('/', '.')}.{module}.{function}"
        assert HANDLERS_BY_LOGICAL_ID[logical_id] == handler
        names[handler] = props["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    return names


def stack() -> StackInfo:
    resources = Resources(*(f"resource-{n}" for n in range(11)))
    return StackInfo(Path("/tmp/stack"), "us-east-1", "http://127.0.0.1:1", "http://127.0.0.1:2",
                     5432, "dev", "default", {}, resources)


def test_every_function_has_the_template_service_name_locally() -> None:
    names = template_service_names()

    assert names == SERVICE_NAMES
    for handler, service in names.items():
        assert function_variables(handler) == {"POWERTOOLS_SERVICE_NAME": service}
        assert handler_environment(stack(), handler=handler)["POWERTOOLS_SERVICE_NAME"] == service


def test_the_handler_environment_is_the_consumer_s_by_default() -> None:
    consumer = handler_environment(stack(), applier=True)
    applier = handler_environment(stack(), applier=True, handler=APPLIER_HANDLER)

    assert consumer == handler_environment(stack(), applier=True, handler=CONSUMER_HANDLER)
    assert consumer["POWERTOOLS_SERVICE_NAME"] == "cdc-kinesis-consumer"
    assert applier == consumer | {"POWERTOOLS_SERVICE_NAME": "cdc-batch-applier"}
    assert function_variables("tests.some_module.handler") == {}
