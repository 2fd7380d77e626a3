"""Reconcile the source database with the warehouse, table by table.

The source rows are sent through the very same core as a DMS full load would be (same types,
same PII rules, same HMAC key), which gives the rows the warehouse should hold; the live rows
of every replica and every wide table are read through the Data API and compared. The report
names missing, extra and different rows by key and column only, never by value (values may be
personal data). Zero differences on a healthy pipeline once it has caught up.

    python -m tools.reconcile --source "host=... dbname=..."   # warehouse from the
                                                                # consumer's variables
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec

from shared.data_api import RedshiftDataApi
from shared.records import StreamRecord
from shared.redshift_writer import RedshiftWriter
from shared.spec import ColumnType, PipelineSpec, Table, Target
from shared.staging import DELETED
from shared.transform import Transformer
from shared.warehouse_sql import ident, replica_table, target_table

Row = dict[str, Any]
Key = tuple[Any, ...]


@dataclass
class TableDiff:
    name: str
    expected: int = 0
    actual: int = 0
    missing: list[Key] = field(default_factory=list)
    extra: list[Key] = field(default_factory=list)
    different: list[tuple[Key, list[str]]] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.different)

    def summary(self, limit: int = 5) -> str:
        text = (f"{self.name}: expected {self.expected}, warehouse {self.actual}, "
                f"missing {len(self.missing)}, extra {len(self.extra)}, "
                f"different {len(self.different)}")
        if self.missing:
            text += f"\n    missing keys: {self.missing[:limit]}"
        if self.extra:
            text += f"\n    extra keys: {self.extra[:limit]}"
        for key, columns in self.different[:limit]:
            text += f"\n    key {key}: columns {columns} differ"
        return text


def canonical(value: Any, column_type: ColumnType) -> Any:
    """One comparable form for a value read from the source, the core or the Data API."""
    if value is None:
        return None
    kind = column_type.kind
    if kind in ("smallint", "integer", "bigint"):
        return int(value)
    if kind == "decimal":
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-(column_type.scale or 0)))
    if kind in ("real", "double"):
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() in ("true", "t", "1")
    if kind == "date":
        return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    if kind in ("timestamp", "timestamptz"):
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if kind == "char":
        return str(value).rstrip(" ")
    return str(value)


def _json_value(value: Any) -> Any:
    """A source value as DMS puts it in JSON."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | Decimal):
        return str(value)
    return value


def _load_record(schema: str, table: str, row: Row, number: int) -> StreamRecord:
    """A source row as a DMS full-load record."""
    message = {
        "data": {k: _json_value(v) for k, v in row.items()},
        "metadata": {"record-type": "data", "operation": "load", "schema-name": schema,
                     "table-name": table, "timestamp": "1970-01-01T00:00:00.000000Z"},
    }
    return StreamRecord(msgspec.json.encode(message), str(number))


def expected_replicas(
    spec: PipelineSpec, source: Mapping[str, Iterable[Row]], hmac_key: bytes,
    rejected: Counter[str],
) -> dict[str, dict[Key, Row]]:
    """What each replica should hold: the source rows through the core, as a full load.

    Source rows the spec rejects are not expected in the warehouse (they are on the
    dead-letter queue); ``rejected`` counts them by reason.
    """
    records = [
        _load_record(spec.source_schema, table, row, n)
        for table, rows in source.items() for n, row in enumerate(rows)
    ]
    result = Transformer(spec, hmac_key).transform(records)
    expected: dict[str, dict[Key, Row]] = {t: {} for t in spec.tables}
    rejected.update(r.reason for r in result.rejects)
    for table, changes in result.changes.items():
        columns = spec.tables[table].columns
        for change in changes:
            values = change.values
            expected[table][change.key] = {c.name: canonical(values[c.name], c.warehouse_type)
                                           for c in columns}
    return expected


def expected_wide(spec: PipelineSpec, target: Target,
                  replicas: Mapping[str, Mapping[Key, Row]]) -> dict[Key, Row]:
    """The wide rows the target should hold, joined in Python from the expected replicas."""
    rows: dict[Key, Row] = {}
    for fact in replicas[target.fact].values():
        found: dict[str, Row | None] = {target.fact: fact}
        for join in target.joins:
            origin = found[join.from_alias]
            to_key = spec.tables[join.table].key
            wanted = dict(join.on)
            lookup = None if origin is None else tuple(
                origin[next(f for f, t in wanted.items() if t == k)] for k in to_key)
            found[join.alias] = None if lookup is None else replicas[join.table].get(lookup)
        wide = {c.name: (found[c.alias] or {}).get(c.column) for c in target.columns}
        rows[tuple(wide[k] for k in target.key)] = wide
    return rows


def diff(name: str, expected: Mapping[Key, Row], actual: Mapping[Key, Row]) -> TableDiff:
    result = TableDiff(name, expected=len(expected), actual=len(actual))
    result.missing = sorted(k for k in expected if k not in actual)
    result.extra = sorted(k for k in actual if k not in expected)
    for key in sorted(k for k in expected if k in actual):
        columns = [c for c, v in expected[key].items() if actual[key].get(c) != v]
        if columns:
            result.different.append((key, columns))
    return result


