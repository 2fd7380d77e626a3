"""Encode a batch for the landing table (``shared.apply_procedures``): JSON lines for one COPY,
or multi-row INSERTs when the batch is small and no staging bucket is used.

A landing row is ``{"batch_id", "table_name", "kind", "row_data"}``; ``row_data`` is the
change's typed row (``shared.records.Change.row``: the spec's columns, then the order key and
the deleted flag) as a JSON object, which COPY ... FORMAT AS JSON 'auto' loads into the SUPER
column ("Loading semistructured data into Amazon Redshift", COPY from JSON into SUPER
columns). Decimals are JSON strings, so they stay exact (the "COPY from JSON format" usage
notes warn that JSON numbers may lose precision). A truncate is a row of kind ``t`` whose
``row_data`` holds only its order key.

The Data API takes at most 40 statements per BatchExecuteStatement and 100,000 bytes per
statement ("Cannot process query string larger than 100kB", a ValidationException); a literal
passed to JSON_PARSE is a VARCHAR, so one row's JSON is at most 65,535 bytes inline. A landing
of any number of tables is one COPY, so only the number of rows limits the inline form.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from shared.apply_procedures import KIND_CHANGE, KIND_END, KIND_TRUNCATE, LANDED_COLUMNS
from shared.order_key import is_newer
from shared.records import TRUNCATE, Change, TableEvent
from shared.spec import PipelineSpec
from shared.staging import ORDER_KEY, row_json, sql_literal
from shared.warehouse_sql import LANDING, ident, replica_table

MAX_STATEMENTS = 40
DATA_API_MAX_SQL_BYTES = 100_000
MAX_SQL_BYTES = DATA_API_MAX_SQL_BYTES - 1_000
# One row's JSON inline: a VARCHAR literal (JSON_PARSE's argument) holds 65,535 bytes.
MAX_INLINE_ROW_BYTES = 65_000
# With a staging bucket, a batch of more rows than this is landed through S3 (one COPY).
INLINE_ROWS_MAX = 2000
_ENCODE = msgspec.json.Encoder(decimal_format="string").encode


class LandingTooLarge(ValueError):
    """A batch that can only be landed through S3, and no staging bucket is configured."""


def landing_line(batch_id: str, table: str, kind: str, row_json: bytes) -> bytes:
    """One landing row as a JSON line. ``batch_id`` is hex and ``table`` a spec name, so
    neither needs escaping."""
    return (b'{"batch_id":"' + batch_id.encode() + b'","table_name":"' + table.encode()
            + b'","kind":"' + kind.encode() + b'","row_data":' + row_json + b"}\n")


def newest_truncates(spec: PipelineSpec, events: Sequence[TableEvent]) -> dict[str, str]:
    """The order key of each spec table's truncate in the batch (the newest, when several)."""
    keys: dict[str, str] = {}
    for event in events:
        if event.kind == TRUNCATE and event.table in spec.tables:
            known = keys.get(event.table)
            if known is None or is_newer(event.order_key, known):
                keys[event.table] = event.order_key
    return keys


def end_row(known: str) -> bytes:
    """``row_data`` of a batch's end row (``KIND_END``), last of the batch: it makes the batch
    pending, and says which added source columns the consumer decoded with."""
    return _ENCODE({"known": known})


def _rows(spec: PipelineSpec, changes: Mapping[str, list[Change]],
          truncates: Mapping[str, str], known: str) -> Iterable[tuple[str, str, bytes]]:
    for table, key in truncates.items():
        yield table, KIND_TRUNCATE, _ENCODE({ORDER_KEY: key})
    for table, rows in changes.items():
        append_only = spec.tables[table].append_only
        for change in rows:
            yield table, KIND_CHANGE, row_json(change, append_only)
    yield "", KIND_END, end_row(known)


def json_lines(spec: PipelineSpec, batch_id: str, changes: Mapping[str, list[Change]],
               truncates: Mapping[str, str], known: str = "") -> bytes:
    """The whole batch as JSON lines for one ``COPY ... FORMAT AS JSON 'auto'``."""
    return b"".join(landing_line(batch_id, table, kind, row)
                    for table, kind, row in _rows(spec, changes, truncates, known))


def insert_statements(spec: PipelineSpec, batch_id: str, changes: Mapping[str, list[Change]],
                      truncates: Mapping[str, str], known: str = "") -> list[str] | None:
    """Multi-row ``INSERT``s of the batch, each at most ``MAX_SQL_BYTES``, the end row in the
    last; None when a row's JSON is too long to be a literal (the batch must go through S3)."""
    head = (f"INSERT INTO {replica_table(spec, LANDING)} "
            f"({', '.join(ident(c) for c in LANDED_COLUMNS)}) VALUES ")
    head_size = len(head.encode())
    prefix = f"({sql_literal(batch_id)}, "
    statements: list[str] = []
    values: list[str] = []
    size = head_size
    for table, kind, row in _rows(spec, changes, truncates, known):
        if len(row) > MAX_INLINE_ROW_BYTES:
            return None
        text = (f"{prefix}{sql_literal(table)}, '{kind}', "
                f"JSON_PARSE({sql_literal(row.decode())}))")
        text_size = len(text.encode()) + 1
        if values and size + text_size > MAX_SQL_BYTES:
            statements.append(head + ",".join(values))
            values, size = [], head_size
        values.append(text)
        size += text_size
    if values:
        statements.append(head + ",".join(values))
    return statements


@dataclass(frozen=True)
class Landing:
    """How a batch reaches the landing table: ``statements`` (inline), or ``body`` for S3."""

    statements: list[str] | None = None
    body: bytes | None = None


def plan_landing(spec: PipelineSpec, batch_id: str, changes: Mapping[str, list[Change]],
                 truncates: Mapping[str, str], copy_available: bool,
                 known: str = "") -> Landing:
    """With a staging bucket: one INSERT when the batch fits one statement, else the JSON lines
    for one COPY (the load Redshift is built for; a long VALUES list is parsed on the leader
    node). Without one: as many INSERTs as it takes."""
    rows = sum(len(r) for r in changes.values()) + len(truncates)
    if not (copy_available and rows > INLINE_ROWS_MAX):
        statements = insert_statements(spec, batch_id, changes, truncates, known)
        if statements is not None and (not copy_available or len(statements) == 1):
            return Landing(statements=statements)
    if not copy_available:
        raise LandingTooLarge(
            "a change's row is longer than 65,000 bytes of JSON, which only a COPY from S3 "
            "can land: configure the staging bucket (STAGING_BUCKET)")
    return Landing(body=json_lines(spec, batch_id, changes, truncates, known))
