"""Compare a pipeline spec with the live source database and name every difference.

    python -m tools.spec_check --source "host=db.example.com dbname=shop user=me" --spec shop.toml

Differences: tables or columns in one and not the other, a column whose source type maps to
another spec type than the spec's (the mapping of ``spec init``, ``tools/source_catalog.py``),
and a key that differs from the source's primary key. A table without a primary key in the
source may name any key in the spec, or be ``append_only``; an enum column only differs when a
label no longer fits its varchar; a column whose source type has no spec type is taken as
mapped by hand. Reads the catalog only, in a read-only session.

Exit codes: 0 "no differences"; 1 differences (one line each); 2 bad input (the spec does not
load, the database cannot be reached).
"""

from __future__ import annotations

import argparse
import sys

from shared.spec import ColumnType, PipelineSpec, SpecError, Table, load_spec, parse_column_type
from tools.source_catalog import (
    SourceCatalog,
    SourceColumn,
    SourceTable,
    SourceUnreachable,
    connect_source,
    map_type,
)


def _match_name(spec: PipelineSpec, name: str) -> str:
    return name if spec.source_names == "exact" else name.lower()


def compare(spec: PipelineSpec, catalog: SourceCatalog,
            only_spec_tables: bool = False) -> list[str]:
    """Every difference between the spec and the source catalog, one sentence each, in table
    and column order (pure)."""
    sources = {_match_name(spec, name): table for name, table in catalog.tables.items()}
    differences: list[str] = []
    for name in sorted(set(spec.tables) | set(sources)):
        table, source = spec.tables.get(name), sources.get(name)
        if table is None and source is not None:
            if not only_spec_tables:
                differences.append(f"table {source.name}: in the source, not in the spec")
        elif table is not None and source is None:
            differences.append(f"table {name}: in the spec, not in the source schema "
                               f"{catalog.schema!r}")
        elif table is not None and source is not None:
            differences += _compare_table(spec, table, source, catalog.engine)
    return differences


def _compare_table(spec: PipelineSpec, table: Table, source: SourceTable,
                   engine: str) -> list[str]:
    differences: list[str] = []
    by_name = {_match_name(spec, c.name): c for c in source.columns}
    for column in table.columns:
        found = by_name.get(column.name)
        where = f"{table.name}.{column.name}"
        if found is None:
            differences.append(f"{where}: in the spec, not in the source")
            continue
        problem = _type_difference(column.type, found, engine)
        if problem:
            differences.append(f"{where}: {problem}")
    for name, found in by_name.items():
        if name not in table.column_names:
            mapped = map_type(found, engine).spec_type
            as_spec = f", {mapped} in the spec" if mapped else ", no spec type"
            differences.append(f"{table.name}.{name}: in the source ({found.type_text}"
                               f"{as_spec}), not in the spec")
    source_key = tuple(_match_name(spec, k) for k in source.key)
    if source_key and table.append_only:
        differences.append(f"{table.name}: key: the source has a primary key "
                           f"({', '.join(source_key)}); the spec says append_only")
    elif source_key and sorted(source_key) != sorted(table.key):
        differences.append(f"{table.name}: key: spec ({', '.join(table.key)}), source primary "
                           f"key ({', '.join(source_key)})")
    return differences


def _type_difference(spec_type: ColumnType, source: SourceColumn, engine: str) -> str:
    mapping = map_type(source, engine)
    if mapping.spec_type is None:
        return ""  # no spec type for it: the spec's is the user's mapping
    if source.enum_labels:
        # A MySQL SET value holds several labels joined by commas.
        is_set = source.type_text.lower().startswith("set(")
        longest = len(",".join(source.enum_labels).encode("utf-8")) if is_set else \
            max(len(label.encode("utf-8")) for label in source.enum_labels)
        if spec_type.kind in ("varchar", "text") and (spec_type.length or 0) >= longest:
            return ""
        if spec_type.kind == "varchar":
            named = source.type_text if source.type_text.lower().startswith(("enum(", "set(")) \
                else f"enum {source.type_text}"
            holds = "values of up to" if is_set else "a label of"
            return (f"{named} has {holds} {longest} bytes, longer than the spec's "
                    f"{spec_type.spec_name}")
    mapped = parse_column_type(mapping.spec_type, source.name)
    if mapped == spec_type:
        return ""
    return (f"type: spec {spec_type.spec_name}, source {source.type_text} "
            f"({mapped.spec_name} in the spec)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spec check", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True,
                        help="the source database: a PostgreSQL DSN or URL, or a MySQL URL "
                             "(mysql://user:password@host:3306/db)")
    parser.add_argument("--spec", required=True, help="the pipeline spec file")
    parser.add_argument("--schema",
                        help="source schema (default: the spec's pipeline.source_schema)")
    parser.add_argument("--only-spec-tables", action="store_true",
                        help="do not report source tables the spec leaves out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        spec = load_spec(args.spec)
        schema = args.schema or spec.source_schema
        with connect_source(args.source) as source:
            catalog = source.read_catalog(schema)
    except (SpecError, SourceUnreachable) as exc:
        print(f"spec check: {exc}", file=sys.stderr)
        return 2
    differences = compare(spec, catalog, args.only_spec_tables)
    if not differences:
        print(f"no differences between {args.spec} and schema {schema!r} of database "
              f"{catalog.database!r}")
        return 0
    print("\n".join(differences))
    print(f"{len(differences)} difference(s) between {args.spec} and schema {schema!r} of "
          f"database {catalog.database!r}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
