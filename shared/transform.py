"""The whole core for one batch: decode, validate, apply PII, keep the newest change per key.

Bad records become rejects with a reason and the rest of the batch goes on; records that are
not ours (control records, tables not in the spec) are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.decode import RecordDecoder, Rejected, Skipped, payload_text
from shared.records import Change, Reject, StreamRecord, TransformResult
from shared.spec import PipelineSpec


class Transformer:
    """Built once per spec and key (per Lambda container, per Spark executor)."""

    def __init__(self, spec: PipelineSpec, hmac_key: bytes | None) -> None:
        self.spec = spec
        self._decoder = RecordDecoder(spec, hmac_key)

    def transform(self, records: Iterable[StreamRecord]) -> TransformResult:
        """Decode every record and keep, per (table, key), the change with the largest order
        key (on a tie the later one), in one pass."""
        result = TransformResult()
        decode = self._decoder.decode
        newest: dict[str, dict[tuple[object, ...], Change]] = {}
        newest_commit = ""
        count = valid = 0
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
            for change in decoded:
                valid += 1
                by_key = newest.get(change.table)
                if by_key is None:
                    by_key = newest[change.table] = {}
                current = by_key.setdefault(change.key, change)
                if current is not change and change.order_key >= current.order_key:
                    by_key[change.key] = change
                commit = change.commit_timestamp
                if commit is not None and commit > newest_commit:
                    newest_commit = commit
        result.records_in = count
        result.changes_in = valid
        result.changes = {table: list(by_key.values()) for table, by_key in newest.items()}
        result.newest_commit_timestamp = newest_commit or None
        return result
