"""The Glue streaming path: one micro-batch DataFrame, processed by Spark's executors.

``GlueBatchJob.process`` takes the DataFrame that the Glue Kinesis source hands
``forEachBatch`` (columns ``data``, ``streamName``, ``partitionKey``, ``sequenceNumber``,
``approximateArrivalTimestamp``) and applies the same core as the Lambda path, distributed:

1. **decode** (executors, ``mapInPandas``): every record goes through the very same
   ``shared.decode.RecordDecoder`` (decoding rules, validation, PII functions, order keys),
   built once per executor process from a broadcast of the spec and the HMAC key. Each record
   becomes rows of (kind, table, key, order key, sequence number, staged JSON line, reject
   fields); the result stays cached in the executors for the steps below.
2. **summary** (driver receives a few rows): counts per kind/table/reason, newest commit time.
3. **reduce** (executors): the newest change per (table, key) is the maximum of
   (order key, sequence number, place in the record), the Lambda rule: the larger order key
   wins, on a tie the later record in the stream. Partial aggregation, no sort.
4. **stage** (executors): each partition writes its rows to S3 as landing rows of the batch
   (``shared.landing.landing_line``), one object; the driver receives only the object keys.
5. **merge** (driver): ONE transaction through the Data API: one COPY of the batch's S3 prefix
   into the landing table, then the one apply call (``RedshiftWriter.merge_staged``, the
   procedures of ``shared.apply_procedures``); the staged objects are deleted afterwards.
6. **dead letters** (executors): rejects go to the same SQS queue, in the same message format
   (``shared.dead_letter``), after the warehouse write, as on the Lambda path.

The batch's rows never reach the driver. A failure (warehouse or dead-letter queue
unavailable) is reported in the outcome; ``GlueBatchJob.__call__`` (the ``forEachBatch``
function) raises it, so the batch is retried and the checkpoint does not move past it. Every
write is idempotent and order-guarded, so a retried batch applies nothing twice.

Importable without ``awsglue``: only the entry script (``glue_job/cdc_streaming_job.py``)
touches the Glue API. This module ships in the ``shared`` zip (``--extra-py-files``), which is
why it lives here and not next to the script.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import boto3
import msgspec
import pandas as pd
from pyspark import StorageLevel, TaskContext
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from shared.apply_procedures import KIND_CHANGE
from shared.consumer import BatchOutcome
from shared.data_api import RedshiftDataApi, RetryPolicy, WarehouseError
from shared.dead_letter import DeadLetterUnavailable, SqsDeadLetterQueue
from shared.decode import RecordDecoder, Rejected, Skipped, TableControl, payload_text
from shared.landing import landing_line
from shared.order_key import (
    CLASS_LOAD,
    CLASS_POSITION,
    ORDER_KEY_MAX_LENGTH,
    POSITION_START,
    TIME_LENGTH,
    TIME_START,
)
from shared.records import ADD_COLUMNS, Reject, StreamRecord, TableEvent
from shared.redshift_writer import AddedColumnsChanged, RedshiftWriter, S3Stager, WriteReport
from shared.settings import PipelineSettings, SettingsError, hmac_key_from_secret
from shared.spec import PipelineSpec, load_spec
from shared.staging import DELETED, row_json
from shared.transform import apply_load_start, kept_values, reduction_key

log = logging.getLogger("cdc.glue")

SECRET_MAX_AGE_SECONDS = 300  # as the Lambda's Parameters cache: a rotated key is picked up
KINESIS_COLUMNS = ("data", "streamName", "partitionKey", "sequenceNumber",
                   "approximateArrivalTimestamp")
STARTING_POSITIONS = {"TRIM_HORIZON": "trim_horizon", "LATEST": "latest"}
DELETE_BATCH = 1000  # keys per S3 DeleteObjects call

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


class BatchFailed(Exception):
    """The micro-batch was not (completely) applied; Glue retries it from the checkpoint."""


# --- job arguments ----------------------------------------------------------------------------

def parse_job_arguments(argv: Sequence[str]) -> dict[str, str]:
    """The ``--NAME value`` (or ``--NAME=value``) pairs of a Glue job's ``sys.argv``.

    Unlike ``getResolvedOptions`` this tolerates absent options and empty values (the template
    passes ``""`` for options that do not apply); ``PipelineSettings`` validates what is read.
    """
    values: dict[str, str] = {}
    position = 0
    while position < len(argv):
        token = argv[position]
        position += 1
        if not token.startswith("--"):
            continue
        name, sep, value = token[2:].partition("=")
        if not sep and position < len(argv) and not argv[position].startswith("--"):
            value = argv[position]
            position += 1
        values[name] = value
    return values


@dataclass(frozen=True)
class StreamSettings:
    """The stream-reading job parameters (--STREAM_ARN, --STARTING_POSITION, ...)."""

    stream_arn: str
    starting_position: str = "TRIM_HORIZON"
    max_fetch_records_per_shard: int = 10_000
    window_size: str = "60 seconds"
    checkpoint_location: str = ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> StreamSettings:
        def get(name: str, default: str = "") -> str:
            return (values.get(name) or "").strip() or default

        problems = []
        arn = get("STREAM_ARN")
        if not arn.startswith("arn:") or ":stream/" not in arn:
            problems.append("STREAM_ARN must be a Kinesis stream ARN")
        position = get("STARTING_POSITION", "TRIM_HORIZON").upper()
        if position not in STARTING_POSITIONS:
            problems.append("STARTING_POSITION must be TRIM_HORIZON or LATEST")
        fetch = get("MAX_FETCH_RECORDS_PER_SHARD", "10000")
        if not fetch.isdigit() or int(fetch) < 1:
            problems.append("MAX_FETCH_RECORDS_PER_SHARD must be a positive integer")
        window = get("WINDOW_SIZE", "60 seconds")
        if window_seconds(window) is None:
            problems.append("WINDOW_SIZE must read like '60 seconds' or '1 minute'")
        if problems:
            raise SettingsError("invalid configuration: " + "; ".join(problems))
        return cls(arn, position, int(fetch), window, get("CHECKPOINT_LOCATION"))

    @property
    def stream_name(self) -> str:
        return self.stream_arn.split(":stream/", 1)[1]


def window_seconds(window: str) -> float | None:
    """``"60 seconds"`` -> 60.0, ``"2 minutes"`` -> 120.0; None when it does not read so."""
    number, _, unit = window.strip().partition(" ")
    scale = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60}.get(unit.strip().lower())
    if not number.isdigit() or scale is None:
        return None
    return float(int(number) * scale)


def kinesis_source_options(stream: StreamSettings) -> dict[str, str]:
    """Connection options of the Glue Kinesis source, raw records (no schema inference)."""
    return {
        "typeOfData": "kinesis",
        "streamARN": stream.stream_arn,
        "startingPosition": STARTING_POSITIONS[stream.starting_position],
        "maxFetchRecordsPerShard": str(stream.max_fetch_records_per_shard),
        "inferSchema": "false",
    }


def for_each_batch_options(stream: StreamSettings) -> dict[str, str]:
    """``glueContext.forEachBatch`` options: the micro-batch window and the checkpoint."""
    if not stream.checkpoint_location:
        raise SettingsError("invalid configuration: CHECKPOINT_LOCATION is required")
    return {"windowSize": stream.window_size, "checkpointLocation": stream.checkpoint_location}


# --- what the executors get -------------------------------------------------------------------

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
    state = _EXECUTOR_STATE.get(config.token)
    if state is None:
        _EXECUTOR_STATE.clear()  # a rotated key or a new run: drop the old decoder
        state = _EXECUTOR_STATE[config.token] = _ExecutorState(config)
    return state


# --- executor functions (mapInPandas) ---------------------------------------------------------

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


# --- the distributed steps, as DataFrames ------------------------------------------------------

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


# --- the job ----------------------------------------------------------------------------------

class GlueBatchJob:
    """The ``forEachBatch`` function of the Glue job (and of the local runner)."""

    def __init__(
        self,
        spark: SparkSession,
        settings: PipelineSettings,
        source_arn: str,
        spec: PipelineSpec | None = None,
        clients: Callable[[str], Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not settings.staging_bucket or not settings.copy_iam_role_arn:
            raise SettingsError("invalid configuration: the Glue path stages every batch in S3: "
                                "STAGING_BUCKET and COPY_IAM_ROLE_ARN are required")
        self.spark = spark
        self.settings = settings
        self.source_arn = source_arn
        self.spec = spec or load_spec(settings.spec_path)
        self._clients = clients or (lambda name: boto3.client(name))  # type: ignore[call-overload]
        self._environ = os.environ if environ is None else environ
        api = RedshiftDataApi(self._clients("redshift-data"), settings.target,
                              retry=RetryPolicy(attempts=settings.retry_attempts))
        self.stager = S3Stager(self._clients("s3"), settings.staging_bucket,
                               settings.staging_prefix, settings.copy_iam_role_arn)
        self.writer = RedshiftWriter(self.spec, api, self.stager)
        self._broadcast: Broadcast[ExecutorConfig] | None = None
        self._key_read_at = -float("inf")

    @classmethod
    def from_arguments(
        cls, args: Mapping[str, str], spark: SparkSession,
        clients: Callable[[str], Any] | None = None,
    ) -> GlueBatchJob:
        """From the job parameters: the Lambda's settings names plus --STREAM_ARN."""
        stream = StreamSettings.from_mapping(args)
        return cls(spark, PipelineSettings.from_mapping(args), stream.stream_arn, clients=clients)

    # -- configuration for the executors --

    def _hmac_key(self) -> bytes:
        secret = self._clients("secretsmanager").get_secret_value(
            SecretId=self.settings.hmac_key_secret_arn)
        return hmac_key_from_secret(str(secret["SecretString"]))

    def executor_config(self) -> Broadcast[ExecutorConfig]:
        """The broadcast configuration; re-read the HMAC key every few minutes (rotation)."""
        now = time.monotonic()
        current = self._broadcast
        same_spec = current is not None and current.value.spec is self.writer.spec
        if current is not None and same_spec and now - self._key_read_at < SECRET_MAX_AGE_SECONDS:
            return current
        key = self._hmac_key()
        self._key_read_at = now
        if current is not None and same_spec and current.value.hmac_key == key:
            return current
        if self._broadcast is not None:
            self._broadcast.unpersist()
        config = ExecutorConfig(
            token=uuid.uuid4().hex, spec=self.writer.spec, hmac_key=key,
            staging_bucket=str(self.settings.staging_bucket),
            dead_letter_queue_url=self.settings.dead_letter_queue_url,
            source_arn=self.source_arn,
            client_environment=client_environment(self._environ),
        )
        self._broadcast = self.spark.sparkContext.broadcast(config)
        return self._broadcast

    # -- one micro-batch --

    def process(self, batch: DataFrame, batch_id: int) -> BatchOutcome:
        """Apply one micro-batch; a failure is reported in ``outcome.failure``."""
        try:
            if self.writer.added_columns is None:
                self.writer.load_added_columns()
            try:
                return self._process(batch, batch_id)
            except AddedColumnsChanged:
                self.writer.load_added_columns()  # another consumer added columns: once more
                return self._process(batch, batch_id)
        except WarehouseError as exc:
            return BatchOutcome(failure=str(exc))

    def _decode(self, batch: DataFrame) -> tuple[DataFrame, BatchSummary, list[TableEvent]]:
        decoded = decode_batch(batch, self.executor_config(), self.writer.load_starts())
        decoded = decoded.persist(StorageLevel.MEMORY_AND_DISK)
        summary = summarize(decoded)
        return decoded, summary, (table_events(decoded) if summary.events else [])

    def _process(self, batch: DataFrame, batch_id: int) -> BatchOutcome:
        decoded, summary, events = self._decode(batch)
        try:
            added = (self.writer.add_columns(events)
                     if any(e.kind == ADD_COLUMNS for e in events) else [])
            if added:
                decoded.unpersist()  # decode again with the new columns (a new broadcast)
                decoded, summary, events = self._decode(batch)
            outcome = BatchOutcome(
                records_in=summary.records_in, rejected=summary.rejected,
                skipped=summary.skipped, reject_reasons=summary.reject_reasons,
                newest_commit_timestamp=summary.newest_commit_timestamp,
                table_events=Counter(f"{e.kind}:{e.table}" for e in events),
                added_columns=added,
                newest_commit_by_table=summary.newest_commit_by_table,
            )
            if summary.records_in == 0:
                return outcome
            if summary.changes_in or events:
                try:
                    outcome.write_report = self._stage_and_merge(
                        decoded, self.executor_config(), batch_id, events)
                except WarehouseError as exc:
                    outcome.failure = str(exc)
                    return outcome
                outcome.changes_applied = sum(outcome.write_report.changes.values())
            if summary.rejected:
                error = self._send_rejects(decoded, self.executor_config())
                if error:
                    outcome.failure = error
            return outcome
        finally:
            decoded.unpersist()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """``forEachBatch``'s function: process, log, and raise on failure (Glue then retries
        the batch and never checkpoints past it)."""
        started = time.perf_counter()
        outcome = self.process(batch, batch_id)
        log.info(json.dumps(batch_log(outcome, batch_id, started)))
        if outcome.failure is not None:
            raise BatchFailed(outcome.failure)

    def _stage_and_merge(
        self, decoded: DataFrame, config: Broadcast[ExecutorConfig], batch_id: int,
        events: Sequence[TableEvent],
    ) -> WriteReport:
        prefix = self.settings.staging_prefix.strip("/")
        landing_batch = uuid.uuid4().hex
        run_prefix = f"{prefix}/glue-{batch_id}-{landing_batch}/".lstrip("/")
        keep = {name: t.keep_when_null for name, t in self.writer.spec.tables.items()}
        staged = newest_changes(decoded, keep).mapInPandas(
            partial(stage_partition, config, run_prefix, landing_batch), STAGED_SCHEMA).collect()
        keys = sorted({row["object_key"] for row in staged})
        counts: Counter[str] = Counter()
        for row in staged:
            counts[row["table"]] += int(row["rows"])
        try:
            return self.writer.merge_staged(landing_batch, run_prefix, counts, events)
        finally:
            for start in range(0, len(keys), DELETE_BATCH):
                self.stager.delete(keys[start : start + DELETE_BATCH])

    @staticmethod
    def _send_rejects(decoded: DataFrame, config: Broadcast[ExecutorConfig]) -> str | None:
        rejects = decoded.where(F.col("kind") == REJECT).select(
            "table", "detail", "payload", "seq", "partition_key")
        results = rejects.mapInPandas(partial(send_rejects_partition, config),
                                      SENT_SCHEMA).collect()
        errors = [row["error"] for row in results if row["error"]]
        return str(errors[0]) if errors else None


def batch_log(outcome: BatchOutcome, batch_id: int, started: float) -> dict[str, Any]:
    """What is logged per batch: counts and reasons, never a payload or personal data."""
    report = outcome.write_report
    return {
        "message": "batch processed" if outcome.failure is None else "batch failed",
        "batch_id": batch_id,
        "records_in": outcome.records_in,
        "changes_applied": outcome.changes_applied,
        "rejected": outcome.rejected,
        "reject_reasons": dict(outcome.reject_reasons),
        "skipped": dict(outcome.skipped),
        "table_events": dict(outcome.table_events),
        "added_columns": [{"table": a.table, "column": a.column, "type": a.spec_type,
                           "rows_written_without_it": a.written_without}
                          for a in outcome.added_columns],
        "staged_through_s3": report.staged_through_s3 if report else False,
        "data_api_calls": report.data_api_calls if report else 0,
        "newest_commit_timestamp": outcome.newest_commit_timestamp,
        "newest_commit_by_table": outcome.newest_commit_by_table,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "failure": outcome.failure,
    }
