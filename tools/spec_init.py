"""Draft a pipeline spec from your own database: every table (or the ones you name), its key,
its columns in spec types, PII rules suggested for columns that look personal, and no wide
target until you add one.

    python -m tools.spec_init --source "host=db.example.com dbname=shop user=me" --out shop.toml
    python -m tools.spec_init --source postgresql://me@localhost/shop --tables orders,customer \\
        --exclude-columns orders.duration --map-type orders.total=decimal(19,4) --out shop.toml
    python -m tools.spec_init --source mysql://me:secret@db.example.com:3306/shop --out shop.toml

It reads the catalog (tables, columns, types, primary keys, unique indexes, foreign keys) and,
unless ``--no-sample``, up to ``--sample-rows`` values of each character column, in a
read-only session; sampled values only decide PII suggestions and are never printed or written.
The spec is plain TOML with comments: review it, then ``python -m tools.spec_check`` tells you
later when the source has drifted from it. The type mappings are in
``tools/source_catalog.py`` (PostgreSQL), ``tools/mysql_catalog.py`` (MySQL, MariaDB) and
docs/spec.md ("Making a spec from your database").

Exit codes: 0 the spec is written; 2 bad input (unreachable database, unknown table, a column
without a spec type, ...), with a message that says what to do.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.spec import SpecError, parse_column_type, parse_spec
from tools.pii_suggest import STRING_KINDS, PiiSuggestion, suggest
from tools.source_catalog import (
    ENGINE_NAMES,
    SourceCatalog,
    SourceTable,
    SourceUnreachable,
    connect_source,
    map_type,
    spec_name,
)

DEFAULT_SAMPLE_ROWS = 100
# Columns whose values PostgreSQL may keep out of line (TOAST) and, without REPLICA IDENTITY
# FULL, not resend on an update that leaves them alone (docs/source-engines.md).
_LARGE_KINDS = ("text", "super", "varbyte")
_LARGE_VARCHAR = 2000

Sampler = Callable[[SourceTable, Sequence[str]], dict[str, list[str]]]


class InitError(ValueError):
    """The spec cannot be drafted as asked; the message lists every problem and the fix."""


@dataclass(frozen=True)
class InitOptions:
    tables: tuple[str, ...] = ()                  # empty: every table of the schema
    exclude: frozenset[str] = frozenset()         # "table.column", lower-case
    map_types: dict[str, str] = field(default_factory=dict)  # "table.column" -> spec type
    name: str | None = None


@dataclass(frozen=True)
class DraftColumn:
    name: str
    spec_type: str
    note: str = ""


@dataclass(frozen=True)
class DraftTable:
    name: str
    source: SourceTable
    columns: tuple[DraftColumn, ...]
    key: tuple[str, ...]
    unique_keys: tuple[tuple[str, ...], ...] = ()
    large_columns: tuple[str, ...] = ()  # values PostgreSQL may not resend (see _LARGE_KINDS)


@dataclass(frozen=True)
class Draft:
    name: str
    catalog: SourceCatalog
    tables: tuple[DraftTable, ...]
    pii: tuple[PiiSuggestion, ...]

    @property
    def append_only(self) -> list[str]:
        return [t.name for t in self.tables if not t.key]


def _column_ref(table: str, column: str) -> str:
    return f"{table}.{column}".lower()


def choose_tables(catalog: SourceCatalog, wanted: Sequence[str]) -> list[SourceTable]:
    """The catalog's tables, or the ones ``wanted`` names (source or spec names)."""
    if not catalog.tables:
        raise InitError(f"schema {catalog.schema!r} of database {catalog.database!r} has no "
                        "tables; name the schema with --schema")
    if not wanted:
        return list(catalog.tables.values())
    by_name = {name.lower(): table for name, table in catalog.tables.items()}
    unknown = [name for name in wanted if name.lower() not in by_name]
    if unknown:
        known = sorted(catalog.tables)
        shown = ", ".join(known[:30]) + (f", ... ({len(known)} in all)" if len(known) > 30 else "")
        raise InitError(f"--tables: no table {', '.join(unknown)} in schema {catalog.schema!r} "
                        f"(its tables: {shown})")
    return [by_name[name.lower()] for name in dict.fromkeys(wanted)]


