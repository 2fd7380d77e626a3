"""One apply of many landed batches (``_cdc_apply_pending``), against the Data API stand-in:
the newest change per key wins across batches whatever order they were landed in, values a
change lacks are carried across batches, a batch delivered twice is applied once, and a batch
without its end row waits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.landing import insert_statements
from shared.records import StreamRecord
from shared.redshift_writer import RedshiftWriter, S3Stager
from shared.spec import PipelineSpec, load_spec, parse_spec
from shared.transform import Transformer
from tests.factories import DmsStream, customer, spec_document, sport_event, ticket
from tests.functional.pipeline_helpers import HMAC_KEY, Pipeline, Sql


@dataclass
class ListQueue:
    """The applier queue (``shared.redshift_writer.ApplierQueue``) as a list, in sent order."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def send(self, batch_id: str, key: str,
             newest_commit_by_table: Mapping[str, str] | None = None) -> None:
        self.sent.append((batch_id, key))


@dataclass
class Landing:
    """Consumers that land for the applier, and the applier's writer."""

    spec: PipelineSpec
    queue: ListQueue
    consumer: RedshiftWriter
    applier: RedshiftWriter
    sql: Sql

    def land(self, records: list[StreamRecord], writer: RedshiftWriter | None = None) -> str:
        writer = writer or self.consumer
        result = Transformer(writer.spec, HMAC_KEY).transform(records)
        writer.stage_and_merge(result.changes, result.table_events)
        return self.queue.sent[-1][1]

    def row(self, table: str, key: int) -> dict[str, Any]:
        column = self.spec.tables[table].key[0]
        (found,) = self.sql(f'SELECT * FROM "cdc_replica"."{table}" WHERE {column} = {key}')
        return found


@pytest.fixture
def landing(make_pipeline: Any, staging_bucket: tuple[Any, str]) -> Landing:
    return make_landing(make_pipeline, staging_bucket, load_spec())


def make_landing(make_pipeline: Any, staging_bucket: tuple[Any, str],
                 spec: PipelineSpec) -> Landing:
    s3, bucket = staging_bucket
    stager = S3Stager(s3, bucket, "staging", "arn:aws:iam::123456789012:role/copy")
    pipeline: Pipeline = make_pipeline(spec, stager)
    queue = ListQueue()
    consumer = RedshiftWriter(spec, pipeline.writer.api, stager, queue)
    return Landing(spec, queue, consumer, pipeline.writer, pipeline.sql)


def test_the_newest_change_wins_across_batches_landed_in_any_order(landing: Landing) -> None:
    stream = DmsStream()
    stream.add("sport_event", "insert", sport_event(1, location="first"))
    older = stream.take()
    stream.add("sport_event", "update", sport_event(1, location="second"))
    stream.add("sport_event", "insert", sport_event(2, location="only"))
    newer = stream.take()
    stream.add("sport_event", "delete", sport_event(2))
    newest = stream.take()

    keys = [landing.land(newest), landing.land(newer), landing.land(older)]
    report = landing.applier.apply_landed(keys)

    assert report.transactions == 1 and report.batches_applied == 3
    assert landing.row("sport_event", 1)["location"] == "second"
    assert landing.row("sport_event", 2)["_cdc_deleted"] is True
    assert landing.sql('SELECT count(*) AS n FROM cdc_replica."_cdc_landing"')[0]["n"] == 0


def test_a_batch_delivered_twice_is_applied_once(landing: Landing) -> None:
    stream = DmsStream()
    stream.add("customer", "insert", customer(7, name="Ann"))
    first = landing.land(stream.take())
    landing.applier.apply_landed([first])
    stream.add("customer", "update", customer(7, name="Bea"))
    landing.applier.apply_landed([landing.land(stream.take())])
    # The first message again (SQS at-least-once; its object may still be there or gone).
    again = landing.queue.sent[0]
    landing.applier.apply_landed([again[1]])

    assert landing.row("customer", 7)["name"] == "Bea"
    applied = landing.sql('SELECT batch_id FROM cdc_replica."_cdc_applied"')
    assert sorted(r["batch_id"] for r in applied) == sorted(b for b, _ in landing.queue.sent)


def test_a_redelivered_object_still_in_s3_is_skipped_not_applied_again(
        landing: Landing, staging_bucket: tuple[Any, str]) -> None:
    s3, bucket = staging_bucket
    stream = DmsStream()
    stream.add("customer", "insert", customer(8, name="Old"))
    key = landing.land(stream.take())
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    landing.applier.apply_landed([key])
    stream.add("customer", "update", customer(8, name="New"))
    landing.applier.apply_landed([landing.land(stream.take())])
    # An applier that died after its commit and before deleting the object: it comes again.
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    landing.applier.apply_landed([key])

    assert landing.row("customer", 8)["name"] == "New"
    assert landing.sql('SELECT count(*) AS n FROM cdc_replica."_cdc_landing"')[0]["n"] == 0


