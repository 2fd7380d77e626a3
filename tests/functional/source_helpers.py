"""Helpers for tests on a real PostgreSQL source and moto Kinesis: a fresh source database,
a stream, reading the stream back, the source's rows, and the core's final state."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Iterable
from typing import Any

import boto3
import psycopg
from botocore.config import Config

from local.kinesis_shards import read_whole_shard
from local.postgres import PostgresServer
from shared.records import StreamRecord, TransformResult
from shared.spec import PipelineSpec
from tests.stack_helpers import REGION


def fresh_source(server: PostgresServer) -> str:
    """The DSN of a new, empty database on the test server."""
    name = f"src_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.dsn(name)


def unique_slot() -> str:
    """Slots are cluster-wide: every test gets its own name."""
    return f"test_dms_{uuid.uuid4().hex[:12]}"


def drop_slot(dsn: str, slot: str, timeout: float = 10.0) -> None:
    """Drop the slot; waits while a killed client's server process still holds it."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            try:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) "
                             "FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def flush_wal(dsn: str) -> None:
    """Make every commit so far visible to logical decoding, which reads only flushed WAL
    (the test server commits asynchronously): a synchronous commit flushes all WAL before it.
    It must write WAL of its own to be flushed at all: a transactional logical message does
    (wal2json hands it over as an ``M`` message, which the stand-in ignores)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("SELECT pg_logical_emit_message(true, 'test-flush', '')")


def kinesis_client(endpoint: str, max_attempts: int | None = None) -> Any:
    """A Kinesis client of the moto server; ``max_attempts`` 1 for one that does not retry
    (botocore retries a throttled call by itself)."""
    config = Config(retries={"total_max_attempts": max_attempts}) if max_attempts else None
    return boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION, config=config)


def create_stream(client: Any, shards: int = 2) -> str:
    name = f"cdc-{uuid.uuid4().hex[:10]}"
    client.create_stream(StreamName=name, ShardCount=shards)
    client.get_waiter("stream_exists").wait(StreamName=name,
                                            WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    return name


def read_stream(client: Any, stream: str) -> list[StreamRecord]:
    """Every record in the stream (each shard from TRIM_HORIZON), as a consumer gets them; a
    read throttled by the shard's 5 GetRecords a second is tried again after a second."""
    return [StreamRecord(r["Data"], r["SequenceNumber"], r["PartitionKey"], shard["ShardId"])
            for shard in client.list_shards(StreamName=stream)["Shards"]
            for r in read_whole_shard(client, stream, shard["ShardId"])]


def messages(records: Iterable[StreamRecord]) -> list[dict[str, Any]]:
    return [json.loads(r.data) for r in records]


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def source_rows(dsn: str, spec: PipelineSpec, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The source table's rows by key, typed by psycopg (Decimal, date, datetime)."""
    key = spec.tables[table].key
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(f'SELECT * FROM "{spec.source_schema}"."{table}"')
        names = [d.name for d in cur.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return {tuple(row[k] for k in key): row for row in rows}


def assert_core_matches_source(result: TransformResult, dsn: str, spec: PipelineSpec,
                               excluded: Collection[tuple[str, tuple[Any, ...]]] = ()) -> None:
    """The core's newest change per key, deletes left out, equals the source table by table
    (personal columns only by key: the core has tokenized or masked them)."""
    for name, table in spec.tables.items():
        source = {k: v for k, v in source_rows(dsn, spec, name).items()
                  if (name, k) not in excluded}
        core = {c.key: c.values for c in result.changes.get(name, []) if not c.deleted}
        assert set(core) == set(source), f"{name}: keys differ"
        plain = [c.name for c in table.columns if c.pii is None]
        for key, row in source.items():
            assert {c: core[key][c] for c in plain} == {c: row[c] for c in plain}, (name, key)
