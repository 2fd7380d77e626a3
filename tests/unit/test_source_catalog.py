"""The source-to-spec type mapping of ``spec init``/``spec check`` and the spec check's
comparison, on catalogs built by hand (PostgreSQL ``format_type`` spellings)."""

from __future__ import annotations

import pytest

from shared.spec import load_spec, parse_column_type
from tools.mysql_catalog import enum_labels
from tools.source_catalog import (
    SourceCatalog,
    SourceColumn,
    SourceTable,
    enum_length,
    map_type,
    spec_name,
)
from tools.spec_check import compare


@pytest.mark.parametrize(("type_text", "spec_type"), [
    ("smallint", "smallint"), ("integer", "integer"), ("bigint", "bigint"),
    ("numeric(12,2)", "decimal(12,2)"), ("numeric(38,0)", "decimal(38,0)"),
    ("numeric", "decimal(38,10)"), ("real", "real"), ("double precision", "double"),
    ("boolean", "boolean"), ("character(3)", "char(3)"), ('"char"', "char(1)"),
    ("character varying(64)", "varchar(64)"), ("character varying", "text"), ("text", "text"),
    ("character varying(70000)", "text"), ("character(5000)", "varchar(5000)"),
    ("date", "date"), ("time without time zone", "time"), ("time(3) without time zone", "time"),
    ("timestamp without time zone", "timestamp"), ("timestamp(6) with time zone", "timestamptz"),
    ("uuid", "uuid"), ("json", "super"), ("jsonb", "super"), ("bytea", "varbyte"),
])
def test_supported_types_map_to_a_spec_type_that_loads(type_text: str, spec_type: str) -> None:
    mapping = map_type(SourceColumn("c", type_text))
    assert mapping.spec_type == spec_type
    parse_column_type(spec_type, "c")


def test_arrays_enums_and_domains() -> None:
    assert map_type(SourceColumn("c", "integer[]", category="A")).spec_type == "super"
    assert map_type(SourceColumn("c", "text[]")).spec_type == "super"
    enum = map_type(SourceColumn("c", "mood", category="E", enum_labels=("happy", "sad")))
    assert (enum.spec_type, enum.note) == ("varchar(16)", "enum mood")
    domain = map_type(SourceColumn("c", "us_zip", base_type="character varying(10)"))
    assert (domain.spec_type, domain.note) == (
        "varchar(10)", "domain us_zip over character varying(10)")


@pytest.mark.parametrize(("labels", "length"), [
    (("a",), 16), (("x" * 16,), 16), (("x" * 17,), 32), (("x" * 33,), 64),
    (("zürich_ööööööööö",), 32),  # UTF-8 bytes, not characters
])
def test_enum_length_is_the_longest_label_rounded_up(labels: tuple[str, ...],
                                                     length: int) -> None:
    assert enum_length(labels) == length


@pytest.mark.parametrize(("type_text", "why"), [
    ("interval", ""), ("money", ""), ("point", ""), ("xml", ""), ("tsvector", ""),
    ("time with time zone", ""), ("inet", ""), ("bit(8)", ""), ("int4range", ""),
    ("numeric(40,2)", "more than 38 digits"), ("numeric(5,-2)", "a scale outside"),
])
def test_unsupported_types_say_why(type_text: str, why: str) -> None:
    mapping = map_type(SourceColumn("c", type_text))
    assert mapping.spec_type is None
    assert mapping.problem.startswith(f"type {type_text} has no spec type")
    assert why in mapping.problem


@pytest.mark.parametrize(("name", "expected"), [
    ("orders", "orders"), ("Orders", "orders"), ("ORDER_ITEMS2", "order_items2"),
    ("order items", None), ("unit-price", None), ("größe", None), ("_cdc_x", None),
    ("1st", None),
])
def test_spec_names(name: str, expected: str | None) -> None:
    assert spec_name(name) == expected


def shipped_catalog() -> SourceCatalog:
    """The shipped spec's tables as a strict source holds them."""
    spec = load_spec()
    return SourceCatalog("postgresql", "shop", "public", {
        name: SourceTable(name, tuple(SourceColumn(c.name, c.type.sql.lower().replace(
            "varchar", "character varying").replace("decimal", "numeric"))
            for c in table.columns), table.key)
        for name, table in spec.tables.items()})


def test_a_source_that_matches_has_no_differences() -> None:
    assert compare(load_spec(), shipped_catalog()) == []


