"""Order keys follow the source log: per-engine position rules, timestamps, the comparator.

The position shapes come from public DMS material, not from our stand-in:
- PostgreSQL ``00000002/7C007178.3.00000002/7C007178`` (middle 3 for an insert, 2 for an update
  or delete): DMS Kinesis captures in crate/commons-codec tests/transform/test_aws_dms.py;
- MySQL ``mysql-bin-changelog.157832:1975:-1:2002:677883278264080:mysql-bin-changelog.157832:1876``
  and ``mysql-bin-changelog.000024:373``: AWS DMS API Reference, StartReplicationTask,
  CdcStartPosition (checkpoint and LSN examples);
- SQL Server ``0000002a:00000b38:0003``: hex VLF:block:slot (Microsoft Learn, "SQL Server
  transaction log architecture and management guide"; GoldenGate "Using the Commit Sequence
  Number": colon separated hex string 8:8:4);
- Oracle SCN, with a RAC redo thread; Db2 ``0x``-prefixed hex LSN (GoldenGate CSN table).
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.order_key import (
    LOAD_TIME_UNKNOWN,
    ORDER_KEY_MAX_LENGTH,
    POSITION_END,
    POSITION_START,
    RECORD_END,
    RECORD_START,
    SEQUENCE_START,
    TIME_END,
    TIME_START,
    BadOrderKey,
    is_newer,
    newest,
    order_key,
    position_part,
    timestamp_part,
    with_load_time,
)
from tests.order_key_strategies import (
    SEQ,
    Source,
    any_key,
    db2_pair,
    mysql_pair,
    oracle_pair,
    postgres_pair,
    sqlserver_pair,
    times,
)

# No example database in the work tree; no deadline on a shared 2-core machine.
PROPERTIES = settings(database=None, deadline=None, max_examples=150)

def key(sequence_number: str = SEQ, **fields: object) -> str:
    return order_key(Source(**fields), sequence_number)  # type: ignore[arg-type]


# --- timestamp_part -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2024-07-29T00:58:17.983670Z", "2024-07-29T00:58:17.983670Z"),
    ("2020-01-09T04:13:38Z", "2020-01-09T04:13:38.000000Z"),  # real capture: no fraction
    ("2020-01-09 04:13:38", "2020-01-09T04:13:38.000000Z"),  # space, no zone = UTC
    ("2020-01-09T04:13:38+00", "2020-01-09T04:13:38.000000Z"),
    ("2020-01-09T04:13:38+00:00", "2020-01-09T04:13:38.000000Z"),
    ("2020-01-09T04:13:38.5+01:00", "2020-01-09T03:13:38.500000Z"),
    ("2020-01-09T23:30:00-05:30", "2020-01-10T05:00:00.000000Z"),  # crosses midnight
    ("2020-01-09T04:13:38.123Z", "2020-01-09T04:13:38.123000Z"),
    ("2020-01-09T04:13:38.123456789Z", "2020-01-09T04:13:38.123456Z"),  # truncated
    ("2020-01-09T04:13:38.9999999Z", "2020-01-09T04:13:38.999999Z"),  # never rounded up
    ("0999-12-31T23:59:59Z", "0999-12-31T23:59:59.000000Z"),  # four-digit year kept
])
def test_timestamp_part_normalizes_every_iso_rendering(text: str, expected: str) -> None:
    assert timestamp_part(text) == expected


@pytest.mark.parametrize("text", [
    "", "yesterday", "2021-13-01T00:00:00Z", "2021-08-16T24:00:00Z",
    "\uff12\uff10\uff12\uff11-08-16T09:12:03Z",  # full-width digits
    "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
    "2021-08-16T09:12:03.10095XZ",  # DMS's length and punctuation, not its digits
])
def test_timestamp_part_rejects_what_is_not_a_date_time(text: str) -> None:
    with pytest.raises(BadOrderKey, match="ISO 8601"):
        timestamp_part(text)


# --- position_part --------------------------------------------------------------------------

@pytest.mark.parametrize(("position", "expected"), [
    ("00000002/7C007178.3.00000002/7C007178", "P00000002/7C00717800000002/7C007178"),
    ("2/7c007178.12.2/7c007178", "P00000002/7C00717800000002/7C007178"),  # unpadded, lower
    ("2/7C007178", "P00000002/7C00717800000002/7C007178"),  # a bare LSN
    ("00000000/00002000.1.00000000/00001F00", "P00000000/0000200000000000/00001F00"),
    ("mysql-bin-changelog.002171:36912271:0:36912333:9324410911751:"
     "mysql-bin-changelog.002171:36912209", "M0000002171" + "36912271".zfill(20) + "1".zfill(10)),
    ("ip-10-0-1-23-bin.000042:4:-1", "M0000000042" + "4".zfill(20) + "0".zfill(10)),
    ("mysql-bin-changelog.000024:373", "M0000000024" + "373".zfill(20) + "0".zfill(10)),
    ("0000002a:00000b38:0003", "S0000002A00000B380003"),
    ("2a:b38:3", "S0000002A00000B380003"),
    ("6488359", "N" + "6488359".zfill(30) + "0" * 10),
    (6488359, "N" + "6488359".zfill(30) + "0" * 10),  # JSON number
    ("2.6488359", "N" + "6488359".zfill(30) + "2".zfill(10)),  # RAC thread.SCN
    ("2:6488359", "N" + "6488359".zfill(30) + "2".zfill(10)),
    ("0x1A3367F6BA12289", "D" + "1A3367F6BA12289".zfill(32)),
])
def test_position_part_per_engine(position: str | int, expected: str) -> None:
    assert position_part(position) == expected.ljust(POSITION_END - POSITION_START, "0")


@pytest.mark.parametrize("position", [
    None, True, -1, 10**30, "", "garbage", "9" * 31,  # SCN wider than its field
    "123455.34645",  # a decimal pair whose first number is no RAC thread
    "mysql-bin.12345678901:4:0",  # file sequence wider than its field
    "mysql-bin.000001:4:-2",  # row index below -1
    "mysql-bin.000001:4:x",
    "1/2/3", "0x", "0000002a:00000b38:00003",  # slot wider than 4 hex digits
    "000000002/7C007178.3.00000002/7C007178",  # LSN half wider than 8 hex digits
])
def test_position_part_leaves_unknown_or_too_large_positions_to_time_order(
    position: object,
) -> None:
    assert position_part(position) is None  # type: ignore[arg-type]


# --- order_key ------------------------------------------------------------------------------

def test_layout_of_each_class() -> None:
    change = key()
    assert change[0] == "2" and len(change) == RECORD_END
    assert change[TIME_START:TIME_END] == "2024-07-29T00:58:17.974340Z"
    assert change[POSITION_START:POSITION_END] == position_part(
        "00000002/7C007178.3.00000002/7C007178")
    assert change[RECORD_START:RECORD_END] == "0000000001"

    load = key(operation="load", commit_timestamp=None, stream_position=None,
               transaction_record_id=None)
    assert load[0] == "0" and len(load) == RECORD_END
    assert load[TIME_START:TIME_END] == LOAD_TIME_UNKNOWN
    assert load[POSITION_START:POSITION_END] == "2024-07-29T00:58:17.983670Z" + "0" * 17

    untimed = key(commit_timestamp=None, stream_position=None, transaction_record_id=None)
    assert untimed[0] == "1" and len(untimed) == ORDER_KEY_MAX_LENGTH
    assert untimed[TIME_START:TIME_END] == "2024-07-29T00:58:17.983670Z"  # message time
    assert untimed[POSITION_START:RECORD_END] == "0" * (RECORD_END - POSITION_START)
    assert untimed[SEQUENCE_START:] == SEQ.zfill(60)

    unknown_position = key(stream_position="somewhere", transaction_record_id=7)
    assert unknown_position[0] == "1"
    assert unknown_position[TIME_START:TIME_END] == "2024-07-29T00:58:17.974340Z"  # commit
    assert unknown_position[RECORD_START:RECORD_END] == "0000000007"


def test_dms_fast_path_gives_the_parsed_key() -> None:
    fast = key()
    parsed = key(stream_position="2/7c007178.3.2/7c007178",
                 commit_timestamp="2024-07-29 00:58:17.97434+00:00")
    assert fast == parsed


@pytest.mark.parametrize("position", [
    "0000000G/7C007178.3.0000000G/7C007178",  # DMS's length and punctuation, not hex
    "0000/002/7C007178.3.00000002/7C007178",
    "00000002/7C007178.x.00000002/7C007178",
])
def test_postgres_shaped_positions_that_are_not_lsns_fall_back_to_time(position: str) -> None:
    assert key(stream_position=position)[0] == "1"


@pytest.mark.parametrize(("fields", "reason"), [
    ({"operation": "load", "timestamp": None}, "without a timestamp"),
    ({"commit_timestamp": None, "timestamp": None}, "without a timestamp"),
    ({"commit_timestamp": "not a time"}, "ISO 8601"),
    ({"transaction_record_id": -1}, "transaction-record-id"),
    ({"transaction_record_id": 10**10}, "transaction-record-id"),
])
def test_records_that_cannot_be_ordered_are_rejected(fields: dict[str, object],
                                                     reason: str) -> None:
    with pytest.raises(BadOrderKey, match=reason):
        key(**fields)


@pytest.mark.parametrize("sequence_number", ["", "12a", "²", "1" * 61])
def test_time_ordered_change_needs_a_kinesis_sequence_number(sequence_number: str) -> None:
    with pytest.raises(BadOrderKey, match="sequence number"):
        key(sequence_number, stream_position=None)
    assert key(sequence_number)[0] == "2"  # a positioned change does not need one


def test_large_record_ids_beyond_the_lookup_table() -> None:
    assert key(transaction_record_id=4096)[RECORD_START:RECORD_END] == "0000004096"
    assert key(transaction_record_id=9_999_999_999)[RECORD_START:RECORD_END] == "9999999999"


# --- the cases ----------------------------------------------------------------------

def test_source_clock_stepping_back_does_not_flip_two_postgres_changes() -> None:
    first = key(commit_timestamp="2024-07-29T00:58:17.974340Z",
                stream_position="00000002/7C007178.2.00000002/7C007178")
    second = key(commit_timestamp="2024-07-29T00:58:17.970000Z",  # clock stepped back
                 stream_position="00000002/7C007328.2.00000002/7C007328")
    assert is_newer(second, first) and not is_newer(first, second)


def test_insert_then_update_in_one_transaction_ends_as_the_update() -> None:
    insert = key(stream_position="00000002/7C007178.3.00000002/7C007178",
                 transaction_record_id=1)
    update = key(stream_position="00000002/7C007178.2.00000002/7C007178",
                 transaction_record_id=2)
    assert is_newer(update, insert) and not is_newer(insert, update)
    assert newest([insert, update]) == newest([update, insert]) == update


def test_binlog_names_with_digits_and_file_rollover_in_one_second() -> None:
    same_second = "2024-07-29T00:58:17Z"  # MySQL commit times have one-second precision
    end_of_file = key(commit_timestamp=same_second, transaction_record_id=None,
                      stream_position="ip-10-0-1-23-bin.000042:99999999:0:100000100:1:"
                                      "ip-10-0-1-23-bin.000042:99999900")
    next_file = key(commit_timestamp=same_second, transaction_record_id=None,
                    stream_position="ip-10-0-1-23-bin.000043:4:-1:190:2:ip-10-0-1-23-bin.000043:4")
    assert end_of_file != next_file
    assert is_newer(next_file, end_of_file) and not is_newer(end_of_file, next_file)


def test_sql_server_lsns_compare_as_hex() -> None:
    nine = key(stream_position="00000009:00000ff0:0001")
    ten = key(stream_position="0000000a:00000010:0001")  # decimal digit groups would say 0 < 9
    assert is_newer(ten, nine) and not is_newer(nine, ten)


def test_oracle_rac_threads_share_one_scn_order() -> None:
    thread_2 = key(stream_position="2.6488359")
    thread_1_later = key(stream_position="1.6488360", commit_timestamp="2024-07-29T00:58:16Z")
    assert is_newer(thread_1_later, thread_2)
    assert is_newer(key(stream_position=6488360), key(stream_position="6488359"))


def test_full_load_rows_and_later_reloads() -> None:
    loaded = key(operation="load", timestamp="2024-07-29T01:00:00.000000Z")
    change = key(commit_timestamp="2024-07-29T00:59:00.000000Z")
    assert is_newer(change, loaded)  # load time not known yet: every change wins
    reloaded = with_load_time(loaded, "2024-07-29T00:59:30.000000Z")
    assert reloaded[TIME_START:TIME_END] == "2024-07-29T00:59:30.000000Z"
    assert is_newer(reloaded, change)  # the load started after the change committed
    assert is_newer(key(commit_timestamp="2024-07-29T00:59:31Z"), reloaded)
    # at the same instant a change beats a load row
    assert is_newer(key(commit_timestamp="2024-07-29T00:59:30Z"), reloaded)
    # a later read of the same load sorts after an earlier read
    later_read = with_load_time(key(operation="load", timestamp="2024-07-29T01:00:01Z"),
                                "2024-07-29T00:59:30.000000Z")
    assert is_newer(later_read, reloaded)


def test_with_load_time_only_fills_an_unknown_load_time() -> None:
    loaded = key(operation="load")
    filled = with_load_time(loaded, "2024-07-29T00:59:30.000000Z")
    assert with_load_time(filled, "2030-01-01T00:00:00.000000Z") == filled
    change = key()
    assert with_load_time(change, "2030-01-01T00:00:00.000000Z") == change
    with pytest.raises(ValueError, match="UTC time"):
        with_load_time(loaded, "2024-07-29 00:59:30")


def test_time_orders_keys_without_usable_positions() -> None:
    older = key(stream_position=None, commit_timestamp="2024-07-29T00:58:17Z")
    newer = key(stream_position=None, commit_timestamp="2024-07-29T00:58:18Z")
    assert is_newer(newer, older)
    tie_first = key("100", stream_position=None, commit_timestamp=None)
    tie_second = key("200", stream_position=None, commit_timestamp=None)
    assert is_newer(tie_second, tie_first)  # same message time: the Kinesis sequence decides


# --- property tests: random pairs in log order compare in log order -------------------------

@pytest.mark.parametrize("pairs", [postgres_pair(), mysql_pair(), sqlserver_pair(),
                                   oracle_pair(), db2_pair()],
                         ids=["postgres", "mysql", "sqlserver", "oracle", "db2"])
@PROPERTIES
@given(data=st.data())
def test_pairs_in_log_order_compare_in_log_order(
    pairs: st.SearchStrategy[tuple[Source, Source]], data: st.DataObject,
) -> None:
    older, newer = data.draw(pairs)  # commit times are independent: they may step back
    older_key, newer_key = order_key(older, SEQ), order_key(newer, SEQ)
    assert older_key[0] == newer_key[0] == "2"
    assert is_newer(newer_key, older_key) and not is_newer(older_key, newer_key)
    assert newest([older_key, newer_key]) == newest([newer_key, older_key]) == newer_key


@PROPERTIES
@given(any_key(), any_key())
def test_keys_are_short_ascii_and_the_comparison_is_strict(a: str, b: str) -> None:
    assert a.isascii() and len(a) <= ORDER_KEY_MAX_LENGTH
    assert not is_newer(a, a)
    assert not (is_newer(a, b) and is_newer(b, a))
    if a[0] == b[0] == "2":  # a total order of log positions, whatever the commit times
        assert (is_newer(a, b) or is_newer(b, a)) == (a[POSITION_START:] != b[POSITION_START:])
    elif a[0] == b[0]:
        assert (is_newer(a, b) or is_newer(b, a)) == (a != b)


@PROPERTIES
@given(st.sampled_from(["0", "1"]), times, times)
def test_time_decides_outside_class_2(cls: str, earlier: str, later: str) -> None:
    first, second = sorted((timestamp_part(earlier), timestamp_part(later)))
    assume(first != second)
    older = (key(operation="load", timestamp=earlier) if cls == "0"
             else key(commit_timestamp=first, stream_position=None))
    older = with_load_time(older, first)
    newer = key(commit_timestamp=second, stream_position="00000000/00000001.2.00000000/00000001")
    assert is_newer(newer, older) and not is_newer(older, newer)
