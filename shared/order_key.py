"""Order keys: which of two changes of the same row is newer.

An order key is a fixed-layout ASCII string, so comparing two keys as strings (in Python, in
Redshift, in PostgreSQL's C collation) compares the changes' source positions:

    phase(1) | commit time(27) | stream position(44) | record in transaction(10) [| seq(60)]

- CDC changes (phase ``1``) use DMS's transaction details: the source commit timestamp
  (``2021-08-16T09:12:03.100950Z``), the source log position (``stream-position``, PostgreSQL
  LSNs as fixed-width hex) and the change's place in its transaction
  (``transaction-record-id``).
- Full-load rows (phase ``0``) sort before every CDC change of the same row; among themselves
  by the time DMS read them (a reload beats an earlier load).
- A CDC record without transaction details falls back to the message time plus the Kinesis
  sequence number; enable ``IncludeTransactionDetails`` (the template does) to avoid it.
The message-build ``timestamp`` is never the order of CDC changes when details are present.
Every part has a fixed width, so the punctuation sits at the same places in every key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Protocol

_PG_POSITION = re.compile(
    r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\.(\d+)\.([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$"
)
_DIGIT_GROUPS = re.compile(r"\d+")
_ZERO_POSITION = "0" * 44
_ZERO_RECORD = "0" * 10
ORDER_KEY_MAX_LENGTH = 1 + 27 + 44 + 10 + 60
# Zero-padded small numbers, looked up instead of formatted on the hot path.
_PADDED_COUNT = 4096
_PADDED = [str(i).zfill(10) for i in range(_PADDED_COUNT)]
_PADDED_COUNTERS = {str(i): padded for i, padded in enumerate(_PADDED)}


class BadOrderKey(ValueError):
    """The record's source position cannot be read."""


def timestamp_part(text: str) -> str:
    """Any ISO 8601 time as ``2021-08-16T09:12:03.100950Z`` (UTC, microseconds, 27 chars)."""
    if len(text) == 27 and text[26] == "Z" and text[19] == "." and text[10] == "T":
        return text  # DMS's own shape: already fixed-width UTC
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadOrderKey("timestamp is not ISO 8601") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def position_part(position: Any) -> str:
    """Normalize a DMS ``stream-position`` to 44 characters that sort like the source log.

    PostgreSQL positions (``00000002/7C007178.3.00000002/7C007178``) keep both LSNs as
    zero-padded upper-case hex around the zero-padded counter between them; other sources
    (e.g. a MySQL binlog ``file.000024:2345:...``) keep their first three integer groups.
    """
    text = str(position)
    first, _, rest = text.partition(".")
    counter, _, second = rest.partition(".")
    if (len(first) == 17 == len(second) and first[8] == "/" == second[8]
            and counter.isdigit() and len(counter) <= 10):
        return first + counter.zfill(10) + second  # DMS's zero-padded PostgreSQL form
    match = _PG_POSITION.match(text)
    if match:
        hi1, lo1, count, hi2, lo2 = (match.group(i) for i in range(1, 6))
        if len(count) <= 10:
            return (f"{int(hi1, 16):08X}/{int(lo1, 16):08X}{int(count):010d}"
                    f"{int(hi2, 16):08X}/{int(lo2, 16):08X}")
    groups = [int(g) for g in _DIGIT_GROUPS.findall(text)[:3]]
    groups += [0] * (3 - len(groups))
    if groups[0] >= 10**17 or groups[1] >= 10**10 or groups[2] >= 10**17:
        raise BadOrderKey("stream-position has a number too large to order")
    return f"{groups[0]:017d}{groups[1]:010d}{groups[2]:017d}"


class SourcePosition(Protocol):
    """What the order key reads from a DMS record's metadata."""

    operation: str | None
    timestamp: str | None
    commit_timestamp: str | None
    stream_position: str | int | None
    transaction_record_id: int | None


def order_key(metadata: SourcePosition, sequence_number: str) -> str:
    """The order key of one DMS data record (see the module docstring)."""
    commit_time = metadata.commit_timestamp
    if commit_time is not None and metadata.operation != "load":
        position = metadata.stream_position
        record_id = metadata.transaction_record_id or 0
        if not 0 <= record_id < 10**10:
            raise BadOrderKey("transaction-record-id is not a small non-negative integer")
        if len(commit_time) == 27 and commit_time[26] == "Z" and type(position) is str:
            # DMS's own shapes (UTC commit time, zero-padded LSNs): no parsing needed.
            parts = position.split(".")
            if len(parts) == 3:
                first, counter, second = parts
                padded = _PADDED_COUNTERS.get(counter)
                if padded is not None and len(first) == 17 and len(second) == 17:
                    record = (_PADDED[record_id] if record_id < _PADDED_COUNT
                              else str(record_id).zfill(10))
                    return f"1{commit_time}{first}{padded}{second}{record}"
        return (
            "1"
            + timestamp_part(commit_time)
            + (position_part(position) if position is not None else _ZERO_POSITION)
            + str(record_id).zfill(10)
        )
    message_time = metadata.timestamp
    if message_time is None:
        raise BadOrderKey("record without a timestamp")
    if metadata.operation == "load":
        return "0" + timestamp_part(message_time) + _ZERO_POSITION + _ZERO_RECORD
    if not sequence_number.isdigit() or len(sequence_number) > 60:
        raise BadOrderKey("CDC record without transaction details and no Kinesis sequence number")
    return (
        "1" + timestamp_part(message_time) + _ZERO_POSITION + _ZERO_RECORD
        + sequence_number.zfill(60)
    )