def test_every_kind_of_difference_is_named() -> None:
    spec = load_spec()
    catalog = shipped_catalog()
    customer = catalog.tables["customer"]
    tables = dict(catalog.tables)
    tables["customer"] = SourceTable("customer", (
        *(c for c in customer.columns if c.name != "phone"),
        SourceColumn("nickname", "text"), SourceColumn("span", "interval")),
        ("customer_id", "name"))
    ticket = tables["ticket"]
    tables["ticket"] = SourceTable("ticket", tuple(
        SourceColumn(c.name, "numeric") if c.name == "ticket_price" else c
        for c in ticket.columns), ticket.key)
    del tables["sport_event"]
    tables["refund"] = SourceTable("refund", (SourceColumn("refund_id", "bigint"),), ())

    differences = compare(spec, SourceCatalog("postgresql", "shop", "public", tables))

    assert differences == [
        "customer.phone: in the spec, not in the source",
        "customer.nickname: in the source (text, text in the spec), not in the spec",
        "customer.span: in the source (interval, no spec type), not in the spec",
        "customer: key: spec (customer_id), source primary key (customer_id, name)",
        "table refund: in the source, not in the spec",
        "table sport_event: in the spec, not in the source schema 'public'",
        "ticket.ticket_price: type: spec decimal(12,2), source numeric "
        "(decimal(38,10) in the spec)",
    ]
    assert "table refund: in the source, not in the spec" not in compare(
        spec, SourceCatalog("postgresql", "shop", "public", tables), only_spec_tables=True)


def test_a_source_table_without_a_key_may_have_any_key_in_the_spec() -> None:
    catalog = shipped_catalog()
    tables = {name: SourceTable(name, table.columns, ()) for name, table in catalog.tables.items()}
    assert compare(load_spec(), SourceCatalog("postgresql", "shop", "public", tables)) == []


def test_upper_case_source_names_match_case_insensitively() -> None:
    catalog = shipped_catalog()
    upper = SourceCatalog("oracle-like", "shop", "public", {
        name.upper(): SourceTable(name.upper(), tuple(
            SourceColumn(c.name.upper(), c.type_text) for c in table.columns),
            tuple(k.upper() for k in table.key))
        for name, table in catalog.tables.items()})
    assert compare(load_spec(), upper) == []


@pytest.mark.parametrize(("column_type", "data_type", "spec_type"), [
    ("tinyint(4)", "tinyint", "smallint"), ("tinyint(3) unsigned", "tinyint", "smallint"),
    ("smallint(5) unsigned", "smallint", "integer"), ("mediumint(9)", "mediumint", "integer"),
    ("int(11)", "int", "integer"), ("int(10) unsigned", "int", "bigint"),
    ("bigint(20)", "bigint", "bigint"), ("bigint(20) unsigned", "bigint", "decimal(20,0)"),
    ("tinyint(1)", "tinyint", "smallint"), ("bit(1)", "bit", "boolean"),
    ("decimal(12,2)", "decimal", "decimal(12,2)"), ("decimal(10,0) unsigned", "decimal",
                                                    "decimal(10,0)"),
    ("float", "float", "real"), ("double", "double", "double"),
    ("char(3)", "char", "char(3)"), ("varchar(40)", "varchar", "varchar(40)"),
    ("text", "text", "text"), ("longtext", "longtext", "text"),
    ("varbinary(16)", "varbinary", "varbyte"), ("longblob", "longblob", "varbyte"),
    ("date", "date", "date"), ("time(3)", "time", "time"), ("datetime(6)", "datetime",
                                                             "timestamp"),
    ("timestamp", "timestamp", "timestamp"), ("year(4)", "year", "smallint"),
    ("json", "json", "super"), ("uuid", "uuid", "uuid"),
    ("enum('a','it''s')", "enum", "varchar(16)"), ("set('aaaaaaaaaa','bbbbbbbbbb')", "set",
                                                   "varchar(32)"),
])
def test_mysql_types_map_to_a_spec_type_that_loads(column_type: str, data_type: str,
                                                   spec_type: str) -> None:
    mapping = map_type(SourceColumn("c", column_type, data_type), "mysql")
    assert mapping.spec_type == spec_type
    parse_column_type(spec_type, "c")


@pytest.mark.parametrize(("column_type", "data_type"), [
    ("point", "point"), ("geometry", "geometry"), ("inet6", "inet6"), ("bit(8)", "bit"),
    ("decimal(65,2)", "decimal"),
])
def test_mysql_types_without_a_spec_type(column_type: str, data_type: str) -> None:
    mapping = map_type(SourceColumn("c", column_type, data_type), "mysql")
    assert mapping.spec_type is None
    assert mapping.problem.startswith(f"type {column_type} has no spec type")


def test_mysql_enum_labels_keep_quotes_and_commas() -> None:
    assert enum_labels("enum('a','it''s','x,y')") == ("a", "it's", "x,y")