def _by_key(rows: Iterable[Row], key: Iterable[str]) -> dict[Key, Row]:
    names = tuple(key)
    return {tuple(r[k] for k in names): r for r in rows}


def warehouse_replica(api: RedshiftDataApi, spec: PipelineSpec, table: Table) -> dict[Key, Row]:
    columns = ", ".join(ident(c.name) for c in table.columns)
    rows = api.query(f"SELECT {columns} FROM {replica_table(spec, table.name)} "
                     f"WHERE NOT {ident(DELETED)}")
    typed = [{c.name: canonical(r[c.name], c.warehouse_type) for c in table.columns}
             for r in rows]
    return _by_key(typed, table.key)


def warehouse_wide(api: RedshiftDataApi, spec: PipelineSpec, target: Target) -> dict[Key, Row]:
    types = {c.name: spec.tables[target.alias_table(c.alias)].column(c.column).warehouse_type
             for c in target.columns}
    rows = api.query(f"SELECT * FROM {target_table(spec, target.name)}")
    typed = [{name: canonical(r[name], kind) for name, kind in types.items()} for r in rows]
    return _by_key(typed, target.key)


@dataclass
class Reconciliation:
    tables: list[TableDiff]
    rejected_source_rows: Counter[str]

    @property
    def differences(self) -> int:
        return sum(t.differences for t in self.tables)


def _no_step(name: str) -> None:
    """The default progress callback: nothing to show."""


def reconcile(spec: PipelineSpec, source: Mapping[str, Iterable[Row]], hmac_key: bytes,
              api: RedshiftDataApi, step: Callable[[str], None] = _no_step) -> Reconciliation:
    """``step`` is called with each replica's and wide table's name once it is compared."""
    rejected: Counter[str] = Counter()
    expected = expected_replicas(spec, source, hmac_key, rejected)
    report = []
    for name, table in spec.tables.items():
        report.append(diff(f"{spec.replica_schema}.{name}", expected[name],
                           warehouse_replica(api, spec, table)))
        step(name)
    for target in spec.targets.values():
        report.append(diff(f"{spec.target_schema}.{target.name}",
                           expected_wide(spec, target, expected),
                           warehouse_wide(api, spec, target)))
        step(target.name)
    return Reconciliation(report, rejected)


def reconcile_steps(spec: PipelineSpec) -> int:
    """How many times ``reconcile_source`` calls its ``step``."""
    return 2 * len(spec.tables) + len(spec.targets)


def reconcile_source(dsn: str, spec: PipelineSpec, hmac_key: bytes,
                     api: RedshiftDataApi, step: Callable[[str], None] = _no_step,
                     ) -> Reconciliation:
    """``reconcile`` a PostgreSQL source, with the columns schema evolution added to the
    replicas (``_cdc_columns``) compared too; ``step`` as in ``reconcile`` and once per
    source table read."""
    evolved = RedshiftWriter(spec, api).load_added_columns()
    return reconcile(evolved, read_source(dsn, evolved, step), hmac_key, api, step)


def read_source(dsn: str, spec: PipelineSpec,
                step: Callable[[str], None] = _no_step) -> dict[str, list[Row]]:
    """Every spec table's rows from a PostgreSQL source (psycopg)."""
    import psycopg
    from psycopg.rows import dict_row

    rows: dict[str, list[Row]] = {}
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=dict_row) as cur:
        for name, table in spec.tables.items():
            columns = ", ".join(ident(c.name) for c in table.columns)
            cur.execute(f"SELECT {columns} FROM {ident(spec.source_schema)}.{ident(name)}")
            rows[name] = list(cur.fetchall())
            step(name)
    return rows


def main(argv: list[str] | None = None) -> int:
    import boto3

    from shared.settings import hmac_key_from_secret
    from tools.cli_settings import add_spec_argument, settings_and_spec
    from tools.progress import steps

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", "--source-dsn", dest="source_dsn", required=True,
                        metavar="DSN", help="the source database (libpq DSN or URL)")
    add_spec_argument(parser)
    args = parser.parse_args(argv)
    settings, spec = settings_and_spec(args.spec)
    secret = boto3.client("secretsmanager").get_secret_value(
        SecretId=settings.hmac_key_secret_arn)["SecretString"]
    api = RedshiftDataApi(boto3.client("redshift-data"), settings.target)
    with steps("reconcile", reconcile_steps(spec)) as step:
        report = reconcile_source(args.source_dsn, spec, hmac_key_from_secret(secret), api,
                                  step)
    for table in report.tables:
        print(table.summary())
    for reason, count in report.rejected_source_rows.most_common():
        print(f"source rows the spec rejects (expected on the dead-letter queue) x{count}: "
              f"{reason}")
    print(f"differences={report.differences}")
    return 0 if report.differences == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
