"""The HTTP front of the Redshift Data API stand-in.

An unmodified boto3 ``redshift-data`` client talks to it with only ``endpoint_url``
changed: botocore's JSON 1.1 protocol, ``POST /`` with ``X-Amz-Target:
RedshiftData.<Operation>``; errors are HTTP 400 with ``{"__type": ..., "message": ...}``
so botocore raises the modeled exception (``client.exceptions.ValidationException``, ...).
Signatures are not verified; with ``auth`` set, the request's access key id and session token
name the caller's IAM identity and SecretArn / DbUser pick the database user as on AWS
(``auth.py``); without it every statement runs as the server's own PostgreSQL user.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import boto3

from local.redshift_data_api.auth import Authenticator, AuthSettings, Caller
from local.redshift_data_api.errors import ApiError
from local.redshift_data_api.operations import DEFAULT_CLUSTERS, DEFAULT_WORKGROUPS, Operations
from local.redshift_data_api.statements import StatementEngine

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)
_TARGET_PREFIX = "RedshiftData."


class _S3Clients:
    """boto3 S3 clients for COPY, one per region, pointed at ``endpoint_url``."""

    def __init__(self, endpoint_url: str | None) -> None:
        self._endpoint_url = endpoint_url
        self._clients: dict[str, S3Client] = {}
        self._lock = threading.Lock()

    def __call__(self, region: str | None) -> S3Client:
        region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        with self._lock:
            if region not in self._clients:
                session = boto3.session.Session(
                    aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                    aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                    aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
                    region_name=region,
                )
                self._clients[region] = session.client("s3", endpoint_url=self._endpoint_url)
            return self._clients[region]


def _handler_class(operations: Operations) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "RedshiftDataStandIn/1.0"
        # Headers and body leave in two sends; with Nagle's algorithm on, the second waits
        # ~40 ms for the client's delayed ACK on every reused (keep-alive) connection.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            target = self.headers.get("X-Amz-Target", "")
            operation = target[len(_TARGET_PREFIX):] if target.startswith(_TARGET_PREFIX) else ""
            try:
                body = json.loads(raw) if raw.strip() else {}
                if not isinstance(body, dict):
                    raise ApiError("SerializationException", "The request body must be an object.")
                caller = Caller.from_headers(self.headers.get("Authorization"),
                                             self.headers.get("X-Amz-Security-Token"))
                self._send(200, operations.dispatch(operation, body, caller))
            except json.JSONDecodeError:
                self._send(400, {"__type": "SerializationException",
                                 "message": "The request body is not valid JSON."})
            except ApiError as exc:
                payload = {"__type": exc.type_name, "message": exc.message,
                           "Message": exc.message, **exc.fields}
                self._send(400, payload)
            except Exception as exc:
                log.exception("%s failed", operation)
                self._send(500, {"__type": "InternalServerException", "message": str(exc),
                                 "Message": str(exc)})

    return Handler


class RedshiftDataApiServer:
    """The Data API over a PostgreSQL server.

    ``pg_conninfo`` is a libpq conninfo without ``dbname`` for a superuser: each request's
    ``Database`` selects the database. ``port=None`` picks a free port. ``page_size`` is the
    number of rows per GetStatementResult page; ``strict_sql`` turns the Redshift grammar
    check on. ``auth`` makes requests run as the database user the service would pick
    (SecretArn, DbUser or the caller's IAM identity); ``workgroups`` / ``clusters`` are the
    names that exist; the other limits are the service's (sessions, waiting requests) and
    the catalog operations' timeout in seconds.
    """

    def __init__(self, pg_conninfo: str, s3_endpoint_url: str | None = None,
                 port: int | None = None, *, host: str = "127.0.0.1", page_size: int = 1000,
                 strict_sql: bool = True, workers: int = 16,
                 max_active_statements: int = 200, auth: AuthSettings | None = None,
                 workgroups: tuple[str, ...] = DEFAULT_WORKGROUPS,
                 clusters: tuple[str, ...] = DEFAULT_CLUSTERS, max_sessions: int = 500,
                 max_waiting_requests: int = 10, catalog_timeout: float = 30.0) -> None:
        self._host = host
        self._port = port or 0
        authenticator = Authenticator(auth, pg_conninfo) if auth is not None else None
        self.engine = StatementEngine(pg_conninfo, _S3Clients(s3_endpoint_url),
                                      strict_sql=strict_sql, workers=workers,
                                      max_active=max_active_statements, auth=authenticator,
                                      max_sessions=max_sessions)
        self.operations = Operations(self.engine, page_size=page_size, workgroups=workgroups,
                                     clusters=clusters, catalog_timeout=catalog_timeout,
                                     max_waiting=max_waiting_requests)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen and serve in background threads; returns once requests are accepted."""
        httpd = ThreadingHTTPServer((self._host, self._port), _handler_class(self.operations))
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="rsd-http",
                                        daemon=True)
        self._thread.start()
        log.info("Redshift Data API stand-in listening on %s", self.endpoint_url)

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return int(self._httpd.server_address[1])

    @property
    def endpoint_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.engine.shutdown()
        if self.engine.auth is not None:
            self.engine.auth.close()
