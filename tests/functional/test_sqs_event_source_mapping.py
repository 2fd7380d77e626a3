"""The local SQS event source mapping against moto's SQS: batching (one receive, or a batching
window up to 10,000 messages), deletes after success, ReportBatchItemFailures, whole-batch
failures that come back after the visibility timeout and go to the redrive dead-letter queue
after maxReceiveCount, and execution environments of their own.

Lambda's behaviour: "Using Lambda with Amazon SQS" and "Handling errors for an SQS event source
in Lambda" (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html,
.../services-sqs-errorhandling.html)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.event_source_mapping.sqs import RUN_WAIT_SECONDS, LocalSqsEventSourceMapping
from tests.stack_helpers import REGION


@dataclass
class Queue:
    sqs: Any
    url: str
    arn: str

    def send(self, *bodies: str) -> list[str]:
        return [self.sqs.send_message(QueueUrl=self.url, MessageBody=b)["MessageId"]
                for b in bodies]

    def receive_all(self) -> list[dict[str, Any]]:
        """Every message visible now (hidden for a minute after)."""
        seen: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                           VisibilityTimeout=60).get("Messages", [])
            if not got:
                return seen
            seen += got


@dataclass
class Recorder:
    """A handler that records each event's bodies; ``respond`` gives the response."""

    respond: Callable[[list[dict[str, Any]]], Any] | None = None
    batches: list[list[str]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        with self.lock:
            self.batches.append([r["body"] for r in event["Records"]])
            self.records += event["Records"]
        return None if self.respond is None else self.respond(event["Records"])


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)


@pytest.fixture
def make_queue(sqs: Any) -> Callable[..., tuple[Queue, Queue]]:
    """A queue with a redrive dead-letter queue (``max_receives``) and a visibility timeout."""
    def make(visibility: int = 1, max_receives: int = 2) -> tuple[Queue, Queue]:
        name = f"sqs-esm-{uuid.uuid4().hex[:8]}"
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                         "maxReceiveCount": max_receives})})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        return Queue(sqs, url, arn), Queue(sqs, dlq_url, dlq_arn)
    return make


def test_without_a_window_a_batch_is_one_receive_and_success_deletes_it(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    queue, _ = make_queue()
    sent = queue.send(*(f"m{i}" for i in range(13)))
    recorder = Recorder()
    with LocalSqsEventSourceMapping(queue.sqs, queue.url, recorder, batch_size=10) as mapping:
        assert mapping.drain(timeout_seconds=20) == 13
    assert all(len(b) <= 10 for b in recorder.batches)
    assert sorted(b for batch in recorder.batches for b in batch) == sorted(
        f"m{i}" for i in range(13))
    record = recorder.records[0]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == queue.arn
    assert record["awsRegion"] == REGION and record["messageId"] in sent
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"receiptHandle", "md5OfBody", "messageAttributes"} <= set(record)
    assert queue.receive_all() == []