def draft_spec(catalog: SourceCatalog, options: InitOptions,
               sampler: Sampler | None = None) -> Draft:
    """Tables, keys, spec types and PII suggestions for the chosen tables (pure, given a
    ``sampler`` that returns some values of a table's character columns; None: no values)."""
    problems: list[str] = []
    unsupported: list[str] = []
    chosen = choose_tables(catalog, options.tables)
    used = {_column_ref(t.name, c.name) for t in chosen for c in t.columns}
    for ref in sorted((set(options.exclude) | set(options.map_types)) - used):
        problems.append(f"{ref}: no such column in the chosen tables "
                        "(--exclude-columns and --map-type take table.column)")
    tables: list[DraftTable] = []
    suggestions: list[PiiSuggestion] = []
    seen_tables: dict[str, str] = {}
    for source in chosen:
        name = spec_name(source.name)
        if name is None:
            problems.append(f"table {source.name!r}: the name cannot be a spec name (lower-case "
                            "letters, digits and _, not starting with _cdc_); leave the table "
                            "out with --tables, or rename it in the source")
            continue
        if name in seen_tables:
            problems.append(f"tables {seen_tables[name]!r} and {source.name!r} are both "
                            f"{name!r} in the spec; keep one with --tables")
            continue
        seen_tables[name] = source.name
        table = _draft_table(name, source, catalog.engine, options, problems, unsupported)
        if table is None:
            continue
        tables.append(table)
        samples = {}
        text_columns = [c.name for c in table.columns
                        if parse_column_type(c.spec_type, c.name).kind in STRING_KINDS]
        if sampler is not None and text_columns:
            samples = sampler(source, [_source_column(source, c) for c in text_columns])
        for column in table.columns:
            kind = parse_column_type(column.spec_type, column.name).kind
            found = suggest(name, column.name, kind, column.name in table.key,
                            samples.get(_source_column(source, column.name), ()))
            if found is not None:
                suggestions.append(found)
    if unsupported:
        problems.append(
            "columns without a spec type (the spec's types are listed in docs/spec.md):\n  "
            + "\n  ".join(unsupported)
            + "\nLeave them out (--exclude-columns "
            + ",".join(u.split(":")[0] for u in unsupported)
            + "), or map each to a spec type that holds the text DMS sends, e.g. "
            f"--map-type {unsupported[0].split(':')[0]}=varchar(256)")
    if problems:
        raise InitError("\n".join(problems))
    pipeline_name = options.name or spec_name(catalog.database) or "pipeline"
    return Draft(pipeline_name, catalog, tuple(tables), tuple(suggestions))


def _source_column(source: SourceTable, spec_column: str) -> str:
    return next(c.name for c in source.columns if c.name.lower() == spec_column)


def _draft_table(name: str, source: SourceTable, engine: str, options: InitOptions,
                 problems: list[str], unsupported: list[str]) -> DraftTable | None:
    columns: list[DraftColumn] = []
    seen: dict[str, str] = {}
    failed = False
    for column in source.columns:
        ref = _column_ref(source.name, column.name)
        if ref in options.exclude:
            if column.name in source.key:
                problems.append(f"{ref}: a key column cannot be left out")
                failed = True
            continue
        col_name = spec_name(column.name)
        if col_name is None:
            problems.append(f"{source.name}.{column.name!r}: the name cannot be a spec name; "
                            f"leave it out with --exclude-columns {ref}")
            failed = True
            continue
        if col_name in seen:
            problems.append(f"{source.name}: columns {seen[col_name]!r} and {column.name!r} are "
                            f"both {col_name!r} in the spec; leave one out with --exclude-columns")
            failed = True
            continue
        seen[col_name] = column.name
        if ref in options.map_types:
            spec_type, note = options.map_types[ref], f"mapped by hand from {column.type_text}"
        else:
            mapping = map_type(column, engine)
            if mapping.spec_type is None:
                unsupported.append(f"{ref}: {mapping.problem}")
                failed = True
                continue
            spec_type, note = mapping.spec_type, mapping.note
        columns.append(DraftColumn(col_name, spec_type, note))
    if failed:
        return None
    if not columns:
        problems.append(f"table {source.name!r}: every column is left out; leave the table out "
                        "with --tables instead")
        return None
    key = tuple(k.lower() for k in source.key)
    uniques = tuple(tuple(c.lower() for c in unique) for unique in source.unique_keys
                    if all(_column_ref(source.name, c) not in options.exclude for c in unique))
    large = tuple(c.name for c in columns if _is_large(c.spec_type))
    return DraftTable(name, source, tuple(columns), key, uniques, large)


