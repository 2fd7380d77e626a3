"""The pipeline spec: one declarative TOML file loaded into typed, validated objects.

The spec names the source tables with their keys and column types, the PII rule of each
personal column, and each denormalized target (fact table, dimensions joined through which
foreign keys, which columns land under which names). Everything downstream (decoding,
validation, PII, SQL) is driven by it, so a bad spec must fail here, at load, with a message
that names the problem.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_SPEC_RESOURCE = "specs/sports_ticketing.toml"
DEFAULT_SPEC_PATH = Path(__file__).parent / DEFAULT_SPEC_RESOURCE

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,126}$")
_RESERVED_PREFIX = "_cdc_"
PII_RULES = ("tokenize", "mask", "redact", "sha256")
DELETE_MODES = ("tombstone", "hard")
SOURCE_NAME_MODES = ("case-insensitive", "exact")
EVOLVE_MODES = ("add-columns", "off")
LONG_TEXT_MODES = ("dead-letter", "truncate")
# The replica column that marks a row whose text was cut to fit (tables with
# ``long_text = "truncate"`` only); the decoder sets it, the writer stages it.
TRUNCATED_FLAG = "_cdc_truncated"
# The other columns the pipeline adds to every replica (defined here once; spec names cannot
# start with ``_cdc_``): the change's order key (``shared.order_key``) and its delete flag;
# for an append-only table, what tells apart changes with the same order key.
ORDER_KEY = "_cdc_order_key"
DELETED = "_cdc_deleted"
CHANGE_ID = "_cdc_change_id"
# Redshift limits (Amazon Redshift Database Developer Guide, "Character types": VARCHAR holds
# at most 65,535 bytes; "VARBYTE type": 1 to 16,777,216 bytes, default 64,000).
VARCHAR_MAX_BYTES = 65535
VARBYTE_MAX_BYTES = 16_777_216
VARBYTE_DEFAULT_BYTES = 64_000


class SpecError(ValueError):
    """The pipeline spec is invalid; the message names the problem."""


@dataclass(frozen=True)
class ColumnType:
    """A column type of the spec. ``kind`` is one of the spec's type names: ``smallint``,
    ``integer``, ``bigint``, ``decimal``, ``real``, ``double``, ``boolean``, ``char``,
    ``varchar``, ``text``, ``date``, ``time``, ``timestamp``, ``timestamptz``, ``uuid``,
    ``super``, ``varbyte``. ``length`` is the byte limit of char, varchar, text (65,535) and
    varbyte columns."""

    kind: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None

    @property
    def sql(self) -> str:
        """The Redshift column type."""
        if self.kind in _SQL_NAMES:
            return _SQL_NAMES[self.kind]
        return self._with_parameters(self.kind.upper())

    @property
    def spec_name(self) -> str:
        """The type as a spec writes it (``text``, ``uuid``, ``varbyte(100)``, ...)."""
        return self._with_parameters(self.kind)

    def _with_parameters(self, name: str) -> str:
        """``name`` followed by the type's length, or its precision and scale, if it has them."""
        if self.kind in ("varchar", "char", "varbyte"):
            return f"{name}({self.length})"
        if self.kind == "decimal":
            return f"{name}({self.precision},{self.scale})"
        return name

    @property
    def is_text(self) -> bool:
        """Whether values are strings limited in UTF-8 bytes (char, varchar, text)."""
        return self.kind in ("varchar", "char", "text")

    def __str__(self) -> str:
        return self.sql.lower()


_SQL_NAMES = {
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "REAL",
    "double": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "time": "TIME",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "text": f"VARCHAR({VARCHAR_MAX_BYTES})",
    "uuid": "VARCHAR(36)",
    "super": "SUPER",
}
# Source spellings (PostgreSQL ``format_type`` names, MySQL names) of the spec's types.
_ALIASES = {
    "int": "integer", "int2": "smallint", "int4": "integer", "int8": "bigint",
    "float": "double", "float8": "double", "double precision": "double", "float4": "real",
    "bool": "boolean", "numeric": "decimal", "character varying": "varchar",
    "character": "char", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz", "time without time zone": "time",
    "json": "super", "jsonb": "super", "array": "super",
    "bytea": "varbyte", "blob": "varbyte", "varbinary": "varbyte",
    "binary varying": "varbyte", "citext": "text",
}
_PARAM_TYPE = re.compile(r"^([a-z ]+?)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")
# ``timestamp(3)``, ``time(0) without time zone``: the fractional-second precision.
_TIME_PRECISION = re.compile(r"^(time|timestamp)\s*\(\s*[0-6]\s*\)(\s+with(?:out)? time zone)?$")
TOKEN_TYPE = ColumnType("char", length=64)
_UNBOUNDED_VARCHAR = (
    "{where}: type {text!r} has no length: a PostgreSQL varchar without one is unbounded; "
    "write varchar(n) with the longest value's size in UTF-8 bytes (n up to 65535), or "
    "'text' (VARCHAR(65535); see the table's long_text setting for longer values)"
)


