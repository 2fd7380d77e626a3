"""The Data API operations: request validation and response shapes (botocore's
``redshift-data`` 2019-12-20 model), on top of :class:`StatementEngine`.

Every operation of the model is served; errors are the model's (ValidationException,
ResourceNotFoundException, ActiveStatementsExceededException, ActiveSessionsExceededException,
ActiveWaitingRequestsExceededException, ExecuteStatementException,
BatchExecuteStatementException, QueryTimeoutException, DatabaseConnectionException,
InternalServerException). Names of workgroups and clusters must match the model's patterns
and exist on the local stack (``workgroups`` / ``clusters``); an unknown one is refused with
the service's text "Redshift endpoint doesn't exist in this region." (aws/aws-cdk#30536).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from local.redshift_data_api import catalog
from local.redshift_data_api import parameters as params
from local.redshift_data_api.auth import Caller, IdentityUnavailable, Login
from local.redshift_data_api.errors import ApiError, not_found, validation
from local.redshift_data_api.executor import ExecutionFailed, ResultSet
from local.redshift_data_api.statements import (
    FINAL,
    Session,
    Statement,
    StatementEngine,
    Sub,
    Submission,
)

# The Data API's statement size limit, 100 KB of SQL; a larger statement fails with a
# ValidationException "Cannot process query string larger than 100kB" (the text users report
# from the service, e.g. https://www.volcengine.com/article/3024638, a Stack Exchange
# question). Taken as 100,000 bytes of UTF-8, the stricter reading of "100 KB".
MAX_SQL_BYTES = 100_000
MAX_BATCH = 40
_ID = re.compile(r"[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}(:\d+)?")
_ECHOED = ("ClusterIdentifier", "WorkgroupName", "Database", "DbUser", "SecretArn",
           "StatementName", "ResultFormat")
_NO_RESULT = "Query does not have result. Please check query status with DescribeStatement."
# The model's patterns (botocore redshift-data 2019-12-20, ClusterIdentifierString and
# WorkgroupNameString); botocore checks lengths on the client side but not patterns.
CLUSTER_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
WORKGROUP_PATTERN = re.compile(
    r"([a-z0-9-]{3,63}|arn:(aws(-[a-z]+)*):redshift-serverless:([a-z]{2}(-gov|(-iso[a-z]?))?"
    r"|eusc-[a-z]+)-[a-z]+-\d{1}:\d{12}:workgroup/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{4}-[0-9a-f]{12}|[a-z0-9-]{1,63}/[a-z0-9-]{1,63}))")
NO_ENDPOINT = "Redshift endpoint doesn't exist in this region."
DEFAULT_WORKGROUPS = ("local-workgroup",)
DEFAULT_CLUSTERS = ("local-cluster",)
SESSION_STATUSES = ("AVAILABLE", "BUSY", "CLOSED")

Handler = Callable[[dict[str, Any], Caller], dict[str, Any]]


def _constraint(field: str, rule: str) -> ApiError:
    return validation(f"1 validation error detected: Value at '{field}' failed to satisfy "
                      f"constraint: {rule}")


def _int_in(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _constraint(name, f"Member must be between {low} and {high}")
    return value


def _check_sql(sql: Any, field: str = "sql") -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise _constraint(field, "Member must not be blank")
    if len(sql.encode("utf-8")) > MAX_SQL_BYTES:
        raise validation("Cannot process query string larger than 100kB")
    return sql


def _token(value: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, offset]).encode()).decode()


def _offset(token: Any, value: str) -> int:
    if token is None:
        return 0
    try:
        key, offset = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        if key == value and isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, TypeError):
        pass
    raise validation("The NextToken is invalid.")


def _pattern_error(field: str, value: Any, pattern: re.Pattern[str]) -> ApiError:
    return validation(f"1 validation error detected: Value '{value}' at '{field}' failed to "
                      f"satisfy constraint: Member must satisfy regular expression pattern: "
                      f"{pattern.pattern}")


def _check_names(body: dict[str, Any]) -> None:
    """The model's patterns for the cluster and workgroup names a request carries."""
    cluster, workgroup = body.get("ClusterIdentifier"), body.get("WorkgroupName")
    if cluster is not None and not (isinstance(cluster, str)
                                    and CLUSTER_PATTERN.fullmatch(cluster)):
        raise _pattern_error("clusterIdentifier", cluster, CLUSTER_PATTERN)
    if workgroup is not None and not (isinstance(workgroup, str)
                                      and WORKGROUP_PATTERN.fullmatch(workgroup)):
        raise _pattern_error("workgroupName", workgroup, WORKGROUP_PATTERN)


