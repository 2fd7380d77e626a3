"""The Redshift grammar check, the Redshift -> PostgreSQL translation, the lexer and the
COPY parser of the Data API stand-in, without any server."""

from __future__ import annotations

import pytest

from local.redshift_data_api import parameters
from local.redshift_data_api.copy_parse import parse_copy
from local.redshift_data_api.grammar import (
    RedshiftSqlError,
    check_redshift_sql,
    translate_to_postgres,
)
from local.redshift_data_api.lexer import Kind, quote_literal, string_value, tokenize

VALID_REDSHIFT = [
    "CREATE SCHEMA IF NOT EXISTS analytics",
    "CREATE TABLE IF NOT EXISTS s.t (id BIGINT NOT NULL ENCODE az64, name VARCHAR(MAX) "
    "ENCODE lzo, ts TIMESTAMP DEFAULT GETDATE(), PRIMARY KEY (id)) DISTSTYLE KEY DISTKEY(id) "
    "COMPOUND SORTKEY(id, ts)",
    "CREATE TABLE t (a INT DISTKEY SORTKEY, b VARCHAR(10)) DISTSTYLE ALL SORTKEY AUTO "
    "ENCODE AUTO BACKUP NO",
    "CREATE TABLE t (a INT) DISTSTYLE EVEN INTERLEAVED SORTKEY (a)",
    "CREATE TABLE t (id INT IDENTITY(1, 1), v CHARACTER VARYING(MAX), d DECIMAL(12,2))",
    "CREATE TEMP TABLE stage (LIKE public.orders)",
    "CREATE TEMP TABLE affected AS SELECT id FROM a UNION SELECT id FROM b",
    "INSERT INTO t VALUES (1, 'O''Brien\\\\'), (2, 'it\\'s'), (3, 'line\nbreak'), "
    "(4, 'ünïcødé ✓'), (5, NULL)",
    "INSERT INTO t (a, b) SELECT x, y FROM s WHERE y::int > 2",
    "DELETE FROM stage USING public.orders r WHERE stage.id = r.id AND stage.v <= r.v",
    "UPDATE t SET v = s.v FROM s WHERE t.id = s.id",
    "MERGE INTO public.t USING stage s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v "
    "WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)",
    "MERGE INTO t USING stage AS src "
    "ON t.id = src.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES "
    "(src.id, src.v)",
    "ALTER TABLE t ADD c INT",
    "MERGE INTO t USING stage ON t.id = stage.id REMOVE DUPLICATES",
    "LOCK a, b",
    "LOCK TABLE public.a",
    "COPY s.t (a, b) FROM 's3://bucket/prefix/' IAM_ROLE 'arn:aws:iam::1:role/r' "
    "FORMAT AS JSON 'auto' GZIP TIMEFORMAT 'auto' DATEFORMAT 'auto'",
    "COPY t FROM 's3://b/p' IAM_ROLE default CSV QUOTE AS '\"' DELIMITER ',' "
    "IGNOREHEADER 1 NULL AS '' EMPTYASNULL BLANKSASNULL TRUNCATECOLUMNS REGION 'us-east-1'",
    "COPY t FROM 's3://b/manifest' CREDENTIALS 'aws_iam_role=arn' PARQUET MANIFEST",
    "SELECT a.x, b.y, nvl(c.z, 0) FROM a JOIN b ON a.id = b.id LEFT JOIN c USING (id) "
    "WHERE a.name ILIKE 'x%' ORDER BY 1 LIMIT 10",
    "SELECT listagg(a, ',') WITHIN GROUP (ORDER BY a) FROM t",
    "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    "ALTER TABLE t ADD COLUMN c VARCHAR(20) DEFAULT 'x'",
    "ALTER TABLE t ALTER COLUMN c TYPE VARCHAR(300)",
    "ALTER TABLE t ALTER DISTKEY id",
    "DROP TABLE IF EXISTS a.b",
    "TRUNCATE t",
    "GRANT SELECT ON t TO GROUP analysts",
    "ANALYZE t",
    "VACUUM DELETE ONLY t TO 100 PERCENT",
    "SELECT 1;",
    "-- a comment\nSELECT 1 /* another */",
    "CREATE OR REPLACE FUNCTION f(int) RETURNS int STABLE AS $$ SELECT $1 $$ LANGUAGE sql",
]


