"""The Lambda handler on real Kinesis events against the local stack (moto + the Redshift
stand-in on PostgreSQL): warehouse rows, dead-letter messages and batchItemFailures."""

from __future__ import annotations

import base64
import io

import pytest

from functions.kinesis_consumer import app
from local.ports import free_port
from local.record_builders import STREAM_ARN, DmsStream, activity, customer, lambda_event, ticket
from tests.functional.pipeline_helpers import Consumer, reset_caches


def purchases(stream: DmsStream, count: int, start: int = 1) -> None:
    for i in range(start, start + count):
        stream.add("customer", "insert", customer(i, f"Buyer {i}", f"buyer{i}@example.com"))
        stream.add("ticket", "insert", ticket(i, 1))
        stream.add("ticket_activity", "insert", activity(i, i))


def test_a_batch_lands_and_reports_no_failures(consumer: Consumer) -> None:
    stream = DmsStream()
    purchases(stream, 3)
    response = consumer.invoke(lambda_event(stream.take()))

    assert response == {"batchItemFailures": []}
    rows = consumer.sql("SELECT ticket_id, name, email_address FROM public.sport_event_activity "
                        "ORDER BY ticket_id")
    assert [(r["ticket_id"], r["name"]) for r in rows] == [(i, f"Buyer {i}") for i in (1, 2, 3)]
    assert all(len(r["email_address"]) == 64 for r in rows)
    assert consumer.dead_letters() == []


def test_poison_records_go_to_the_dead_letter_queue_and_do_not_block(consumer: Consumer) -> None:
    stream = DmsStream()
    purchases(stream, 1)
    bad_json = stream.add_raw(b"{oops")
    missing_key = stream.add("customer", "insert", {"name": "No Key"})
    wrong_type = stream.add("ticket", "insert", ticket(2, 1, ticket_price="lots"))
    purchases(stream, 1, start=2)
    response = consumer.invoke(lambda_event(stream.take()))

    assert response == {"batchItemFailures": []}
    assert [r["ticket_id"] for r in consumer.sql(
        "SELECT ticket_id FROM public.sport_event_activity ORDER BY 1")] == [1, 2]
    letters = {m["sequenceNumber"]: m for m in consumer.dead_letters()}
    assert set(letters) == {r.sequence_number for r in (bad_json, missing_key, wrong_type)}
    assert letters[missing_key.sequence_number]["reason"] == (
        "customer: missing key column 'customer_id'")
    assert letters[missing_key.sequence_number]["table"] == "customer"
    assert letters[wrong_type.sequence_number]["reason"].startswith("ticket: column 'ticket_price'")
    for record in (bad_json, missing_key, wrong_type):
        letter = letters[record.sequence_number]
        assert letter["payload"] == record.data
        assert letter["eventSourceARN"] == STREAM_ARN
        assert letter["shardId"] == "shardId-0"


def test_warehouse_unavailable_fails_the_batch_from_its_lowest_sequence_number(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    reset_caches()
    stream = DmsStream()
    stream.add_raw(b"not json at all")
    purchases(stream, 2)
    records = stream.take()
    response = consumer.invoke(lambda_event(records))

    assert response == {"batchItemFailures": [{"itemIdentifier": records[0].sequence_number}]}
    assert consumer.dead_letters() == []  # sent when the retried batch succeeds

    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", consumer.env[
        "AWS_ENDPOINT_URL_REDSHIFT_DATA"])
    reset_caches()
    assert consumer.invoke(lambda_event(records)) == {"batchItemFailures": []}
    assert len(consumer.sql("SELECT * FROM public.sport_event_activity")) == 2
    assert len(consumer.dead_letters()) == 1


def test_dead_letter_queue_unavailable_fails_from_the_lowest_reject(
    consumer: Consumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", consumer.queue_url + "-missing")
    reset_caches()
    stream = DmsStream()
    purchases(stream, 1)
    first_bad = stream.add_raw(b"[]")
    stream.add_raw(b"{}")
    purchases(stream, 1, start=2)
    response = consumer.invoke(lambda_event(stream.take()))

    assert response == {"batchItemFailures": [{"itemIdentifier": first_bad.sequence_number}]}
    assert len(consumer.sql("SELECT * FROM public.sport_event_activity")) == 2


def test_a_retried_batch_changes_nothing_twice(consumer: Consumer) -> None:
    stream = DmsStream()
    purchases(stream, 2)
    stream.add("customer", "update", customer(1, "Renamed", "new@example.com"))
    event = lambda_event(stream.take())
    consumer.invoke(event)
    first = consumer.sql("SELECT * FROM public.sport_event_activity ORDER BY 1")
    consumer.invoke(event)
    assert consumer.sql("SELECT * FROM public.sport_event_activity ORDER BY 1") == first
    assert first[0]["name"] == "Renamed"


def test_logs_and_metrics_hold_no_payload_or_personal_data(
    consumer: Consumer, capfd: pytest.CaptureFixture[str]
) -> None:
    stream = DmsStream()
    stream.add("customer", "insert", customer(7, "Teresa Stein", "teresa@example.com",
                                              "+1-296-605-8486"))
    poison = stream.add("customer", "insert", customer(8, "Raymond", "raymond@example.net",
                                                       "x" * 70))
    log_stream = io.StringIO()
    previous = app.logger.registered_handler.setStream(log_stream)  # type: ignore[attr-defined]
    try:
        consumer.invoke(lambda_event(stream.take()))
    finally:
        app.logger.registered_handler.setStream(previous)  # type: ignore[attr-defined]

    output = capfd.readouterr().out + log_stream.getvalue()
    assert "batch processed" in output and '"RecordsIn"' in output
    for secret in ("teresa@example.com", "296-605", "raymond@example.net", "Teresa Stein",
                   "xxxxxxxx", str(poison.data)[:40]):
        assert secret not in output
    assert base64.b64decode(consumer.dead_letters()[0]["payload"])  # kept for replay only


def test_bad_configuration_names_every_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.settings import PipelineSettings, SettingsError

    with pytest.raises(SettingsError) as error:
        PipelineSettings.from_mapping({"REDSHIFT_WORKGROUP_NAME": "wg",
                                       "REDSHIFT_CLUSTER_IDENTIFIER": "c1",
                                       "STAGING_BUCKET": "b"})
    message = str(error.value)
    for problem in ("HMAC_KEY_SECRET_ARN is required", "REDSHIFT_DATABASE is required",
                    "DEAD_LETTER_QUEUE_URL is required", "exactly one of",
                    "STAGING_BUCKET needs COPY_IAM_ROLE_ARN"):
        assert problem in message
