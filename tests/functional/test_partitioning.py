"""Primary-key partitioning end to end: the local DMS stand-in on a real PostgreSQL source puts
a row's changes under its own Kinesis partition key (moto, several shards), so a row that
moves to a new primary key leaves its old key's shard; the consumer still ends with the
source's rows, whichever shard it reads first and however often a batch comes again.

What DMS does, cited in local/dms/records.py ("Partitioning"): the task's object mapping
(shared/dms_table_mappings.py) asks for ``partition-key-type`` ``primary-key`` ("Using object
mapping to migrate data to a Kinesis data stream", AWS DMS User Guide, "Using Amazon Kinesis
Data Streams as a target"), ``PartitionIncludeSchemaTable`` puts the schema and table in
front, and the value is the Kinesis partition key. Kinesis maps a partition key to a shard by
the MD5 of the key, a 128-bit integer in one shard's hash key range ("PutRecords", Amazon
Kinesis Data Streams API Reference), and keeps order within a shard only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from local.dms import LocalDms
from local.postgres import PostgresServer
from local.source_db import schema_statements
from shared.records import StreamRecord
from shared.spec import DELETED, load_spec
from tests.functional.pipeline_helpers import Pipeline
from tests.functional.source_helpers import (
    create_stream,
    drop_slot,
    fresh_source,
    kinesis_client,
    read_stream,
    source_rows,
    unique_slot,
)

SPEC = load_spec()
SHARDS = 4


def _commit(dsn: str, *statements: str) -> None:
    """One source transaction, flushed so that the next capture sees it."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET LOCAL synchronous_commit = on")
        for statement in statements:
            conn.execute(statement)


def _shard_of(partition_key: str, shards: list[dict[str, Any]]) -> str:
    """The shard Kinesis puts ``partition_key`` on: the MD5 of the key as a 128-bit integer,
    in the shard's hash key range."""
    value = int(hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).hexdigest(), 16)
    [shard] = [s["ShardId"] for s in shards
               if int(s["HashKeyRange"]["StartingHashKey"]) <= value
               <= int(s["HashKeyRange"]["EndingHashKey"])]
    return str(shard)


@pytest.fixture
def setup(pg_server: PostgresServer, moto_endpoint: str,
          tmp_path: Path) -> Iterator[tuple[str, LocalDms, Any, str]]:
    dsn = fresh_source(pg_server)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in schema_statements(SPEC):
            conn.execute(statement)
    kinesis = kinesis_client(moto_endpoint)
    stream = create_stream(kinesis, shards=SHARDS)
    slot = unique_slot()
    dms = LocalDms(dsn, SPEC, kinesis, stream, tmp_path, slot_name=slot)
    yield dsn, dms, kinesis, stream
    dms.close()
    drop_slot(dsn, slot)


def _live_tickets(pipeline: Pipeline) -> dict[int, Decimal]:
    return {int(r["ticket_id"]): Decimal(str(r["ticket_price"]))
            for r in pipeline.replica("ticket") if not r[DELETED]}


def test_a_primary_key_change_across_shards_ends_as_the_source(
    setup: tuple[str, LocalDms, Any, str], pipeline: Pipeline
) -> None:
    dsn, dms, kinesis, stream = setup
    shards = kinesis.list_shards(StreamName=stream)["Shards"]
    old_shard = _shard_of("public.ticket.1", shards)
    # the row's new key, on another shard than its old one
    new_key = next(k for k in range(2, 1000)
                   if _shard_of(f"public.ticket.{k}", shards) != old_shard)
    _commit(dsn, "INSERT INTO sport_event VALUES (1, 'Baseball', '2024-09-01', 'Seattle, US')",
            "INSERT INTO ticket VALUES (1, 1, 'Standard', 'S-1', 100.50)")
    dms.full_load()
    # the row moves to a new key, changes there, and a new row takes the old key
    _commit(dsn, f"UPDATE ticket SET ticket_id = {new_key} WHERE ticket_id = 1")
    _commit(dsn, f"UPDATE ticket SET ticket_price = 7.25 WHERE ticket_id = {new_key}")
    _commit(dsn, "INSERT INTO ticket VALUES (1, 1, 'Premium', 'P-1', 55)")
    while dms.capture_once():
        pass

    records = [r for r in read_stream(kinesis, stream)
               if json.loads(r.data)["metadata"]["table-name"] == "ticket"
               and json.loads(r.data)["metadata"]["record-type"] == "data"]
    by_shard: dict[str, list[StreamRecord]] = {}
    for record in records:
        by_shard.setdefault(record.shard_id, []).append(record)
    # Each record is under its row's key, on that key's shard: the old key's load and the new
    # row with the old key on one shard, the move (under the new key) and the next update on
    # another.
    placed = [(json.loads(r.data)["metadata"]["operation"], r.partition_key, r.shard_id)
              for r in records]
    assert sorted(placed) == sorted([
        ("load", "public.ticket.1", old_shard),
        ("insert", "public.ticket.1", old_shard),
        ("update", f"public.ticket.{new_key}", _shard_of(f"public.ticket.{new_key}", shards)),
        ("update", f"public.ticket.{new_key}", _shard_of(f"public.ticket.{new_key}", shards)),
    ])
    moved = json.loads(by_shard[_shard_of(f"public.ticket.{new_key}", shards)][0].data)
    assert moved["before-image"] == {"ticket_id": 1}  # the old key rides with the move

    # The old key's shard first: its newest change (the new row 1) is applied before the move's
    # tombstone of key 1, which is older and must not delete it.
    expected = {1: Decimal("55.00"), new_key: Decimal("7.25")}
    pipeline.apply(by_shard[old_shard])
    assert _live_tickets(pipeline) == {1: Decimal("55.00")}
    for shard, batch in by_shard.items():
        if shard != old_shard:
            pipeline.apply(batch)
    assert _live_tickets(pipeline) == expected
    # Every batch again, the other way round (Kinesis never deduplicates; a replay or a
    # retried batch brings older changes after newer ones): nothing changes.
    for batch in reversed(list(by_shard.values())):
        pipeline.apply(batch)
    assert _live_tickets(pipeline) == expected
    source = source_rows(dsn, SPEC, "ticket")
    assert {k[0]: v["ticket_price"] for k, v in source.items()} == expected