def _is_large(spec_type: str) -> bool:
    column_type = parse_column_type(spec_type, "")
    if column_type.kind in _LARGE_KINDS:
        return True
    return column_type.kind == "varchar" and (column_type.length or 0) >= _LARGE_VARCHAR


# -- rendering: hand-written TOML, comments and stable order -----------------------------------

def _string(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for these characters)."""
    return json.dumps(value, ensure_ascii=False)


def _names(names: Sequence[str]) -> str:
    return "[" + ", ".join(_string(n) for n in names) + "]"


def _comment_text(text: str) -> str:
    return " ".join(text.split())


def render(draft: Draft) -> str:
    """The drafted spec as TOML text: tables by name, columns in source order."""
    catalog = draft.catalog
    out = [
        f"# Pipeline spec drafted by `spec init` from the {ENGINE_NAMES[catalog.engine]} "
        f"database {_comment_text(catalog.database)!r}, schema {_comment_text(catalog.schema)!r}.",
        "# Review it before use: the types, keys and PII rules are a starting point.",
        "# Format: docs/spec.md. Later, `python -m tools.spec_check --source <dsn> --spec "
        "<this file>`",
        "# names every difference between this file and the live source.",
        "",
        "[pipeline]",
        f"name = {_string(draft.name)}",
        f"source_schema = {_string(catalog.schema)}  # schema of the tables in the source "
        "database (DMS schema-name)",
        'replica_schema = "cdc_replica"  # warehouse schema of the per-table replicas',
        'target_schema = "public"        # warehouse schema of the wide tables',
        'delete_mode = "tombstone"       # "tombstone" (keep deleted key + order key) or "hard"',
        'before_image_field = "before-image"',
    ]
    for table in sorted(draft.tables, key=lambda t: t.name):
        out += ["", f"[tables.{table.name}]"]
        if table.source.name != table.name:
            out.append(f"# source table {_string(table.source.name)} (names match "
                       "case-insensitively: pipeline.source_names)")
        if table.key:
            out.append(f"key = {_names(table.key)}")
        else:
            out.append("# No primary key in the source: every change is kept as its own row.")
            if table.unique_keys:
                unique = table.unique_keys[0]
                out.append(f"# Rows have a unique key ({', '.join(unique)}): to keep one row per "
                           f"key, name it instead: key = {_names(unique)}")
            else:
                out.append('# If rows have a key, name it instead: key = ["<column>", ...]')
            out.append("append_only = true")
        if table.source.partitioned:
            out += [
                "# Partitioned in the source: logical decoding names a change by its partition",
                "# unless the publication has publish_via_partition_root (PostgreSQL, CREATE",
                "# PUBLICATION); check that your DMS task delivers them under this table's name.",
            ]
        if table.large_columns and table.key and not table.source.replica_identity_full:
            out += [
                "# REPLICA IDENTITY is not FULL in the source: an update that leaves a large",
                "# value alone may not resend it (docs/source-engines.md). Set REPLICA IDENTITY",
                f"# FULL there, or: keep_when_null = {_names(table.large_columns)}",
            ]
        out += ["", f"[tables.{table.name}.columns]"]
        for column in table.columns:
            line = f"{column.name} = {_string(column.spec_type)}"
            if column.note:
                line += f"  # {_comment_text(column.note)}"
            out.append(line)
    out += ["", *_render_pii(draft.pii), "", *_render_target_hint(draft)]
    return "\n".join(out) + "\n"


def _render_pii(suggestions: Sequence[PiiSuggestion]) -> list[str]:
    out = [
        "# Personal data: rules suggested from column names and sampled values (never stored).",
        "# tokenize = HMAC-SHA-256 under the secret key (joinable), mask = every digit becomes "
        "'*',",
        "# redact = NULL. Review each; a column without a rule lands as it is.",
        "[pii]",
    ]
    if not suggestions:
        out.append('# No column looks personal. Add rules as "table.column" = "<rule>".')
    for found in sorted(suggestions, key=lambda s: (s.table, s.column)):
        rule = f"{_string(f'{found.table}.{found.column}')} = {_string(found.rule)}"
        out.append(f"# {rule}  # {found.comment}" if found.tentative
                   else f"{rule}  # {found.comment}")
    return out


def _render_target_hint(draft: Draft) -> list[str]:
    """A commented example of a wide target, from the foreign keys when there are some."""
    out = [
        "# No wide target yet: the warehouse gets one replica per table. To add a wide table,",
        "# name a fact table (one target row per row of it) and the tables it joins through",
        "# foreign keys on their whole key (docs/spec.md, \"[targets.<name>]\"), e.g.:",
    ]
    example = _target_example(draft)
    out += [f"# {line}" if line else "#" for line in example]
    return out


def _target_example(draft: Draft) -> list[str]:
    tables = {t.name: t for t in draft.tables}
    best: tuple[DraftTable, list[tuple[str, DraftTable, tuple[tuple[str, str], ...]]]] | None = \
        None
    for table in sorted(draft.tables, key=lambda t: t.name):
        if not table.key:
            continue
        joins = []
        for fk in table.source.foreign_keys:
            ref = tables.get(spec_name(fk.ref_table) or "")
            names = [c.lower() for c in fk.columns]
            ref_names = [c.lower() for c in fk.ref_columns]
            if ref is None or not ref.key or sorted(ref_names) != sorted(ref.key) \
                    or not all(n in {c.name for c in table.columns} for n in names):
                continue
            joins.append((ref.name, ref, tuple(zip(names, ref_names, strict=True))))
        if joins and (best is None or len(joins) > len(best[1])):
            best = (table, joins)
    if best is None:
        return ['[targets.orders_wide]', 'fact = "orders"', 'joins = [',
                '    { table = "customer", from = "orders", '
                'on = { customer_id = "customer_id" } },', ']', '',
                '[targets.orders_wide.columns]', 'order_id = "orders.order_id"',
                'customer_name = "customer.name"']
    fact, joins = best
    target = f"{fact.name}_wide"[:127]
    lines = [f"[targets.{target}]", f"fact = {_string(fact.name)}", "joins = ["]
    aliases: list[tuple[str, DraftTable]] = []
    for ref_name, ref, on in joins:
        alias = ref_name
        if any(a == alias for a, _ in aliases) or alias == fact.name:
            alias = f"{ref_name}_{on[0][0]}"[:127]
        aliases.append((alias, ref))
        on_text = ", ".join(f"{a} = {_string(b)}" for a, b in on)
        alias_text = f"alias = {_string(alias)}, " if alias != ref_name else ""
        lines.append(f"    {{ table = {_string(ref_name)}, {alias_text}"
                     f"from = {_string(fact.name)}, on = {{ {on_text} }} }},")
    lines += ["]", "", f"[targets.{target}.columns]"]
    columns = {k: f"{fact.name}.{k}" for k in fact.key}
    for alias, ref in aliases:
        extra = next((c.name for c in ref.columns if c.name not in ref.key), None)
        if extra is not None and f"{alias}_{extra}" not in columns:
            columns[f"{alias}_{extra}"[:127]] = f"{alias}.{extra}"
    lines += [f"{name} = {_string(source)}" for name, source in columns.items()]
    return lines


# -- command line ------------------------------------------------------------------------------

def _parse_map_types(values: Sequence[str]) -> dict[str, str]:
    mapped: dict[str, str] = {}
    for value in values:
        ref, sep, spec_type = value.partition("=")
        if not sep or "." not in ref or not spec_type.strip():
            raise InitError(f"--map-type {value!r}: write table.column=<spec type>, "
                            "e.g. orders.duration=varchar(64)")
        try:
            parse_column_type(spec_type, f"--map-type {ref}")
        except SpecError as exc:
            raise InitError(str(exc)) from None
        mapped[ref.strip().lower()] = " ".join(spec_type.lower().split())
    return mapped


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spec init", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True,
                        help="the source database: a PostgreSQL DSN or URL "
                             "(host=... dbname=... user=..., or postgresql://user@host/db), "
                             "or a MySQL URL (mysql://user:password@host:3306/db)")
    parser.add_argument("--schema",
                        help="source schema (default: public; MySQL: the URL's database)")
    parser.add_argument("--tables", help="only these tables, comma-separated (default: all)")
    parser.add_argument("--exclude-columns", metavar="TABLE.COLUMN,...",
                        help="leave these columns out of the spec")
    parser.add_argument("--map-type", action="append", default=[],
                        metavar="TABLE.COLUMN=TYPE",
                        help="give a column this spec type instead of the mapped one "
                             "(repeatable), e.g. orders.duration=varchar(64)")
    parser.add_argument("--name", help="the pipeline's name (default: the database's)")
    parser.add_argument("--no-sample", action="store_true",
                        help="suggest PII rules from column names only; read no row values")
    parser.add_argument("--sample-rows", type=int, default=DEFAULT_SAMPLE_ROWS,
                        help=f"values read per character column (default {DEFAULT_SAMPLE_ROWS})")
    parser.add_argument("--out", required=True,
                        help="the spec file to write ('-' prints it)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    return parser


def _summary(draft: Draft, out: str) -> str:
    rules = [s for s in draft.pii if not s.tentative]
    tentative = len(draft.pii) - len(rules)
    text = (f"wrote {out}: {len(draft.tables)} table(s), {len(rules)} PII rule(s) suggested"
            + (f", {tentative} to consider (commented out)" if tentative else "")
            + ", no wide target (see the hint at the end of the file)")
    return text


def run(argv: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """Parse, read, draft, check: the spec text and the notes to print; raises InitError or
    SourceUnreachable."""
    args = _parser().parse_args(argv)
    if args.sample_rows < 1:
        raise InitError("--sample-rows must be at least 1 (or use --no-sample)")
    out = Path(args.out)
    if args.out != "-" and out.exists() and not args.force:
        raise InitError(f"{out} exists; choose another --out, or --force to overwrite it")
    options = InitOptions(tables=tuple(_csv(args.tables)),
                          exclude=frozenset(c.lower() for c in _csv(args.exclude_columns)),
                          map_types=_parse_map_types(args.map_type), name=args.name)
    with connect_source(args.source) as source:
        schema = args.schema or source.default_schema
        catalog = source.read_catalog(schema)
        sampler: Sampler | None = None
        if not args.no_sample:
            def sampler(table: SourceTable, columns: Sequence[str]) -> dict[str, list[str]]:
                return source.sample(schema, table.name, columns, args.sample_rows)
        draft = draft_spec(catalog, options, sampler)
    text = render(draft)
    try:
        parse_spec(tomllib.loads(text))
    except (SpecError, tomllib.TOMLDecodeError) as exc:
        raise InitError(f"the drafted spec does not load ({exc}); this is a bug of spec init, "
                        "please report it with the table's definition") from None
    notes = [f"{name}: no primary key; written as append_only = true (name a key in the spec "
             "if rows have one)" for name in draft.append_only]
    if args.out == "-":
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        notes.append(_summary(draft, args.out))
    return text, notes


def main(argv: list[str] | None = None) -> int:
    try:
        _text, notes = run(argv)
    except (InitError, SourceUnreachable) as exc:
        print(f"spec init: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
