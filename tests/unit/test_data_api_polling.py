"""How ``shared.data_api.RedshiftDataApi`` waits for a statement: long polls
("Reduce API calls with long polling", Amazon Redshift Management Guide,
https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-calling-considerations-long-polling.html):
with ``WaitTimeSeconds`` (1-30) the submit and DescribeStatement answer once the statement is
done or the wait is over, so a statement is seen done as it ends, in one call when it ends
within the submit's wait. When the service refuses to wait
(ActiveWaitingRequestsExceededException) the client polls DescribeStatement without waiting,
within the Data API's quota of 100 DescribeStatement calls a second per account and Region
("Quotas for Amazon Redshift Data API",
https://docs.aws.amazon.com/redshift/latest/mgmt/amazon-redshift-limits.html)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.data_api import DataApiTarget, RedshiftDataApi, StatementFailed

STATEMENT_ID = "d9b6c0c9-0747-4bf4-b142-e8883122f766"


class ClockedDataApi:
    """A redshift-data client whose one statement runs for ``seconds`` of a simulated clock,
    advanced by the waits the caller asks for and by long polls as the service answers them.
    ``refuses_waits``: every DescribeStatement that asks to wait is refused (the submit
    operations have no such error in the API model). It records each call."""

    meta: Any = boto3.client("redshift-data", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x").meta  # the SDK's model: it has WaitTimeSeconds

    def __init__(self, seconds: float, fails: bool = False, refuses_waits: bool = False) -> None:
        self.seconds = seconds
        self.fails = fails
        self.refuses_waits = refuses_waits
        self.now = 0.0
        self.calls: list[tuple[str, float]] = []  # (operation, when it answered)
        self.seen_done: float | None = None

    def sleep(self, delay: float) -> None:
        self.now += delay

    def _answer(self, operation: str, wait: int | None) -> str:
        if wait is not None:
            if self.refuses_waits and operation == "DescribeStatement":
                raise ClientError({"Error": {"Code": "ActiveWaitingRequestsExceededException",
                                             "Message": "too many waiting"}}, operation)
            assert 1 <= wait <= 30
            self.now = min(self.now + wait, max(self.now, self.seconds))
        self.calls.append((operation, self.now))
        if self.now < self.seconds:
            return "STARTED"
        self.seen_done = self.seen_done if self.seen_done is not None else self.now
        return "FAILED" if self.fails else "FINISHED"

    def execute_statement(self, WaitTimeSeconds: int | None = None,
                          **_: Any) -> dict[str, Any]:
        answer: dict[str, Any] = {"Id": STATEMENT_ID}
        status = self._answer("ExecuteStatement", WaitTimeSeconds)
        if WaitTimeSeconds is not None:
            answer.update(Status=status, HasResultSet=False)
        return answer

    def describe_statement(self, WaitTimeSeconds: int | None = None,
                           **_: Any) -> dict[str, Any]:
        status = self._answer("DescribeStatement", WaitTimeSeconds)
        answer = {"Id": STATEMENT_ID, "Status": status, "HasResultSet": False}
        return {**answer, "Error": "ERROR: division by zero"} if status == "FAILED" else answer


def waited(client: ClockedDataApi) -> ClockedDataApi:
    RedshiftDataApi(client, DataApiTarget(database="dev", workgroup_name="wg"),
                    sleep=client.sleep).execute("SELECT 1")
    return client


def operations(client: ClockedDataApi) -> list[str]:
    return [operation for operation, _ in client.calls]


def test_a_statement_that_ends_within_the_submits_wait_costs_one_call_and_no_delay() -> None:
    for seconds in (0.0, 0.05, 0.65, 29.9):
        client = waited(ClockedDataApi(seconds))
        assert operations(client) == ["ExecuteStatement"]
        assert client.seen_done == seconds


def test_a_long_statement_is_waited_on_in_long_polls_and_seen_done_as_it_ends() -> None:
    client = waited(ClockedDataApi(75.0))
    assert operations(client) == ["ExecuteStatement", "DescribeStatement", "DescribeStatement"]
    assert client.seen_done == 75.0


def test_a_failed_statement_is_described_once_for_its_error() -> None:
    client = ClockedDataApi(0.3, fails=True)
    with pytest.raises(StatementFailed, match="division by zero"):
        waited(client)
    assert operations(client) == ["ExecuteStatement", "DescribeStatement"]


def test_refused_waits_fall_back_to_polls_a_handful_a_second_seen_within_a_fifth() -> None:
    for seconds in (30.3, 32.5, 90.0):
        client = waited(ClockedDataApi(seconds, refuses_waits=True))
        describes = [when for operation, when in client.calls if operation == "DescribeStatement"]
        assert client.seen_done is not None and seconds <= client.seen_done <= seconds + 0.2
        assert len([t for t in describes if t < 31.0]) <= 12  # the submit waited 30 s
        assert len([t for t in describes if 40.0 <= t < 50.0]) <= 5 * 10 + 1


class OlderSdk(ClockedDataApi):
    """A client whose model has no WaitTimeSeconds (as the Lambda python3.12 runtime's botocore
    1.40): it would refuse the parameter, so it must not get it."""

    meta = None

    def _answer(self, operation: str, wait: int | None) -> str:
        assert wait is None, "WaitTimeSeconds sent to an SDK that does not know it"
        return super()._answer(operation, wait)


def test_an_sdk_without_long_polling_is_polled_and_sees_the_end_within_a_fifth() -> None:
    for seconds in (0.3, 2.5):
        client = waited(OlderSdk(seconds))
        assert client.seen_done is not None and seconds <= client.seen_done <= seconds + 0.2
        assert operations(client)[0] == "ExecuteStatement"
