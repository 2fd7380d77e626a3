"""What runs in Spark's executors: their state and the ``mapInPandas`` functions.

``ExecutorConfig`` is broadcast once per job run (and per HMAC key); ``executor_state`` builds,
once per executor (Python worker) process and configuration, the very same
``shared.decode.RecordDecoder`` the Lambda path uses and the boto3 clients. The functions
below run over the partitions of the batch: ``decode_partition`` (records into rows of
``DECODED_SCHEMA``), ``newest_keeping_values`` (the per-row reduction of tables with
``keep_when_null`` columns), ``stage_partition`` (reduced rows to S3 as landing rows) and
``send_rejects_partition`` (rejects to the dead-letter queue). The DataFrame steps that call
them are ``shared.glue.steps`` and ``shared.glue.job``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3
import msgspec
import pandas as pd
from pyspark import TaskContext
from pyspark.broadcast import Broadcast

from shared.apply_procedures import KIND_CHANGE
from shared.dead_letter import DeadLetterUnavailable, SqsDeadLetterQueue
from shared.decode import RecordDecoder, Rejected, Skipped, TableControl, payload_text
from shared.landing import landing_line
from shared.order_key import CLASS_LOAD, CLASS_POSITION
from shared.records import Reject, StreamRecord
from shared.spec import PipelineSpec
from shared.staging import DELETED, row_json
from shared.transform import apply_load_start, kept_values, reduction_key

# The decoded batch: one row per change, reject, skip or table event (its ``kind``).
CHANGE, REJECT, SKIP, EVENT = "change", "reject", "skip", "event"
DECODED_SCHEMA = (
    "kind string, table string, key binary, order_key string, seq_len long, seq string, "
    "sub long, row binary, commit string, detail string, payload string, partition_key string"
)
_DECODED_COLUMNS = [part.split()[0] for part in DECODED_SCHEMA.split(", ")]
STAGED_SCHEMA = "table string, object_key string, rows long"
SENT_SCHEMA = "sent long, error string"

# Client configuration the driver forwards to the executors (endpoints, region, retries):
# boto3 reads these from the environment, and executor processes may have started before
# the driver set them. Never credentials.
_FORWARDED_PREFIXES = ("AWS_ENDPOINT_URL",)
_FORWARDED_NAMES = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE")


@dataclass(frozen=True)
class ExecutorConfig:
    """Broadcast once per job run (and per HMAC key): all an executor needs to do its part."""

    token: str  # names this configuration in the executors' caches
    spec: PipelineSpec
    hmac_key: bytes
    staging_bucket: str
    dead_letter_queue_url: str
    source_arn: str
    client_environment: tuple[tuple[str, str], ...] = ()


def client_environment(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The driver's boto3 client settings the executors take over (never credentials)."""
    return tuple(sorted(
        (name, value) for name, value in environ.items()
        if name.startswith(_FORWARDED_PREFIXES) or name in _FORWARDED_NAMES
    ))


class _ExecutorState:
    """Built once per executor (Python worker) process and configuration."""

    def __init__(self, config: ExecutorConfig) -> None:
        forwarded = dict(config.client_environment)
        for name in _FORWARDED_BY_US - forwarded.keys():
            os.environ.pop(name, None)  # set for an earlier configuration, not this one
        os.environ.update(forwarded)
        _FORWARDED_BY_US.clear()
        _FORWARDED_BY_US.update(forwarded)
        self.config = config
        self.decoder = RecordDecoder(config.spec, config.hmac_key)
        self._clients: dict[str, Any] = {}

    def client(self, name: str) -> Any:
        if name not in self._clients:
            self._clients[name] = boto3.client(name)  # type: ignore[call-overload]
        return self._clients[name]


_EXECUTOR_STATE: dict[str, _ExecutorState] = {}
_FORWARDED_BY_US: set[str] = set()


def executor_state(config: ExecutorConfig) -> _ExecutorState:
    """This worker process's state for ``config``, built on first use."""
    state = _EXECUTOR_STATE.get(config.token)
    if state is None:
        _EXECUTOR_STATE.clear()  # a rotated key or a new run: drop the old decoder
        state = _EXECUTOR_STATE[config.token] = _ExecutorState(config)
    return state


