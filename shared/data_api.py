"""The Redshift Data API adapter: submit, wait, retry. The only place that calls redshift-data.

Transient trouble (throttling, too many active statements, serialization conflicts between
concurrent writers, connection errors) is retried with exponential backoff and full jitter; a
statement that FAILED for any other reason raises ``StatementFailed`` with Redshift's error
text; a statement that was stopped (ABORTED) raises ``StatementAborted``, a
``WarehouseUnavailable``. A ClientToken per submission makes a retried call not start a second
statement.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

RETRYABLE_API_ERRORS = frozenset(
    {"ActiveStatementsExceededException", "ThrottlingException", "InternalServerException",
     "ServiceUnavailableException", "TooManyRequestsException"}
)
SERIALIZATION_MARKERS = (
    "serializable isolation violation", "could not serialize access", "deadlock detected",
    "error: 1023",
)
TERMINAL = frozenset({"FINISHED", "FAILED", "ABORTED"})


class _WaitRefused(Exception):
    """The Data API refused a long poll (``WAITING_REFUSED``)."""


class WarehouseError(Exception):
    """Base of the writer's errors."""


class StatementFailed(WarehouseError):
    """A statement FAILED for a reason a retry will not fix."""


class WarehouseUnavailable(WarehouseError):
    """Transient failures outlasted the retry budget; the caller should retry the batch later."""


class StatementAborted(WarehouseUnavailable):
    """The statement was stopped before it finished, and rolled back: its status is ABORTED,
    "The query run was stopped by the user" ("DescribeStatement", Amazon Redshift Data API
    Reference), after a ``CancelStatement`` ("Cancels a running query", same reference) of an
    operator's or of ``statement_timeout``. It says nothing about the statement's input, so
    callers treat it as the warehouse being unavailable: the whole batch is retried later, never
    bisected or dead-lettered for it."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base_delay: float = 0.1
    max_delay: float = 5.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
        return rng.uniform(0, min(self.max_delay, self.base_delay * (2**attempt)))


@dataclass(frozen=True)
class DataApiTarget:
    """Where statements run: a Serverless workgroup or a provisioned cluster, and a database."""

    database: str
    workgroup_name: str | None = None
    cluster_identifier: str | None = None
    secret_arn: str | None = None
    db_user: str | None = None

    def __post_init__(self) -> None:
        if bool(self.workgroup_name) == bool(self.cluster_identifier):
            raise ValueError("set exactly one of workgroup_name and cluster_identifier")
        if not self.database:
            raise ValueError("the Redshift database name is required")

    def call_args(self) -> dict[str, str]:
        args = {"Database": self.database}
        if self.workgroup_name:
            args["WorkgroupName"] = self.workgroup_name
        else:
            args["ClusterIdentifier"] = str(self.cluster_identifier)
        if self.secret_arn:
            args["SecretArn"] = self.secret_arn
        elif self.db_user:
            args["DbUser"] = self.db_user
        return args


def _field_value(field: Mapping[str, Any]) -> Any:
    if field.get("isNull"):
        return None
    for name in ("stringValue", "longValue", "doubleValue", "booleanValue", "blobValue"):
        if name in field:
            return field[name]
    return None


def is_serialization_failure(error: str) -> bool:
    lowered = error.lower()
    return any(marker in lowered for marker in SERIALIZATION_MARKERS)


# Waiting for a statement: long polling ("Reduce API calls with long polling", Amazon Redshift
# Management Guide, https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-calling-considerations-long-polling.html).
# With WaitTimeSeconds (1-30) ExecuteStatement and BatchExecuteStatement answer once the
# statement is done or the wait is over, with its Status; DescribeStatement likewise. So a
# statement that ends within LONG_POLL_SECONDS costs one call and is seen done the moment it
# ends, with no DescribeStatement polls (the Data API allows 100 of those a second per account
# and Region, "Quotas for Amazon Redshift Data API",
# https://docs.aws.amazon.com/redshift/latest/mgmt/amazon-redshift-limits.html). A failed one
# is described once more for its error text (the submit's answer has none). Should the
# service refuse a waiting request (ActiveWaitingRequestsExceededException: too many wait on
# the same statement) the client polls DescribeStatement without waiting instead: the first
# polls quickly, then at most POLL_INTERVAL[1] apart, growing by POLL_GROWTH.
# Long polling needs an SDK whose model has WaitTimeSeconds. The Lambda functions have one:
# the SharedLayer ships the project's pinned SDK, which shadows the runtime's own (the
# python3.12 runtime's botocore 1.40, "Runtime-included SDK versions", has no WaitTimeSeconds;
# layers/shared/layer_requirements.py). Where the SDK is not the project's -- AWS Glue 5.0
# provides its own boto3, a user may run the tools with theirs -- an older model would refuse
# the parameter (ParamValidationError) before any call; with such an SDK the client polls.
LONG_POLL_SECONDS = 30
WAITING_REFUSED = "ActiveWaitingRequestsExceededException"
POLL_INTERVAL = (0.02, 0.2)
POLL_GROWTH = 1.25


def sdk_long_polls(client: Any) -> bool:
    """Whether ``client``'s service model takes WaitTimeSeconds on DescribeStatement."""
    try:
        shape = client.meta.service_model.operation_model("DescribeStatement").input_shape
    except AttributeError:
        return False
    return "WaitTimeSeconds" in shape.members