@pytest.mark.parametrize("sql", VALID_REDSHIFT)
def test_valid_redshift_is_accepted(sql: str) -> None:
    check_redshift_sql(sql)


REJECTED = [
    # MERGE: Redshift's grammar is much smaller than PostgreSQL's.
    ("WITH x AS (SELECT 1 AS id) MERGE INTO t USING x ON t.id = x.id WHEN MATCHED THEN "
     "DELETE WHEN NOT MATCHED THEN INSERT VALUES (x.id)", 'near "MERGE"'),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.op = 'D' THEN DELETE "
     "WHEN NOT MATCHED THEN INSERT VALUES (s.id)", 'near "AND"'),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE "
     "WHEN NOT MATCHED AND s.id > 0 THEN INSERT VALUES (s.id)", 'near "AND"'),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE "
     "WHEN NOT MATCHED BY SOURCE THEN DELETE", 'near "BY"'),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE "
     "WHEN NOT MATCHED BY TARGET THEN INSERT VALUES (s.id)", 'near "BY"'),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DO NOTHING "
     "WHEN NOT MATCHED THEN INSERT VALUES (s.id)", 'near "DO"'),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v",
     "at end of input"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
     "at end of input"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN MATCHED THEN "
     "UPDATE SET v = 1 WHEN NOT MATCHED THEN INSERT VALUES (s.id)", 'near "WHEN"'),
    ("MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id) "
     "WHEN MATCHED THEN DELETE", 'near "WHEN"'),
    # The MERGE page (https://docs.aws.amazon.com/redshift/latest/dg/r_MERGE.html): the
    # source is a table, only the source takes an alias.
    ("MERGE INTO t USING (SELECT s.* FROM s JOIN t ON s.id = t.id) x ON t.id = x.id "
     "WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (x.id)",
     "must be a table, not a subquery"),
    ("MERGE INTO t USING (SELECT id, max(v) AS v FROM stage GROUP BY id) AS src "
     "ON t.id = src.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES "
     "(src.id, src.v)", 'near "("'),
    ("MERGE INTO public.t AS x USING s ON x.id = s.id WHEN MATCHED THEN DELETE "
     "WHEN NOT MATCHED THEN INSERT VALUES (s.id)", "target table takes no alias"),
    ("MERGE INTO t x USING s ON x.id = s.id WHEN MATCHED THEN DELETE "
     "WHEN NOT MATCHED THEN INSERT VALUES (s.id)", 'near "x"'),
    ("MERGE INTO public.t USING t ON 1 = 1 REMOVE DUPLICATES",
     'Target table "t" cannot be referenced'),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE REMOVE DUPLICATES",
     'near "REMOVE"'),
    # PostgreSQL-only syntax a writer could slip into.
    ("INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING", 'near "ON"'),
    ("INSERT INTO t VALUES (1) RETURNING id", 'near "RETURNING"'),
    ("UPDATE t SET a = 1 RETURNING *", 'near "RETURNING"'),
    ("SELECT E'tab\\there'", "syntax error"),
    ("ALTER TABLE t ADD COLUMN IF NOT EXISTS c INT", 'near "NOT"'),
    # The ALTER TABLE page (https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html):
    # one ADD [COLUMN] per statement.
    ("ALTER TABLE t ADD COLUMN a INT, ADD COLUMN b INT", "one column per statement"),
    ("ALTER TABLE s.t ADD a INT, ADD b VARCHAR(3)", 'near ","'),
    ("SELECT * FROM t WHERE id = $1", "there is no parameter $1"),
    ("SELECT $$dollar quoted$$", "syntax error"),
    ("SELECT $tag$x$tag$", "syntax error"),
    ("CREATE TEMP TABLE x (a INT) ON COMMIT DROP", 'near "ON"'),
    ("CREATE INDEX i ON t (a)", 'near "INDEX"'),
    ("CREATE TABLE t (id SERIAL, doc JSONB)", 'Column "t.id" has unsupported type "serial"'),
    ("CREATE TABLE t (id UUID)", 'unsupported type "uuid"'),
    ("CREATE TABLE t (tags TEXT[])", "unsupported type"),
    ("SELECT 1; SELECT 2", "cannot insert multiple commands into a prepared statement"),
    ("SELECT 'unterminated", "unterminated quoted string"),
    ("INSERT INTO t VALUES (1,", "syntax error"),
    ("ALTER TABLE t ALTER COLUMN c TYPE BIGINT", 'target data type "bigint" is not supported'),
    ("COPY t FROM 's3://b/p' FORMAT AS JSON 'auto'", "Invalid credentials"),
    ("COPY t FROM 's3://b/p' IAM_ROLE default FORMAT AS JSON 'auto' BOGUS", 'near "BOGUS"'),
]