def decode_partition(
    config: Broadcast[ExecutorConfig], load_starts: Mapping[str, str],
    frames: Iterator[pd.DataFrame],
) -> Iterator[pd.DataFrame]:
    """Records -> one row per change (two for a primary-key change), reject, skip or table
    event (``detail`` holds the event as JSON). Full-load rows take their table's recorded
    load start (``shared.transform.apply_load_start``, as on the Lambda path)."""
    decode = executor_state(config.value).decoder.decode
    append_only = {t.name for t in config.value.spec.tables.values() if t.append_only}
    encode_key = msgspec.json.encode
    for frame in frames:
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        for data, seq, partition_key in zip(frame["data"], frame["sequenceNumber"],
                                            frame["partitionKey"], strict=True):
            record = StreamRecord(b"" if data is None else data, seq, partition_key or "")
            try:
                changes = decode(record)
            except Rejected as exc:
                append((REJECT, exc.table, None, None, len(seq), seq, 0, None, None,
                        exc.reason, payload_text(record), record.partition_key))
                continue
            except Skipped as exc:
                append((SKIP, None, None, None, len(seq), seq, 0, None, None, exc.category,
                        None, None))
                continue
            except TableControl as exc:
                event = exc.event
                append((EVENT, event.table, None, event.order_key, len(seq), seq, 0, None, None,
                        json.dumps([event.kind, [list(c) for c in event.columns]]), None, None))
                continue
            for sub, change in enumerate(changes):
                if load_starts and change.order_key[0] == CLASS_LOAD:
                    start = load_starts.get(change.table)
                    if start is not None:
                        apply_load_start(change, start)
                append((CHANGE, change.table, encode_key(change.key), change.order_key,
                        len(seq), seq, sub, row_json(change, change.table in append_only),
                        change.commit_timestamp,
                        None, None, None))
        if rows:
            yield pd.DataFrame.from_records(rows, columns=_DECODED_COLUMNS)


def stage_partition(
    config: Broadcast[ExecutorConfig], run_prefix: str, batch_id: str,
    frames: Iterator[pd.DataFrame],
) -> Iterator[pd.DataFrame]:
    """Write this partition's reduced rows to S3 as landing rows of ``batch_id``
    (``shared.landing.landing_line``), one object; report the rows per table."""
    state = executor_state(config.value)
    lines: list[bytes] = []
    counts: Counter[str] = Counter()
    for frame in frames:
        for table, row in zip(frame["table"], frame["row"], strict=True):
            lines.append(landing_line(batch_id, table, KIND_CHANGE, row.rstrip(b"\n")))
            counts[table] += 1
    if not lines:
        return
    context = TaskContext.get()
    partition = context.partitionId() if context is not None else 0
    key = f"{run_prefix}part-{partition:05d}.json"
    state.client("s3").put_object(Bucket=state.config.staging_bucket, Key=key,
                                  Body=b"".join(lines))
    yield pd.DataFrame.from_records([(table, key, n) for table, n in counts.items()],
                                    columns=["table", "object_key", "rows"])


def send_rejects_partition(
    config: Broadcast[ExecutorConfig], frames: Iterator[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    """Send this partition's rejects to the dead-letter queue; report (sent, error)."""
    state = executor_state(config.value)
    bucket = state.config.staging_bucket
    queue = SqsDeadLetterQueue(state.client("sqs"), state.config.dead_letter_queue_url,
                               overflow_s3=state.client("s3") if bucket else None,
                               overflow_bucket=bucket or None)
    sent = 0
    for frame in frames:
        rejects = [
            Reject(reason, payload, seq, partition_key or "", "", table)
            for table, reason, payload, seq, partition_key in zip(
                frame["table"], frame["detail"], frame["payload"], frame["seq"],
                frame["partition_key"], strict=True)
        ]
        try:
            queue.send(rejects, state.config.source_arn)
        except DeadLetterUnavailable as exc:
            yield pd.DataFrame({"sent": [sent], "error": [str(exc)]})
            return
        sent += len(rejects)
    yield pd.DataFrame({"sent": [sent], "error": [None]})


def newest_keeping_values(keep: Mapping[str, Sequence[str]],
                          frame: pd.DataFrame) -> pd.DataFrame:
    """``applyInPandas`` over the changes of one row of a table with ``keep_when_null``
    columns: the newest change, filled from the older ones by ``shared.transform.kept_values``
    (the Lambda path's ``newest_keeping_values``)."""
    frame = frame.sort_values(["seq_len", "seq", "sub"], kind="stable")
    all_positioned = all(k[0] == CLASS_POSITION for k in frame["order_key"])
    frame = frame.assign(rank=[reduction_key(k, all_positioned) for k in frame["order_key"]])
    frame = frame.sort_values("rank", kind="stable")
    table = frame["table"].iloc[-1]
    columns = keep[table]
    rows = [_ROW_DECODER.decode(bytes(row)) for row in frame["row"]]
    filled = kept_values([(bool(r.get(DELETED)), r) for r in rows], columns)
    newest = bytes(frame["row"].iloc[-1])
    if filled:
        newest = _ROW_ENCODER.encode({**rows[-1], **filled}) + b"\n"
    return pd.DataFrame({"table": [table], "row": [newest]})


_ROW_DECODER = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)
_ROW_ENCODER = msgspec.json.Encoder(decimal_format="number")
