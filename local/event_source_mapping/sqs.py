"""``LocalSqsEventSourceMapping``: Lambda's Amazon SQS event source mapping, locally.

It polls a queue (boto3; the moto server locally) and invokes the function with Lambda's SQS
event, as Lambda's SQS pollers do ("Using Lambda with Amazon SQS",
https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html; "Lambda parameters for Amazon SQS
event source mappings", .../services-sqs-parameters.html; "Handling errors for an SQS event
source in Lambda", .../services-sqs-errorhandling.html):

- ``batch_size`` 1-10 (default 10); up to 10,000 on a standard queue, when
  ``batching_window_seconds`` (MaximumBatchingWindowInSeconds, 0-300) is at least 1 s; a FIFO
  queue allows at most 10 and no batching window.
- Without a batching window the function gets what one ``ReceiveMessage`` returns (up to 10
  messages). With one, the poller keeps receiving until it has ``batch_size`` messages, the
  window since the first message has passed, or the next message would take the event past
  6 MB (that message and those received with it open the next batch).
- Messages are received with the queue's own visibility timeout, which runs while the
  function does. A batch that succeeds is deleted. A function error (an exception, a timeout,
  an environment that died, a response that is not JSON) fails the whole batch: its messages
  are left alone and come back once their visibility timeout expires; after the queue's
  ``maxReceiveCount`` receives SQS moves a message to the redrive policy's dead-letter queue
  (SQS does that on receive, moto too; the mapping does nothing for it).
- ``ReportBatchItemFailures`` (``report_batch_item_failures``, on by default): only the
  messages named in ``batchItemFailures`` stay; the others are deleted. An empty or null list
  or a null response is a success; an entry without ``itemIdentifier``, with an empty one or
  one that is not a message of the batch, or a response that is not a JSON object, fails the
  whole batch.
- ``maximum_concurrency`` (ScalingConfig's MaximumConcurrency; here 1-1000, default 1): ``run``
  has that many pollers, each invoking one batch at a time. The applier runs with 1, as its
  single-applier design asks.
- The function runs where ``handler`` says (``environments``, as for the Kinesis mapping): a
  callable in the mapping's threads, or ``"package.module.function"`` in execution
  environments of their own (one process each, reused).

- ``run``'s pollers long-poll, as Lambda's do ("Lambda long-polls the queue"; "When an SQS
  queue is configured to invoke an AWS Lambda function, the Lambda long polls the queue",
  "Why are my Amazon SQS charges higher than expected?"): a receive waits up to
  ``RUN_WAIT_SECONDS`` and returns as soon as a message is sent, so a landed batch is taken at
  once rather than at the next poll.

Differences from AWS: ``poll_once`` and ``drain`` receive with short polls (``WaitTimeSeconds``
0) so tests need not wait; ``run``'s long polls last 1 s (Lambda's up to 20 s; the length only
bounds how soon a poller sees ``stop``); no event filtering, no provisioned pollers; a FIFO
queue's message groups are not kept in order across pollers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from local.event_source_mapping.context import LambdaContext
from local.event_source_mapping.environments import (
    FunctionEnvironments,
    Handler,
    InProcess,
    IsolatedProcesses,
)
from local.event_source_mapping.events import (
    MAX_PAYLOAD_BYTES,
    Verdict,
    read_batch_item_failures,
)

logger = logging.getLogger(__name__)

DEFAULT_APPLIER_ARN = "arn:aws:lambda:us-east-1:123456789012:function:cdc-batch-applier-local"
RECEIVE_LIMIT = 10  # ReceiveMessage's MaxNumberOfMessages
MAX_BATCH_SIZE = 10_000
MAX_CONCURRENCY = 1_000
RUN_WAIT_SECONDS = 1  # the WaitTimeSeconds of run's long polls
_ENVELOPE_BYTES = len(json.dumps({"Records": []}))
_QUEUE_COUNTS = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed")


@dataclass
class SqsMappingCounters:
    """What the mapping did since it was constructed (not persisted)."""

    invocations: int = 0
    messages_delivered: int = 0  # messages in events, redeliveries included
    redeliveries: int = 0  # messages delivered with ApproximateReceiveCount above 1
    function_errors: int = 0  # invocations that raised, timed out or gave no JSON
    partial_failures: int = 0  # responses with usable batchItemFailures
    invalid_responses: int = 0  # responses Lambda treats as a failure of the whole batch
    messages_deleted: int = 0  # messages the function processed (deleted from the queue)
    messages_failed: int = 0  # messages left on the queue to come back after their timeout
    invocation_seconds: float = 0.0  # the functions' run time, summed (Lambda's Duration)


def sqs_event_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One entry of Lambda's SQS event for a ``ReceiveMessage`` message (received with
    ``AttributeNames=["All"]`` and ``MessageAttributeNames=["All"]``)."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: str(attributes[name]) for name in (
            "ApproximateReceiveCount", "SentTimestamp", "SenderId",
            "ApproximateFirstReceiveTimestamp") if name in attributes},
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"),
                   "binaryValue": value.get("BinaryValue"),
                   "stringListValues": [], "binaryListValues": [],
                   "dataType": value.get("DataType")}
            for name, value in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_message_ids(response: Any, message_ids: list[str],
                       report_batch_item_failures: bool) -> set[str] | None:
    """The messages a response leaves on the queue: none, some, or every one (returned as
    None: the whole batch failed), read as Lambda reads it (``read_batch_item_failures``)."""
    verdict, _, failed = read_batch_item_failures(response, set(message_ids),
                                                  report_batch_item_failures)
    if verdict is Verdict.SUCCESS:
        return set()
    if verdict is Verdict.PARTIAL:
        return set(failed)
    return None


class LocalSqsEventSourceMapping:
    """Polls an SQS queue and invokes the function with batches of its messages, deleting
    what the function processed (see the module docstring).

    ``poll_once()`` forms and invokes one batch and returns the number of messages in it (0:
    the queue had none visible); ``drain()`` polls until the queue holds no message at all
    (visible, in flight or delayed); ``run(stop)`` runs ``maximum_concurrency`` pollers until
    ``stop`` is set. ``close()`` stops the execution environments.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler | str,
        *,
        batch_size: int = 10,
        batching_window_seconds: float = 0.0,
        report_batch_item_failures: bool = True,
        maximum_concurrency: int = 1,
        function_arn: str = DEFAULT_APPLIER_ARN,
        memory_limit_in_mb: int = 1024,
        function_timeout_seconds: float = 300.0,
        poll_interval_seconds: float = 1.0,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    ) -> None:
        fifo = queue_url.endswith(".fifo")
        if not 1 <= batch_size <= (RECEIVE_LIMIT if fifo else MAX_BATCH_SIZE):
            raise ValueError(f"batch_size must be 1..{RECEIVE_LIMIT if fifo else MAX_BATCH_SIZE}"
                             f"{' on a FIFO queue' if fifo else ''}")
        if not 0 <= batching_window_seconds <= 300:
            raise ValueError("batching_window_seconds must be 0..300")
        if fifo and batching_window_seconds:
            raise ValueError("a FIFO queue takes no batching window")
        if batch_size > RECEIVE_LIMIT and batching_window_seconds < 1:
            raise ValueError("a batch_size above 10 needs batching_window_seconds of at least 1 "
                             "(Lambda's rule for SQS)")
        if not 1 <= maximum_concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"maximum_concurrency must be 1..{MAX_CONCURRENCY}")
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn: str = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.region = self.queue_arn.split(":")[3]
        self.environments: FunctionEnvironments = (
            IsolatedProcesses(handler) if isinstance(handler, str) else InProcess(handler))
        self.batch_size = batch_size
        self.batching_window_seconds = batching_window_seconds
        self.report_batch_item_failures = report_batch_item_failures
        self.maximum_concurrency = maximum_concurrency
        self.function_arn = function_arn
        self.function_name = function_arn.split(":")[6]
        self.memory_limit_in_mb = memory_limit_in_mb
        self.function_timeout_seconds = function_timeout_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self.max_payload_bytes = max_payload_bytes
        self.counters = SqsMappingCounters()
        self._lock = threading.Lock()  # the counters and the running count
        self._running = 0
        self._carried: list[dict[str, Any]] = []  # received past a batch's payload limit

    # ----------------------------------------------------------------- public API

    def poll_once(self, wait_seconds: int = 0) -> int:
        """Receive one batch and invoke the function with it; the number of messages in it.
        The first receive waits up to ``wait_seconds`` for a message (a long poll)."""
        batch = self._gather(wait_seconds)
        if batch:
            self._invoke(batch)
        return len(batch)

    def drain(self, timeout_seconds: float = 30.0) -> int:
        """Poll until the queue holds no message (failed ones are waited for until they come
        back and succeed, or SQS moves them to the dead-letter queue); the messages delivered.
        Raises ``TimeoutError`` after ``timeout_seconds``."""
        deadline = time.monotonic() + timeout_seconds
        total = 0
        while True:
            handled = self.poll_once()
            total += handled
            if handled == 0:
                if self.queue_depth() == 0:
                    return total
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.queue_depth()} messages still on the queue")
                time.sleep(0.05)

    def run(self, stop: threading.Event) -> None:
        """``maximum_concurrency`` pollers, long-polling, until ``stop`` is set. Errors of the
        queue are logged and retried after ``poll_interval_seconds``."""
        pollers = [threading.Thread(target=self._poll, args=(stop,), daemon=True,
                                    name=f"sqs-poller-{n}")
                   for n in range(self.maximum_concurrency)]
        for poller in pollers:
            poller.start()
        try:
            stop.wait()
        finally:
            stop.set()
            for poller in pollers:
                poller.join()

    def queue_depth(self) -> int:
        """Messages on the queue: visible, in flight (received, not deleted) and delayed
        (SQS's approximate counts)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=list(_QUEUE_COUNTS))["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in _QUEUE_COUNTS)

    def close(self) -> None:
        """Stop the execution environments (``poll_once``, ``drain`` and ``run`` must have
        returned)."""
        self.environments.close()

    def __enter__(self) -> LocalSqsEventSourceMapping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- internals

    def _poll(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once(RUN_WAIT_SECONDS)
            except Exception:
                logger.exception("SQS event source mapping could not poll the queue")
                stop.wait(self.poll_interval_seconds)

    def _receive(self, count: int, wait_seconds: int = 0) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=count, WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"], MessageAttributeNames=["All"])
        return list(got.get("Messages", []))

    def _gather(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """One batch of event entries: one receive without a batching window; with one, until
        the batch is full, the window since its first message passed, or the payload limit.
        Messages received past the payload limit are kept for the next batch (made visible
        again they would count one more receive toward the redrive policy)."""
        with self._lock:
            pending, self._carried = self._carried, []
        entries: list[dict[str, Any]] = []
        size = _ENVELOPE_BYTES
        first_at: float | None = time.monotonic() if pending else None
        while len(entries) < self.batch_size:
            if not pending:
                wait = wait_seconds if not entries and first_at is None else 0
                pending = [sqs_event_record(m, self.queue_arn, self.region) for m in
                           self._receive(min(RECEIVE_LIMIT, self.batch_size - len(entries)),
                                         wait)]
                received = bool(pending)
            else:
                received = True
            while pending and len(entries) < self.batch_size:
                entry_size = len(json.dumps(pending[0])) + (2 if entries else 0)
                if entries and size + entry_size > self.max_payload_bytes:
                    with self._lock:
                        self._carried = pending + self._carried
                    return entries
                entries.append(pending.pop(0))
                size += entry_size
            if pending:
                with self._lock:
                    self._carried = pending + self._carried
                pending = []
            if entries and first_at is None:
                first_at = time.monotonic()
            if self.batching_window_seconds == 0 or first_at is None:
                return entries
            if time.monotonic() - first_at >= self.batching_window_seconds:
                return entries
            if not received:
                time.sleep(min(0.05, self.batching_window_seconds))
        return entries

    def _invoke(self, entries: list[dict[str, Any]]) -> None:
        context = LambdaContext(
            function_name=self.function_name, invoked_function_arn=self.function_arn,
            memory_limit_in_mb=self.memory_limit_in_mb,
            timeout_seconds=self.function_timeout_seconds)
        ids = [e["messageId"] for e in entries]
        redelivered = sum(int(e["attributes"].get("ApproximateReceiveCount", "1")) > 1
                          for e in entries)
        with self._lock:
            self.counters.invocations += 1
            self.counters.messages_delivered += len(entries)
            self.counters.redeliveries += redelivered
            self._running += 1
        started = time.monotonic()
        try:
            invocation = self.environments.invoke({"Records": entries}, context,
                                                  self.function_timeout_seconds)
        finally:
            with self._lock:
                self._running -= 1
                self.counters.invocation_seconds += time.monotonic() - started
        failed: set[str] | None
        if invocation.error is not None or \
                time.monotonic() - started > self.function_timeout_seconds:
            failed, kind = None, "function_errors"
        else:
            failed = failed_message_ids(invocation.response, ids,
                                        self.report_batch_item_failures)
            kind = "invalid_responses" if failed is None else (
                "partial_failures" if failed else "")
        done = [e for e in entries if failed is not None and e["messageId"] not in failed]
        self._delete(done)
        with self._lock:
            if kind:
                setattr(self.counters, kind, getattr(self.counters, kind) + 1)
            self.counters.messages_deleted += len(done)
            self.counters.messages_failed += len(entries) - len(done)
        logger.info("SQS batch invoked", extra={
            "request_id": context.aws_request_id, "messages": len(entries),
            "deleted": len(done), "error": invocation.error})

    def _delete(self, entries: list[dict[str, Any]]) -> None:
        for start in range(0, len(entries), RECEIVE_LIMIT):
            chunk = entries[start:start + RECEIVE_LIMIT]
            result = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": e["receiptHandle"]}
                         for i, e in enumerate(chunk)])
            if result.get("Failed"):
                # A receipt handle that expired (the function outran the visibility timeout):
                # the message comes back and is processed again (at-least-once delivery).
                logger.warning("SQS messages could not be deleted",
                               extra={"failed": len(result["Failed"])})