@pytest.mark.parametrize(("sql", "expected"), REJECTED)
def test_redshift_rejects(sql: str, expected: str) -> None:
    with pytest.raises(RedshiftSqlError) as info:
        check_redshift_sql(sql)
    text = str(info.value)
    assert text.startswith("ERROR: ")
    assert expected in text


def test_string_literals_are_never_rewritten() -> None:
    sql = ("CREATE TABLE t (a VARCHAR(MAX) DEFAULT 'DISTKEY(a) ENCODE zstd GETDATE() "
           "VARCHAR(MAX) SYSDATE') DISTKEY(a)")
    [out] = translate_to_postgres(sql)
    assert "'DISTKEY(a) ENCODE zstd GETDATE() VARCHAR(MAX) SYSDATE'" in out
    assert out.count("DISTKEY") == 1
    assert "public.rs_varchar_65535" in out


@pytest.mark.parametrize(("redshift", "expected"), [
    ("CREATE TABLE t (a INT ENCODE az64, b VARCHAR(MAX)) DISTSTYLE KEY DISTKEY(a) "
     "COMPOUND SORTKEY(a, b) BACKUP NO", "CREATE TABLE t (a INT , b public.rs_varchar_65535)"),
    ("CREATE TABLE t (a INT DISTKEY SORTKEY) SORTKEY AUTO", "CREATE TABLE t (a INT )"),
    ("CREATE TABLE t (a VARCHAR, b TEXT, c DECIMAL, d NUMERIC(5,1), e NVARCHAR(4))",
     "CREATE TABLE t (a public.rs_varchar_256, b public.rs_varchar_256, c NUMERIC(18,0), "
     "d NUMERIC(5,1), e public.rs_varchar_4)"),
    ("CREATE VIEW v AS SELECT CAST(a AS VARCHAR) AS \"A\" FROM t",
     "CREATE VIEW v AS SELECT CAST(a AS VARCHAR(256)) AS \"a\" FROM t"),
    ("ALTER TABLE t ALTER COLUMN c TYPE CHARACTER VARYING(300)",
     "ALTER TABLE t ALTER COLUMN c TYPE public.rs_varchar_300"),
    ("CREATE TABLE t (id BIGINT IDENTITY(10, 5))",
     "CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY (START WITH 10 INCREMENT BY 5))"),
    ("CREATE TABLE t (id INT GENERATED BY DEFAULT AS IDENTITY(1,1))",
     "CREATE TABLE t (id INT GENERATED BY DEFAULT AS IDENTITY (START WITH 1 INCREMENT BY 1))"),
    ("SELECT NVL(a, 0), LEN(b), SYSDATE FROM t", "SELECT COALESCE(a, 0), LENGTH(b), "
     "LOCALTIMESTAMP FROM t"),
    ("SELECT CAST(x AS VARCHAR(MAX)), y::character varying(max) FROM t",
     "SELECT CAST(x AS VARCHAR(65535)), y::VARCHAR(65535) FROM t"),
])
def test_translation(redshift: str, expected: str) -> None:
    out = translate_to_postgres(redshift)[0]
    assert " ".join(out.split()) == " ".join(expected.split())