def test_a_batching_window_gathers_more_than_ten_messages_in_one_event(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    queue, _ = make_queue(visibility=30)
    queue.send(*(f"m{i}" for i in range(35)))
    recorder = Recorder()
    with LocalSqsEventSourceMapping(queue.sqs, queue.url, recorder, batch_size=1000,
                                    batching_window_seconds=1) as mapping:
        started = time.monotonic()
        assert mapping.poll_once() == 35
    assert [len(b) for b in recorder.batches] == [35]
    assert time.monotonic() - started >= 1.0, "the window was not waited for"
    assert queue.receive_all() == []


def test_a_full_batch_is_sent_before_its_window_ends(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    queue, _ = make_queue(visibility=30)
    queue.send(*(f"m{i}" for i in range(25)))
    recorder = Recorder()
    with LocalSqsEventSourceMapping(queue.sqs, queue.url, recorder, batch_size=20,
                                    batching_window_seconds=60) as mapping:
        started = time.monotonic()
        assert mapping.poll_once() == 20
        assert time.monotonic() - started < 30
    assert [len(b) for b in recorder.batches] == [20]
    assert len(queue.receive_all()) == 5


def test_the_payload_limit_ends_a_batch_and_the_rest_comes_next(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    queue, _ = make_queue(visibility=30)
    queue.send(*("x" * 1000 for _ in range(10)))
    recorder = Recorder()
    with LocalSqsEventSourceMapping(queue.sqs, queue.url, recorder, batch_size=100,
                                    batching_window_seconds=1,
                                    max_payload_bytes=4 * 1500) as mapping:
        mapping.drain(timeout_seconds=30)
    assert sum(len(b) for b in recorder.batches) == 10
    assert max(len(b) for b in recorder.batches) < 10
    assert all(len(json.dumps(b)) < 4 * 1500 for b in recorder.batches)


def test_batch_item_failures_keep_only_the_failed_messages_which_come_back(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    queue, dlq = make_queue(visibility=1, max_receives=5)
    queue.send("ok-1", "bad", "ok-2")
    attempts: list[str] = []

    def respond(records: list[dict[str, Any]]) -> Any:
        failed = [r for r in records if r["body"] == "bad"]
        attempts.extend(r["attributes"]["ApproximateReceiveCount"] for r in failed)
        # The second delivery succeeds.
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in failed
                                      if r["attributes"]["ApproximateReceiveCount"] == "1"]}

    recorder = Recorder(respond)
    with LocalSqsEventSourceMapping(queue.sqs, queue.url, recorder) as mapping:
        mapping.drain(timeout_seconds=20)
        assert mapping.counters.partial_failures == 1
        assert mapping.counters.messages_deleted == 3
    bodies = [b for batch in recorder.batches for b in batch]
    assert sorted(bodies) == ["bad", "bad", "ok-1", "ok-2"]  # only the failed one came back
    assert attempts == ["1", "2"]
    assert queue.receive_all() == [] and dlq.receive_all() == []


@pytest.mark.parametrize("response", [
    {"batchItemFailures": [{"itemIdentifier": ""}]},
    {"batchItemFailures": [{"itemIdentifier": "not-a-message-of-the-batch"}]},
    {"batchItemFailures": [{"id": "x"}]},
    "not an object",
])
def test_an_invalid_response_fails_the_whole_batch(
        make_queue: Callable[..., tuple[Queue, Queue]], response: Any) -> None:
    queue, _ = make_queue(visibility=30)
    queue.send("a", "b")
    with LocalSqsEventSourceMapping(queue.sqs, queue.url,
                                    Recorder(lambda _records: response)) as mapping:
        assert mapping.poll_once() == 2
        assert mapping.counters.invalid_responses == 1
        assert mapping.counters.messages_failed == 2
    assert mapping.queue_depth() == 2  # in flight until their visibility timeout


@pytest.mark.parametrize("response", [None, {}, {"batchItemFailures": []},
                                      {"batchItemFailures": None}])
def test_empty_responses_are_a_success(
        make_queue: Callable[..., tuple[Queue, Queue]], response: Any) -> None:
    queue, _ = make_queue(visibility=30)
    queue.send("a", "b")
    with LocalSqsEventSourceMapping(queue.sqs, queue.url,
                                    Recorder(lambda _records: response)) as mapping:
        mapping.drain(timeout_seconds=10)
        assert mapping.counters.messages_deleted == 2


def test_a_function_error_brings_the_batch_back_until_the_redrive_policy_moves_it(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    queue, dlq = make_queue(visibility=1, max_receives=2)
    queue.send("poison")

    def fail(records: list[dict[str, Any]]) -> Any:
        raise RuntimeError("the warehouse said no")

    recorder = Recorder(fail)
    with LocalSqsEventSourceMapping(queue.sqs, queue.url, recorder) as mapping:
        mapping.drain(timeout_seconds=20)
        assert mapping.counters.function_errors == 2
    assert recorder.batches == [["poison"], ["poison"]]  # maxReceiveCount deliveries
    moved = dlq.receive_all()
    assert [m["Body"] for m in moved] == ["poison"]


def test_without_report_batch_item_failures_any_response_is_a_success(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    queue, _ = make_queue(visibility=30)
    ids = queue.send("a")
    respond = {"batchItemFailures": [{"itemIdentifier": ids[0]}]}
    with LocalSqsEventSourceMapping(queue.sqs, queue.url, Recorder(lambda _r: respond),
                                    report_batch_item_failures=False) as mapping:
        mapping.drain(timeout_seconds=10)
    assert queue.receive_all() == []


@pytest.mark.parametrize(("options", "message"), [
    ({"batch_size": 11}, "batching_window_seconds of at least 1"),
    ({"batch_size": 10_001, "batching_window_seconds": 1}, "batch_size must be 1..10000"),
    ({"batching_window_seconds": 301}, "batching_window_seconds must be 0..300"),
    ({"maximum_concurrency": 0}, "maximum_concurrency must be"),
])
def test_settings_lambda_refuses_are_refused(
        make_queue: Callable[..., tuple[Queue, Queue]], options: dict[str, Any],
        message: str) -> None:
    queue, _ = make_queue()
    with pytest.raises(ValueError, match=message):
        LocalSqsEventSourceMapping(queue.sqs, queue.url, Recorder(), **options)


def test_run_polls_until_stopped_with_its_concurrency(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    queue, _ = make_queue(visibility=30)
    recorder = Recorder(lambda _r: time.sleep(0.2))
    mapping = LocalSqsEventSourceMapping(queue.sqs, queue.url, recorder,
                                         maximum_concurrency=2, poll_interval_seconds=0.05)
    stop = threading.Event()
    runner = threading.Thread(target=mapping.run, args=(stop,))
    runner.start()
    try:
        queue.send(*(f"m{i}" for i in range(30)))
        deadline = time.monotonic() + 20
        while mapping.counters.messages_deleted < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(timeout=10)
        mapping.close()
    assert not runner.is_alive()
    assert sorted(b for batch in recorder.batches for b in batch) == sorted(
        f"m{i}" for i in range(30))


def test_run_long_polls_so_a_message_on_an_idle_queue_is_taken_at_once(
        make_queue: Callable[..., tuple[Queue, Queue]]) -> None:
    """Lambda long-polls an SQS queue ("Using Lambda with Amazon SQS"): a message sent while
    the pollers wait is received then, not after a rest (here a minute, never reached)."""
    queue, _ = make_queue(visibility=30)
    taken = threading.Event()
    recorder = Recorder(lambda _r: taken.set())
    mapping = LocalSqsEventSourceMapping(queue.sqs, queue.url, recorder,
                                         poll_interval_seconds=60)
    stop = threading.Event()
    runner = threading.Thread(target=mapping.run, args=(stop,))
    runner.start()
    try:
        time.sleep(RUN_WAIT_SECONDS * 1.5)  # the poller has found the queue empty
        queue.send("late")
        assert taken.wait(RUN_WAIT_SECONDS * 10)
    finally:
        stop.set()
        runner.join(timeout=10)
        mapping.close()
    assert not runner.is_alive()
    assert recorder.batches == [["late"]]


def test_a_handler_path_runs_in_an_execution_environment_of_its_own(
        make_queue: Callable[..., tuple[Queue, Queue]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    queue, _ = make_queue(visibility=30)
    log = tmp_path / "environment.log"
    monkeypatch.setenv("SQS_ESM_TEST_LOG", str(log))
    queue.send("a", "b")
    with LocalSqsEventSourceMapping(
            queue.sqs, queue.url, "tests.functional.sqs_environment_handler.handler") as mapping:
        mapping.drain(timeout_seconds=120)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(b for line in lines for b in line["bodies"]) == ["a", "b"]
    assert {line["pid"] for line in lines} != {os.getpid()}
