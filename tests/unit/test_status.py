"""``cdc status``'s pure parts: lag, positions as the source prints them, the report, and the
statements it sends (checked against Redshift's grammar like every statement we emit)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from local.redshift_data_api.grammar import check_redshift_sql
from shared.order_key import LOAD_TIME_UNKNOWN, POSITION_END, POSITION_START, order_key
from shared.spec import load_spec
from tools.status import (
    TableStatus,
    format_lag,
    lag_seconds,
    readable_position,
    reload_starts_query,
    render,
    replica_status_query,
    target_rows_query,
)

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def position_of(stream_position: str | int) -> str:
    """The position part of the order key DMS's metadata gives."""
    metadata = SimpleNamespace(operation="update", timestamp="2026-11-30T11:59:00Z",
                               commit_timestamp="2026-11-30T11:59:00Z",
                               stream_position=stream_position, transaction_record_id=1)
    return order_key(metadata, "1")[POSITION_START:POSITION_END]


@pytest.mark.parametrize(("stream_position", "printed"), [
    ("00000002/7C007178.3.00000002/7C007178", "2/7C007178"),
    ("0/16B3748", "0/16B3748"),
    ("mysql-bin-changelog.002171:36912271:0:36912333:0", "binlog 002171:36912271"),
    ("0000002a:00000b38:0003", "0000002A:00000B38:0003"),
    ("6488359", "6488359"),
    ("2.6488359", "2.6488359"),
    ("0x1A3367F6BA12289", "0x1A3367F6BA12289"),
])
def test_positions_print_as_the_source_writes_them(stream_position: str, printed: str) -> None:
    assert readable_position(position_of(stream_position)) == printed


def test_no_position_prints_a_dash() -> None:
    assert readable_position(None) == "-"


def test_lag_is_now_minus_the_newest_time() -> None:
    assert lag_seconds("2026-11-30T11:58:30.500000Z", NOW) == 89.5
    assert lag_seconds(None, NOW) is None
    assert lag_seconds(LOAD_TIME_UNKNOWN, NOW) is None  # a load row without a load start


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (0.04, "0.0s"), (-0.3, "0.0s"), (12.34, "12.3s"), (61, "1m01s"),
    (3725, "1h02m"), (3 * 86400 + 3600, "3d01h"),
])
def test_lag_format(seconds: float | None, text: str) -> None:
    assert format_lag(seconds) == text


def test_the_report_names_every_table_and_the_dead_letters() -> None:
    spec = load_spec()
    tables = [
        TableStatus("customer", 230, "2026-11-30T11:59:58.000000Z",
                    position_of("00000002/7C007178.3.00000002/7C007178")),
        TableStatus("ticket", 0, None, None, reload_started="2026-11-30T11:00:00.000000Z"),
    ]
    lines = render(spec, tables, {"sport_event_activity": 1091}, 3, NOW)
    assert lines[0].split() == ["table", "rows", "lag", "last", "applied", "position",
                                "reload", "started"]
    assert lines[1].split() == ["cdc_replica.customer", "230", "2.0s", "2/7C007178", "-"]
    assert lines[2].split() == ["cdc_replica.ticket", "0", "-", "-",
                                "2026-11-30T11:00:00.000000Z"]
    assert lines[3] == "wide table public.sport_event_activity: 1091 rows"
    assert lines[4] == "dead-letter queue: 3 messages"


def test_the_statements_are_redshift_sql() -> None:
    spec = load_spec()
    for statement in (replica_status_query(spec, list(spec.tables)),
                      target_rows_query(spec, list(spec.targets)),
                      reload_starts_query(spec)):
        check_redshift_sql(statement)
