"""The batch applier's Lambda handler on SQS events against the local stack: consumers (the
Kinesis handler with APPLIER_QUEUE_URL) land batches in S3 and announce them on the applier
queue (moto); the applier's event carries those messages, as Lambda's SQS event source mapping
delivers them ("Using Lambda with Amazon SQS", AWS Lambda Developer Guide: the event's
``Records`` with ``messageId`` and ``body``; ``batchItemFailures`` with ReportBatchItemFailures).
Asserted: rows in the warehouse, ``_cdc_applied``, the failed message ids."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from functions.batch_applier import app as applier
from local.event_source_mapping.environments import IsolatedProcesses
from local.postgres import PostgresServer
from local.record_builders import DmsStream, activity, customer, lambda_event, ticket
from local.stack.environment import APPLIER_HANDLER
from shared import runtime
from shared.applier import landed_message
from shared.freshness import milliseconds_since
from shared.landing import json_lines
from shared.spec import load_spec
from shared.transform import Transformer
from tests.functional.pipeline_helpers import HMAC_KEY, Consumer, fake_context, reset_caches
from tests.stack_helpers import REGION

REPO = Path(__file__).resolve().parents[2]
SAMPLE_EVENT = REPO / "events/applier/landed_batches.json"

QUEUE_ARN = f"arn:aws:sqs:{REGION}:123456789012:cdc-applier"
# The apply transaction's call of the procedure (``shared.apply_procedures``), not its CREATE.
APPLY_CALL = re.compile(r"CALL \S*_cdc_apply_pending\b", re.IGNORECASE)


def reset_applier() -> None:
    runtime.reset()
    applier.settings.cache_clear()
    applier.writer.cache_clear()


@pytest.fixture
def applier_queue(consumer: Consumer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The consumer with an applier queue: it lands its batches instead of applying them."""
    url: str = consumer.sqs.create_queue(
        QueueName=f"applier-{consumer.queue_url.rsplit('-', 1)[-1]}")["QueueUrl"]
    monkeypatch.setenv("APPLIER_QUEUE_URL", url)
    reset_caches()
    reset_applier()
    yield url
    reset_applier()


def purchases(count: int, start: int = 1) -> dict[str, Any]:
    stream = DmsStream()
    for i in range(start, start + count):
        stream.add("customer", "insert", customer(i, f"Buyer {i}", f"buyer{i}@example.com"))
        stream.add("ticket", "insert", ticket(i, 1))
        stream.add("ticket_activity", "insert", activity(i, i))
    return lambda_event(stream.take())


def queue_arn(queue_url: str) -> str:
    return f"arn:aws:sqs:{REGION}:123456789012:{queue_url.rsplit('/', 1)[-1]}"


def sqs_record(message_id: str, body: str, receive_count: int = 1,
               source_arn: str = QUEUE_ARN) -> dict[str, Any]:
    """One record of Lambda's SQS event (from the queue ``source_arn``)."""
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count),
                       "SentTimestamp": "1764495000000", "SenderId": "AROAEXAMPLE",
                       "ApproximateFirstReceiveTimestamp": "1764495000001"},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324 (SQS's own digest)
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": REGION,
    }


def landed(consumer: Consumer, queue_url: str, *events: dict[str, Any],
           delivered: int | None = None) -> list[dict[str, Any]]:
    """Run the consumer on each Kinesis event; ``delivered`` (default: all) of the applier
    queue's messages as event records, as the event source mapping receives them (the rest
    wait on the queue)."""
    for event in events:
        assert consumer.invoke(event) == {"batchItemFailures": []}
    count = len(events) if delivered is None else delivered
    messages = consumer.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=count,
                                            WaitTimeSeconds=0)["Messages"]
    assert len(messages) == count
    return [sqs_record(m["MessageId"], m["Body"], source_arn=queue_arn(queue_url))
            for m in messages]


