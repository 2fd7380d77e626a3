"""How ``shared.data_api.RedshiftDataApi`` waits for a statement: DescribeStatement polls that
notice a finished apply soon after it ends, within the Data API's DescribeStatement quota of
100 calls a second per account and Region ("Quotas for Amazon Redshift Data API", Amazon
Redshift Management Guide, https://docs.aws.amazon.com/redshift/latest/mgmt/amazon-redshift-limits.html)."""

from __future__ import annotations

from typing import Any

from shared.data_api import DataApiTarget, RedshiftDataApi


class ClockedDataApi:
    """A redshift-data client whose one statement runs for ``seconds`` of a simulated clock
    (advanced by the waits the caller asks for); it records when each DescribeStatement came."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.now = 0.0
        self.describes: list[float] = []

    def sleep(self, delay: float) -> None:
        self.now += delay

    def execute_statement(self, **_: Any) -> dict[str, Any]:
        return {"Id": "d9b6c0c9-0747-4bf4-b142-e8883122f766"}

    def describe_statement(self, **_: Any) -> dict[str, Any]:
        self.describes.append(self.now)
        done = self.now >= self.seconds
        return {"Id": "d9b6c0c9-0747-4bf4-b142-e8883122f766",
                "Status": "FINISHED" if done else "STARTED", "HasResultSet": False}


def waited(seconds: float) -> ClockedDataApi:
    client = ClockedDataApi(seconds)
    RedshiftDataApi(client, DataApiTarget(database="dev", workgroup_name="wg"),
                    sleep=client.sleep).execute("SELECT 1")
    return client


def test_a_statement_is_seen_finished_at_most_a_fifth_of_a_second_after_it_ends() -> None:
    for seconds in (0.05, 0.3, 0.65, 0.9, 2.5, 30.0):
        client = waited(seconds)
        assert seconds <= client.describes[-1] <= seconds + 0.2 + 1e-9, seconds


def test_a_statement_waited_on_costs_a_handful_of_describe_calls_a_second() -> None:
    client = waited(60.0)
    first_second = [t for t in client.describes if t < 1.0]
    later = [t for t in client.describes if 10.0 <= t < 20.0]
    assert len(first_second) <= 12
    assert len(later) <= 5 * 10 + 1