def test_values_a_change_lacks_come_from_an_older_pending_batch(
        make_pipeline: Any, staging_bucket: tuple[Any, str]) -> None:
    document = spec_document()
    document["tables"]["sport_event"]["keep_when_null"] = ["location"]
    landing = make_landing(make_pipeline, staging_bucket, parse_spec(document))
    stream = DmsStream()
    stream.add("sport_event", "insert", sport_event(1, location="Seattle"))
    landing.applier.apply_landed([landing.land(stream.take())])
    stream.add("sport_event", "update", sport_event(1, location="Tacoma"))
    moved = landing.land(stream.take())
    # An unchanged TOASTed value arrives as null in the next batch.
    stream.add("sport_event", "update", sport_event(1, sport_type="Soccer") | {"location": None})
    renamed = landing.land(stream.take())
    landing.applier.apply_landed([renamed, moved])

    row = landing.row("sport_event", 1)
    assert (row["sport_type"], row["location"]) == ("Soccer", "Tacoma")


def test_a_truncate_and_later_changes_in_pending_batches(landing: Landing) -> None:
    stream = DmsStream()
    stream.add("ticket", "insert", ticket(1, 1))
    stream.add("ticket", "insert", ticket(2, 1))
    landing.applier.apply_landed([landing.land(stream.take())])
    stream.add("ticket", "update", ticket(1, 1, seat_level="Old"))
    before = landing.land(stream.take())
    stream.control("truncate-table", table="ticket", details=True)
    truncate = landing.land(stream.take())
    stream.add("ticket", "insert", ticket(3, 1))
    after = landing.land(stream.take())
    landing.applier.apply_landed([after, truncate, before])

    live = landing.sql('SELECT ticket_id FROM cdc_replica.ticket WHERE NOT "_cdc_deleted" '
                       "ORDER BY ticket_id")
    assert [r["ticket_id"] for r in live] == [3]


def test_a_batch_without_its_end_row_waits(landing: Landing) -> None:
    """Landing without a bucket may take several transactions; only the last one's end row
    makes the batch pending, so an applier in between does not apply half of it."""
    stream = DmsStream()
    stream.add("customer", "insert", customer(9, name="Half"))
    result = Transformer(landing.spec, HMAC_KEY).transform(stream.take())
    (statement,) = insert_statements(landing.spec, "c" * 32, result.changes, {}) or []
    without_end = statement.rsplit(",(", 1)[0]
    landing.applier.api.execute(without_end)
    landing.applier.apply_landed([landing.land(_one_change())])

    assert landing.sql("SELECT count(*) AS n FROM cdc_replica.customer "
                       "WHERE customer_id = 9")[0]["n"] == 0
    assert landing.sql('SELECT count(*) AS n FROM cdc_replica."_cdc_landing" '
                       "WHERE batch_id = '" + "c" * 32 + "'")[0]["n"] == 1


def _one_change() -> list[StreamRecord]:
    stream = DmsStream()
    stream.add("sport_event", "insert", sport_event(5))
    return stream.take()


def test_a_change_from_a_consumer_that_did_not_know_an_added_column_keeps_its_value(
        landing: Landing) -> None:
    """A consumer of another shard may decode before it reads that a column was added; its
    change must not blank the column (``known_columns`` in the end row)."""
    stale = RedshiftWriter(landing.spec, landing.consumer.api, landing.consumer.stager,
                           landing.queue)
    stale.load_added_columns()
    stream = DmsStream()
    stream.add("ticket", "insert", ticket(1, 1))
    stream.control("add-column", table="ticket", details=True, columns={
        "ticket_id": {"type": "INT64"}, "section": {"type": "STRING", "length": 16}})
    first = stream.take()
    landing.consumer.load_added_columns()
    decoded = Transformer(landing.consumer.spec, HMAC_KEY).transform(first)
    landing.consumer.add_columns(decoded.table_events)
    stream.add("ticket", "update", ticket(1, 1) | {"section": "North"})
    landing.land(first + stream.take())
    landing.applier.apply_landed([k for _, k in landing.queue.sent])
    assert landing.row("ticket", 1)["section"] == "North"

    stream.add("ticket", "update", ticket(1, 1, seat_level="Premium") | {"section": "North"})
    key = landing.land(stream.take(), writer=stale)
    body = json.loads(landing.consumer.stager.client.get_object(  # type: ignore[union-attr]
        Bucket=landing.consumer.stager.bucket, Key=key)["Body"].read().splitlines()[-1])  # type: ignore[union-attr]
    assert body["kind"] == "e" and body["row_data"] == {"known": ""}
    landing.applier.apply_landed([key])

    row = landing.row("ticket", 1)
    assert (row["seat_level"], row["section"]) == ("Premium", "North")

    # Both in one apply: the newer change's consumer did not know the column, an older one
    # did: the older one's value is the newest the warehouse knows.
    stream.add("ticket", "update", ticket(1, 1, seat_level="Premium") | {"section": "South"})
    knew = landing.land(stream.take())
    stream.add("ticket", "update", ticket(1, 1, seat_level="Box") | {"section": "South"})
    did_not = landing.land(stream.take(), writer=stale)
    landing.applier.apply_landed([did_not, knew])

    row = landing.row("ticket", 1)
    assert (row["seat_level"], row["section"]) == ("Box", "South")
