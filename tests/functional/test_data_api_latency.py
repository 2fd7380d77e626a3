"""Per-request latency of the Redshift Data API stand-in on a reused HTTP connection.

boto3, the AWS CLI and awswrangler keep their HTTP connections alive, so every
DescribeStatement poll rides a reused connection. The server sends headers and body in two
writes; with Nagle's algorithm on, the second write waited for the client's delayed ACK
(~40 ms) on every reused connection while a fresh connection answered in under a millisecond.
The test compares the two as a ratio, never against a wall-clock figure.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from typing import Any
from urllib.parse import urlparse

from tests.functional.data_api_helpers import WG, ok

REQUESTS = 30
HEADERS = {"Content-Type": "application/x-amz-json-1.1",
           "X-Amz-Target": "RedshiftData.DescribeStatement"}


def _timed_request(conn: http.client.HTTPConnection, body: bytes) -> float:
    began = time.perf_counter()
    conn.request("POST", "/", body=body, headers=HEADERS)
    response = conn.getresponse()
    payload = json.loads(response.read())
    elapsed = time.perf_counter() - began
    assert response.status == 200 and payload["Status"] == "FINISHED"
    return elapsed


def test_describe_statement_on_a_reused_connection_is_as_fast_as_on_a_new_one(
        redshift_data: Any, redshift_api: str, warehouse_db: str) -> None:
    statement_id = ok(redshift_data, warehouse_db, "SELECT 1 AS one")["Id"]
    assert redshift_data.describe_statement(Id=statement_id)["WorkgroupName"] == WG
    body = json.dumps({"Id": statement_id}).encode()
    url = urlparse(redshift_api)
    host, port = str(url.hostname), int(url.port or 80)

    fresh = []
    for _ in range(REQUESTS):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        fresh.append(_timed_request(conn, body))
        conn.close()
    reused_conn = http.client.HTTPConnection(host, port, timeout=10)
    _timed_request(reused_conn, body)  # opens the connection
    reused = [_timed_request(reused_conn, body) for _ in range(REQUESTS)]
    reused_conn.close()

    # With Nagle's algorithm holding the body the ratio was about 70 (44 ms vs 0.6 ms).
    ratio = statistics.median(reused) / statistics.median(fresh)
    assert ratio < 3, f"reused/new connection latency ratio {ratio:.1f}"
