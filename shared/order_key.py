"""Order keys: which of two changes of the same row is newer.

An order key is a fixed-layout string of ASCII digits, so comparing two keys as strings (in
Python, in Redshift, in any collation) compares the changes' source positions:

    phase(1) | time(20: YYYYMMDDHHMMSSffffff) | position(50) | record(10) [| sequence(60)]

- CDC changes (phase 1) use the source commit timestamp, the source log position
  (``stream-position``) and the change's place in its transaction
  (``transaction-record-id``), all from DMS's transaction details.
- Full-load rows (phase 0) sort before every CDC change of the same row; among themselves by
  the time DMS read them (a reload beats an earlier load).
- A CDC record without transaction details falls back to the message time plus the Kinesis
  sequence number; enable ``IncludeTransactionDetails`` (the template does) to avoid it.
The message-build ``timestamp`` is never the order of CDC changes when details are present.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_PG_POSITION = re.compile(
    r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\.(\d+)\.([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$"
)
_DIGIT_GROUPS = re.compile(r"\d+")
_ZERO_POSITION = "0" * 50
_ZERO_RECORD = "0" * 10
ORDER_KEY_MAX_LENGTH = 1 + 20 + 50 + 10 + 60


class BadOrderKey(ValueError):
    """The record's source position cannot be read."""


def timestamp_digits(text: str) -> str:
    """``2021-08-16T09:12:03.100950Z`` -> ``20210816091203100950`` (UTC, microseconds)."""
    if len(text) >= 20 and text[-1] == "Z" and text[4] == "-" and text[10] in "T ":
        fraction = text[20:-1] if len(text) > 20 else ""
        if (not fraction or fraction.isdigit()) and len(fraction) <= 6:
            digits = text[0:4] + text[5:7] + text[8:10] + text[11:13] + text[14:16] + text[17:19]
            if digits.isdigit():
                return digits + fraction.ljust(6, "0")
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadOrderKey("timestamp is not ISO 8601") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y%m%d%H%M%S%f")


def position_digits(position: Any) -> str:
    """Normalize a DMS ``stream-position`` to 50 digits that sort like the source log.

    PostgreSQL positions (``00000002/7C007178.3.00000002/7C007178``) become their two LSNs and
    the counter between them; other sources (e.g. a MySQL binlog ``file.000024:2345:...``)
    keep their first three integer groups.
    """
    text = str(position)
    match = _PG_POSITION.match(text)
    if match:
        first = (int(match.group(1), 16) << 32) | int(match.group(2), 16)
        second = (int(match.group(4), 16) << 32) | int(match.group(5), 16)
        return f"{first:020d}{int(match.group(3)):010d}{second:020d}"
    groups = [int(g) for g in _DIGIT_GROUPS.findall(text)[:3]]
    groups += [0] * (3 - len(groups))
    if groups[0] >= 10**20 or groups[1] >= 10**10 or groups[2] >= 10**20:
        raise BadOrderKey("stream-position has a number too large to order")
    return f"{groups[0]:020d}{groups[1]:010d}{groups[2]:020d}"


def order_key(metadata: dict[str, Any], sequence_number: str) -> str:
    """The order key of one DMS data record (see the module docstring)."""
    message_time = metadata.get("timestamp")
    if metadata.get("operation") == "load":
        if not isinstance(message_time, str):
            raise BadOrderKey("load record without a timestamp")
        return "0" + timestamp_digits(message_time) + _ZERO_POSITION + _ZERO_RECORD
    commit_time = metadata.get("commit-timestamp")
    if isinstance(commit_time, str):
        position = metadata.get("stream-position")
        record_id = metadata.get("transaction-record-id", 0)
        if type(record_id) is not int or not 0 <= record_id < 10**10:
            raise BadOrderKey("transaction-record-id is not a small non-negative integer")
        return (
            "1"
            + timestamp_digits(commit_time)
            + (position_digits(position) if position is not None else _ZERO_POSITION)
            + f"{record_id:010d}"
        )
    if not isinstance(message_time, str):
        raise BadOrderKey("CDC record with neither commit-timestamp nor timestamp")
    if not sequence_number.isdigit() or len(sequence_number) > 60:
        raise BadOrderKey("CDC record without transaction details and no Kinesis sequence number")
    return (
        "1" + timestamp_digits(message_time) + _ZERO_POSITION + _ZERO_RECORD
        + sequence_number.rjust(60, "0")
    )
