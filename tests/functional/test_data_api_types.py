"""TIME, VARBYTE(n) and SUPER columns on the Redshift Data API stand-in, through an unmodified
boto3 client: DDL, INSERT, COPY and what GetStatementResult and DescribeTable return.

Amazon Redshift Database Developer Guide: "VARBYTE type" (1 to 16,777,216 bytes, default
64,000; values print as hexadecimal: ``select from_hex('6162')`` gives ``6162``), "Loading a
column of the VARBYTE data type" (COPY loads VARBYTE from CSV as hexadecimal, and from
Parquet and ORC: not from JSON), "SUPER type", "Datetime types" (TIME).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.functional.data_api_helpers import ok, query, run


def _bucket(s3: Any) -> str:
    name = f"types-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


TABLE = "CREATE TABLE typed (id INT, at TIME, blob VARBYTE(4), doc SUPER, big VARBINARY)"


def _copy_blob(redshift_data: Any, warehouse_db: str, s3: Any, fmt: str, body: bytes,
               options: str) -> dict[str, Any]:
    """Create ``typed``, put ``body`` as one file in a fresh bucket and COPY its (id, blob)
    columns with ``options``; the finished statement's description."""
    ok(redshift_data, warehouse_db, TABLE)
    bucket = _bucket(s3)
    s3.put_object(Bucket=bucket, Key=f"{fmt}/part-0.{fmt}", Body=body)
    return run(redshift_data, warehouse_db,
               f"COPY typed (id, blob) FROM 's3://{bucket}/{fmt}/' IAM_ROLE default {options}")


def test_time_varbyte_and_super_columns_store_and_return_values(
    redshift_data: Any, warehouse_db: str
) -> None:
    ok(redshift_data, warehouse_db, TABLE)
    ok(redshift_data, warehouse_db,
       "INSERT INTO typed VALUES (1, '10:30:00.5', FROM_HEX('6162'), "
       "JSON_PARSE('{\"a\":[1,2]}'), 'abc'::VARBYTE), (2, NULL, NULL, NULL, NULL)")
    desc = ok(redshift_data, warehouse_db, "SELECT id, at, blob, doc, big FROM typed ORDER BY id")
    page = redshift_data.get_statement_result(Id=desc["Id"])
    assert [c["typeName"] for c in page["ColumnMetadata"]] == [
        "int4", "time", "varbyte", "super", "varbyte"]
    first, second = page["Records"]
    assert first[:3] == [{"longValue": 1}, {"stringValue": "10:30:00.5"},
                         {"stringValue": "6162"}]
    assert json.loads(first[3]["stringValue"]) == {"a": [1, 2]}
    assert first[4] == {"stringValue": "616263"}
    assert second[1:] == [{"isNull": True}] * 4


def test_a_varbyte_value_longer_than_its_column_fails_the_statement(
    redshift_data: Any, warehouse_db: str
) -> None:
    ok(redshift_data, warehouse_db, TABLE)
    ok(redshift_data, warehouse_db, "INSERT INTO typed (id, blob) VALUES (1, FROM_HEX('01020304'))")
    desc = run(redshift_data, warehouse_db,
               "INSERT INTO typed (id, blob) VALUES (2, FROM_HEX('0102030405'))")
    assert desc["Status"] == "FAILED"
    assert desc["Error"] == "ERROR: value too long for type varbyte(4)"


def test_describe_table_reports_the_types_and_the_varbyte_length(
    redshift_data: Any, warehouse_db: str
) -> None:
    ok(redshift_data, warehouse_db, TABLE)
    columns = redshift_data.describe_table(WorkgroupName="local-workgroup",
                                           Database=warehouse_db, Table="typed")["ColumnList"]
    assert [(c["name"], c["typeName"], c["length"]) for c in columns] == [
        ("id", "int4", 0), ("at", "time", 0), ("blob", "varbyte", 4), ("doc", "super", 0),
        ("big", "varbyte", 64000)]


def test_copy_loads_time_and_super_from_json_and_varbyte_from_csv_hex(
    redshift_data: Any, warehouse_db: str, s3: Any
) -> None:
    ok(redshift_data, warehouse_db, TABLE)
    bucket = _bucket(s3)
    lines = [{"id": 1, "at": "23:59:59.123456", "doc": {"k": [True, None]}},
             {"id": 2, "at": "00:00:00", "doc": "plain string"},
             {"id": 3, "doc": 42}]
    s3.put_object(Bucket=bucket, Key="json/part-0.json",
                  Body="\n".join(json.dumps(line) for line in lines).encode())
    ok(redshift_data, warehouse_db,
       f"COPY typed (id, at, doc) FROM 's3://{bucket}/json/' IAM_ROLE default "
       "FORMAT AS JSON 'auto'")
    s3.put_object(Bucket=bucket, Key="csv/part-0.csv", Body=b"4,00ff10\n5,\n")
    ok(redshift_data, warehouse_db,
       f"COPY typed (id, blob) FROM 's3://{bucket}/csv/' IAM_ROLE default CSV")
    got = query(redshift_data, warehouse_db,
                "SELECT id, at, doc, blob FROM typed ORDER BY id")
    # (a null field is {"isNull": True}, reduced to True)
    assert [row[:2] for row in got] == [[1, "23:59:59.123456"], [2, "00:00:00"], [3, True],
                                        [4, True], [5, True]]
    assert json.loads(got[0][2]) == {"k": [True, None]}
    assert json.loads(got[1][2]) == "plain string"
    assert json.loads(got[2][2]) == 42
    assert got[3][3] == "00ff10"


def test_copy_json_into_a_varbyte_column_fails_as_the_copy_docs_list_no_json(
    redshift_data: Any, warehouse_db: str, s3: Any
) -> None:
    desc = _copy_blob(redshift_data, warehouse_db, s3, "json", b'{"id": 1, "blob": "6162"}',
                      "FORMAT AS JSON 'auto'")
    assert desc["Status"] == "FAILED"
    assert desc["Error"].startswith("ERROR: Load into table 'typed' failed.")
    assert "VARBYTE column blob loads from CSV, Parquet or ORC files only" in desc["Error"]


def test_a_bad_hexadecimal_varbyte_in_csv_fails_the_load(
    redshift_data: Any, warehouse_db: str, s3: Any
) -> None:
    desc = _copy_blob(redshift_data, warehouse_db, s3, "csv", b"1,xyz\n", "CSV")
    assert desc["Status"] == "FAILED"
    assert "Invalid hexadecimal VARBYTE value for column blob" in desc["Error"]
