"""The spec's column types, their source spellings and Redshift types, and the table options
for long text and tables without a key.

Redshift types: Amazon Redshift Database Developer Guide, "Character types" (VARCHAR up to
65,535 bytes), "VARBYTE type" (1 to 16,777,216 bytes, default 64,000), "SUPER type",
"Datetime types" (TIME).
"""

from __future__ import annotations

import tomllib

import pytest

from shared.spec import SpecError, parse_column_type, parse_spec


@pytest.mark.parametrize(("text", "spec_name", "sql"), [
    ("smallint", "smallint", "SMALLINT"),
    ("int4", "integer", "INTEGER"),
    ("bigint", "bigint", "BIGINT"),
    ("numeric(38,10)", "decimal(38,10)", "DECIMAL(38,10)"),
    ("real", "real", "REAL"),
    ("double precision", "double", "DOUBLE PRECISION"),
    ("boolean", "boolean", "BOOLEAN"),
    ("character(3)", "char(3)", "CHAR(3)"),
    ("character varying(64)", "varchar(64)", "VARCHAR(64)"),
    ("text", "text", "VARCHAR(65535)"),
    ("citext", "text", "VARCHAR(65535)"),
    ("date", "date", "DATE"),
    ("time", "time", "TIME"),
    ("time without time zone", "time", "TIME"),
    ("time(3) without time zone", "time", "TIME"),
    ("timestamp(3)", "timestamp", "TIMESTAMP"),
    ("timestamp(6) with time zone", "timestamptz", "TIMESTAMPTZ"),
    ("uuid", "uuid", "VARCHAR(36)"),
    ("json", "super", "SUPER"),
    ("jsonb", "super", "SUPER"),
    ("super", "super", "SUPER"),
    ("integer[]", "super", "SUPER"),
    ("character varying(20)[]", "super", "SUPER"),
    ("bytea", "varbyte(64000)", "VARBYTE(64000)"),
    ("blob", "varbyte(64000)", "VARBYTE(64000)"),
    ("varbyte", "varbyte(64000)", "VARBYTE(64000)"),
    ("varbyte(16)", "varbyte(16)", "VARBYTE(16)"),
    ("varbyte(16777216)", "varbyte(16777216)", "VARBYTE(16777216)"),
])
def test_types_and_their_source_spellings_map_to_one_spec_type_and_redshift_type(
    text: str, spec_name: str, sql: str
) -> None:
    column_type = parse_column_type(text, "t.c")
    assert column_type.spec_name == spec_name
    assert column_type.sql == sql
    assert parse_column_type(column_type.spec_name, "t.c") == column_type


def test_text_columns_carry_their_byte_limit() -> None:
    assert parse_column_type("text", "t.c").length == 65535
    assert parse_column_type("text", "t.c").is_text
    assert not parse_column_type("uuid", "t.c").is_text


@pytest.mark.parametrize(("text", "message"), [
    ("character varying", "t.c: type 'character varying' has no length: a PostgreSQL "
     "varchar without one is unbounded; write varchar(n) with the longest value's size in "
     "UTF-8 bytes (n up to 65535), or 'text' (VARCHAR(65535); see the table's long_text "
     "setting for longer values)"),
    ("varchar(70000)", "t.c: varchar length must be 1..65535, got 70000 (use 'text' and a "
     "long_text setting)"),
    ("varbyte(16777217)", "t.c: varbyte length must be 1..16777216, got 16777217"),
    ("varbyte(0)", "t.c: varbyte length must be 1..16777216, got 0"),
    ("numeric(39,2)", "t.c: decimal(39,2) is out of range (precision 1..38)"),
    ("interval", "t.c: unknown type 'interval' (the spec's types are listed in docs/spec.md; "
     "an enum is varchar(n))"),
    ("time with time zone", "t.c: unknown type 'time with time zone' (the spec's types are "
     "listed in docs/spec.md; an enum is varchar(n))"),
])
def test_bad_types_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_column_type(text, "t.c")
    assert str(error.value) == message


def _spec(table_body: str, extra: str = "") -> str:
    return f"""
[tables.reading]
{table_body}
[tables.reading.columns]
reading_id = "bigint"
note = "text"
{extra}
"""