def parse_column_type(text: str, where: str) -> ColumnType:
    """Parse a type name such as ``bigint``, ``varchar(64)``, ``decimal(12,2)``, ``text``,
    ``super`` or a source spelling of one (``jsonb``, ``integer[]``, ``bytea``, ...)."""
    raw = " ".join(text.strip().lower().split())
    if raw.endswith("[]"):
        return ColumnType("super")  # PostgreSQL arrays of any element type land as SUPER
    time_precision = _TIME_PRECISION.match(raw)
    if time_precision:
        raw = time_precision.group(1) + (time_precision.group(2) or "")
    match = _PARAM_TYPE.match(raw)
    base = _ALIASES.get(match.group(1) if match else raw, match.group(1) if match else raw)
    if match is None:
        if base in _SQL_NAMES:
            return ColumnType(base, length=VARCHAR_MAX_BYTES if base == "text" else None)
        if base == "varbyte":
            return ColumnType("varbyte", length=VARBYTE_DEFAULT_BYTES)
        if base == "varchar":
            raise SpecError(_UNBOUNDED_VARCHAR.format(where=where, text=text))
        if base in ("char", "decimal"):
            raise SpecError(f"{where}: type {text!r} needs a size, e.g. {base}(64)")
        raise SpecError(f"{where}: unknown type {text!r} (the spec's types are listed in "
                        "docs/spec.md; an enum is varchar(n))")
    first, second = int(match.group(2)), match.group(3)
    if base in ("varchar", "char") and second is None:
        limit = VARCHAR_MAX_BYTES if base == "varchar" else 4096
        if not 1 <= first <= limit:
            advice = " (use 'text' and a long_text setting)" if base == "varchar" else ""
            raise SpecError(f"{where}: {base} length must be 1..{limit}, got {first}{advice}")
        return ColumnType(base, length=first)
    if base == "varbyte" and second is None:
        if not 1 <= first <= VARBYTE_MAX_BYTES:
            raise SpecError(
                f"{where}: varbyte length must be 1..{VARBYTE_MAX_BYTES}, got {first}")
        return ColumnType("varbyte", length=first)
    if base == "decimal":
        scale = int(second) if second is not None else 0
        if not 1 <= first <= 38 or not 0 <= scale <= first:
            raise SpecError(f"{where}: decimal({first},{scale}) is out of range (precision 1..38)")
        return ColumnType("decimal", precision=first, scale=scale)
    raise SpecError(f"{where}: unknown type {text!r}")


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    pii: str | None = None

    @property
    def warehouse_type(self) -> ColumnType:
        """The type in the warehouse: a tokenized/hashed column holds 64 hex characters."""
        if self.pii in ("tokenize", "sha256"):
            return TOKEN_TYPE
        return self.type


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    # Columns whose null in an update means "unchanged", not "now null": large values a
    # PostgreSQL source does not resend when an update leaves them alone (TOAST), unless the
    # table has REPLICA IDENTITY FULL. See docs/source-engines.md.
    keep_when_null: tuple[str, ...] = ()
    # Text longer than its column (varchar(n) or text): "dead-letter" rejects the row with a
    # reason; "truncate" cuts it at a UTF-8 character boundary and sets ``TRUNCATED_FLAG``.
    long_text: str = "dead-letter"
    # No key: every change is kept as its own row (a table without a primary key, for which
    # DMS sends inserts only, or an event log). ``key`` is then empty.
    append_only: bool = False

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True)
class Join:
    """``alias`` (a row of ``table``) joined from ``from_alias`` on from-column = key-column."""

    alias: str
    table: str
    from_alias: str
    on: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TargetColumn:
    name: str
    alias: str
    column: str


