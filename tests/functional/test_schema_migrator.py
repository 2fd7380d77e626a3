"""The schema-migration custom resource against the stand-in, answering a real HTTP endpoint
the way CloudFormation's pre-signed ResponseURL would be answered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from functions.schema_migrator import app
from tests.functional.pipeline_helpers import fake_context


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", received
    server.shutdown()


def event(kind: str, url: str, database: str) -> dict[str, Any]:
    return {
        "RequestType": kind, "ResponseURL": url, "StackId": "arn:aws:cloudformation:stack/x",
        "RequestId": f"req-{kind}", "LogicalResourceId": "SchemaMigration",
        "PhysicalResourceId": "warehouse-schema",
        "ResourceProperties": {"Database": database, "WorkgroupName": "local-workgroup",
                               "ClusterIdentifier": "", "PipelineSpecPath": "",
                               "SharedLayerVersion": "arn:layer:1"},
    }


def test_create_update_delete(
    monkeypatch: pytest.MonkeyPatch, redshift_api: str, warehouse_db: str, warehouse_sql: Any,
    response_url: tuple[str, list[dict[str, Any]]],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", redshift_api)
    url, received = response_url
    tables = ("SELECT table_schema || '.' || table_name AS t FROM information_schema.tables "
              "WHERE table_schema IN ('cdc_replica', 'public') ORDER BY 1")

    app.lambda_handler(event("Create", url, warehouse_db), fake_context())
    assert [r["t"] for r in warehouse_sql(tables)] == [
        "cdc_replica._cdc_applied", "cdc_replica._cdc_columns", "cdc_replica._cdc_landing",
        *(f"cdc_replica._cdc_stage_{t}"
          for t in ("customer", "sport_event", "ticket", "ticket_activity")),
        "cdc_replica._cdc_tables", "cdc_replica.customer",
        "cdc_replica.sport_event", "cdc_replica.ticket", "cdc_replica.ticket_activity",
        "public.sport_event_activity"]
    app.lambda_handler(event("Update", url, warehouse_db), fake_context())
    app.lambda_handler(event("Delete", url, warehouse_db), fake_context())

    assert [r["Status"] for r in received] == ["SUCCESS", "SUCCESS", "SUCCESS"]
    assert received[0]["Data"]["RebuiltTargets"] == "sport_event_activity"
    assert received[1]["Data"]["Statements"] == 2  # only the idempotent CREATE SCHEMAs
    assert len(warehouse_sql(tables)) == 13  # delete keeps the warehouse


def test_a_failure_is_reported_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, redshift_api: str,
    response_url: tuple[str, list[dict[str, Any]]],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", redshift_api)
    url, received = response_url
    app.lambda_handler(event("Create", url, "no_such_database"), fake_context())
    assert received[0]["Status"] == "FAILED"
    assert "no_such_database" in received[0]["Reason"]
