"""Order keys: which of two changes of the same row is newer, following the source log.

An order key is a fixed-layout ASCII string of at most ``ORDER_KEY_MAX_LENGTH`` characters:

    [0]      class: '0' full-load row, '1' CDC change ordered by time only (no usable
             stream position), '2' CDC change ordered by its source log position
    [1:28]   time, UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: the ``commit-timestamp`` (class 1
             without one: the message ``timestamp``); class 0: ``LOAD_TIME_UNKNOWN``, which the
             writer replaces (``with_load_time``) with the table's recorded load start
    [28:72]  position: class 2 the engine-normalized ``stream-position`` (fixed width, sorts
             like the source log); class 0 the message ``timestamp`` (when DMS read the row)
             followed by 17 '0'; class 1 44 '0'
    [72:82]  ``transaction-record-id`` zero-padded to 10 digits (0 when absent)
    [82:]    class 1 only: the Kinesis sequence number zero-padded to 60 digits (tie-break)

``is_newer(a, b)`` compares two keys: when both are class 2 the source log decides
(position, then place in the transaction) and the commit time is ignored, because the
source's clock can step back (failover, NTP) while its log cannot; otherwise time decides,
then the class (a load row loses to a change committed at the same instant), then the rest.
``newer_sql`` is the same comparison as a Redshift SQL expression. The comparison is a total
order of the class 2 keys (by position) and of the class 0 and 1 keys (by time); across the
two groups time decides, so three changes of one row can compare in a circle only when commit
times contradict the log (a clock that stepped back) around a load row or a change without a
usable position.

Position rules, by the shape of ``stream-position`` (a pipeline has one source engine; the
rules keep each engine's forms in log order among themselves). Each normalized position
starts with a letter naming its shape, then fixed-width fields, zero-padded to 44 chars.

- PostgreSQL ``00000002/7C007178.3.00000002/7C007178`` -> ``P`` + first LSN + last LSN,
  each as ``XXXXXXXX/XXXXXXXX`` (upper-case hex). An LSN is a 64-bit WAL byte position printed
  as two hex numbers of up to 8 digits ("pg_lsn Type", PostgreSQL documentation). In DMS
  messages the two LSNs are equal and the middle number is small and not a sequence (3 for an
  insert, 2 for an update or delete in the captures of crate/commons-codec
  tests/transform/test_aws_dms.py), so it is ignored; changes of one transaction can share
  the LSN and ``transaction-record-id`` orders them. A bare ``2/7C007178`` LSN counts as both LSNs.
- MySQL, Aurora MySQL, MariaDB ``mysql-bin-changelog.002171:36912271:0:36912333:...`` ->
  ``M`` + binlog file sequence (10 digits) + position (20) + row index + 1 (10). The fields
  follow the DMS checkpoint and LSN examples of ``CdcStartPosition`` (AWS DMS API Reference,
  StartReplicationTask: ``checkpoint:V1#27#mysql-bin-changelog.157832:1975:-1:2002:...``
  and ``mysql-bin-changelog.000024:373``): binlog file, event position, row index in the
  event (``-1`` before the first row, so it sorts before 0), next event position, ... The
  file sequence is the number after the last '.', whatever the base name ("The binary log
  files will have a series of numbers as filename extensions. Each additional binary log will
  increment the extension number", MariaDB docs "Activating the Binary Log"; the base name is
  set by ``--log-bin`` and may contain digits, e.g. ``ip-10-0-1-23-bin.000042``). The short
  ``file:position`` form has row index -1.
- SQL Server ``0000002a:00000b38:0003`` -> ``S`` + VLF (8 hex) + block (8 hex) + slot (4 hex):
  an LSN is a binary(10) ("sys.fn_cdc_get_max_lsn", Microsoft Learn), printed as hex 8:8:4
  (Oracle GoldenGate "Using the Commit Sequence Number"); a higher LSN is a later change ("SQL
  Server transaction log architecture and management guide", Microsoft Learn).
- Oracle SCN ``6488359`` (text or JSON number) -> ``N`` + SCN (30 digits) + thread (10). The
  SCN is database-wide, also in RAC, where each instance writes its own redo thread ("Redo
  Threads", Oracle RAC Administration and Deployment Guide; DMS reads Oracle changes "based on
  the system change number", AWS DMS User Guide "Creating tasks for ongoing replication"), so
  the SCN decides and the thread of a RAC ``thread.SCN`` (or ``thread:SCN``, thread of at most
  5 digits) only breaks ties. Any plain decimal position takes this form.
- Db2 LSN as ``0x``-prefixed hex of up to 32 digits -> ``D`` + 32 hex digits: an LSN is the
  byte offset of the record in the database log ("db2LSN data structure", IBM Db2 docs),
  printed in hex as in Oracle GoldenGate's CSN table (``0x1A3367F6BA12289``). Db2 LUW LRIs
  printed as a decimal pair ``123455.34645`` are read as an Oracle RAC ``thread.SCN`` when the
  first number has at most 5 digits, otherwise left to class 1.
- Anything else, or a number too large for its field: class 1 (time order, never a reject).

Timestamps: any ISO 8601 date-time (``T`` or space, ``Z``, ``+00``, ``+00:00``, no zone read
as UTC, 0 to 9 fractional digits) becomes UTC with microseconds; digits beyond microseconds
are truncated, so two changes within one microsecond tie on time. Only a record that cannot
be ordered at all raises ``BadOrderKey``: no timestamp, a malformed timestamp, a
``transaction-record-id`` that is negative or has more than 10 digits, or a class 1 record
without a usable Kinesis sequence number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import reduce
from typing import Protocol

CLASS_LOAD, CLASS_TIME, CLASS_POSITION = "0", "1", "2"
TIME_START, TIME_END = 1, 28
POSITION_START, POSITION_END = 28, 72
RECORD_START, RECORD_END = 72, 82
SEQUENCE_START = 82
TIME_LENGTH = TIME_END - TIME_START
POSITION_LENGTH = POSITION_END - POSITION_START
RECORD_LENGTH = RECORD_END - RECORD_START
SEQUENCE_LENGTH = 60
ORDER_KEY_MAX_LENGTH = SEQUENCE_START + SEQUENCE_LENGTH
LOAD_TIME_UNKNOWN = "0001-01-01T00:00:00.000000Z"

_ZERO_POSITION = "0" * POSITION_LENGTH
_ZERO_RECORD = "0" * RECORD_LENGTH
_LOAD_POSITION_PAD = "0" * (POSITION_LENGTH - TIME_LENGTH)
_PG_PAD = "0" * (POSITION_LENGTH - 1 - 2 * 17)
# Zero-padded small numbers, looked up instead of formatted on the hot path.
_PADDED_COUNT = 4096
_PADDED = [str(i).zfill(RECORD_LENGTH) for i in range(_PADDED_COUNT)]

_UTC_TIME_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
_UTC_TIME = re.compile(_UTC_TIME_PATTERN)
# A commit time and a stream position exactly as DMS writes them for PostgreSQL, matched in
# one call on their concatenation (the cheapest full check on the hot path).
_DMS_POSTGRES = re.compile(
    _UTC_TIME_PATTERN + r"[0-9A-F]{8}/[0-9A-F]{8}\.[0-9]\.[0-9A-F]{8}/[0-9A-F]{8}"
)
_PG_POSITION = re.compile(
    r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})"
    r"(?:\.[0-9]+\.([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8}))?"
)
_MYSQL_POSITION = re.compile(r"[^:]*\.([0-9]+):([0-9]+)(?::(-?[0-9]+)(?::.*)?)?", re.DOTALL)
_SQLSERVER_POSITION = re.compile(r"([0-9A-Fa-f]{1,8}):([0-9A-Fa-f]{1,8}):([0-9A-Fa-f]{1,4})")
_SCN_POSITION = re.compile(r"(?:([0-9]{1,5})[.:])?([0-9]+)")
_DB2_POSITION = re.compile(r"0[xX]([0-9A-Fa-f]{1,32})")


class BadOrderKey(ValueError):
    """The record cannot be ordered at all (no or malformed time, bad record id)."""


def timestamp_part(text: str) -> str:
    """Any ISO 8601 date-time as ``2021-08-16T09:12:03.100950Z`` (UTC, microseconds).

    A value without a zone is read as UTC; fractional digits beyond microseconds are
    truncated (Python's ``datetime.fromisoformat`` does so since 3.11). A value already in
    this form (DMS's own) is checked for its shape only, not for a valid calendar date, to keep
    the hot path cheap.
    """
    if len(text) == TIME_LENGTH and text[26] == "Z" and _UTC_TIME.fullmatch(text):
        return text  # DMS's own shape: already fixed-width UTC
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        raise BadOrderKey("timestamp is not an ISO 8601 date-time") from None
    return (
        f"{parsed.year:04d}-{parsed.month:02d}-{parsed.day:02d}T{parsed.hour:02d}:"
        f"{parsed.minute:02d}:{parsed.second:02d}.{parsed.microsecond:06d}Z"
    )


def _fixed(digits: str, width: int) -> str | None:
    """ASCII decimal digits zero-padded to ``width``, or None when the number needs more."""
    significant = digits.lstrip("0")
    return significant.zfill(width) if len(significant) <= width else None


def _position_of_text(text: str) -> str | None:
    match = _PG_POSITION.fullmatch(text)
    if match:
        hi1, lo1, hi2, lo2 = match.groups()
        first = f"{int(hi1, 16):08X}/{int(lo1, 16):08X}"
        last = first if hi2 is None else f"{int(hi2, 16):08X}/{int(lo2, 16):08X}"
        return "P" + first + last + _PG_PAD
    match = _SQLSERVER_POSITION.fullmatch(text)
    if match:
        vlf, block, slot = match.groups()
        return f"S{int(vlf, 16):08X}{int(block, 16):08X}{int(slot, 16):04X}".ljust(
            POSITION_LENGTH, "0")
    match = _SCN_POSITION.fullmatch(text)
    if match:
        thread, scn = match.groups()
        scn_part = _fixed(scn, 30)
        if scn_part is None:
            return None
        return ("N" + scn_part + (thread or "").zfill(10)).ljust(POSITION_LENGTH, "0")
    match = _MYSQL_POSITION.fullmatch(text)
    if match:
        file_seq, offset, row = match.groups()
        if row is not None and len(row) > 11:
            return None
        row_index = -1 if row is None else int(row)
        if row_index < -1:
            return None
        row_part = _fixed(str(row_index + 1), 10)
        parts = (_fixed(file_seq, 10), _fixed(offset, 20), row_part)
        if None in parts:
            return None
        return ("M" + "".join(p for p in parts if p is not None)).ljust(POSITION_LENGTH, "0")
    match = _DB2_POSITION.fullmatch(text)
    if match:
        return ("D" + match.group(1).upper().zfill(32)).ljust(POSITION_LENGTH, "0")
    return None


def position_part(position: str | int | None) -> str | None:
    """A DMS ``stream-position`` as 44 characters that sort like the source log, or None
    when it has no shape we know or a number too large for its field (see the module
    docstring for each engine's rule and its source)."""
    if position is None or isinstance(position, bool):
        return None
    if isinstance(position, int):
        if not 0 <= position < 10**30:
            return None
        scn = _fixed(str(position), 30)
        return None if scn is None else ("N" + scn).ljust(POSITION_LENGTH, "0")
    return _position_of_text(position.strip())


class SourcePosition(Protocol):
    """What the order key reads from a DMS record's metadata."""

    operation: str | None
    timestamp: str | None
    commit_timestamp: str | None
    stream_position: str | int | None
    transaction_record_id: int | None


def _record_part(record_id: int | None) -> str:
    if record_id is None:
        return _ZERO_RECORD
    if 0 <= record_id < _PADDED_COUNT:
        return _PADDED[record_id]
    if 0 <= record_id < 10**RECORD_LENGTH:
        return str(record_id).zfill(RECORD_LENGTH)
    raise BadOrderKey("transaction-record-id is not a non-negative integer of at most 10 digits")


def order_key(metadata: SourcePosition, sequence_number: str) -> str:
    """The order key of one DMS data record (layout and rules in the module docstring)."""
    if metadata.operation == "load":
        if metadata.timestamp is None:
            raise BadOrderKey("full-load record without a timestamp")
        read_time = timestamp_part(metadata.timestamp)
        return CLASS_LOAD + LOAD_TIME_UNKNOWN + read_time + _LOAD_POSITION_PAD + _ZERO_RECORD
    record_id = metadata.transaction_record_id
    record = (_PADDED[record_id] if type(record_id) is int and 0 <= record_id < _PADDED_COUNT
              else _record_part(record_id))
    commit_time = metadata.commit_timestamp
    if commit_time is not None:
        position = metadata.stream_position
        # DMS's own shapes: a UTC commit time and a PostgreSQL position with 8/8 upper-case
        # hex LSNs around a one-digit middle number, which the key drops (no parsing needed).
        if type(position) is str and _DMS_POSTGRES.fullmatch(commit_time + position):
            return f"2{commit_time}P{position[:17]}{position[20:]}{_PG_PAD}{record}"
        time = timestamp_part(commit_time)
        normalized = position_part(position)
        if normalized is not None:
            return CLASS_POSITION + time + normalized + record
    elif metadata.timestamp is not None:
        time = timestamp_part(metadata.timestamp)
    else:
        raise BadOrderKey("record without a timestamp")
    if (not sequence_number.isascii() or not sequence_number.isdigit()
            or len(sequence_number) > SEQUENCE_LENGTH):
        raise BadOrderKey("change without a usable stream position and no Kinesis sequence number")
    return CLASS_TIME + time + _ZERO_POSITION + record + sequence_number.zfill(SEQUENCE_LENGTH)


def with_load_time(key: str, time27: str) -> str:
    """A full-load key with ``LOAD_TIME_UNKNOWN`` replaced by the table's load start
    (27-char UTC form); any other key is returned as it is, so applying it twice is safe."""
    if len(time27) != TIME_LENGTH or not _UTC_TIME.fullmatch(time27):
        raise ValueError("load time must be a UTC time like 2021-08-16T09:12:03.100950Z")
    if key[:1] != CLASS_LOAD or key[TIME_START:TIME_END] != LOAD_TIME_UNKNOWN:
        return key
    return key[:TIME_START] + time27 + key[TIME_END:]


def is_newer(a: str, b: str) -> bool:
    """Whether the change with key ``a`` is newer than the change with key ``b``."""
    if a[0] == CLASS_POSITION == b[0]:
        return a[POSITION_START:] > b[POSITION_START:]
    return (a[TIME_START:TIME_END] + a[0] + a[POSITION_START:]
            > b[TIME_START:TIME_END] + b[0] + b[POSITION_START:])


def newest(keys: Iterable[str]) -> str:
    """The newest of some keys (by ``is_newer``; on equal keys, the first)."""
    return reduce(lambda best, key: key if is_newer(key, best) else best, keys)


def newer_sql(a: str, b: str) -> str:
    """A Redshift boolean expression, true when the key in SQL expression ``a`` is newer than
    the key in ``b`` (``is_newer``); NULL when either key is NULL.

    Uses only LEFT, SUBSTRING(s, start, length), ``||``, comparisons and AND/OR/NOT
    ("SUBSTRING function", Amazon Redshift Database Developer Guide: the two-argument form is
    for VARBYTE only). Comparisons are byte-wise for these ASCII keys, as in Redshift and in
    PostgreSQL's "C" collation. ``a`` and ``b`` are inserted twice each: pass column
    references or other cheap expressions.
    """
    rest = ORDER_KEY_MAX_LENGTH - POSITION_START

    def parts(x: str) -> tuple[str, str, str]:
        return (f"LEFT({x}, 1)", f"SUBSTRING({x}, {TIME_START + 1}, {TIME_LENGTH})",
                f"SUBSTRING({x}, {POSITION_START + 1}, {rest})")

    a_class, a_time, a_rest = parts(a)
    b_class, b_time, b_rest = parts(b)
    both_positioned = f"{a_class} = '{CLASS_POSITION}' AND {b_class} = '{CLASS_POSITION}'"
    return (
        f"(({both_positioned} AND {a_rest} > {b_rest}) OR "
        f"(NOT ({both_positioned}) AND "
        f"{a_time} || {a_class} || {a_rest} > {b_time} || {b_class} || {b_rest}))"
    )


def reduction_key_sql(key: str, all_positioned: str) -> str:
    """``shared.transform.reduction_key`` as a Redshift SQL expression: what the newest-per-key
    rule sorts on, given ``all_positioned`` (an SQL boolean: every candidate of the row is
    class 2). Sorting descending on it picks the change ``newest_change`` picks."""
    rest = ORDER_KEY_MAX_LENGTH - POSITION_START
    position = f"SUBSTRING({key}, {POSITION_START + 1}, {rest})"
    return (f"CASE WHEN {all_positioned} THEN {position} ELSE "
            f"SUBSTRING({key}, {TIME_START + 1}, {TIME_LENGTH}) || LEFT({key}, 1) || "
            f"{position} END")
