"""Parity of the two processing paths: the same DMS change stream through the Lambda handler
and through the Glue batch function (local Spark, the local runner's Kinesis reader) ends in
identical warehouses and identical dead letters.

The stream holds every operation (full load, insert, update, delete, a primary-key change), a
fact whose dimensions arrive late, dimension changes that rewrite wide rows, a fact deleted
and inserted again, several changes of one row in one batch, replays of earlier records (some
older than what the warehouse holds by then), poison records and records that are skipped.
Both paths read the same two-shard Kinesis stream (moto), each in its own batches: the Lambda
path per shard, five records per invocation; the Glue path in micro-batches of at most seven
records per shard across both shards.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from pyspark.sql import SparkSession

from glue_job.kinesis_source import AppliedShardPositions, LocalKinesisSource
from glue_job.local_runner import run
from local.postgres import PostgresServer
from local.record_builders import (
    BASE_TIME,
    DmsStream,
    activity,
    customer,
    iso,
    lambda_event,
    sport_event,
    ticket,
)
from shared.glue.arguments import GlueJobSettings
from shared.glue.job import GlueBatchJob
from shared.records import StreamRecord
from shared.spec import load_spec
from tests.functional.glue_helpers import glue_target, put_records, spark_fixture  # noqa: F401
from tests.functional.pipeline_helpers import Consumer, data_api
from tests.stack_helpers import REGION, fresh_database
from tools import table_reload

# PySpark 3.5 calls pandas APIs that pandas 2 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyspark")

LAMBDA_BATCH = 5
GLUE_FETCH_PER_SHARD = 7
RELOAD_START = BASE_TIME + timedelta(minutes=5)
# (customer, older change, newer change) as (stream-position, commit-timestamp,
# transaction-record-id): the forms of ../shared/reference/dms-kinesis-records.md, where a
# naive reading misorders them (docs/source-engines.md, "Per engine").
ENGINE_CORPUS = [
    # MySQL: binlog rollover within one second (commit times have one-second precision).
    (20, ("mysql-bin-changelog.000099:36912271:0:36912333:9324410911751:"
          "mysql-bin-changelog.000099:36912209", "2021-08-15T10:10:05Z", 1),
         ("mysql-bin-changelog.000100:4:0:120:9324410911752:mysql-bin-changelog.000100:4",
          "2021-08-15T10:10:05Z", 1)),
    # A binlog base name with digits, then the row index (-1 before 0).
    (21, ("ip-10-0-1-23-bin.000042:2345:-1:2400:1:ip-10-0-1-23-bin.000042:2300",
          "2021-08-15T10:10:06Z", 1),
         ("ip-10-0-1-23-bin.000042:2345:0:2400:1:ip-10-0-1-23-bin.000042:2300",
          "2021-08-15T10:10:06Z", 1)),
    # SQL Server: hexadecimal LSNs (0x0f < 0x10; read as decimal digits they would not be).
    (22, ("0000002a:0000000f:0003", "2021-08-15T10:10:07Z", 1),
         ("0000002a:00000010:0001", "2021-08-15T10:10:07Z", 1)),
    # Oracle SCNs, the newer committed by a clock that stepped back.
    (23, ("6488359", "2021-08-15T10:10:09Z", 1), ("6488360", "2021-08-15T10:10:08Z", 1)),
    # PostgreSQL: the clock stepped back a few milliseconds; the LSN still orders.
    (24, ("00000002/7C007178.3.00000002/7C007178", "2021-08-15T10:10:10.005Z", 1),
         ("00000002/7C007300.2.00000002/7C007300", "2021-08-15T10:10:10.001Z", 1)),
    # PostgreSQL: an insert (counter 3) then an update (counter 2) in one transaction.
    (25, ("00000002/7C008000.3.00000002/7C008000", "2021-08-15T10:10:11Z", 1),
         ("00000002/7C008000.2.00000002/7C008000", "2021-08-15T10:10:11Z", 2)),
]


def change_stream() -> list[StreamRecord]:
    """One source history, in commit order, then replays (what Kinesis and DMS can repeat)."""
    s = DmsStream()
    # Full load.
    for event_id in (1, 2, 3):
        s.add("sport_event", "load", sport_event(event_id, location=f"Arena {event_id}"))
    for ticket_id in range(1, 7):
        s.add("ticket", "load", ticket(ticket_id, 1 + ticket_id % 3, "Standard", f"S-{ticket_id}"))
    for customer_id in (1, 2, 3):
        s.add("customer", "load", customer(customer_id, f"Customer {customer_id}"))
    for ticket_id in (1, 2, 3):
        s.add("ticket_activity", "load", activity(ticket_id, ticket_id))
    s.control("full-load-complete")
    # CDC: a purchase whose customer and event do not exist yet (late dimensions).
    s.add("ticket", "insert", ticket(7, 4, "Premium", "P-7", "250.50"))
    s.add("ticket_activity", "insert", activity(7, 7, "2021-08-15 11:00:00"))
    s.add("ticket_activity", "insert", activity(4, 2, "2021-08-15 11:05:00"))
    # Dimension changes: every purchase of customer 1 / event 2 is rewritten.
    s.add("customer", "update", customer(1, "Customer One", "  Teresa.Stein@Example.COM "),
          before={"customer_id": 1})
    s.add("sport_event", "update", sport_event(2, "Football", "2021-10-01", "Moved, US"))
    s.add("ticket", "update", ticket(2, 2, "Gold", "G-2", "99.99"))
    # Several changes of one row close together (one batch on either path, or not).
    s.add("customer", "update", customer(2, "Customer Two v2", phone="+44 20 7946 0958"))
    s.add("customer", "update", customer(2, "Customer Two v3", phone="(206) 555-0100 ext. 12"))
    # The late dimensions arrive.
    s.add("customer", "insert", customer(7, "Late Customer", "late@example.com"))
    s.add("sport_event", "insert", sport_event(4, "Tennis", "2021-12-24", "Late Arena"))
    # A primary-key change of a fact: the old key becomes a tombstone.
    s.add("ticket_activity", "update", activity(5, 3, "2021-08-15 10:00:00"),
          before={"ticket_id": 3, "purchased_by": 3})
    # Deletes: a fact, a dimension (its columns empty), a fact deleted then inserted again.
    s.add("ticket_activity", "delete", {"ticket_id": 2})
    s.add("customer", "delete", {"customer_id": 3})
    s.add("ticket_activity", "delete", {"ticket_id": 1})
    s.add("ticket_activity", "insert", activity(1, 2, "2021-08-15 12:00:00"))
    # Poison records: each becomes a dead letter with its reason, the rest goes on.
    s.add_raw(b"\x00\x01 not json at all")
    s.add_raw({"data": {"ticket_id": 8}})
    s.add("customer", "insert", {"name": "No Key", "email": "nokey@example.com"})
    s.add("ticket", "insert", ticket(8, 1, ticket_price="a lot"))
    s.add("ticket", "insert", ticket(9, 1, seat_location="Ü" * 200))
    s.add("customer", "insert", customer(8, "Nul\u0000Byte"))
    s.add_raw(s.message("customer", "truncate", customer(9)))
    # Skipped: a control record, a table not in the spec, DMS's own tables.
    s.control("drop-table", "ticket")
    s.add("audit_log", "insert", {"id": 1})
    s.add("awsdms_apply_exceptions", "insert", {"TASK_NAME": "x"})
    # More changes after the deletes.
    s.add("customer", "update", customer(1, "Customer One Final", "final@example.com"))
    s.add("ticket_activity", "update", activity(4, 7, "2021-08-15 11:05:00",
                                                 "2021-08-15 13:00:00"))
    # DMS's own renderings: a zoned date-time, upper-case (Oracle) identifiers.
    s.add("ticket_activity", "update", activity(5, 3, "2020-01-09T04:13:38Z",
                                                 "2020-01-09T04:13:38.123456789Z"))
    upper = s.message("customer", "insert", {k.upper(): v for k, v in customer(9).items()})
    upper["metadata"].update({"schema-name": "PUBLIC", "table-name": "CUSTOMER"})
    s.add_raw(upper)
    # A source column added (DMS add-column with its table definition), then filled. On the
    # same shard as the row that fills it: across shards, a consumer can read the row first
    # (docs/source-engines.md, "Added columns").
    s.control("add-column", "ticket", details=True, columns={
        "ticket_id": {"type": "INT64"}, "section": {"type": "STRING", "length": 16}},
        partition_key_value="public.ticket.4")
    s.add("ticket", "update", ticket(4, 1, "Standard", "S-4") | {"section": "North"})
    # A truncate of a dimension, then one row inserted again.
    s.control("truncate-table", "sport_event", details=True)
    s.add("sport_event", "insert", sport_event(2, "Football", "2021-10-01", "Rebuilt"))
    # A reload of ticket (started at RELOAD_START on both warehouses): ticket 6 drifted.
    s.clock = RELOAD_START + timedelta(milliseconds=1)
    for ticket_id in (1, 2, 4, 5, 7):
        s.add("ticket", "load", ticket(ticket_id, 1 + ticket_id % 3, "Reloaded", f"R-{ticket_id}"))
    s.add("ticket", "update", ticket(5, 1, "After reload", "A-5") | {"section": "East"})
    # Other engines' log positions, each pair delivered newer first (ENGINE_CORPUS).
    for customer_id, older, newer in ENGINE_CORPUS:
        for name, (position, commit, record_id) in (("newer", newer), ("older", older)):
            message = s.message("customer", "update", customer(customer_id, f"{name}"))
            message["metadata"].update({"stream-position": position, "commit-timestamp": commit,
                                        "transaction-record-id": record_id})
            s.add_raw(message)
    history = s.take()
    # Replays: the full load again (older than the CDC changes by now), a run of CDC records
    # and a poison record, as DMS task restarts and Kinesis retries deliver them.
    replays = history[:6] + history[19:27] + [history[36]]
    return history + [StreamRecord(r.data, "", r.partition_key, r.shard_id) for r in replays]


def read_shards(kinesis: Any, stream_name: str) -> dict[str, list[StreamRecord]]:
    """Every record of every shard, as Lambda's event source mapping reads them."""
    shards: dict[str, list[StreamRecord]] = {}
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        shard_id = shard["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard_id,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records: list[StreamRecord] = []
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            records += [StreamRecord(base64.b64encode(r["Data"]).decode("ascii"),
                                     r["SequenceNumber"], r["PartitionKey"], shard_id)
                        for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        shards[shard_id] = records
    return shards


def lambda_batches(shards: dict[str, list[StreamRecord]]) -> Iterator[list[StreamRecord]]:
    """Per shard in order, LAMBDA_BATCH records per invocation, shards taking turns."""
    position = 0
    while any(position < len(records) for records in shards.values()):
        for records in shards.values():
            if position < len(records):
                yield records[position : position + LAMBDA_BATCH]
        position += LAMBDA_BATCH


def warehouse_state(pg_server: PostgresServer, database: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every replica and wide table, every column, rows in key order."""
    spec = load_spec()
    tables = {f"cdc_replica.{name}": ", ".join(t.key) for name, t in spec.tables.items()}
    tables |= {f"public.{name}": ", ".join(t.key) for name, t in spec.targets.items()}
    state: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(pg_server.dsn(database)) as conn:
        for table, key in tables.items():
            cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {key}")
            columns = tuple(d.name for d in cursor.description or ())
            state[table] = [columns, *cursor.fetchall()]
    return state


def letters(messages: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    return Counter(
        (m["reason"], m["table"], m["sequenceNumber"], m["partitionKey"], m["payload"],
         m["eventSourceARN"])
        for m in messages
    )


def test_lambda_and_glue_paths_end_in_the_same_state(
    consumer: Consumer, spark: SparkSession, pg_server: PostgresServer, warehouse_db: str,
    moto_endpoint: str, redshift_api: str, redshift_data: Any, tmp_path: Path,
) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=moto_endpoint, region_name=REGION)
    stream_name = f"parity-{warehouse_db[-8:]}"
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name,
                                             WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    stream_arn = kinesis.describe_stream_summary(
        StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    records = change_stream()
    put_records(kinesis, stream_arn, records)

    # The Lambda path: the handler, batch after batch, per shard.
    spec = load_spec()
    lambda_api = data_api(redshift_data, warehouse_db)
    table_reload.start(lambda_api, spec, "ticket", iso(RELOAD_START))
    shards = read_shards(kinesis, stream_name)
    assert sum(len(r) for r in shards.values()) == len(records)
    assert all(shards.values()), "both shards carry records"
    invocations = 0
    for batch in lambda_batches(shards):
        assert consumer.invoke(lambda_event(batch, stream_arn=stream_arn)) == {
            "batchItemFailures": []}
        invocations += 1

    # The Glue path: the local runner's reader + the Glue batch function, its own warehouse,
    # its own dead-letter queue, the same HMAC key secret.
    glue_db = fresh_database(pg_server, "wh_glue")
    target = glue_target(moto_endpoint, redshift_api, redshift_data, glue_db,
                         secret_arn=consumer.env["HMAC_KEY_SECRET_ARN"])
    args = {**target.args, "STREAM_ARN": stream_arn,
            "MAX_FETCH_RECORDS_PER_SHARD": str(GLUE_FETCH_PER_SHARD)}
    settings = GlueJobSettings.from_mapping(args)
    job = GlueBatchJob(spark, settings)
    glue_api = data_api(redshift_data, glue_db)
    table_reload.start(glue_api, spec, "ticket", iso(RELOAD_START))
    source = LocalKinesisSource(kinesis, settings.stream)
    outcomes = run(job, source, AppliedShardPositions(tmp_path), once=True)
    assert table_reload.finish(lambda_api, spec, "ticket") == 2  # tickets 3 and 6
    assert table_reload.finish(glue_api, spec, "ticket") == 2
    assert sum(o.records_in for o in outcomes) == len(records)
    assert len(outcomes) > 1 and invocations > len(outcomes)  # different batch boundaries

    lambda_state = warehouse_state(pg_server, warehouse_db)
    glue_state = warehouse_state(pg_server, glue_db)
    for table, rows in lambda_state.items():
        assert glue_state[table] == rows, table

    # The story happened: late dimensions completed, deletes applied, tokens and masks in.
    wide = {row[0]: dict(zip(lambda_state["public.sport_event_activity"][0], row, strict=True))
            for row in lambda_state["public.sport_event_activity"][1:]}
    assert sorted(wide) == [1, 4, 5, 7]
    assert wide[7]["name"] == "Late Customer" and wide[7]["location"] == "Rebuilt"
    assert wide[4]["location"] == "Rebuilt" and wide[1]["seat_level"] == "Reloaded"
    assert wide[5]["seat_level"] == "After reload"
    assert str(wide[5]["created_at"]) == "2020-01-09 04:13:38"
    names = {row[0]: row[1] for row in lambda_state["cdc_replica.customer"][1:]}
    assert {c: names[c] for c, _, _ in ENGINE_CORPUS} == {c: "newer" for c, _, _ in ENGINE_CORPUS}
    assert wide[4]["name"] == "Late Customer"
    assert wide[5]["name"] is None  # customer 3 deleted: its columns are empty
    assert len(wide[1]["email_address"]) == 64 and "@" not in wide[1]["email_address"]
    replica = {row[0]: row for row in lambda_state["cdc_replica.customer"][1:]}
    assert replica[3][-1] is True  # a tombstone
    assert replica[2][3] == "(***) ***-**** ext. **"

    lambda_letters, glue_letters = consumer.dead_letters(), target.dead_letters()
    assert letters(glue_letters) == letters(lambda_letters)
    assert len(lambda_letters) == 9  # seven poison records (one replayed), one drop-table
    assert len({m["payload"] for m in lambda_letters}) == 8
    # The one field that differs: the Glue Kinesis source does not say which shard a record
    # came from, so Glue's dead letters carry an empty shardId.
    assert {m["shardId"] for m in lambda_letters} <= set(shards)
    assert {m["shardId"] for m in glue_letters} == {""}
