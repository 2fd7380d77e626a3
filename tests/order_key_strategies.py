"""Hypothesis strategies for order keys: DMS record metadata of every source engine, pairs of
changes in log order, and any order key the decoder builds. Shared by the unit tests of
``shared.order_key`` and the functional test of its SQL twin (``newer_sql``); the position
shapes and their sources are listed in ``tests/unit/test_order_key.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import assume
from hypothesis import strategies as st

from shared.order_key import order_key, timestamp_part, with_load_time

SEQ = "49590338271490256608559692538361571095921575989136588898"


@dataclass(frozen=True)
class Source:
    """The metadata fields of one DMS record that the order key reads."""

    operation: str | None = "update"
    timestamp: str | None = "2024-07-29T00:58:17.983670Z"
    commit_timestamp: str | None = "2024-07-29T00:58:17.974340Z"
    stream_position: str | int | None = "00000002/7C007178.3.00000002/7C007178"
    transaction_record_id: int | None = 1


times = st.datetimes().map(lambda d: d.isoformat(sep=" ") + "Z")
record_ids = st.integers(0, 9_999_999_999)


def _in_log_order(draw: st.DrawFn, points: st.SearchStrategy[tuple[int, ...]]
                  ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    a, b = draw(points), draw(points)
    assume(a != b)
    return (a, b) if a < b else (b, a)


def _hex(draw: st.DrawFn, value: int, width: int) -> str:
    text = f"{value:X}" if draw(st.booleans()) else f"{value:0{width}X}"
    return text.lower() if draw(st.booleans()) else text


@st.composite
def postgres_pair(draw: st.DrawFn) -> tuple[Source, Source]:
    """Two changes in WAL order: LSN, then place in the transaction."""
    older, newer = _in_log_order(draw, st.tuples(st.integers(0, 2**64 - 1), record_ids))

    def source(lsn: int, record_id: int) -> Source:
        text = _hex(draw, lsn >> 32, 8) + "/" + _hex(draw, lsn & 0xFFFFFFFF, 8)
        counter = draw(st.integers(0, 99))  # not a sequence: any value
        return Source(commit_timestamp=draw(times), stream_position=f"{text}.{counter}.{text}",
                      transaction_record_id=record_id)

    return source(*older), source(*newer)


base_names = st.text(st.characters(codec="ascii", exclude_characters=":\n"), max_size=20)


@st.composite
def mysql_pair(draw: st.DrawFn) -> tuple[Source, Source]:
    """Two row changes in binlog order: file sequence, position, row index (-1 first)."""
    older, newer = _in_log_order(draw, st.tuples(
        st.integers(1, 9_999_999_999), st.integers(4, 2**64 - 1), st.integers(-1, 10**6)))
    base = draw(base_names)

    def source(file_seq: int, offset: int, row: int) -> Source:
        name = f"{base}.{file_seq:06d}"
        if row == -1 and draw(st.booleans()):
            text = f"{name}:{offset}"  # the short file:position form
        else:
            tail = draw(st.integers(0, 2**64))
            text = f"{name}:{offset}:{row}:{offset + 62}:{tail}:{name}:{max(offset - 62, 4)}"
        return Source(commit_timestamp=draw(times), stream_position=text,
                      transaction_record_id=None)

    return source(*older), source(*newer)


@st.composite
def sqlserver_pair(draw: st.DrawFn) -> tuple[Source, Source]:
    """Two changes in LSN order (VLF, block, slot), written as hex 8:8:4."""
    older, newer = _in_log_order(draw, st.tuples(
        st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1),
        record_ids))

    def source(vlf: int, block: int, slot: int, record_id: int) -> Source:
        text = f"{_hex(draw, vlf, 8)}:{_hex(draw, block, 8)}:{_hex(draw, slot, 4)}"
        return Source(commit_timestamp=draw(times), stream_position=text,
                      transaction_record_id=record_id)

    return source(*older), source(*newer)


@st.composite
def oracle_pair(draw: st.DrawFn) -> tuple[Source, Source]:
    """Two changes in SCN order, single instance or RAC (any thread), text or JSON number."""
    older, newer = _in_log_order(draw, st.tuples(st.integers(0, 10**30 - 1), record_ids))
    rac = draw(st.booleans())

    def source(scn: int, record_id: int) -> Source:
        position: str | int
        if rac:
            position = f"{draw(st.integers(1, 64))}{draw(st.sampled_from('.:'))}{scn}"
        else:
            position = draw(st.sampled_from([scn, str(scn)]))
        return Source(commit_timestamp=draw(times), stream_position=position,
                      transaction_record_id=record_id)

    older_source, newer_source = source(*older), source(*newer)
    assume(older[0] < newer[0] or not rac)  # one SCN on two threads has no log order
    return older_source, newer_source


@st.composite
def db2_pair(draw: st.DrawFn) -> tuple[Source, Source]:
    older, newer = _in_log_order(draw, st.tuples(st.integers(0, 16**20 - 1), record_ids))

    def source(lsn: int, record_id: int) -> Source:
        return Source(commit_timestamp=draw(times), stream_position="0x" + _hex(draw, lsn, 20),
                      transaction_record_id=record_id)

    return source(*older), source(*newer)


@st.composite
def any_source(draw: st.DrawFn) -> Source:
    """A DMS data record of any class: load, positioned change, change ordered by time."""
    kind = draw(st.sampled_from(["load", "positioned", "time"]))
    if kind == "load":
        return Source(operation="load", timestamp=draw(times), commit_timestamp=None,
                      stream_position=None, transaction_record_id=None)
    pair = draw(st.sampled_from([postgres_pair(), mysql_pair(), sqlserver_pair(),
                                 oracle_pair(), db2_pair()]))
    source = draw(pair)[0]
    if kind == "time":
        return Source(timestamp=draw(times), commit_timestamp=draw(st.none() | times),
                      stream_position=draw(st.sampled_from([None, "unparsed"])),
                      transaction_record_id=source.transaction_record_id)
    return source


@st.composite
def any_key(draw: st.DrawFn) -> str:
    """An order key as the decoder builds it; load keys sometimes with their load time."""
    made = order_key(draw(any_source()), str(draw(st.integers(0, 10**60 - 1))))
    if made[0] == "0" and draw(st.booleans()):
        made = with_load_time(made, timestamp_part(draw(times)))
    return made