@dataclass(frozen=True)
class Target:
    name: str
    fact: str
    joins: tuple[Join, ...]
    columns: tuple[TargetColumn, ...]
    key: tuple[str, ...]  # target column names that hold the fact's key, in fact-key order

    def alias_table(self, alias: str) -> str:
        if alias == self.fact:
            return self.fact
        return next(j.table for j in self.joins if j.alias == alias)

    def join_path(self, alias: str) -> tuple[Join, ...]:
        """The joins from the fact down to ``alias``, in join order."""
        by_alias = {j.alias: j for j in self.joins}
        path: list[Join] = []
        while alias != self.fact:
            join = by_alias[alias]
            path.append(join)
            alias = join.from_alias
        return tuple(reversed(path))


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    source_schema: str
    replica_schema: str
    target_schema: str
    delete_mode: str
    before_image_field: str
    tables: dict[str, Table]
    targets: dict[str, Target] = field(default_factory=dict)
    allow_unkeyed_sha256: bool = False
    # How DMS's schema, table and column names find the spec's lower-case names: Oracle and Db2
    # send upper case (``TICKET.TICKET_ID``) unless a DMS transformation rule lowers them.
    source_names: str = "case-insensitive"
    # ``add-columns``: a source column added later (DMS ``add-column``) reaches the replica.
    evolve: str = "add-columns"

    def table(self, name: str) -> Table:
        return self.tables[name]


def load_spec(path: str | Path | None = None) -> PipelineSpec:
    """Load and validate a spec file (the packaged sports-ticketing spec by default).

    The default is read as a package resource, so it also loads when ``shared`` is imported
    from a zip (Glue's ``--extra-py-files``).
    """
    spec_path = Path(path) if path else DEFAULT_SPEC_PATH
    try:
        if path:
            text = spec_path.read_text(encoding="utf-8")
        else:
            text = resources.files("shared").joinpath(DEFAULT_SPEC_RESOURCE).read_text("utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {spec_path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{spec_path}: not valid TOML: {exc}") from None
    try:
        return parse_spec(raw)
    except SpecError as exc:
        raise SpecError(f"{spec_path}: {exc}") from None


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise SpecError(
            f"{where}: {value!r} is not a valid identifier "
            "(lower-case letters, digits and _, starting with a letter or _)"
        )
    if value.startswith(_RESERVED_PREFIX):
        raise SpecError(f"{where}: names starting with {_RESERVED_PREFIX!r} are reserved")
    return value


# The warehouse names a table's stage and apply procedure ``_cdc_stage_<table>`` and
# ``_cdc_apply_<table>`` (``shared.apply_procedures``), within Redshift's 127-byte names.
MAX_TABLE_NAME = 127 - len("_cdc_apply_")


def _table_of(raw: Any, name: str, pii: dict[tuple[str, str], str]) -> Table:
    where = f"tables.{name}"
    if len(name) > MAX_TABLE_NAME:
        raise SpecError(f"{where}: table names are at most {MAX_TABLE_NAME} characters (the "
                        "warehouse adds a prefix of 11 to name its stage and procedure)")
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a table with 'key' and 'columns'")
    unknown = set(raw) - {"key", "columns", "keep_when_null", "long_text", "append_only"}
    if unknown:
        raise SpecError(f"{where}: unknown setting(s) {sorted(unknown)}")
    long_text = raw.get("long_text", "dead-letter")
    if long_text not in LONG_TEXT_MODES:
        raise SpecError(f"{where}.long_text: {long_text!r} is not one of {LONG_TEXT_MODES}")
    append_only = raw.get("append_only", False)
    if not isinstance(append_only, bool):
        raise SpecError(f"{where}.append_only: must be true or false")
    columns_raw = raw.get("columns")
    if not isinstance(columns_raw, dict) or not columns_raw:
        raise SpecError(f"{where}: 'columns' must map column names to types")
    columns = tuple(
        Column(
            name=_identifier(col, f"{where}.columns"),
            type=parse_column_type(str(typ), f"{where}.columns.{col}"),
            pii=pii.get((name, col)),
        )
        for col, typ in columns_raw.items()
    )
    key = raw.get("key")
    if isinstance(key, str):
        key = [key]
    if append_only:
        if key:
            raise SpecError(
                f"{where}: append_only keeps every change as its own row, so it takes no key; "
                "remove 'key' to keep every change, or 'append_only' to keep one row per key")
        key = []
    elif key is None or key == []:
        raise SpecError(
            f"{where}: missing key: list the columns that identify a row (key = [\"id\"]; "
            "the source's primary key, or any columns unique per row), or set "
            "append_only = true to keep every change as its own row")
    elif not isinstance(key, list) or not all(isinstance(c, str) for c in key):
        raise SpecError(f"{where}: key must be a list of column names")
    for col in key:
        if col not in columns_raw:
            raise SpecError(f"{where}: key column {col!r} is not one of its columns")
    if len(set(key)) != len(key):
        raise SpecError(f"{where}: key lists a column twice")
    keep = raw.get("keep_when_null", [])
    if not isinstance(keep, list) or not all(isinstance(c, str) for c in keep):
        raise SpecError(f"{where}.keep_when_null: must be a list of column names")
    for col in keep:
        if col not in columns_raw:
            raise SpecError(f"{where}.keep_when_null: {col!r} is not one of its columns")
        if col in key:
            raise SpecError(f"{where}.keep_when_null: key column {col!r} always arrives")
    if keep and append_only:
        raise SpecError(f"{where}.keep_when_null: an append_only table keeps each change as "
                        "it arrived; remove keep_when_null")
    return Table(name=name, key=tuple(key), columns=columns, keep_when_null=tuple(keep),
                 long_text=long_text, append_only=append_only)


