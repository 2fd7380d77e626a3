"""Replaying the dead-letter queue after a spec fix: dry run changes nothing, a real run lands
the now-valid records and leaves the still-bad ones in the queue."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3

from local.record_builders import DmsStream, customer, lambda_event
from shared.consumer import build_consumer
from shared.migrations import migrate
from shared.settings import PipelineSettings, hmac_key_from_secret
from shared.spec import DEFAULT_SPEC_PATH, load_spec
from tests.functional.pipeline_helpers import Consumer, data_api
from tools.dlq_replay import replay


def test_replay_after_a_spec_fix(
    consumer: Consumer, tmp_path: Path, redshift_data: Any, warehouse_db: str
) -> None:
    stream = DmsStream()
    long_phone = "+1 (206) 555-0100 ext. 12345 ask for the front desk, weekdays only ok"
    stream.add("customer", "insert", customer(5, "Long Phone", "lp@example.com", long_phone))
    stream.add_raw(b"garbage")
    consumer.invoke(lambda_event(stream.take()))
    assert consumer.sql("SELECT * FROM cdc_replica.customer") == []

    wider = tmp_path / "spec.toml"
    wider.write_text(DEFAULT_SPEC_PATH.read_text().replace('phone = "varchar(64)"',
                                                           'phone = "varchar(128)"'))
    spec = load_spec(wider)
    migrate(data_api(redshift_data, warehouse_db), spec)
    settings = PipelineSettings.from_mapping(dict(os.environ))
    secret = boto3.client("secretsmanager").get_secret_value(
        SecretId=settings.hmac_key_secret_arn)["SecretString"]
    processor = build_consumer(settings, spec, hmac_key_from_secret(secret), boto3.client)
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")

    dry = replay(sqs, s3, consumer.queue_url, processor, dry_run=True)
    assert (dry.messages, dry.replayed, sum(dry.still_rejected.values())) == (2, 1, 1)
    assert consumer.sql("SELECT * FROM cdc_replica.customer") == []

    done = replay(sqs, s3, consumer.queue_url, processor, dry_run=False)
    assert (done.messages, done.replayed) == (2, 1)
    rows = consumer.sql("SELECT customer_id, phone FROM cdc_replica.customer")
    assert rows == [{"customer_id": 5, "phone": "+* (***) ***-**** ext. ***** ask for the front "
                                                 "desk, weekdays only ok"}]
    left = consumer.dead_letters()
    assert [m["reason"] for m in left] == [
        "record data is not valid JSON (JSON is malformed: invalid character (byte 0))"]
