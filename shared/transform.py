"""The whole core for one batch: decode, validate, apply PII, reduce to the newest change per key.

Bad records become rejects with a reason and the rest of the batch goes on; records that are
not ours (control records, tables not in the spec) are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.decode import RecordDecoder, Rejected, Skipped, payload_text
from shared.records import Change, Reject, StreamRecord, TransformResult
from shared.spec import PipelineSpec


def reduce_changes(changes: Iterable[Change]) -> dict[str, list[Change]]:
    """Keep the newest change per (table, key); on equal order keys the later one wins."""
    newest: dict[tuple[str, tuple[object, ...]], Change] = {}
    for change in changes:
        slot = (change.table, change.key)
        current = newest.get(slot)
        if current is None or change.order_key >= current.order_key:
            newest[slot] = change
    by_table: dict[str, list[Change]] = {}
    for change in newest.values():
        by_table.setdefault(change.table, []).append(change)
    return by_table


class Transformer:
    """Built once per spec and key (per Lambda container, per Spark executor)."""

    def __init__(self, spec: PipelineSpec, hmac_key: bytes | None) -> None:
        self.spec = spec
        self._decoder = RecordDecoder(spec, hmac_key)

    def transform(self, records: Iterable[StreamRecord]) -> TransformResult:
        result = TransformResult()
        decode = self._decoder.decode
        valid: list[Change] = []
        newest_commit: str | None = None
        for record in records:
            result.records_in += 1
            try:
                changes = decode(record)
            except Rejected as exc:
                result.rejects.append(
                    Reject(exc.reason, payload_text(record), record.sequence_number,
                           record.partition_key, record.shard_id, exc.table)
                )
                continue
            except Skipped as exc:
                result.skipped[exc.category] += 1
                continue
            commit = changes[-1].commit_timestamp
            if commit is not None and (newest_commit is None or commit > newest_commit):
                newest_commit = commit
            valid.extend(changes)
        result.changes_in = len(valid)
        result.changes = reduce_changes(valid)
        result.newest_commit_timestamp = newest_commit
        return result
