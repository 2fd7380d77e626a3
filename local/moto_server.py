"""moto's server, with the costs real AWS does not have taken out.

Two parts of moto grow with use in ways the services they stand in for do not, and on a
2-core machine they made every local benchmark measure moto:

- **Kinesis.** ``Shard.put_record`` lists every key of the shard to find the last sequence
  number, and ``Shard.get_records`` walks the shard from its first record on every call: a put
  or a get costs time in proportion to the records the stream holds, so a 100,000-change
  backlog drained slower and slower. A Kinesis shard's throughput does not depend on how much
  it retains ("Amazon Kinesis Data Streams Quotas and Limits": a shard takes 1 MiB or 1,000
  records per second and serves 2 MiB per second, whatever its retention holds). Here the
  last and first sequence numbers are read from the ends of the shard's ordered dict and a
  read starts at its position (a shard's sequence numbers are consecutive in moto; when
  they are not, moto's own walk runs).
- **Routing.** For every request moto's dispatcher lists its package directory (``isdir`` on
  every service module) under a lock; the list never changes while it runs, so it is read
  once.
- **Request log.** werkzeug writes a line per request to the log (through colorama on a
  terminal); only warnings and errors are logged.

Results are what moto returns, record for record; only the time to produce them changes.
``python -m local.moto_server`` takes moto.server's arguments.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

_PATCHED = False


def _last_key(records: Any) -> int:
    return next(reversed(records)) if records else 0


def _first_key(records: Any) -> int:
    return next(iter(records)) if records else 0


def patch() -> None:
    """Apply the patches to this process's moto (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    import moto.backends as backends
    from moto.kinesis.models import Shard

    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> Iterable[str]:
        return modules

    backends.list_of_moto_modules = list_of_moto_modules

    walk = Shard.get_records

    def get_records(self: Any, last_sequence_id: str, limit: int | None
                    ) -> tuple[list[Any], int, int]:
        records = self.records
        first, last = _first_key(records), _last_key(records)
        if not records or last - first + 1 != len(records):
            return walk(self, last_sequence_id, limit)
        after = int(last_sequence_id)
        begin = max(after + 1, first)
        end = last if limit is None else min(last, begin + limit - 1)
        results = [records[k] for k in range(begin, end + 1)]
        if not results:
            return [], after, 0
        behind = records[last].created_at - results[-1].created_at
        return results, results[-1].sequence_number, int(behind * 1000)

    Shard.get_records = get_records  # type: ignore[method-assign]
    Shard.get_max_sequence_number = (  # type: ignore[method-assign]
        lambda self: _last_key(self.records))
    Shard.get_min_sequence_number = (  # type: ignore[method-assign]
        lambda self: _first_key(self.records))
    _PATCHED = True


def main(argv: list[str] | None = None) -> None:
    patch()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
