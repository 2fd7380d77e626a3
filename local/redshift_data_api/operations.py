"""The Data API operations: request validation and response shapes (botocore's
``redshift-data`` 2019-12-20 model), on top of :class:`StatementEngine`."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Callable
from typing import Any

from local.redshift_data_api import parameters as params
from local.redshift_data_api.errors import ApiError, not_found, validation
from local.redshift_data_api.executor import ResultSet
from local.redshift_data_api.statements import FINAL, Statement, StatementEngine, Sub, Submission

MAX_SQL_BYTES = 100 * 1024
MAX_BATCH = 40
_ID = re.compile(r"[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}(:\d+)?")
_ECHOED = ("ClusterIdentifier", "WorkgroupName", "Database", "DbUser", "SecretArn",
           "StatementName", "ResultFormat")
_NO_RESULT = "Query does not have result. Please check query status with DescribeStatement."

Handler = Callable[[dict[str, Any]], dict[str, Any]]


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


class Operations:
    def __init__(self, engine: StatementEngine, page_size: int = 1000) -> None:
        self.engine = engine
        self.page_size = page_size
        self.handlers: dict[str, Handler] = {
            "ExecuteStatement": self.execute_statement,
            "BatchExecuteStatement": self.batch_execute_statement,
            "DescribeStatement": self.describe_statement,
            "GetStatementResult": self.get_statement_result,
            "GetStatementResultV2": self.get_statement_result_v2,
            "CancelStatement": self.cancel_statement,
            "ListStatements": self.list_statements,
        }

    def dispatch(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self.handlers.get(operation)
        if handler is None:
            raise ApiError("UnknownOperationException",
                           f"The stand-in does not implement {operation}.")
        return handler(body)

    # -------------------------------------------------------------- submission

    def _submission(self, body: dict[str, Any], sqls: list[str], is_batch: bool) -> Submission:
        session_id = body.get("SessionId")
        cluster, workgroup = body.get("ClusterIdentifier"), body.get("WorkgroupName")
        if cluster and workgroup:
            raise validation("ClusterIdentifier and WorkgroupName can't both be specified.")
        if session_id is None:
            if not cluster and not workgroup:
                raise validation("Either ClusterIdentifier or WorkgroupName must be specified.")
            if not body.get("Database"):
                raise validation("Database must be specified.")
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
            session_id=session_id, keep_alive=keep_alive, execution_mode=mode,
        )

    def _submitted(self, stmt: Statement, body: dict[str, Any]) -> dict[str, Any]:
        wait = _int_in(body, "WaitTimeSeconds", 1, 30)
        if wait:
            self.engine.wait(stmt, wait)
        out: dict[str, Any] = {"Id": stmt.id, "CreatedAt": stmt.created_at}
        out.update({k: v for k, v in stmt.request.items()
                    if k not in ("StatementName", "ResultFormat")})
        if stmt.session_id:
            out["SessionId"] = stmt.session_id
        if wait:
            out.update(Status=stmt.status, RedshiftPid=stmt.pid,
                       HasResultSet=any(s.result is not None for s in stmt.subs))
        return out

    def execute_statement(self, body: dict[str, Any]) -> dict[str, Any]:
        sql = _check_sql(body.get("Sql"))
        stmt = self.engine.submit(self._submission(body, [sql], is_batch=False))
        return self._submitted(stmt, body)

    def batch_execute_statement(self, body: dict[str, Any]) -> dict[str, Any]:
        sqls = body.get("Sqls")
        if not isinstance(sqls, list) or not sqls:
            raise _constraint("sqls", "Member must have length greater than or equal to 1")
        if len(sqls) > MAX_BATCH:
            raise _constraint("sqls", f"Member must have length less than or equal to "
                              f"{MAX_BATCH}")
        checked = [_check_sql(sql, "sqls") for sql in sqls]
        stmt = self.engine.submit(self._submission(body, checked, is_batch=True))
        return self._submitted(stmt, body)

    # ---------------------------------------------------------------- describe

    def _lookup(self, body: dict[str, Any]) -> tuple[Statement, Sub | None]:
        statement_id = body.get("Id")
        if not isinstance(statement_id, str) or not _ID.fullmatch(statement_id):
            raise validation(f"id must satisfy regex pattern: ^{_ID.pattern}$")
        stmt, sub = self.engine.get(statement_id)
        wait = _int_in(body, "WaitTimeSeconds", 1, 30)
        if wait:
            self.engine.wait(stmt, wait)
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

    def describe_statement(self, body: dict[str, Any]) -> dict[str, Any]:
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

    def get_statement_result(self, body: dict[str, Any]) -> dict[str, Any]:
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

    def get_statement_result_v2(self, body: dict[str, Any]) -> dict[str, Any]:
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

    def cancel_statement(self, body: dict[str, Any]) -> dict[str, Any]:
        statement_id = body.get("Id")
        if not isinstance(statement_id, str) or not _ID.fullmatch(statement_id):
            raise validation(f"id must satisfy regex pattern: ^{_ID.pattern}$")
        return {"Status": self.engine.cancel(statement_id)}

    def list_statements(self, body: dict[str, Any]) -> dict[str, Any]:
        """Newest first; by default only FINISHED statements, as the API documents."""
        if body.get("ClusterIdentifier") and body.get("WorkgroupName"):
            raise validation("ClusterIdentifier and WorkgroupName can't both be specified.")
        status = body.get("Status", "FINISHED")
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