def test_a_sort_key_becomes_an_index() -> None:
    """Redshift reads a sort key's range through zone maps; the stand-in indexes it, so a
    join of a small stage to a big replica does not scan the replica."""
    table, index = translate_to_postgres(
        'CREATE TABLE IF NOT EXISTS "s"."T" (a INT, b INT) DISTKEY(a) SORTKEY(a, b)')
    assert table.startswith('CREATE TABLE IF NOT EXISTS "s"."t" (a INT, b INT)')
    assert index.startswith("CREATE INDEX IF NOT EXISTS rs_sortkey_")
    assert index.endswith(' ON "s"."t" (a,b)')
    assert len(translate_to_postgres("CREATE TABLE t (a INT) SORTKEY AUTO")) == 1


def test_key_constraints_are_informational() -> None:
    [out] = translate_to_postgres(
        "CREATE TABLE s.t (id INT NOT NULL PRIMARY KEY, u VARCHAR(5) UNIQUE, "
        "f INT REFERENCES s.o (id), g INT CONSTRAINT fk REFERENCES o, h INT DEFAULT 1, "
        "PRIMARY KEY (id, u), CONSTRAINT uq UNIQUE (u), FOREIGN KEY (f) REFERENCES o(id))")
    assert " ".join(out.split()) == ("CREATE TABLE s.t (id INT NOT NULL , u public.rs_varchar_5 , "
                                     "f INT , g INT , h INT DEFAULT 1)")
    assert translate_to_postgres("ALTER TABLE t ADD CONSTRAINT pk PRIMARY KEY (a)") == []
    assert translate_to_postgres("ALTER TABLE t DROP CONSTRAINT pk") == []


def test_transaction_block_rules() -> None:
    from local.redshift_data_api.grammar import check_outside_transaction_block

    with pytest.raises(RedshiftSqlError, match="cannot run inside a transaction block"):
        check_outside_transaction_block("ALTER TABLE t ALTER COLUMN c TYPE VARCHAR(300)")
    check_outside_transaction_block("ALTER TABLE t ADD COLUMN c VARCHAR(300)")


def test_getdate_is_a_timestamp_in_whole_seconds() -> None:
    [out] = translate_to_postgres("SELECT GETDATE()")
    assert out == "SELECT CAST(date_trunc('second', statement_timestamp()) AS timestamp)"


def test_storage_only_statements_become_no_ops() -> None:
    assert translate_to_postgres("ALTER TABLE t ALTER SORTKEY (a, b)") == []
    assert translate_to_postgres("ALTER TABLE t ALTER COLUMN c ENCODE zstd") == []
    assert translate_to_postgres("VACUUM t") == []


def test_remove_duplicates_becomes_delete_and_insert() -> None:
    out = translate_to_postgres("MERGE INTO s.t AS x USING stage ON x.id = stage.id "
                                "REMOVE DUPLICATES")
    assert out == ["DELETE FROM s . t AS x USING stage WHERE x . id = stage . id",
                   "INSERT INTO s.t SELECT * FROM stage"]


def test_lexer_follows_redshift_backslash_rules() -> None:
    tokens = tokenize("SELECT 'O''Brien\\\\', 'it\\'s', \"a\"\"b\", :p, x::int -- c")
    strings = [t.text for t in tokens if t.kind is Kind.STRING]
    assert [string_value(s) for s in strings] == ["O'Brien\\", "it's"]
    assert [t.text for t in tokens if t.kind is Kind.PARAM] == [":p"]
    assert any(t.is_op("::") for t in tokens)
    assert "".join(t.text for t in tokens).endswith("-- c")


