"""Plain data types that flow through the core."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record as a consumer received it.

    ``data`` is the base64 text Lambda hands over, or the raw bytes a Kinesis reader
    (Glue, boto3 GetRecords) returns.
    """

    data: str | bytes
    sequence_number: str
    partition_key: str = ""
    shard_id: str = ""


class Change(msgspec.Struct, gc=False):
    """One row change of one source table, validated and with PII already applied.

    ``row`` is the table's typed row: a msgspec Struct with every column in spec order
    (``None`` for the non-key columns of a delete), then the order key and deleted flag.
    ``order_key`` is a fixed-layout string; a larger one is a newer change of the same row.
    A batch holds tens of thousands of these and none can be part of a reference cycle, so
    they are not tracked by the cyclic garbage collector (``gc=False``).
    """

    table: str
    key: tuple[Any, ...]
    row: Any
    deleted: bool
    order_key: str
    operation: str
    sequence_number: str
    commit_timestamp: str | None = None

    @property
    def values(self) -> dict[str, Any]:
        """The table's columns as a plain dict (for tests and tools; the hot path uses ``row``)."""
        values = msgspec.structs.asdict(self.row)
        del values["cdc_order_key"], values["cdc_deleted"]
        return values


@dataclass(frozen=True, slots=True)
class Reject:
    """A record that can never be applied, with a reason that holds no record values.

    ``payload`` is the original record data (base64 text) so it can be replayed once fixed.
    """

    reason: str
    payload: str
    sequence_number: str
    partition_key: str = ""
    shard_id: str = ""
    table: str | None = None


@dataclass(frozen=True, slots=True)
class TableEvent:
    """A DMS control record that changes a spec table as a whole (not one row).

    ``kind`` is ``TRUNCATE`` (every row of the table older than ``order_key`` is gone) or
    ``ADD_COLUMNS`` (``columns``: (name, spec type) of source columns the spec does not have,
    from the record's ``table-def``).
    """

    table: str
    kind: str
    order_key: str
    sequence_number: str
    columns: tuple[tuple[str, str], ...] = ()


TRUNCATE, ADD_COLUMNS = "TRUNCATE", "ADD_COLUMNS"


@dataclass(slots=True)
class TransformResult:
    """The outcome of the core for one batch of stream records."""

    changes: dict[str, list[Change]] = field(default_factory=dict)  # newest change per key
    rejects: list[Reject] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    records_in: int = 0
    changes_in: int = 0  # valid changes before the reduction to one per key
    newest_commit_timestamp: str | None = None
    table_events: list[TableEvent] = field(default_factory=list)  # in stream order
    # Per source table, the newest source commit time among its changes (freshness metrics).
    newest_commit_by_table: dict[str, str] = field(default_factory=dict)

    @property
    def change_count(self) -> int:
        return sum(len(v) for v in self.changes.values())