def test_long_text_and_append_only_default_to_dead_letter_and_keyed() -> None:
    spec = parse_spec(tomllib.loads(_spec('key = ["reading_id"]')))
    table = spec.table("reading")
    assert (table.long_text, table.append_only, table.key) == ("dead-letter", False,
                                                               ("reading_id",))


def test_a_table_may_truncate_long_text() -> None:
    spec = parse_spec(tomllib.loads(_spec('key = ["reading_id"]\nlong_text = "truncate"')))
    assert spec.table("reading").long_text == "truncate"


def test_an_append_only_table_has_no_key() -> None:
    spec = parse_spec(tomllib.loads(_spec("append_only = true")))
    table = spec.table("reading")
    assert table.append_only and table.key == ()


@pytest.mark.parametrize(("body", "message"), [
    ("", "tables.reading: missing key: list the columns that identify a row "
     "(key = [\"id\"]; the source's primary key, or any columns unique per row), or set "
     "append_only = true to keep every change as its own row"),
    ('key = []', "tables.reading: missing key"),
    ('key = ["reading_id"]\nappend_only = true',
     "tables.reading: append_only keeps every change as its own row, so it takes no key; "
     "remove 'key' to keep every change, or 'append_only' to keep one row per key"),
    ('append_only = "yes"', "tables.reading.append_only: must be true or false"),
    ('key = ["reading_id"]\nlong_text = "cut"',
     "tables.reading.long_text: 'cut' is not one of ('dead-letter', 'truncate')"),
    ('append_only = true\nkeep_when_null = ["note"]',
     "tables.reading.keep_when_null: an append_only table keeps each change as it arrived; "
     "remove keep_when_null"),
])
def test_key_and_text_options_are_checked(body: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(tomllib.loads(_spec(body)))
    assert str(error.value).startswith(message)


def test_a_key_the_spec_names_need_not_be_the_source_primary_key() -> None:
    spec = parse_spec(tomllib.loads(_spec('key = ["note", "reading_id"]')))
    assert spec.table("reading").key == ("note", "reading_id")


@pytest.mark.parametrize(("target", "message"), [
    ('fact = "reading"\ncolumns = { reading_id = "reading.reading_id" }',
     "targets.wide: fact 'reading' is append_only and has no key, so a target row cannot "
     "follow its changes; give the table a key"),
    ('fact = "site"\njoins = [{ table = "reading", on = { site_id = "reading_id" } }]\n'
     'columns = { site_id = "site.site_id" }',
     "targets.wide.joins[0]: table 'reading' is append_only and has no key to join on; "
     "give it a key"),
])
def test_targets_cannot_be_built_on_append_only_tables(target: str, message: str) -> None:
    document = _spec("append_only = true", f"""
[tables.site]
key = ["site_id"]
columns = {{ site_id = "bigint" }}
[targets.wide]
{target}
""")
    with pytest.raises(SpecError) as error:
        parse_spec(tomllib.loads(document))
    assert str(error.value) == message


@pytest.mark.parametrize("column_type", ["jsonb", "bytea"])
def test_a_digest_rule_on_structured_or_binary_data_is_refused(column_type: str) -> None:
    document = tomllib.loads(f"""
[tables.person]
key = ["person_id"]
columns = {{ person_id = "bigint", profile = "{column_type}" }}
[pii]
"person.profile" = "tokenize"
""")
    with pytest.raises(SpecError) as error:
        parse_spec(document)
    kind = "super" if column_type == "jsonb" else "varbyte"
    assert str(error.value) == (
        f"pii.person.profile: 'tokenize' digests one text value; a {kind} column holds "
        "structured or binary data: use 'redact', or give the personal field its own column")


def test_a_text_or_uuid_column_may_be_masked_or_tokenized() -> None:
    spec = parse_spec(tomllib.loads("""
[tables.person]
key = ["person_id"]
columns = { person_id = "uuid", notes = "text", profile = "jsonb" }
[pii]
"person.person_id" = "tokenize"
"person.notes" = "mask"
"person.profile" = "redact"
"""))
    assert [c.pii for c in spec.table("person").columns] == ["tokenize", "mask", "redact"]