def _pii_rules(raw: Any, allow_sha256: bool) -> dict[tuple[str, str], str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError("pii: must map 'table.column' to a rule")
    rules: dict[tuple[str, str], str] = {}
    for target, rule in raw.items():
        table, _, column = str(target).partition(".")
        if not column:
            raise SpecError(f"pii: {target!r} must be written as 'table.column'")
        if rule not in PII_RULES:
            raise SpecError(f"pii.{target}: unknown rule {rule!r} (one of {', '.join(PII_RULES)})")
        if rule == "sha256" and not allow_sha256:
            raise SpecError(
                f"pii.{target}: 'sha256' is an unkeyed digest open to dictionary attacks; "
                "use 'tokenize', or opt in with pipeline.allow_unkeyed_sha256 = true"
            )
        rules[(table, column)] = rule
    return rules


def _target_of(name: str, raw: Any, tables: dict[str, Table]) -> Target:
    where = f"targets.{name}"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a table")
    unknown = set(raw) - {"fact", "joins", "columns"}
    if unknown:
        raise SpecError(f"{where}: unknown setting(s) {sorted(unknown)}")
    fact = raw.get("fact")
    if fact not in tables:
        raise SpecError(f"{where}: fact {fact!r} is not a table of the spec")
    if tables[fact].append_only:
        raise SpecError(f"{where}: fact {fact!r} is append_only and has no key, so a target "
                        "row cannot follow its changes; give the table a key")
    aliases: dict[str, str] = {fact: fact}
    joins: list[Join] = []
    for i, join_raw in enumerate(raw.get("joins", [])):
        jwhere = f"{where}.joins[{i}]"
        table = join_raw.get("table")
        if table not in tables:
            raise SpecError(f"{jwhere}: table {table!r} is not a table of the spec")
        if tables[table].append_only:
            raise SpecError(f"{jwhere}: table {table!r} is append_only and has no key to "
                            "join on; give it a key")
        alias = _identifier(join_raw.get("alias", table), f"{jwhere}.alias")
        if alias in aliases:
            raise SpecError(f"{jwhere}: alias {alias!r} is used twice; give the join an 'alias'")
        from_alias = join_raw.get("from", fact)
        on = join_raw.get("on")
        if not isinstance(on, dict) or not on:
            raise SpecError(f"{jwhere}: 'on' must map columns of {from_alias!r} to key columns")
        aliases[alias] = table
        joins.append(Join(alias, table, str(from_alias), tuple(on.items())))
    for join in joins:
        jwhere = f"{where}.joins[{join.alias}]"
        if join.from_alias not in aliases:
            raise SpecError(f"{jwhere}: joins from unknown alias {join.from_alias!r}")
        from_table = tables[aliases[join.from_alias]]
        to_table = tables[join.table]
        for from_col, to_col in join.on:
            if from_col not in from_table.column_names:
                raise SpecError(f"{jwhere}: unknown column {join.from_alias}.{from_col}")
            if to_col not in to_table.column_names:
                raise SpecError(f"{jwhere}: unknown column {join.table}.{to_col}")
        if sorted(to for _, to in join.on) != sorted(to_table.key):
            raise SpecError(
                f"{jwhere}: must join on the whole key of {join.table} {list(to_table.key)}, "
                f"so each fact row meets at most one {join.table} row"
            )
    _check_acyclic(where, fact, joins)
    columns_raw = raw.get("columns")
    if not isinstance(columns_raw, dict) or not columns_raw:
        raise SpecError(f"{where}: 'columns' must map target column names to 'alias.column'")
    columns: list[TargetColumn] = []
    for col_name, source in columns_raw.items():
        cwhere = f"{where}.columns.{col_name}"
        _identifier(col_name, cwhere)
        alias, _, column = str(source).partition(".")
        if alias not in aliases:
            raise SpecError(f"{cwhere}: unknown table or alias {alias!r}")
        if column not in tables[aliases[alias]].column_names:
            raise SpecError(f"{cwhere}: unknown column {source!r}")
        columns.append(TargetColumn(col_name, alias, column))
    key: list[str] = []
    for key_col in tables[fact].key:
        holder = next((c.name for c in columns if c.alias == fact and c.column == key_col), None)
        if holder is None:
            raise SpecError(f"{where}: the fact key {fact}.{key_col} must be one of its columns")
        key.append(holder)
    return Target(name, fact, tuple(joins), tuple(columns), tuple(key))


def _check_acyclic(where: str, fact: str, joins: list[Join]) -> None:
    parent = {j.alias: j.from_alias for j in joins}
    for start in parent:
        seen = [start]
        node = start
        while node != fact:
            node = parent[node]
            if node in seen:
                cycle = " -> ".join([*seen[seen.index(node):], node])
                raise SpecError(f"{where}: join cycle {cycle}")
            seen.append(node)


def parse_spec(raw: dict[str, Any]) -> PipelineSpec:
    """Validate a parsed TOML document and build the typed spec."""
    unknown = set(raw) - {"pipeline", "tables", "pii", "targets"}
    if unknown:
        raise SpecError(f"unknown section(s) {sorted(unknown)}")
    pipeline = raw.get("pipeline", {})
    allow_sha256 = bool(pipeline.get("allow_unkeyed_sha256", False))
    pii = _pii_rules(raw.get("pii"), allow_sha256)
    tables_raw = raw.get("tables")
    if not isinstance(tables_raw, dict) or not tables_raw:
        raise SpecError("no [tables.<name>] section: the spec must name its source tables")
    tables = {
        _identifier(name, "tables"): _table_of(body, name, pii) for name, body in tables_raw.items()
    }
    for (table, column), _rule in pii.items():
        if table not in tables:
            raise SpecError(f"pii.{table}.{column}: table {table!r} is not a table of the spec")
        if column not in tables[table].column_names:
            raise SpecError(f"pii.{table}.{column}: column {column!r} is not a column of {table}")
        col = tables[table].column(column)
        if col.pii == "redact" and column in tables[table].key:
            raise SpecError(f"pii.{table}.{column}: a key column cannot be redacted")
        if col.pii == "mask" and not col.type.is_text:
            raise SpecError(
                f"pii.{table}.{column}: 'mask' needs a varchar or char column, or text")
        if col.pii in ("tokenize", "sha256") and col.type.kind in ("super", "varbyte"):
            raise SpecError(
                f"pii.{table}.{column}: {col.pii!r} digests one text value; a "
                f"{col.type.kind} column holds structured or binary data: use 'redact', or "
                "give the personal field its own column")
    targets = {
        _identifier(name, "targets"): _target_of(name, body, tables)
        for name, body in raw.get("targets", {}).items()
    }
    delete_mode = pipeline.get("delete_mode", "tombstone")
    if delete_mode not in DELETE_MODES:
        raise SpecError(f"pipeline.delete_mode: {delete_mode!r} is not one of {DELETE_MODES}")
    source_names = pipeline.get("source_names", "case-insensitive")
    if source_names not in SOURCE_NAME_MODES:
        raise SpecError(
            f"pipeline.source_names: {source_names!r} is not one of {SOURCE_NAME_MODES}")
    evolve = pipeline.get("evolve", "add-columns")
    if evolve not in EVOLVE_MODES:
        raise SpecError(f"pipeline.evolve: {evolve!r} is not one of {EVOLVE_MODES}")
    replica_schema = _identifier(pipeline.get("replica_schema", "cdc_replica"), "replica_schema")
    target_schema = _identifier(pipeline.get("target_schema", "public"), "target_schema")
    if replica_schema == target_schema and set(targets) & set(tables):
        clash = sorted(set(targets) & set(tables))
        raise SpecError(f"targets {clash} would share a name with a replica in {replica_schema}")
    return PipelineSpec(
        name=str(pipeline.get("name", "pipeline")),
        source_schema=str(pipeline.get("source_schema", "public")),
        replica_schema=replica_schema,
        target_schema=target_schema,
        delete_mode=delete_mode,
        before_image_field=str(pipeline.get("before_image_field", "before-image")),
        tables=tables,
        targets=targets,
        allow_unkeyed_sha256=allow_sha256,
        source_names=source_names,
        evolve=evolve,
    )
