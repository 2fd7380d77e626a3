"""A ``char(n)`` value Redshift's single-byte CHAR cannot hold goes to the dead-letter queue
with its reason; the rest of the batch lands (through the Lambda handler and the stand-in)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from local.record_builders import DmsStream, lambda_event
from shared.migrations import migrate
from shared.spec import parse_spec
from tests.factories import CHAR_COLUMNS_SPEC
from tests.functional.pipeline_helpers import Consumer, data_api, reset_caches


def test_a_non_ascii_char_value_is_a_dead_letter_and_the_rest_lands(
    consumer: Consumer, redshift_data: Any, warehouse_db: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec_file = tmp_path / "countries.toml"
    spec_file.write_text(CHAR_COLUMNS_SPEC, encoding="utf-8")
    migrate(data_api(redshift_data, warehouse_db), parse_spec(tomllib.loads(CHAR_COLUMNS_SPEC)))
    monkeypatch.setenv("PIPELINE_SPEC_PATH", str(spec_file))
    reset_caches()
    stream = DmsStream()
    stream.add("country", "insert", {"code": "IS", "currency": "ISK", "name": "\u00cdsland"})
    bad = stream.add("country", "insert", {"code": "GB", "currency": "\u00a3", "name": "UK"})

    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}

    assert consumer.sql('SELECT code, currency, name FROM "cdc_replica"."country"') == [
        {"code": "IS", "currency": "ISK", "name": "\u00cdsland"}]
    [letter] = consumer.dead_letters()
    assert letter["sequenceNumber"] == bad.sequence_number
    assert letter["reason"] == (
        "country: column 'currency': char(n) holds single-byte (ASCII) characters only; "
        "declare the column varchar(n) in the spec")