class Operations:
    """``workgroups`` / ``clusters``: the names that exist on the local stack.
    ``catalog_timeout``: seconds a catalog operation may run (QueryTimeoutException after).
    ``max_waiting``: concurrent ``WaitTimeSeconds`` requests per statement."""

    def __init__(self, engine: StatementEngine, page_size: int = 1000, *,
                 workgroups: tuple[str, ...] = DEFAULT_WORKGROUPS,
                 clusters: tuple[str, ...] = DEFAULT_CLUSTERS,
                 catalog_timeout: float = 30.0, max_waiting: int = 10) -> None:
        self.engine = engine
        self.page_size = page_size
        self.workgroups = frozenset(workgroups)
        self.clusters = frozenset(clusters)
        self.catalog_timeout = catalog_timeout
        self.max_waiting = max_waiting
        self._waiting: dict[str, int] = {}
        self._waiting_lock = threading.Lock()
        self.handlers: dict[str, Handler] = {
            "ExecuteStatement": self.execute_statement,
            "BatchExecuteStatement": self.batch_execute_statement,
            "DescribeStatement": self.describe_statement,
            "GetStatementResult": self.get_statement_result,
            "GetStatementResultV2": self.get_statement_result_v2,
            "CancelStatement": self.cancel_statement,
            "ListStatements": self.list_statements,
            "ListDatabases": self.list_databases,
            "ListSchemas": self.list_schemas,
            "ListTables": self.list_tables,
            "DescribeTable": self.describe_table,
            "ListSessions": self.list_sessions,
        }

    def dispatch(self, operation: str, body: dict[str, Any],
                 caller: Caller | None = None) -> dict[str, Any]:
        handler = self.handlers.get(operation)
        if handler is None:  # botocore only sends the model's operations
            raise validation(f"Unknown operation {operation!r}.")
        return handler(body, caller or Caller())

    # ------------------------------------------------------------------ targets

    def _target(self, body: dict[str, Any]) -> bool:
        """Check the request's cluster or workgroup; True for a Serverless workgroup."""
        cluster, workgroup = body.get("ClusterIdentifier"), body.get("WorkgroupName")
        if cluster and workgroup:
            raise validation("ClusterIdentifier and WorkgroupName can't both be specified.")
        if not cluster and not workgroup:
            raise validation("Either ClusterIdentifier or WorkgroupName must be specified.")
        _check_names(body)
        if (workgroup and workgroup not in self.workgroups) or (
                cluster and cluster not in self.clusters):
            raise validation(NO_ENDPOINT)
        return bool(workgroup)

    def _login(self, body: dict[str, Any], caller: Caller, serverless: bool) -> Login | None:
        """The database user of the request; None when the stand-in does not authenticate
        (the server's own user). DbUser on a workgroup is refused either way."""
        if serverless and body.get("DbUser") and not body.get("SecretArn"):
            raise validation("DbUser is not supported for Redshift Serverless workgroups; "
                             "use SecretArn or your IAM identity.")
        if self.engine.auth is None:
            return None
        return self.engine.auth.login_for(body, caller, serverless=serverless)

    # -------------------------------------------------------------- submission

    def _submission(self, body: dict[str, Any], sqls: list[str], is_batch: bool,
                    caller: Caller) -> Submission:
        session_id = body.get("SessionId")
        login: Login | None = None
        if session_id is None:
            serverless = self._target(body)
            if not body.get("Database"):
                raise validation("Database must be specified.")
            try:
                login = self._login(body, caller, serverless)
            except IdentityUnavailable as exc:
                name = "BatchExecuteStatementException" if is_batch else (
                    "ExecuteStatementException")
                raise ApiError(name, str(exc), StatementId=str(uuid.uuid4())) from None
        elif not isinstance(session_id, str) or not _ID.fullmatch(session_id):
            raise _constraint("sessionId", f"Member must satisfy regular expression pattern: "
                              f"{_ID.pattern}")
        keep_alive = _int_in(body, "SessionKeepAliveSeconds", 0, 86400)
        token = body.get("ClientToken")
        if token is not None and (not isinstance(token, str) or not 1 <= len(token) <= 64):
            raise _constraint("clientToken", "Member must have length between 1 and 64")
        if len(str(body.get("StatementName") or "")) > 2048:
            raise _constraint("statementName", "Member must have length less than or equal "
                              "to 2048")
        if body.get("ResultFormat", "JSON") not in ("JSON", "CSV"):
            raise _constraint("resultFormat", "Member must satisfy enum value set: [JSON, CSV]")
        mode = body.get("ExecutionMode", "TRANSACTION")
        if mode not in ("TRANSACTION", "AUTO_COMMIT"):
            raise _constraint("executionMode",
                              "Member must satisfy enum value set: [TRANSACTION, AUTO_COMMIT]")
        try:
            values = params.parse_parameters(body.get("Parameters"))
            params.check_all_used(sqls, values)
            bound = [params.bind(sql, values) for sql in sqls]
        except params.ParameterError as exc:
            raise validation(str(exc)) from None
        request = {k: body[k] for k in _ECHOED if body.get(k) is not None}
        request.setdefault("ResultFormat", "JSON")
        return Submission(
            sqls=sqls, bound_sqls=bound, is_batch=is_batch, database=body.get("Database"),
            request=request, parameters=body.get("Parameters"), client_token=token,
            session_id=session_id, keep_alive=keep_alive, execution_mode=mode, login=login,
        )

    def _wait(self, stmt: Statement, seconds: int) -> None:
        """Long-poll the statement; at most ``max_waiting`` requests wait on one statement."""
        with self._waiting_lock:
            if self._waiting.get(stmt.id, 0) >= self.max_waiting:
                raise ApiError("ActiveWaitingRequestsExceededException",
                               "The number of active requests with WaitTimeSeconds for the "
                               "same SQL statement exceeds the limit.")
            self._waiting[stmt.id] = self._waiting.get(stmt.id, 0) + 1
        try:
            self.engine.wait(stmt, seconds)
        finally:
            with self._waiting_lock:
                self._waiting[stmt.id] -= 1
                if not self._waiting[stmt.id]:
                    del self._waiting[stmt.id]

    def _submitted(self, stmt: Statement, body: dict[str, Any]) -> dict[str, Any]:
        wait = _int_in(body, "WaitTimeSeconds", 1, 30)
        if wait:
            self._wait(stmt, wait)
        out: dict[str, Any] = {"Id": stmt.id, "CreatedAt": stmt.created_at}
        out.update({k: v for k, v in stmt.request.items()
                    if k not in ("StatementName", "ResultFormat")})
        if stmt.session_id:
            out["SessionId"] = stmt.session_id
        if wait:
            out.update(Status=stmt.status, RedshiftPid=stmt.pid,
                       HasResultSet=any(s.result is not None for s in stmt.subs))
        return out

    def execute_statement(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        sql = _check_sql(body.get("Sql"))
        stmt = self.engine.submit(self._submission(body, [sql], is_batch=False, caller=caller))
        return self._submitted(stmt, body)

    def batch_execute_statement(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        sqls = body.get("Sqls")
        if not isinstance(sqls, list) or not sqls:
            raise _constraint("sqls", "Member must have length greater than or equal to 1")
        if len(sqls) > MAX_BATCH:
            raise _constraint("sqls", f"Member must have length less than or equal to "
                              f"{MAX_BATCH}")
        checked = [_check_sql(sql, "sqls") for sql in sqls]
        stmt = self.engine.submit(self._submission(body, checked, is_batch=True,
                                                   caller=caller))
        return self._submitted(stmt, body)

    # ---------------------------------------------------------------- describe

    def _lookup(self, body: dict[str, Any]) -> tuple[Statement, Sub | None]:
        statement_id = body.get("Id")
        if not isinstance(statement_id, str) or not _ID.fullmatch(statement_id):
            raise validation(f"id must satisfy regex pattern: ^{_ID.pattern}$")
        stmt, sub = self.engine.get(statement_id)
        wait = _int_in(body, "WaitTimeSeconds", 1, 30)
        if wait:
            self._wait(stmt, wait)
        return stmt, sub

    @staticmethod
    def _sub_fields(sub: Sub) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Id": sub.id, "Status": sub.status, "CreatedAt": sub.created_at,
            "UpdatedAt": sub.updated_at, "QueryString": sub.sql,
            "Duration": sub.duration_ns if sub.status in FINAL else -1,
            "HasResultSet": sub.result is not None,
            "ResultRows": sub.rows if sub.status == "FINISHED" else -1,
            "ResultSize": sub.result.size if sub.result is not None else 0,
            "RedshiftQueryId": sub.query_id,
        }
        if sub.error:
            out["Error"] = sub.error
        return out

    def describe_statement(self, body: dict[str, Any], _caller: Caller) -> dict[str, Any]:
        stmt, sub = self._lookup(body)
        out: dict[str, Any] = {k: v for k, v in stmt.request.items() if k != "StatementName"}
        out["RedshiftPid"] = stmt.pid
        if stmt.session_id:
            out["SessionId"] = stmt.session_id
        if stmt.parameters:
            out["QueryParameters"] = stmt.parameters
        if sub is not None:
            out.update(self._sub_fields(sub))
            return out
        if not stmt.is_batch:
            out.update(self._sub_fields(stmt.subs[0]))
        else:
            out["SubStatements"] = [self._sub_fields(s) for s in stmt.subs]
            out["ExecutionMode"] = stmt.execution_mode
            out.update(HasResultSet=any(s.result is not None for s in stmt.subs),
                       ResultRows=-1, ResultSize=-1, RedshiftQueryId=0)
        out.update(Id=stmt.id, Status=stmt.status, CreatedAt=stmt.created_at,
                   UpdatedAt=stmt.updated_at,
                   Duration=stmt.duration_ns if stmt.status in FINAL else -1)
        if stmt.error:
            out["Error"] = stmt.error
        return out

    # ------------------------------------------------------------------ results

    def _result(self, body: dict[str, Any], fmt: str) -> tuple[str, ResultSet, int]:
        stmt, sub = self._lookup(body)
        if sub is None and stmt.is_batch:
            raise not_found(_NO_RESULT, stmt.id)
        sub = sub or stmt.subs[0]
        if sub.status != "FINISHED" or sub.result is None:
            raise not_found(_NO_RESULT, sub.id)
        actual = stmt.request.get("ResultFormat", "JSON")
        if actual != fmt:
            other = "GetStatementResultV2" if actual == "CSV" else "GetStatementResult"
            raise validation(f"The result format of this query is {actual}; use {other}.")
        return sub.id, sub.result, _offset(body.get("NextToken"), sub.id)

    def _page(self, sub_id: str, result: ResultSet, offset: int) -> tuple[list[Any], str | None]:
        rows = result.rows[offset:offset + self.page_size]
        end = offset + len(rows)
        return rows, (_token(sub_id, end) if end < len(result.rows) else None)

    def get_statement_result(self, body: dict[str, Any], _caller: Caller) -> dict[str, Any]:
        sub_id, result, offset = self._result(body, "JSON")
        rows, token = self._page(sub_id, result, offset)
        out: dict[str, Any] = {
            "Records": [[_field(v) for v in row] for row in rows],
            "ColumnMetadata": result.columns,
            "TotalNumRows": len(result.rows),
        }
        if token:
            out["NextToken"] = token
        return out

    def get_statement_result_v2(self, body: dict[str, Any],
                                _caller: Caller) -> dict[str, Any]:
        sub_id, result, offset = self._result(body, "CSV")
        rows, token = self._page(sub_id, result, offset)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if offset == 0:
            writer.writerow([c["name"] for c in result.columns])
        writer.writerows([["" if v is None else _csv_text(v) for v in row] for row in rows])
        out: dict[str, Any] = {
            "Records": [{"CSVRecords": buffer.getvalue()}],
            "ColumnMetadata": result.columns,
            "TotalNumRows": len(result.rows),
            "ResultFormat": "CSV",
        }
        if token:
            out["NextToken"] = token
        return out

    # ------------------------------------------------------------ cancel, list

    def cancel_statement(self, body: dict[str, Any], _caller: Caller) -> dict[str, Any]:
        statement_id = body.get("Id")
        if not isinstance(statement_id, str) or not _ID.fullmatch(statement_id):
            raise validation(f"id must satisfy regex pattern: ^{_ID.pattern}$")
        return {"Status": self.engine.cancel(statement_id)}

    def _listing_target(self, body: dict[str, Any]) -> None:
        """A listing's optional cluster or workgroup filter must name one that exists."""
        if body.get("ClusterIdentifier") and body.get("WorkgroupName"):
            raise validation("ClusterIdentifier and WorkgroupName can't both be specified.")
        _check_names(body)
        cluster, workgroup = body.get("ClusterIdentifier"), body.get("WorkgroupName")
        if (cluster and cluster not in self.clusters) or (
                workgroup and workgroup not in self.workgroups):
            raise not_found(NO_ENDPOINT, str(cluster or workgroup))

    def list_statements(self, body: dict[str, Any], _caller: Caller) -> dict[str, Any]:
        """Newest first; by default only FINISHED statements, as the API documents."""
        self._listing_target(body)
        status = body.get("Status", "FINISHED")
        if status not in ("SUBMITTED", "PICKED", "STARTED", "FINISHED", "ABORTED", "FAILED",
                          "ALL"):
            raise _constraint("status", "Member must satisfy enum value set: [SUBMITTED, "
                              "PICKED, STARTED, FINISHED, ABORTED, FAILED, ALL]")
        limit = _int_in(body, "MaxResults", 0, 100) or 100
        name = body.get("StatementName")
        filters = {k: body[k] for k in ("Database", "ClusterIdentifier", "WorkgroupName")
                   if body.get(k)}
        matching = [
            s for s in self.engine.statements()
            if (status == "ALL" or s.status == status)
            and (not name or str(s.request.get("StatementName", "")).startswith(name))
            and all(s.request.get(k) == v for k, v in filters.items())
        ]
        offset = _offset(body.get("NextToken"), "list")
        page = matching[offset:offset + limit]
        out: dict[str, Any] = {"Statements": [_statement_data(s) for s in page]}
        if offset + limit < len(matching):
            out["NextToken"] = _token("list", offset + limit)
        return out

    # ------------------------------------------------------------------ catalog

    @contextmanager
    def _catalog(self, body: dict[str, Any], caller: Caller,
                 default_database: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A connection as the request's user, for a catalog operation; maps connection
        failures to DatabaseConnectionException and the timeout to QueryTimeoutException."""
        serverless = self._target(body)
        database = body.get("ConnectedDatabase") or body.get("Database") or default_database
        if not database:
            raise validation("Database must be specified.")
        try:
            login = self._login(body, caller, serverless)
        except IdentityUnavailable as exc:
            raise ApiError("DatabaseConnectionException", str(exc)) from None
        try:
            conn = self.engine.connect_as(login, str(database))
        except ExecutionFailed as exc:
            if re.fullmatch(r'FATAL: database ".*" does not exist', exc.error):
                raise not_found(exc.error, str(database)) from None
            raise ApiError("DatabaseConnectionException", exc.error) from None
        try:
            timeout_ms = max(1, int(self.catalog_timeout * 1000))
            conn.execute(f"SET statement_timeout = {timeout_ms}".encode())
            yield conn
        except psycopg.errors.QueryCanceled:
            raise ApiError("QueryTimeoutException",
                           "The Amazon Redshift Data API operation failed due to "
                           "timeout.") from None
        except psycopg.OperationalError as exc:
            raise ApiError("DatabaseConnectionException", str(exc).strip()) from None
        finally:
            conn.close()

    @staticmethod
    def _listing(body: dict[str, Any], key: str, items: list[Any], name: str, *,
                 high: int = 1000, default: int = 1000) -> dict[str, Any]:
        """One page of ``items`` under ``name``, with a NextToken bound to the request."""
        limit = _int_in(body, "MaxResults", 0, high) or default
        fingerprint = json.dumps([key, sorted((k, str(v)) for k, v in body.items()
                                              if k not in ("NextToken", "MaxResults"))])
        offset = _offset(body.get("NextToken"), fingerprint)
        out: dict[str, Any] = {name: items[offset:offset + limit]}
        if offset + limit < len(items):
            out["NextToken"] = _token(fingerprint, offset + limit)
        return out

    def list_databases(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        with self._catalog(body, caller, default_database="dev") as conn:
            names = catalog.list_databases(conn)
        return self._listing(body, "databases", names, "Databases")

    def list_schemas(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        with self._catalog(body, caller) as conn:
            names = catalog.list_schemas(conn, body.get("SchemaPattern"))
        return self._listing(body, "schemas", names, "Schemas")

    def list_tables(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        with self._catalog(body, caller) as conn:
            tables = catalog.list_tables(conn, body.get("SchemaPattern"),
                                         body.get("TablePattern"))
        return self._listing(body, "tables", tables, "Tables")

    def describe_table(self, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
        with self._catalog(body, caller) as conn:
            columns = catalog.describe_columns(conn, body.get("Schema"), body.get("Table"))
        out = self._listing(body, "describe", columns, "ColumnList")
        if body.get("Table"):
            out["TableName"] = body["Table"]
        return out

    def list_sessions(self, body: dict[str, Any], _caller: Caller) -> dict[str, Any]:
        """Sessions of the last 24 hours; by default only AVAILABLE and BUSY ones."""
        self._listing_target(body)
        status = body.get("Status")
        if status is not None and status not in SESSION_STATUSES:
            raise _constraint("status", "Member must satisfy enum value set: "
                              "[AVAILABLE, BUSY, CLOSED]")
        session_id = body.get("SessionId")
        if session_id is not None and not (isinstance(session_id, str)
                                           and _ID.fullmatch(session_id)):
            raise _constraint("sessionId", f"Member must satisfy regular expression pattern: "
                              f"{_ID.pattern}")
        filters = {k: body[k] for k in ("Database", "ClusterIdentifier", "WorkgroupName")
                   if body.get(k)}
        wanted = (status,) if status else ("AVAILABLE", "BUSY")
        known = self.engine.sessions()
        if session_id and not any(s.id == session_id for s in known):
            raise not_found(f"Session {session_id} does not exist.", str(session_id))
        sessions = [
            _session_data(s) for s in known
            if _session_status(s) in wanted and (not session_id or s.id == session_id)
            and all(s.request.get(k) == v for k, v in filters.items())
        ]
        return self._listing(body, "sessions", sessions, "Sessions", high=100, default=100)


def _session_status(session: Session) -> str:
    if session.closed:
        return "CLOSED"
    return "BUSY" if session.busy else "AVAILABLE"


def _session_data(session: Session) -> dict[str, Any]:
    out: dict[str, Any] = {
        "SessionId": session.id, "Status": _session_status(session),
        "CreatedAt": session.created_at, "UpdatedAt": session.updated_at,
        "Database": session.database, "SessionAliveSeconds": session.keep_alive,
        "SessionTtl": session.expires_at,
    }
    for key in ("ClusterIdentifier", "WorkgroupName", "DbUser"):
        if session.request.get(key):
            out[key] = session.request[key]
    if session.login is not None and "DbUser" not in out:
        out["DbUser"] = session.login.user
    if session.current_statement_id:
        out["CurrentStatementId"] = session.current_statement_id
    return out


def _statement_data(stmt: Statement) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Id": stmt.id, "Status": stmt.status, "CreatedAt": stmt.created_at,
        "UpdatedAt": stmt.updated_at, "IsBatchStatement": stmt.is_batch,
        "ResultFormat": stmt.request.get("ResultFormat", "JSON"),
    }
    if stmt.is_batch:
        out["QueryStrings"] = [s.sql for s in stmt.subs]
    else:
        out["QueryString"] = stmt.subs[0].sql
    for key in ("StatementName", "SecretArn"):
        if key in stmt.request:
            out[key] = stmt.request[key]
    if stmt.parameters:
        out["QueryParameters"] = stmt.parameters
    if stmt.session_id:
        out["SessionId"] = stmt.session_id
    return out


def _field(value: Any) -> dict[str, Any]:
    """A result value as the Data API's ``Field`` union."""
    if value is None:
        return {"isNull": True}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": _csv_text(value)}


def _csv_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)