@pytest.mark.parametrize("value", ["plain", "O'Brien\\", "\\'; DROP TABLE t; --", "ü\n\t✓"])
def test_quote_literal_round_trips(value: str) -> None:
    [token] = tokenize(quote_literal(value))
    assert token.kind is Kind.STRING
    assert string_value(token.text) == value


def test_parameters_bind_as_escaped_literals() -> None:
    values = parameters.parse_parameters([{"name": "id", "value": "7"},
                                          {"name": "name", "value": "O'Brien\\"}])
    sql = "SELECT ':id', :id::int, :name -- :id"
    assert parameters.bind(sql, values) == "SELECT ':id', '7'::int, 'O''Brien\\\\' -- :id"


@pytest.mark.parametrize(("raw", "sqls", "expected"), [
    ([{"name": "a", "value": ""}], ["SELECT :a"], "empty"),
    ([{"name": "a", "value": "1"}, {"name": "a", "value": "2"}], ["SELECT :a"], "more than once"),
    ([{"name": "a-b", "value": "1"}], ["SELECT 1"], "must match"),
    ([{"name": "a", "value": "1"}], ["SELECT :a, :b"], "':b'"),
    ([{"name": "a", "value": "1"}, {"name": "z", "value": "1"}], ["SELECT :a"], "'z'"),
])
def test_parameter_errors(raw: list[dict[str, str]], sqls: list[str], expected: str) -> None:
    with pytest.raises(parameters.ParameterError, match=expected):
        values = parameters.parse_parameters(raw)
        parameters.check_all_used(sqls, values)
        for sql in sqls:
            parameters.bind(sql, values)


def test_copy_options_are_parsed() -> None:
    cmd = parse_copy(
        "COPY \"S\".t (a, \"B\") FROM 's3://bucket/pre/fix' IAM_ROLE 'arn:x' FORMAT AS CSV "
        "QUOTE AS '''' DELIMITER AS ';' IGNOREHEADER AS 2 GZIP NULL AS 'NULL' EMPTYASNULL "
        "BLANKSASNULL TRUNCATECOLUMNS MANIFEST REGION AS 'eu-west-1' COMPUPDATE OFF;"
    )
    assert (cmd.table, cmd.table_label, cmd.columns) == ('"s"."t"', "s.t", ["a", "b"])
    assert (cmd.source, cmd.fmt, cmd.quote, cmd.delimiter) == ("s3://bucket/pre/fix", "CSV",
                                                                "'", ";")
    assert (cmd.ignore_header, cmd.compression, cmd.null_as, cmd.region) == (2, "GZIP", "NULL",
                                                                            "eu-west-1")
    assert cmd.empty_as_null and cmd.blanks_as_null and cmd.truncate_columns and cmd.manifest
    json_cmd = parse_copy("COPY t FROM 's3://b/p' IAM_ROLE default JSON 'auto ignorecase'")
    assert json_cmd.fmt == "JSON" and json_cmd.json_ignorecase


@pytest.mark.parametrize(("sql", "expected"), [
    ("COPY t FROM 's3://b/p' IAM_ROLE default", "FORMAT JSON, CSV or PARQUET"),
    ("COPY t FROM 's3://b/p' IAM_ROLE default JSON 's3://b/jsonpaths.json'", "jsonpaths"),
    ("COPY t FROM '/local/file' IAM_ROLE default CSV", "s3://"),
    ("COPY t FROM 's3://b/p' IAM_ROLE default CSV ZSTD", "ZSTD"),
])
def test_copy_limits_are_explicit(sql: str, expected: str) -> None:
    with pytest.raises(RedshiftSqlError, match=expected):
        parse_copy(sql)