class RedshiftDataApi:
    def __init__(
        self,
        client: Any,
        target: DataApiTarget,
        retry: RetryPolicy | None = None,
        poll_interval: tuple[float, float] = POLL_INTERVAL,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        statement_timeout: float | None = None,
    ) -> None:
        """``statement_timeout`` (seconds, None: wait as long as it runs) cancels a statement
        still running after it and raises ``StatementAborted``; the consumers leave it None,
        an interactive tool (``make sql``) sets one."""
        self._client = client
        self._target = target
        self._retry = retry or RetryPolicy()
        self._poll_min, self._poll_max = poll_interval
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._statement_timeout = statement_timeout
        self._long_polls = sdk_long_polls(client)

    # --- public -----------------------------------------------------------------------------

    def run_transaction(self, sqls: Sequence[str]) -> dict[str, Any]:
        """Run ``sqls`` as one all-or-nothing BatchExecuteStatement; return what the Data API
        last said of it (``Id``, ``Status``, ``HasResultSet`` at least)."""
        if not sqls:
            raise ValueError("a transaction needs at least one statement")
        return self._run("batch_execute_statement", {"Sqls": list(sqls)})

    def execute(self, sql: str, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Run one statement (autocommit) and wait for it."""
        return self._run("execute_statement", self._statement_args(sql, parameters))

    def describe(self, statement_id: str) -> dict[str, Any]:
        """The statement's whole description (DescribeStatement: ``ResultRows``, ``Duration``
        ...), which a long-polled submit's answer does not carry."""
        return self._call("describe_statement", {"Id": statement_id})

    def query(self, sql: str, parameters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        """Run one SELECT and return every row as a dict (all result pages)."""
        described = self.execute(sql, parameters)
        if not described.get("HasResultSet"):
            return []
        rows: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Id": described["Id"]}
            if token:
                kwargs["NextToken"] = token
            page = self._call("get_statement_result", kwargs)
            names = [c["name"] for c in page["ColumnMetadata"]]
            rows.extend(
                {n: _field_value(f) for n, f in zip(names, rec, strict=True)}
                for rec in page["Records"]
            )
            token = page.get("NextToken")
            if not token:
                return rows

    # --- internals --------------------------------------------------------------------------

    @staticmethod
    def _statement_args(sql: str, parameters: Mapping[str, str] | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Sql": sql}
        if parameters:
            args["Parameters"] = [{"name": k, "value": v} for k, v in parameters.items()]
        return args

    def _run(self, operation: str, args: dict[str, Any]) -> dict[str, Any]:
        last_error = ""
        for attempt in range(self._retry.attempts):
            timeout = self._statement_timeout
            deadline = None if timeout is None else time.monotonic() + timeout
            submitted = self._submit(operation, {**args, **self._target.call_args(),
                                                 "ClientToken": str(uuid.uuid4())}, deadline)
            described = (submitted if submitted.get("Status") in TERMINAL
                         else self._wait(submitted["Id"], deadline))
            status = described["Status"]
            if status == "FINISHED":
                return described
            if "SubStatements" not in described and "Error" not in described:
                # The submit's own answer: its Status, not why.
                described = self._call("describe_statement", {"Id": submitted["Id"]})
            error = self._error_text(described)
            if status == "ABORTED":
                raise StatementAborted(error)
            if status == "FAILED" and is_serialization_failure(error):
                last_error = error
                self._sleep(self._retry.delay(attempt, self._rng))
                continue
            raise StatementFailed(error)
        raise WarehouseUnavailable(
            f"gave up after {self._retry.attempts} serialization conflicts: {last_error}"
        )

    @staticmethod
    def _wait_seconds(deadline: float | None) -> int:
        """WaitTimeSeconds for a long poll: LONG_POLL_SECONDS, or less to keep ``deadline``."""
        if deadline is None:
            return LONG_POLL_SECONDS
        return max(1, min(LONG_POLL_SECONDS, math.ceil(deadline - time.monotonic())))

    def _submit(self, operation: str, args: dict[str, Any],
                deadline: float | None) -> dict[str, Any]:
        """Submit and wait in the same call (the submit operations never refuse to wait:
        ActiveWaitingRequestsExceededException is not among their errors in the API model)."""
        if not self._long_polls:
            return self._call(operation, args)
        return self._call(operation, {**args, "WaitTimeSeconds": self._wait_seconds(deadline)})

    @staticmethod
    def _error_text(described: Mapping[str, Any]) -> str:
        subs = described.get("SubStatements") or []
        for position, sub in enumerate(subs, start=1):
            if sub.get("Status") == "FAILED":
                return f"statement {position} of {len(subs)} failed: {sub.get('Error', '')}"
        if described["Status"] == "ABORTED":
            return "the statement was aborted"
        return str(described.get("Error") or "the statement failed without an error text")

    def _wait(self, statement_id: str, deadline: float | None) -> dict[str, Any]:
        """Long polls until the statement is done (plain polls once waiting is refused); past
        ``deadline`` it is cancelled and ``StatementAborted`` raised."""
        interval = self._poll_min
        long_poll = self._long_polls
        while True:
            if long_poll:
                try:
                    described = self._call(
                        "describe_statement",
                        {"Id": statement_id, "WaitTimeSeconds": self._wait_seconds(deadline)},
                        long_poll=True)
                except _WaitRefused:
                    long_poll = False
                    continue
            else:
                described = self._call("describe_statement", {"Id": statement_id})
            if described["Status"] in TERMINAL:
                return described
            if deadline is not None and time.monotonic() > deadline:
                self._call("cancel_statement", {"Id": statement_id})
                timeout = self._statement_timeout or 0.0
                raise StatementAborted(f"the statement did not finish in {timeout:g}s; cancelled")
            if not long_poll:
                self._sleep(interval)
                interval = min(self._poll_max, interval * POLL_GROWTH)

    def _call(self, operation: str, kwargs: dict[str, Any],
              long_poll: bool = False) -> dict[str, Any]:
        """One API call, retried on throttling and connection trouble. A ``long_poll`` call
        the service refuses to wait in raises ``_WaitRefused``."""
        method = getattr(self._client, operation)
        for attempt in range(self._retry.attempts):
            try:
                response: dict[str, Any] = method(**kwargs)
                return response
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if long_poll and code == WAITING_REFUSED:
                    raise _WaitRefused(code) from None
                if code not in RETRYABLE_API_ERRORS:
                    message = exc.response.get("Error", {}).get("Message", "")
                    raise StatementFailed(f"{operation} was refused: {code}: {message}") from None
                reason = code
            except BotoCoreError as exc:
                reason = type(exc).__name__
            if attempt + 1 == self._retry.attempts:
                raise WarehouseUnavailable(
                    f"{operation} kept failing ({reason}) after {self._retry.attempts} attempts"
                )
            self._sleep(self._retry.delay(attempt, self._rng))
        raise AssertionError("unreachable")
