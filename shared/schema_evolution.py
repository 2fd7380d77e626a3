"""Source columns added after the spec was written: their warehouse types and PII safety.

With ``evolve = "add-columns"`` (the default), an ``add-column`` control record of a spec table
adds the new source columns to its replica, typed from the DMS type in the record's
``table-def`` (``IncludeControlDetails``), and they are filled from then on. The spec stays
the source of truth for the wide tables; the added columns live in the replica only and are
listed in the warehouse's ``_cdc_columns`` table (``python -m tools.spec_show``).

A new column whose name looks personal (``PERSONAL_NAME_PARTS``) and has no PII rule in the
spec lands redacted (always NULL) and is reported, until the spec gives it a rule.

DMS data types: AWS DMS User Guide, "Data types for AWS Database Migration Service"
(INT1..INT8, UINT1..UINT8, NUMERIC(p,s), REAL4, REAL8, STRING(n), WSTRING(n), BOOLEAN, DATE,
TIME, DATETIME, BYTES(n), BLOB, CLOB, NCLOB).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from shared.spec import Column, PipelineSpec, Table, parse_column_type

# Parts of a column name that mark it as personal data when the spec gives it no rule.
PERSONAL_NAME_PARTS = (
    "email", "mail", "phone", "mobile", "fax", "ssn", "social_security", "tax_id", "birth",
    "dob", "address", "street", "zip", "postal", "postcode", "passport", "license", "iban",
    "account_number", "card", "ip_address", "first_name", "last_name", "surname", "full_name",
    "national_id", "gender", "salary",
)
_WORD = re.compile(r"[a-z0-9]+")
VARCHAR_MAX = 65535


def looks_personal(column: str) -> bool:
    """True when the name holds a ``PERSONAL_NAME_PARTS`` entry as whole words."""
    words = "_" + "_".join(_WORD.findall(column.lower())) + "_"
    return any(f"_{part}_" in words for part in PERSONAL_NAME_PARTS)


def spec_type_of(dms_type: Mapping[str, Any]) -> str:
    """The spec column type for a DMS ``table-def`` column (``{"type": "STRING", "length":
    64}``); text-like and unknown types become ``varchar(65535)`` so no value is refused."""
    kind = str(dms_type.get("type", "")).upper()
    # The guide spells sizes in bytes (INT4); Kinesis records in bits (INT32). An ambiguous
    # INT8 becomes the wider bigint, which refuses no value.
    if kind in ("INT1", "INT2", "INT16", "UINT1"):
        return "smallint"
    if kind in ("INT4", "INT32", "UINT2"):
        return "integer"
    if kind in ("INT8", "INT64", "UINT4"):
        return "bigint"
    if kind == "UINT8":
        return "decimal(20,0)"
    if kind == "NUMERIC":
        precision = int(dms_type.get("precision") or 38)
        scale = int(dms_type.get("scale") or 0)
        if 1 <= precision <= 38 and 0 <= scale <= precision:
            return f"decimal({precision},{scale})"
        return "varchar(128)"
    if kind == "REAL4":
        return "real"
    if kind == "REAL8":
        return "double"
    if kind == "BOOLEAN":
        return "boolean"
    if kind == "DATE":
        return "date"
    if kind == "DATETIME":
        return "timestamp"
    if kind in ("STRING", "WSTRING"):
        length = int(dms_type.get("length") or 0)
        # Redshift counts VARCHAR in bytes; a character takes up to 4 in UTF-8.
        return f"varchar({min(max(length, 1) * 4, VARCHAR_MAX)})" if length else "varchar(65535)"
    return "varchar(65535)"


def new_columns(table: Table, table_def: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(name, spec type) of the ``table-def`` columns the table does not have, lower-cased."""
    columns = table_def.get("columns")
    if not isinstance(columns, Mapping):
        return ()
    known = set(table.column_names)
    added = []
    for name, definition in columns.items():
        column = str(name).lower()
        if column in known or column.startswith("_cdc_") or not re.fullmatch(
                r"[a-z_][a-z0-9_]{0,126}", column):
            continue
        details = definition if isinstance(definition, Mapping) else {}
        added.append((column, spec_type_of(details)))
    return tuple(added)


def evolved_spec(spec: PipelineSpec,
                 added: Mapping[str, Iterable[tuple[str, str]]]) -> PipelineSpec:
    """The spec with the replica columns added by schema evolution (``added``: table ->
    (column, spec type)), personal-looking ones redacted. Targets are unchanged."""
    if not added:
        return spec
    tables = dict(spec.tables)
    for name, columns in added.items():
        table = tables.get(name)
        if table is None:
            continue
        extra = tuple(
            Column(column, parse_column_type(sql_type, f"{name}.{column}"),
                   pii="redact" if looks_personal(column) else None)
            for column, sql_type in columns if column not in table.column_names
        )
        if extra:
            tables[name] = dataclasses.replace(table, columns=table.columns + extra)
    return dataclasses.replace(spec, tables=tables)


def redacted_columns(spec: PipelineSpec, added: Mapping[str, Iterable[tuple[str, str]]],
                     ) -> list[str]:
    """``table.column`` of the added columns that land redacted until the spec has a rule."""
    return sorted(f"{t}.{c}" for t, cols in added.items() for c, _ in cols
                  if t in spec.tables and looks_personal(c))
