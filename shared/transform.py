"""The whole core for one batch: decode, validate, apply PII, keep the newest change per key.

Bad records become rejects with a reason and the rest of the batch goes on; records that are
not ours (tables not in the spec, DMS's own tables) are skipped and counted by name; control
records of spec tables become ``TableEvent``s (truncate, added columns) for the writer.

Two steps, so the caller can read what the reduction needs from the warehouse in between:
``decode`` (pure, per record) and ``reduce`` (the newest change per key, given the load start
of every table whose full-load rows the batch holds: see ``shared.order_key``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.decode import RecordDecoder, Rejected, Skipped, TableControl, payload_text
from shared.order_key import (
    CLASS_LOAD,
    CLASS_POSITION,
    POSITION_START,
    TIME_END,
    TIME_LENGTH,
    TIME_START,
    with_load_time,
)
from shared.records import Change, Reject, StreamRecord, TransformResult
from shared.spec import PipelineSpec


@dataclass(slots=True)
class DecodedBatch:
    """Every valid change of a batch in stream order, plus what did not decode to one."""

    result: TransformResult = field(default_factory=TransformResult)
    changes: list[Change] = field(default_factory=list)

    @property
    def load_tables(self) -> set[str]:
        """The tables whose full-load rows the batch holds."""
        return {c.table for c in self.changes if c.order_key[0] == CLASS_LOAD}


def reduction_key(order_key: str, all_positioned: bool) -> str:
    """What the newest-per-key rule compares (the Glue path computes the same in Spark):
    among changes that all carry a log position, the position and place in the transaction;
    as soon as one does not, time first (``shared.order_key.is_newer`` pairwise)."""
    if all_positioned:
        return order_key[POSITION_START:]
    return order_key[TIME_START:TIME_END] + order_key[0] + order_key[POSITION_START:]


def newest_change(candidates: list[Change]) -> Change:
    """The newest of several changes of one row, in stream order (on a tie, the later)."""
    all_positioned = all(c.order_key[0] == CLASS_POSITION for c in candidates)
    best = candidates[0]
    best_key = reduction_key(best.order_key, all_positioned)
    for change in candidates[1:]:
        key = reduction_key(change.order_key, all_positioned)
        if key >= best_key:
            best, best_key = change, key
    return best


def kept_values(candidates: Sequence[tuple[bool, Mapping[str, Any]]],
                keep: Sequence[str]) -> dict[str, Any]:
    """For a table's ``keep_when_null`` columns: the values the newest change (last of
    ``candidates``, (deleted, values) oldest first by ``reduction_key``) lacks, taken from the
    newest older change that carries one, never from before a delete. The Glue path calls it
    too (``shared.glue.executors``)."""
    deleted, newest_values = candidates[-1]
    if deleted:
        return {}
    filled: dict[str, Any] = {}
    for column in keep:
        if newest_values.get(column) is not None:
            continue
        for older_deleted, values in reversed(candidates[:-1]):
            if older_deleted:
                break
            if values.get(column) is not None:
                filled[column] = values[column]
                break
    return filled


def newest_keeping_values(candidates: list[Change], keep: Sequence[str]) -> Change:
    """``newest_change`` for a table with ``keep_when_null`` columns, filled by
    ``kept_values`` from the older changes of the batch."""
    all_positioned = all(c.order_key[0] == CLASS_POSITION for c in candidates)
    ordered = sorted(candidates, key=lambda c: reduction_key(c.order_key, all_positioned))
    best = ordered[-1]
    filled = kept_values([(c.deleted, {k: getattr(c.row, k) for k in keep}) for c in ordered],
                         keep)
    for column, value in filled.items():
        setattr(best.row, column, value)
    return best


def apply_load_start(change: Change, load_start: str) -> None:
    """A full-load row read after its table's recorded load start takes that start as its
    time, so it beats the CDC changes committed before the load began (a reload repairs)."""
    key = change.order_key
    if key[0] == CLASS_LOAD and key[POSITION_START:POSITION_START + TIME_LENGTH] >= load_start:
        change.order_key = change.row.cdc_order_key = with_load_time(key, load_start)


class Transformer:
    """Built once per spec and key (per Lambda container, per Spark executor)."""

    def __init__(self, spec: PipelineSpec, hmac_key: bytes | None) -> None:
        self.spec = spec
        self._decoder = RecordDecoder(spec, hmac_key)

    def transform(self, records: Iterable[StreamRecord],
                  load_starts: Mapping[str, str] | None = None) -> TransformResult:
        return self.reduce(self.decode(records), load_starts or {})

    def decode(self, records: Iterable[StreamRecord]) -> DecodedBatch:
        batch = DecodedBatch()
        result = batch.result
        decode = self._decoder.decode
        append = batch.changes.extend
        by_table: dict[str, str] = {}
        count = 0
        for record in records:
            count += 1
            try:
                decoded = decode(record)
            except Rejected as exc:
                result.rejects.append(
                    Reject(exc.reason, payload_text(record), record.sequence_number,
                           record.partition_key, record.shard_id, exc.table)
                )
                continue
            except Skipped as exc:
                result.skipped[exc.category] += 1
                continue
            except TableControl as exc:
                result.table_events.append(exc.event)
                continue
            append(decoded)
            for change in decoded:
                commit = change.commit_timestamp
                if commit is not None and commit > by_table.get(change.table, ""):
                    by_table[change.table] = commit
        result.records_in = count
        result.changes_in = len(batch.changes)
        result.newest_commit_by_table = by_table
        result.newest_commit_timestamp = max(by_table.values(), default=None)
        return batch

    def reduce(self, batch: DecodedBatch, load_starts: Mapping[str, str]) -> TransformResult:
        """Keep, per (table, key), the newest change (``newest_change``). A truncate in the
        batch is applied by the writer, whose guard then drops the changes it made obsolete."""
        result = batch.result
        first: dict[str, dict[tuple[object, ...], Change]] = {}
        repeated: dict[tuple[str, tuple[object, ...]], list[Change]] = {}
        for change in batch.changes:
            if load_starts and change.order_key[0] == CLASS_LOAD:
                start = load_starts.get(change.table)
                if start is not None:
                    apply_load_start(change, start)
            by_key = first.get(change.table)
            if by_key is None:
                by_key = first[change.table] = {}
            current = by_key.setdefault(change.key, change)
            if current is not change:
                repeated.setdefault((change.table, change.key), [current]).append(change)
        for (table, key), candidates in repeated.items():
            keep = self.spec.tables[table].keep_when_null
            first[table][key] = (newest_keeping_values(candidates, keep) if keep
                                 else newest_change(candidates))
        result.changes = {table: list(by_key.values()) for table, by_key in first.items()}
        return result
