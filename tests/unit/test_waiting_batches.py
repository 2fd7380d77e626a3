"""shared.applier.WaitingBatches against SQS's documented answers ("ReceiveMessage": at most
MaxNumberOfMessages, 10, per call; "DeleteMessageBatch": at most 10 entries, failures listed
per entry)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.applier import WaitingBatches


class ScriptedSqs:
    """An SQS client whose ReceiveMessage answers come from a script (one list per call)."""

    def __init__(self, receives: list[int], failed_deletes: set[str] | None = None) -> None:
        self.receives = receives
        self.failed_deletes = failed_deletes or set()
        self.sent = 0
        self.meta = type("Meta", (), {"endpoint_url": "https://sqs.eu-west-1.amazonaws.com"})

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["WaitTimeSeconds"] == 0 and 1 <= kwargs["MaxNumberOfMessages"] <= 10
        count = min(self.receives.pop(0) if self.receives else 0, kwargs["MaxNumberOfMessages"])
        messages = [{"MessageId": f"m{self.sent + n}", "ReceiptHandle": f"r{self.sent + n}",
                     "Body": "{}"} for n in range(count)]
        self.sent += count
        return {"Messages": messages} if messages else {}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]],
                             ) -> dict[str, Any]:
        assert len(Entries) <= 10
        failed = [{"Id": e["Id"], "Code": "ReceiptHandleIsInvalid", "SenderFault": True}
                  for e in Entries if e["ReceiptHandle"].replace("r", "m") in self.failed_deletes]
        return {"Successful": [], "Failed": failed}


def test_the_queue_url_comes_from_the_event_source_arn_at_the_clients_endpoint() -> None:
    queue = WaitingBatches.of_event_source(
        ScriptedSqs([]), "arn:aws:sqs:eu-west-1:123456789012:cdc-applier")
    assert queue.queue_url == "https://sqs.eu-west-1.amazonaws.com/123456789012/cdc-applier"


def test_an_arn_that_is_not_a_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="not an SQS queue ARN"):
        WaitingBatches.of_event_source(ScriptedSqs([]), "arn:aws:kinesis:eu-west-1:1:stream/s")


def test_taking_stops_at_the_first_receive_short_of_ten() -> None:
    # Given a queue whose receives give 10, 10, 4 and then (batches landing meanwhile) 10 more
    queue = WaitingBatches(ScriptedSqs([10, 10, 4, 10]), "url")
    # Then what waited is taken, not what lands while taking it
    assert len(queue.receive(990)) == 24


def test_taking_stops_at_the_limit() -> None:
    queue = WaitingBatches(ScriptedSqs([10] * 10), "url")
    assert len(queue.receive(25)) == 25


def test_deletes_go_ten_at_a_time_and_report_what_sqs_did_not_delete() -> None:
    client = ScriptedSqs([10, 10, 5], failed_deletes={"m3", "m17"})
    queue = WaitingBatches(client, "url")
    taken = queue.receive(990)
    assert sorted(queue.delete(taken)) == ["m17", "m3"]
