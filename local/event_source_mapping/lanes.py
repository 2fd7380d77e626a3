"""The pure rules of concurrent batches per shard (``ParallelizationFactor``).

"How Lambda processes records from Amazon Kinesis Data Streams"
(https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html), "Concurrent batches per
shard": with a ParallelizationFactor above 1, Lambda processes up to that many batches of one
shard at once and still ensures in-order processing at the partition-key level. Lambda does
not document how it spreads a shard's keys over the concurrent batches; here a record goes to
lane ``MD5(partition key) mod factor`` (the hash Kinesis itself maps partition keys to shards
with), so one key always lands in one lane, in sequence order.

The shard's checkpoint is the highest sequence number all of whose predecessors in the shard
are finished, whatever lane they went to: a record still in flight (or failing and retried)
in one lane holds the checkpoint back, while the other lanes go on with other keys. After a
restart everything past the checkpoint comes again (at least once).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable

MAX_PARALLELIZATION_FACTOR = 10


def lane_of(partition_key: str, factor: int) -> int:
    """The lane (0 .. factor - 1) of a partition key: the same key, the same lane."""
    if not 1 <= factor <= MAX_PARALLELIZATION_FACTOR:
        raise ValueError(f"the parallelization factor must be 1..{MAX_PARALLELIZATION_FACTOR}, "
                         f"not {factor}")
    if factor == 1:
        return 0
    digest = hashlib.md5(partition_key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest, "big") % factor


class ShardProgress:
    """The records read from one shard and not checkpointed yet, in sequence order, and which
    of them are finished (processed, or given up and reported)."""

    def __init__(self) -> None:
        self._order: deque[str] = deque()
        self._finished: set[str] = set()

    def __len__(self) -> int:
        """Records read and not checkpointed (finished ones behind an unfinished one count)."""
        return len(self._order)

    def read(self, sequence_number: str) -> None:
        """A record was read; records must be read in the shard's order."""
        if self._order and int(sequence_number) <= int(self._order[-1]):
            raise ValueError(f"sequence number {sequence_number} read after {self._order[-1]}: "
                             "records of a shard must be read in order")
        self._order.append(sequence_number)

    def finish(self, sequence_numbers: Iterable[str]) -> str | None:
        """Mark records finished; returns the new checkpoint (the last of the finished head of
        the shard), or None if the checkpoint does not move."""
        for sequence_number in sequence_numbers:
            self._finished.add(sequence_number)
        checkpoint = None
        while self._order and self._order[0] in self._finished:
            checkpoint = self._order.popleft()
            self._finished.discard(checkpoint)
        return checkpoint

    @property
    def unfinished(self) -> int:
        return len(self._order) - len(self._finished)
