"""Parse wal2json (format-version 2) output into whole source transactions.

Logical decoding hands over one wal2json message at a time (a streamed ``XLogData`` message,
or a row of ``pg_logical_slot_peek_changes``), each with its LSN: ``B`` (begin), one per change
(``I``, ``U``, ``D``, ``T`` for truncate), ``M`` (a logical message, ``pg_logical_emit_message``)
and ``C`` (commit). Decoding hands transactions over in commit order and never interleaves
them, so a ``B`` ... ``C`` run is one transaction; ``TransactionAssembler`` returns each once
its ``C`` arrives.

Numbers are parsed exactly (``Decimal`` for anything with a fraction), because wal2json writes
``numeric`` values as raw JSON numbers of any precision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

CHANGE_ACTIONS = frozenset(("I", "U", "D", "T"))


class Wal2JsonError(ValueError):
    """A wal2json message that does not have the expected shape (never quotes row values)."""


def parse_lsn(text: str) -> int:
    """``0/1929A48`` -> the LSN as a 64-bit integer."""
    high, sep, low = text.partition("/")
    if not sep:
        raise Wal2JsonError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    """An LSN as DMS writes it in a PostgreSQL stream position: ``00000002/7C007178``."""
    return f"{lsn >> 32:08X}/{lsn & 0xFFFFFFFF:08X}"


def pg_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL writes it (``2/7C007178``), for ``pg_lsn`` parameters."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def commit_time_iso(text: str) -> str:
    """wal2json's commit time (``2024-07-29 00:58:17.98367+00``) as DMS writes
    ``commit-timestamp``: UTC, ISO 8601, always six fraction digits and ``Z``."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise Wal2JsonError("commit timestamp is not ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a change: name, PostgreSQL type name (``format_type``) and value."""

    name: str
    type: str
    value: Any


@dataclass(frozen=True, slots=True)
class RowChange:
    """One row change as wal2json decoded it.

    ``columns`` is the new row (inserts, updates); ``identity`` the old row's replica identity
    (the whole row under ``REPLICA IDENTITY FULL``; updates and deletes); ``pk`` the names of
    the table's primary-key columns (``include-pk``), empty for a table without one.
    """

    action: str
    schema: str
    table: str
    lsn: int
    columns: tuple[Column, ...] = ()
    identity: tuple[Column, ...] = ()
    pk: tuple[str, ...] = ()


@dataclass(slots=True)
class Transaction:
    """A committed source transaction.

    ``commit_lsn`` is where the commit record starts, ``end_lsn`` where it ends (the position
    to confirm to the slot once the transaction is delivered).
    """

    xid: int
    commit_lsn: int
    end_lsn: int
    commit_time: str  # DMS's commit-timestamp form
    changes: list[RowChange] = field(default_factory=list)
    # Transactional logical messages in it: (prefix, content).
    messages: list[tuple[str, str]] = field(default_factory=list)


def _loads(data: str) -> dict[str, Any]:
    try:
        message = json.loads(data, parse_float=Decimal)
    except json.JSONDecodeError:
        raise Wal2JsonError("wal2json message is not JSON") from None
    if not isinstance(message, dict) or "action" not in message:
        raise Wal2JsonError("wal2json message without an action")
    return message


def _columns(raw: Any) -> tuple[Column, ...]:
    if raw is None:
        return ()
    return tuple(Column(str(c["name"]), str(c.get("type", "")), c.get("value")) for c in raw)


def parse_change(message: dict[str, Any]) -> RowChange:
    """A change message (``I``/``U``/``D``/``T``) as a ``RowChange``."""
    try:
        return RowChange(
            action=message["action"],
            schema=str(message["schema"]),
            table=str(message["table"]),
            lsn=parse_lsn(str(message["lsn"])),
            columns=_columns(message.get("columns")),
            identity=_columns(message.get("identity")),
            pk=tuple(str(p["name"]) for p in message.get("pk") or ()),
        )
    except (KeyError, TypeError):
        raise Wal2JsonError(f"wal2json {message.get('action')!r} message is incomplete") from None


class TransactionAssembler:
    """wal2json messages in, whole transactions out, in commit order.

    Needs the options ``format-version=2``, ``include-xids``, ``include-timestamp`` and
    ``include-lsn``. A non-transactional ``M`` message is ignored; a transactional one is kept
    in its transaction's ``messages``."""

    def __init__(self) -> None:
        self._current: Transaction | None = None

    def add(self, lsn: int, data: str) -> Transaction | None:
        """One message and its LSN; the transaction it completes, if it is a ``C``."""
        message = _loads(data)
        action = message["action"]
        current = self._current
        if action == "B":
            try:
                self._current = Transaction(
                    xid=int(message["xid"]),
                    commit_lsn=parse_lsn(str(message["lsn"])),
                    end_lsn=parse_lsn(str(message["nextlsn"])),
                    commit_time=commit_time_iso(str(message["timestamp"])),
                )
            except KeyError as exc:
                raise Wal2JsonError(
                    f"wal2json begin message lacks {exc.args[0]!r}: are include-xids, "
                    "include-timestamp and include-lsn on?") from None
        elif action in CHANGE_ACTIONS:
            if current is None:
                raise Wal2JsonError("wal2json change outside a transaction")
            current.changes.append(parse_change(message))
        elif action == "M":
            if current is not None and message.get("transactional"):
                current.messages.append((str(message.get("prefix", "")),
                                         str(message.get("content", ""))))
        elif action == "C":
            if current is None:
                raise Wal2JsonError("wal2json commit without a begin")
            # The commit message's own LSN is the end of the commit record: the slot position.
            current.end_lsn = lsn
            self._current = None
            return current
        return None

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction has begun and not committed yet."""
        return self._current is not None
