"""The whole core for one batch: decode, validate, apply PII, reduce to the newest change per key.

Bad records become rejects with a reason and the rest of the batch goes on; records that are
not ours (control records, tables not in the spec) are skipped and counted.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from shared.decode import RecordDecoder, Rejected, Skipped, payload_text
from shared.records import Change, Reject, StreamRecord, TransformResult
from shared.spec import PipelineSpec


def reduce_changes(changes: Iterable[Change]) -> dict[str, list[Change]]:
    """Keep the newest change per (table, key); on equal order keys the later one wins."""
    newest: dict[str, dict[tuple[object, ...], Change]] = {}
    for change in changes:
        by_key = newest.get(change.table)
        if by_key is None:
            by_key = newest[change.table] = {}
        current = by_key.setdefault(change.key, change)
        if current is not change and change.order_key >= current.order_key:
            by_key[change.key] = change
    return {table: list(by_key.values()) for table, by_key in newest.items()}


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is built.

    A batch allocates tens of thousands of small acyclic containers (dicts, tuples) that stay
    alive until the batch is written; each allocation burst would otherwise trigger collections
    that re-scan all of them. Nothing built here can form a cycle, so nothing leaks.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Transformer:
    """Built once per spec and key (per Lambda container, per Spark executor)."""

    def __init__(self, spec: PipelineSpec, hmac_key: bytes | None) -> None:
        self.spec = spec
        self._decoder = RecordDecoder(spec, hmac_key)

    def transform(self, records: Iterable[StreamRecord]) -> TransformResult:
        with _no_cyclic_gc():
            return self._transform(records)

    def _transform(self, records: Iterable[StreamRecord]) -> TransformResult:
        result = TransformResult()
        decode = self._decoder.decode
        valid: list[Change] = []
        append, extend = valid.append, valid.extend
        count = 0
        for record in records:
            count += 1
            try:
                decoded = decode(record)
                if isinstance(decoded, list):
                    extend(decoded)
                else:
                    append(decoded)
            except Rejected as exc:
                result.rejects.append(
                    Reject(exc.reason, payload_text(record), record.sequence_number,
                           record.partition_key, record.shard_id, exc.table)
                )
            except Skipped as exc:
                result.skipped[exc.category] += 1
        result.records_in = count
        result.changes_in = len(valid)
        result.changes = reduce_changes(valid)
        result.newest_commit_timestamp = max(
            (c.commit_timestamp for c in valid if c.commit_timestamp is not None), default=None
        )
        return result
