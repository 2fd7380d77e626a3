"""The sample events in events/: reproducible from the generator, shaped like Lambda's Kinesis
events, every record a DMS record except the deliberate poison."""

from __future__ import annotations

import base64
import binascii
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from local.sample_events import EVENT_ORDER, EVENTS_DIR, POISON_KINDS, build_events, render
from shared.records import StreamRecord
from shared.spec import load_spec
from shared.transform import Transformer

ROOT = Path(__file__).resolve().parents[2]
STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/cdc-stream"
RECORD_KEYS = {"kinesis", "eventSource", "eventVersion", "eventID", "eventName",
               "invokeIdentityArn", "awsRegion", "eventSourceARN"}
KINESIS_KEYS = {"kinesisSchemaVersion", "partitionKey", "sequenceNumber", "data",
                "approximateArrivalTimestamp"}


def committed(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def dms_message(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's DMS message, or None when it is not base64 JSON with a metadata object."""
    try:
        message = json.loads(base64.b64decode(record["kinesis"]["data"], validate=True))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("metadata"), dict):
        return None
    return message


def poison_kind(record: dict[str, Any]) -> str | None:
    """Why a record can never be applied (see local.sample_events.POISON_KINDS), or None."""
    data = record["kinesis"]["data"]
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error:
        return "not_base64"
    try:
        message = json.loads(raw)
    except ValueError:
        return "not_json"
    if not isinstance(message, dict) or "metadata" not in message:
        return "not_dms"
    spec = load_spec()
    metadata, row = message["metadata"], message["data"]
    table = spec.tables[metadata["table-name"]]
    if any(row.get(k) is None for k in table.key):
        return "missing_key"
    for column in table.columns:
        value = row.get(column.name)
        if column.type.kind == "bigint" and value is not None and not isinstance(value, int):
            return "wrong_type"
        if column.type.kind == "varchar" and value is not None and \
                len(str(value).encode()) > (column.type.length or 0):
            return "too_long"
    return None


def test_the_generator_reproduces_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "scripts/make_events.py", "--out", str(tmp_path)],
                   cwd=ROOT, check=True, capture_output=True)
    generated = sorted(p.name for p in tmp_path.glob("*.json"))
    assert generated == sorted(f"{name}.json" for name in EVENT_ORDER)
    assert sorted(p.name for p in EVENTS_DIR.glob("*.json")) == generated
    for name in generated:
        assert (tmp_path / name).read_bytes() == (EVENTS_DIR / name).read_bytes(), name


def test_building_twice_gives_the_same_text() -> None:
    first, second = build_events(), build_events()
    assert [render(e) for e in first.values()] == [render(e) for e in second.values()]


@pytest.mark.parametrize("name", EVENT_ORDER)
def test_every_record_is_shaped_as_lambda_delivers_it(name: str) -> None:
    event = committed(name)
    assert set(event) == {"Records"} and event["Records"]
    for record in event["Records"]:
        assert set(record) == RECORD_KEYS
        assert set(record["kinesis"]) == KINESIS_KEYS
        kinesis = record["kinesis"]
        assert kinesis["kinesisSchemaVersion"] == "1.0"
        assert kinesis["sequenceNumber"].isdigit() and len(kinesis["sequenceNumber"]) == 56
        assert isinstance(kinesis["approximateArrivalTimestamp"], float)
        assert record["eventID"] == f"shardId-000000000000:{kinesis['sequenceNumber']}"
        assert record["eventSourceARN"] == STREAM_ARN
        assert record["eventSource"] == "aws:kinesis"
        assert record["eventName"] == "aws:kinesis:record"
        assert record["eventVersion"] == "1.0"
        assert record["awsRegion"] == "us-east-1"
        assert record["invokeIdentityArn"].startswith("arn:aws:iam::123456789012:role/")


def test_sequence_numbers_and_commit_times_increase_in_the_documented_order() -> None:
    sequences: list[int] = []
    commits: list[str] = []
    for name in EVENT_ORDER:
        for record in committed(name)["Records"]:
            sequences.append(int(record["kinesis"]["sequenceNumber"]))
            message = dms_message(record)
            if message and "commit-timestamp" in message["metadata"]:
                commits.append(message["metadata"]["commit-timestamp"])
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert commits == sorted(commits)


@pytest.mark.parametrize("name", [n for n in EVENT_ORDER if n != "mixed_poison"])
def test_every_record_decodes_to_a_dms_record(name: str) -> None:
    for record in committed(name)["Records"]:
        message = dms_message(record)
        assert message is not None
        metadata = message["metadata"]
        assert metadata["schema-name"] == "public"
        assert record["kinesis"]["partitionKey"] == metadata["partition-key-value"]
        if name == "control_records":
            assert metadata["record-type"] == "control" and "control" in message
        else:
            assert metadata["record-type"] == "data"
            assert isinstance(message["data"], dict)
            assert poison_kind(record) is None
            allowed = {"load"} if name == "full_load" else {"insert", "update", "delete"}
            assert metadata["operation"] in allowed


def test_the_poison_file_holds_every_poison_kind_among_good_records() -> None:
    records = committed("mixed_poison")["Records"]
    kinds = [poison_kind(r) for r in records]
    assert [k for k in kinds if k] == list(POISON_KINDS)
    assert kinds.count(None) == 2

    core = Transformer(load_spec(), b"unit-test-hmac-key-0123456789abcdef")
    result = core.transform(
        StreamRecord(r["kinesis"]["data"], r["kinesis"]["sequenceNumber"],
                     r["kinesis"]["partitionKey"], "shardId-000000000000") for r in records)
    assert len(result.rejects) == len(POISON_KINDS)
    assert sorted(result.changes) == ["customer", "ticket"]


def test_control_records_are_skipped_by_the_core() -> None:
    records = committed("control_records")["Records"]
    core = Transformer(load_spec(), b"unit-test-hmac-key-0123456789abcdef")
    result = core.transform(
        StreamRecord(r["kinesis"]["data"], r["kinesis"]["sequenceNumber"]) for r in records)
    assert result.change_count == 0 and not result.rejects
    assert sum(result.skipped.values()) == len(records)