def queue_depth(consumer: Consumer, queue_url: str) -> int:
    """Messages on the queue, visible or in flight."""
    attributes = consumer.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages",
                                            "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def apply(records: list[dict[str, Any]]) -> dict[str, Any]:
    return applier.lambda_handler({"Records": records}, fake_context())  # type: ignore[no-any-return]


@contextmanager
def applier_log() -> Iterator[io.StringIO]:
    """The applier's log lines, written during the block."""
    log_stream = io.StringIO()
    previous = applier.logger.registered_handler.setStream(log_stream)  # type: ignore[attr-defined]
    try:
        yield log_stream
    finally:
        applier.logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]


def ticket_ids(consumer: Consumer) -> list[int]:
    return [r["ticket_id"] for r in consumer.sql(
        "SELECT ticket_id FROM public.sport_event_activity ORDER BY 1")]


def applied_batches(consumer: Consumer) -> list[str]:
    return [r["batch_id"] for r in consumer.sql(
        'SELECT batch_id FROM cdc_replica."_cdc_applied" ORDER BY 1')]


def test_two_landed_batches_are_applied_in_one_transaction(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    records = landed(consumer, applier_queue, purchases(2), purchases(2, start=3))
    assert ticket_ids(consumer) == []  # landed, not applied: the consumer sent no apply

    assert apply(records) == {"batchItemFailures": []}

    assert ticket_ids(consumer) == [1, 2, 3, 4]
    batches = sorted(json.loads(r["body"])["batch_id"] for r in records)
    assert applied_batches(consumer) == batches
    output = capfd.readouterr().out
    metrics = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    emitted = {name: value for m in metrics for name, value in m.items()
               if name in ("BatchesApplied", "ApplyTransactions", "BatchesFailed")}
    assert emitted == {"BatchesApplied": [2.0], "ApplyTransactions": [1.0],
                       "BatchesFailed": [0.0]}
    assert any("ApplyLatency" in m for m in metrics)


def test_an_apply_takes_the_batches_waiting_on_the_queue(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    # Given three landed batches, of which the mapping delivered one (no batching window)
    [record] = landed(consumer, applier_queue, purchases(1), purchases(1, start=2),
                      purchases(1, start=3), delivered=1)

    # When the applier runs on it
    assert apply([record]) == {"batchItemFailures": []}

    # Then the two waiting batches were applied with it, in one transaction, and are gone from
    # the queue (the delivered one is the mapping's to delete)
    assert ticket_ids(consumer) == [1, 2, 3]
    assert len(applied_batches(consumer)) == 3
    metrics = [json.loads(line) for line in capfd.readouterr().out.splitlines()
               if '"_aws"' in line]
    emitted = {name: value for m in metrics for name, value in m.items()
               if name in ("BatchesApplied", "ApplyTransactions")}
    assert emitted == {"BatchesApplied": [3.0], "ApplyTransactions": [1.0]}
    assert queue_depth(consumer, applier_queue) == 1


def test_a_waiting_message_that_is_not_a_landed_batch_stays_on_the_queue(
    consumer: Consumer, applier_queue: str,
) -> None:
    # Given a landed batch delivered to the applier and a foreign message waiting behind it
    [record] = landed(consumer, applier_queue, purchases(1))
    consumer.sqs.send_message(QueueUrl=applier_queue, MessageBody='{"hello": "world"}')

    with applier_log() as log_stream:
        response = apply([record])

    # Then the batch is applied and the foreign message is left to the queue (it comes back,
    # and the redrive policy takes it to the dead-letter queue), with its reason logged
    assert response == {"batchItemFailures": []}
    assert ticket_ids(consumer) == [1]
    assert queue_depth(consumer, applier_queue) == 2  # the delivered one and the foreign one
    logged = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    assert [e["reason"] for e in logged if "reason" in e] == [
        "not a landed batch message (JSON with batch_id and key)"]
    assert "hello" not in log_stream.getvalue()


def test_the_applier_runs_without_the_hmac_key_and_the_dead_letter_queue(
    consumer: Consumer, applier_queue: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """template.yaml gives the applier neither (least privilege); it applies all the same."""
    [record] = landed(consumer, applier_queue, purchases(2))
    monkeypatch.delenv("HMAC_KEY_SECRET_ARN")
    monkeypatch.delenv("DEAD_LETTER_QUEUE_URL")
    reset_applier()

    assert apply([record]) == {"batchItemFailures": []}

    assert ticket_ids(consumer) == [1, 2]


def test_a_redelivered_message_changes_nothing(consumer: Consumer, applier_queue: str) -> None:
    [record] = landed(consumer, applier_queue, purchases(2))
    assert apply([record]) == {"batchItemFailures": []}
    before = consumer.sql("SELECT * FROM public.sport_event_activity ORDER BY ticket_id")

    again = sqs_record(record["messageId"], record["body"], receive_count=2)
    assert apply([again]) == {"batchItemFailures": []}

    assert consumer.sql("SELECT * FROM public.sport_event_activity ORDER BY ticket_id") == before
    assert applied_batches(consumer) == [json.loads(record["body"])["batch_id"]]


def test_a_message_that_is_no_landed_batch_fails_alone(
    consumer: Consumer, applier_queue: str,
) -> None:
    [good] = landed(consumer, applier_queue, purchases(1))
    garbage = sqs_record("garbage-1", '{"hello": "world"}')
    foreign_key = sqs_record("foreign-1", json.dumps(
        {"batch_id": "ab" * 16, "key": "elsewhere/" + "ab" * 16 + ".json"}))
    with applier_log() as log_stream:
        response = apply([garbage, good, foreign_key])

    assert response == {"batchItemFailures": [{"itemIdentifier": "garbage-1"},
                                              {"itemIdentifier": "foreign-1"}]}
    assert ticket_ids(consumer) == [1]
    logged = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    reasons = {e["message_id"]: e["reason"] for e in logged if "message_id" in e}
    assert reasons == {
        "garbage-1": "not a landed batch message (JSON with batch_id and key)",
        "foreign-1": "key is not the batch's landing object under the staging prefix",
    }
    assert "hello" not in log_stream.getvalue() and "elsewhere" not in log_stream.getvalue()


def test_a_batch_the_warehouse_refuses_fails_alone_and_its_neighbours_are_applied(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    records = landed(consumer, applier_queue, purchases(1), purchases(1, start=2),
                     purchases(1, start=3))
    bad = records[1]
    s3 = applier.client("s3")
    bucket, key = consumer.env["STAGING_BUCKET"], json.loads(bad["body"])["key"]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert b'"ticket_price":"100.00"' in body
    # A value the apply procedure cannot cast to the column's type (DECIMAL).
    s3.put_object(Bucket=bucket, Key=key,
                  Body=body.replace(b'"ticket_price":"100.00"', b'"ticket_price":"secret-price"'))

    with applier_log() as log_stream:
        response = apply(records)

    assert response == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}
    assert ticket_ids(consumer) == [1, 3]
    good = sorted(json.loads(r["body"])["batch_id"] for r in (records[0], records[2]))
    assert applied_batches(consumer) == good
    assert consumer.sql('SELECT count(*) AS n FROM cdc_replica."_cdc_landing"')[0]["n"] == 0
    output = capfd.readouterr()
    assert "secret-price" not in output.out + output.err + log_stream.getvalue()
    [failure] = [e for e in map(json.loads, log_stream.getvalue().splitlines())
                 if "message_id" in e]
    assert failure["message_id"] == bad["messageId"]
    assert "invalid input syntax for type numeric" in failure["reason"]


def test_warehouse_unavailable_fails_every_message(
    consumer: Consumer, applier_queue: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = landed(consumer, applier_queue, purchases(1), purchases(1, start=2))
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    reset_applier()

    assert apply(records) == {"batchItemFailures": [{"itemIdentifier": r["messageId"]}
                                                    for r in records]}

    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA",
                       consumer.env["AWS_ENDPOINT_URL_REDSHIFT_DATA"])
    reset_applier()
    assert apply(records) == {"batchItemFailures": []}
    assert ticket_ids(consumer) == [1, 2]


def apply_statuses(redshift_data: Any, database: str) -> list[str]:
    """The status of every Data API statement that called the apply procedure on ``database``,
    oldest first (``ListStatements`` lists newest first)."""
    statuses: list[str] = []
    token: dict[str, str] = {}
    while True:
        page = redshift_data.list_statements(Status="ALL", Database=database, RoleLevel=False,
                                             **token)
        statuses += [s["Status"] for s in page["Statements"]
                     if any(APPLY_CALL.match(q) for q in s.get("QueryStrings") or [])]
        if "NextToken" not in page:
            return statuses[::-1]
        token = {"NextToken": page["NextToken"]}


def run_and_cancel_the_apply(pg_server: PostgresServer, database: str, redshift_data: Any,
                             call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``call``'s response when its apply statement is stopped by ``CancelStatement``: another
    session's lock on a replica keeps the apply waiting inside the procedure until it is
    cancelled, then the lock goes."""
    response: dict[str, Any] = {}
    with psycopg.connect(pg_server.dsn(database), autocommit=True) as watcher, \
            psycopg.connect(pg_server.dsn(database)) as holder:
        holder.execute('LOCK TABLE cdc_replica."ticket_activity" IN ACCESS EXCLUSIVE MODE')
        worker = threading.Thread(target=lambda: response.update(call()))
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while not watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
                    "AND wait_event_type = 'Lock' AND query ILIKE '%_cdc_apply_pending%' "
                    "AND pid <> pg_backend_pid()").fetchone():
                assert time.monotonic() < deadline, \
                    "the apply never waited on the held replica table"
                time.sleep(0.02)
            [running] = [s for s in redshift_data.list_statements(
                Status="STARTED", Database=database, RoleLevel=False)["Statements"]
                if any(APPLY_CALL.match(q) for q in s.get("QueryStrings") or [])]
            assert redshift_data.cancel_statement(Id=running["Id"])["Status"] is True
        finally:
            holder.rollback()
            worker.join(timeout=120)
    return response


def receive_records(consumer: Consumer, queue_url: str, count: int) -> list[dict[str, Any]]:
    """``count`` messages of the queue as event records, once they are visible again."""
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while len(got) < count:
        assert time.monotonic() < deadline, f"{count - len(got)} messages never came back"
        for m in consumer.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                              WaitTimeSeconds=1).get("Messages", []):
            got[m["MessageId"]] = sqs_record(m["MessageId"], m["Body"], receive_count=2,
                                             source_arn=queue_arn(queue_url))
    return list(got.values())


def test_a_cancelled_apply_fails_every_message_and_bisects_nothing(
    consumer: Consumer, applier_queue: str, pg_server: PostgresServer, warehouse_db: str,
    redshift_data: Any,
) -> None:
    """An apply statement stopped by ``CancelStatement`` ends ABORTED, "The query run was stopped
    by the user" ("DescribeStatement", Amazon Redshift Data API Reference): nothing about its
    batches. Every message, delivered or taken waiting, comes back; none is applied on its own
    (no bisection), and the retry applies them all in one statement."""
    consumer.sqs.set_queue_attributes(QueueUrl=applier_queue,
                                      Attributes={"VisibilityTimeout": "3"})
    records = landed(consumer, applier_queue, purchases(1), purchases(1, start=2),
                     purchases(1, start=3), delivered=2)
    response = run_and_cancel_the_apply(pg_server, warehouse_db, redshift_data,
                                        lambda: apply(records))

    assert response == {"batchItemFailures": [{"itemIdentifier": r["messageId"]}
                                              for r in records]}
    assert apply_statuses(redshift_data, warehouse_db) == ["ABORTED"]
    assert ticket_ids(consumer) == [] and applied_batches(consumer) == []
    assert consumer.dead_letters() == []
    assert queue_depth(consumer, applier_queue) == 3  # the waiting one taken was not deleted

    assert apply(receive_records(consumer, applier_queue, 3)) == {"batchItemFailures": []}
    assert apply_statuses(redshift_data, warehouse_db) == ["ABORTED", "FINISHED"]
    assert ticket_ids(consumer) == [1, 2, 3]
    assert len(applied_batches(consumer)) == 3


def test_a_cancelled_inline_apply_retries_the_consumer_s_whole_batch(
    consumer: Consumer, pg_server: PostgresServer, warehouse_db: str, redshift_data: Any,
) -> None:
    """The Kinesis consumer that applies inline treats a cancelled apply as the applier does:
    as the warehouse unavailable (the batch fails from its lowest sequence number, so the
    event source mapping retries all of it rather than bisecting it), nothing dead-lettered."""
    stream = DmsStream()
    stream.add_raw(b"not json at all")
    for i in (1, 2):
        stream.add("customer", "insert", customer(i, f"Buyer {i}", f"buyer{i}@example.com"))
        stream.add("ticket", "insert", ticket(i, 1))
        stream.add("ticket_activity", "insert", activity(i, i))
    records = stream.take()
    response = run_and_cancel_the_apply(pg_server, warehouse_db, redshift_data,
                                        lambda: consumer.invoke(lambda_event(records)))

    assert response == {"batchItemFailures": [{"itemIdentifier": records[0].sequence_number}]}
    assert apply_statuses(redshift_data, warehouse_db) == ["ABORTED"]
    assert ticket_ids(consumer) == [] and consumer.dead_letters() == []

    assert consumer.invoke(lambda_event(records)) == {"batchItemFailures": []}
    assert apply_statuses(redshift_data, warehouse_db) == ["ABORTED", "FINISHED"]
    assert ticket_ids(consumer) == [1, 2]
    assert len(consumer.dead_letters()) == 1  # the bad record, once the batch is applied


def emf_documents(output: str) -> list[dict[str, Any]]:
    """The EMF documents (CloudWatch embedded metric format) among the output's lines."""
    return [json.loads(line) for line in output.splitlines() if '"_aws"' in line]


def emitted(documents: list[dict[str, Any]], name: str) -> list[float]:
    return [v for d in documents if name in d
            for v in (d[name] if isinstance(d[name], list) else [d[name]])]


def table_freshness(documents: list[dict[str, Any]]) -> dict[str, float]:
    """``TableFreshness`` by its ``Table`` dimension (one value each)."""
    return {d["Table"]: v for d in documents if "TableFreshness" in d
            for v in emitted([d], "TableFreshness")}


def with_body(record: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    return sqs_record(record["messageId"], json.dumps(fields))


def test_the_applier_reports_freshness_of_what_it_applied(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    """SourceLag and TableFreshness (ms since the newest source commit among the applied
    batches, overall and per table) come from the applier once its transaction committed."""
    records = landed(consumer, applier_queue, purchases(2), purchases(2, start=3))
    messages = [json.loads(r["body"]) for r in records]
    newest = {t: max(m["newest_commit_by_table"][t] for m in messages)
              for t in messages[0]["newest_commit_by_table"]}
    assert set(newest) == {"customer", "ticket", "ticket_activity"}
    capfd.readouterr()
    before = {t: milliseconds_since(c) for t, c in newest.items()}

    assert apply(records) == {"batchItemFailures": []}

    after = {t: milliseconds_since(c) for t, c in newest.items()}
    documents = emf_documents(capfd.readouterr().out)
    [source_lag] = emitted(documents, "SourceLag")
    assert min(before.values()) <= source_lag <= min(after.values())
    freshness = table_freshness(documents)
    assert set(freshness) == set(newest)
    for table, value in freshness.items():
        assert before[table] <= value <= after[table]
    assert ticket_ids(consumer) == [1, 2, 3, 4]


def test_a_batch_that_failed_reports_no_freshness(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    """Of a refused batch neither its tables nor its commits reach the freshness metrics; its
    applied neighbour's do."""
    good, bad = landed(consumer, applier_queue, purchases(1), purchases(1, start=2))
    s3 = applier.client("s3")
    bucket, key = consumer.env["STAGING_BUCKET"], json.loads(bad["body"])["key"]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key,
                  Body=body.replace(b'"ticket_price":"100.00"', b'"ticket_price":"not-a-price"'))
    stale = "2001-01-01T00:00:00.000000Z"
    bad = with_body(bad, {**json.loads(bad["body"]), "newest_commit": stale,
                          "newest_commit_by_table": {"refused_only": stale}})
    capfd.readouterr()

    assert apply([bad]) == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}
    documents = emf_documents(capfd.readouterr().out)
    assert emitted(documents, "BatchesFailed") == [1.0]
    assert emitted(documents, "SourceLag") == [] and table_freshness(documents) == {}

    assert apply([good, bad]) == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}
    documents = emf_documents(capfd.readouterr().out)
    [source_lag] = emitted(documents, "SourceLag")
    assert source_lag < milliseconds_since(stale) / 2
    assert set(table_freshness(documents)) == {"customer", "ticket", "ticket_activity"}
    assert ticket_ids(consumer) == [1]


def test_a_message_of_an_older_consumer_is_applied_without_freshness(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    """Deploys roll: a message without the commit fields is applied; there is nothing to
    measure freshness from."""
    [record] = landed(consumer, applier_queue, purchases(2))
    message = json.loads(record["body"])
    old = with_body(record, {"batch_id": message["batch_id"], "key": message["key"]})
    capfd.readouterr()

    assert apply([old]) == {"batchItemFailures": []}

    assert ticket_ids(consumer) == [1, 2]
    documents = emf_documents(capfd.readouterr().out)
    assert emitted(documents, "BatchesApplied") == [1.0]
    assert emitted(documents, "SourceLag") == [] and table_freshness(documents) == {}


def test_the_consumer_that_only_lands_reports_landing_lag_not_freshness(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    """A landed batch is not visible yet: the consumer reports LandingLag (source commit ->
    landed), and SourceLag/TableFreshness are left to the applier."""
    capfd.readouterr()
    [record] = landed(consumer, applier_queue, purchases(2))
    newest = json.loads(record["body"])["newest_commit"]

    documents = emf_documents(capfd.readouterr().out)
    [landing_lag] = emitted(documents, "LandingLag")
    assert 0 < landing_lag <= milliseconds_since(newest)
    assert emitted(documents, "SourceLag") == [] and table_freshness(documents) == {}
    assert emitted(documents, "ChangesApplied") == [6.0]


def test_the_consumer_reports_capture_lag_from_the_newest_commit_to_its_arrival(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    """``CaptureLag`` is the capture's share of commit -> landed: the batch's newest source
    commit (DMS's ``commit-timestamp``) to the arrival of the batch's last record in the stream
    (``approximateArrivalTimestamp`` of the Lambda event, "Using Lambda with Kinesis Data
    Streams", AWS Lambda Developer Guide)."""
    stream = DmsStream()
    stream.add("customer", "insert", customer(1, "Buyer 1", "buyer1@example.com"))
    stream.add("ticket", "insert", ticket(1, 1))
    newest_commit = stream.clock  # each record's commit is the stream's clock as it is added
    event = lambda_event(stream.take(), arrival=newest_commit + timedelta(seconds=1.25))
    capfd.readouterr()

    landed(consumer, applier_queue, event)

    documents = emf_documents(capfd.readouterr().out)
    assert emitted(documents, "CaptureLag") == [1250.0]
    [landing_lag] = emitted(documents, "LandingLag")
    assert landing_lag > 1250.0


def test_the_consumer_that_applies_inline_reports_freshness(
    consumer: Consumer, capfd: pytest.CaptureFixture[str],
) -> None:
    capfd.readouterr()
    assert consumer.invoke(purchases(1)) == {"batchItemFailures": []}

    documents = emf_documents(capfd.readouterr().out)
    assert len(emitted(documents, "SourceLag")) == 1
    assert set(table_freshness(documents)) == {"customer", "ticket", "ticket_activity"}
    assert emitted(documents, "LandingLag") == []
    assert ticket_ids(consumer) == [1]


def test_the_applier_execution_environment_has_its_own_service_name(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    """The local stack's execution environment of the applier (a process of its own, started
    from the consumer's environment) carries template.yaml's POWERTOOLS_SERVICE_NAME of the
    BatchApplierFunction, so its metrics' ``service`` dimension is the applier's."""
    [record] = landed(consumer, applier_queue, purchases(1))
    environments = IsolatedProcesses(APPLIER_HANDLER)
    capfd.readouterr()
    try:
        invocation = environments.invoke({"Records": [record]}, fake_context(), 120.0)
    finally:
        environments.close()

    assert invocation.response == {"batchItemFailures": []}
    documents = emf_documents(capfd.readouterr().out)
    assert {d["service"] for d in documents} == {"cdc-batch-applier"}
    assert emitted(documents, "BatchesApplied") == [1.0]
    assert ticket_ids(consumer) == [1]


def test_the_sample_event_is_what_make_events_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "scripts/make_events.py", "--out", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True)
    assert (tmp_path / "applier/landed_batches.json").read_bytes() == SAMPLE_EVENT.read_bytes()


def test_the_sample_event_applies_the_batches_it_names(
    consumer: Consumer, applier_queue: str, capfd: pytest.CaptureFixture[str],
) -> None:
    """events/applier/landed_batches.json against objects landed at its keys, as a consumer
    lands them (``shared.landing.json_lines``); its messages are the consumer's current ones
    (``shared.applier.landed_message``), with the commits the applier's freshness comes from."""
    event = json.loads(SAMPLE_EVENT.read_text())
    for record in event["Records"]:
        message = json.loads(record["body"])
        assert record["body"] == landed_message(message["batch_id"], message["key"],
                                                message["newest_commit_by_table"])
        assert set(message["newest_commit_by_table"]) == {"customer", "ticket",
                                                          "ticket_activity"}
    spec = load_spec()
    s3 = applier.client("s3")
    for n, record in enumerate(event["Records"]):
        message = json.loads(record["body"])
        stream = DmsStream()
        stream.add("customer", "insert", customer(20 + n, f"Sample {n}", f"s{n}@example.com"))
        stream.add("ticket", "insert", ticket(20 + n, 1))
        stream.add("ticket_activity", "insert", activity(20 + n, 20 + n))
        changes = Transformer(spec, HMAC_KEY).transform(stream.take()).changes
        s3.put_object(Bucket=consumer.env["STAGING_BUCKET"], Key=message["key"],
                      Body=json_lines(spec, message["batch_id"], changes, {}))

    capfd.readouterr()
    assert apply(event["Records"]) == {"batchItemFailures": []}

    assert ticket_ids(consumer) == [20, 21]
    documents = emf_documents(capfd.readouterr().out)
    assert len(emitted(documents, "SourceLag")) == 1
    assert set(table_freshness(documents)) == {"customer", "ticket", "ticket_activity"}
    assert applied_batches(consumer) == sorted(
        json.loads(r["body"])["batch_id"] for r in event["Records"])
