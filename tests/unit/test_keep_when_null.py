"""Unchanged TOAST values (``keep_when_null``) across the changes of one batch, on the Lambda
path's reduce and on the Glue path's per-row function: the same row comes out of both.

A PostgreSQL update that leaves a TOASTed column alone sends it as null unless the table has
REPLICA IDENTITY FULL (AWS DMS User Guide, "Using a PostgreSQL database as a source").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pandas as pd

from shared.glue.executors import newest_keeping_values
from shared.records import StreamRecord
from shared.spec import DEFAULT_SPEC_PATH, PipelineSpec, load_spec
from shared.staging import row_json
from shared.transform import Transformer
from tests.factories import DmsStream, sport_event

KEY = b"unit-test-hmac-key-0123456789abcdef"


def keeping_spec(tmp_path: Path) -> PipelineSpec:
    text = DEFAULT_SPEC_PATH.read_text(encoding="utf-8").replace(
        'columns = { event_id = "bigint", sport_type',
        'keep_when_null = ["location"]\ncolumns = { event_id = "bigint", sport_type')
    path = tmp_path / "spec.toml"
    path.write_text(text, encoding="utf-8")
    return load_spec(path)


def glue_row(core: Transformer, records: list[StreamRecord]) -> dict[str, Any]:
    """What the Glue path stages for the one row the records change."""
    decoded = core.decode(records).changes
    frame = pd.DataFrame({
        "table": [c.table for c in decoded],
        "order_key": [c.order_key for c in decoded],
        "seq_len": [len(c.sequence_number) for c in decoded],
        "seq": [c.sequence_number for c in decoded],
        "sub": [0] * len(decoded),
        "row": [row_json(c) for c in decoded],
    })
    out = newest_keeping_values({"sport_event": ("location",)}, frame)
    return msgspec.json.decode(out["row"].iloc[0])  # type: ignore[no-any-return]


def test_a_null_update_keeps_the_value_an_older_change_of_the_batch_carried(
    tmp_path: Path,
) -> None:
    core = Transformer(keeping_spec(tmp_path), KEY)
    stream = DmsStream()
    stream.add("sport_event", "insert", sport_event(1, location="A long description"))
    stream.add("sport_event", "update", sport_event(1, sport_type="Tennis") | {"location": None})
    stream.add("sport_event", "update", sport_event(1, sport_type="Golf") | {"location": None})
    records = stream.take()
    (lambda_change,) = core.transform(records).changes["sport_event"]
    glue = glue_row(core, records)
    assert lambda_change.values["location"] == glue["location"] == "A long description"
    assert lambda_change.values["sport_type"] == glue["sport_type"] == "Golf"


def test_a_delete_in_between_ends_what_can_be_kept(tmp_path: Path) -> None:
    core = Transformer(keeping_spec(tmp_path), KEY)
    stream = DmsStream()
    stream.add("sport_event", "insert", sport_event(1, location="Before the delete"))
    stream.add("sport_event", "delete", {"event_id": 1})
    stream.add("sport_event", "insert", sport_event(1, sport_type="Chess") | {"location": None})
    records = stream.take()
    (lambda_change,) = core.transform(records).changes["sport_event"]
    glue = glue_row(core, records)
    assert lambda_change.values["location"] is None and glue["location"] is None
    assert not lambda_change.deleted and glue["_cdc_deleted"] is False
