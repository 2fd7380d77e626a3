"""The Glue path's DataFrame steps over one micro-batch, run by Spark's executors.

``decode_batch`` (records -> decoded rows, ``shared.glue.executors.DECODED_SCHEMA``),
``newest_changes`` (the newest change per (table, key), the Lambda path's rule),
``summarize`` (counts per kind, table and reason: a handful of rows reach the driver) and
``table_events`` (the batch's truncates, added columns, ...). No I/O of their own beyond
Spark's; ``shared.glue.job`` strings them together with the writes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from shared.glue.executors import (
    CHANGE,
    DECODED_SCHEMA,
    EVENT,
    REJECT,
    ExecutorConfig,
    decode_partition,
    newest_keeping_values,
)
from shared.order_key import (
    CLASS_POSITION,
    ORDER_KEY_MAX_LENGTH,
    POSITION_START,
    TIME_LENGTH,
    TIME_START,
)
from shared.records import TableEvent


def decode_batch(batch: DataFrame, config: Broadcast[ExecutorConfig],
                 load_starts: Mapping[str, str] | None = None) -> DataFrame:
    """The batch decoded in the executors (``DECODED_SCHEMA``); ``data`` may be binary or
    string (UTF-8 text), whichever the source delivers."""
    missing = [c for c in ("data", "partitionKey", "sequenceNumber") if c not in batch.columns]
    if missing:
        raise ValueError(f"the batch DataFrame has no column(s) {missing}")
    records = batch.select(F.col("data").cast("binary").alias("data"),
                           F.col("sequenceNumber").cast("string").alias("sequenceNumber"),
                           F.col("partitionKey").cast("string").alias("partitionKey"))
    return records.mapInPandas(partial(decode_partition, config, dict(load_starts or {})),
                               DECODED_SCHEMA)


def newest_changes(decoded: DataFrame,
                   keep: Mapping[str, Sequence[str]] | None = None) -> DataFrame:
    """(table, row): per (table, key) the newest change by ``shared.transform.reduction_key``
    (the log position where every change of the row has one, else time first), on a tie the
    later record (sequence number as a number, place in its record): the Lambda path's rule
    (``shared.transform.newest_change``), with partial aggregation and no sort. Tables with
    ``keep_when_null`` columns (``keep``) go through ``newest_keeping_values`` instead."""
    changes = decoded.where(F.col("kind") == CHANGE)
    keep_tables = sorted(t for t, columns in (keep or {}).items() if columns)
    if keep_tables:
        kept = (changes.where(F.col("table").isin(keep_tables))
                .select("table", "key", "order_key", "seq_len", "seq", "sub", "row")
                .groupBy("table", "key")
                .applyInPandas(partial(newest_keeping_values, dict(keep or {})),
                               "table string, row binary"))
        changes = changes.where(~F.col("table").isin(keep_tables))
    key = F.col("order_key")
    by_position = F.substring(key, POSITION_START + 1, ORDER_KEY_MAX_LENGTH)
    by_time = F.concat(F.substring(key, TIME_START + 1, TIME_LENGTH), F.substring(key, 1, 1),
                       by_position)
    tie = ("seq_len", "seq", "sub", "row")
    plain = (changes.groupBy("table", "key").agg(
        F.max(F.struct(by_position.alias("k"), *tie)).alias("by_position"),
        F.max(F.struct(by_time.alias("k"), *tie)).alias("by_time"),
        F.min(F.substring(key, 1, 1)).alias("lowest_class"),
    ).select("table", F.when(F.col("lowest_class") == CLASS_POSITION, F.col("by_position.row"))
             .otherwise(F.col("by_time.row")).alias("row")))
    return plain.unionByName(kept) if keep_tables else plain


@dataclass
class BatchSummary:
    """What the driver learns of a decoded batch (``summarize``), never its rows."""

    records_in: int = 0
    changes_in: int = 0
    rejected: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    reject_reasons: Counter[str] = field(default_factory=Counter)
    newest_commit_timestamp: str | None = None
    events: int = 0
    newest_commit_by_table: dict[str, str] = field(default_factory=dict)


def summarize(decoded: DataFrame) -> BatchSummary:
    """Counts per kind, table and reason: a handful of rows reach the driver."""
    change_table = F.when(F.col("kind") == CHANGE, F.col("table")).alias("change_table")
    rows = decoded.groupBy("kind", "detail", change_table).agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(F.col("sub") == 0, 1).otherwise(0)).alias("records"),
        F.max("commit").alias("newest_commit"),
    ).collect()
    summary = BatchSummary()
    commits = [r["newest_commit"] for r in rows if r["newest_commit"]]
    summary.newest_commit_timestamp = max(commits) if commits else None
    for row in rows:
        summary.records_in += int(row["records"])
        if row["kind"] == CHANGE:
            summary.changes_in += int(row["n"])
            if row["newest_commit"]:
                summary.newest_commit_by_table[row["change_table"]] = row["newest_commit"]
        elif row["kind"] == REJECT:
            summary.rejected += int(row["n"])
            summary.reject_reasons[row["detail"]] += int(row["n"])
        elif row["kind"] == EVENT:
            summary.events += int(row["n"])
        else:
            summary.skipped[row["detail"]] += int(row["n"])
    return summary


def table_events(decoded: DataFrame) -> list[TableEvent]:
    """The batch's table events (a handful), in stream order within each shard."""
    rows = (decoded.where(F.col("kind") == EVENT)
            .select("table", "order_key", "seq_len", "seq", "detail")
            .orderBy("seq_len", "seq").collect())
    events = []
    for row in rows:
        kind, columns = json.loads(row["detail"])
        events.append(TableEvent(row["table"], kind, row["order_key"], row["seq"],
                                 tuple((str(c), str(t)) for c, t in columns)))
    return events
