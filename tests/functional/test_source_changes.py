"""What real DMS sends besides row changes, through the Lambda handler into the warehouse:
truncates, dropped tables, added columns, table reloads, unchanged TOAST values, upper-case
identifiers and DMS's own date-time form.

Shapes: AWS DMS User Guide, "Using Amazon Kinesis Data Streams as a target" (control records
with ``IncludeTableAlterOperations`` and ``IncludeControlDetails``; transaction details for CDC
records only) and "Using a PostgreSQL database as a source" (unchanged TOAST values arrive as
null unless REPLICA IDENTITY FULL); a published capture for ``"2020-01-09T04:13:38Z"``; all
collected in ../shared/reference/dms-kinesis-records.md.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from local.record_builders import (
    DmsStream,
    activity,
    customer,
    iso,
    lambda_event,
    sport_event,
    ticket,
)
from shared.migrations import migrate
from shared.spec import DEFAULT_SPEC_PATH, load_spec
from tests.functional.pipeline_helpers import Consumer, data_api
from tools import table_reload


def seats(consumer: Consumer) -> dict[int, Any]:
    """ticket_id -> seat_level of the live replica rows."""
    return {r["ticket_id"]: r["seat_level"] for r in consumer.sql(
        "SELECT ticket_id, seat_level FROM cdc_replica.ticket WHERE NOT _cdc_deleted")}


def test_a_truncate_deletes_every_older_row_and_a_late_older_change_stays_deleted(
    consumer: Consumer,
) -> None:
    stream = DmsStream()
    for ticket_id in (1, 2, 3):
        stream.add("ticket", "insert", ticket(ticket_id, 1))
        stream.add("ticket_activity", "insert", activity(ticket_id, 5))
    late = stream.message("ticket", "insert", ticket(4, 1, seat_level="Committed before"))
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}

    stream.control("truncate-table", table="ticket", details=True)
    stream.add("ticket", "insert", ticket(3, 1, seat_level="After truncate"))
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    stream.add_raw(late)  # committed before the truncate, delivered after it
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}

    assert seats(consumer) == {3: "After truncate"}
    wide = {r["ticket_id"]: r["seat_level"] for r in consumer.sql(
        "SELECT ticket_id, seat_level FROM public.sport_event_activity")}
    assert wide == {1: None, 2: None, 3: "After truncate"}  # the facts stay, the ticket empties
    assert consumer.dead_letters() == []


def test_a_dropped_spec_table_goes_to_the_dead_letter_queue_and_the_warehouse_keeps_it(
    consumer: Consumer,
) -> None:
    stream = DmsStream()
    stream.add("ticket", "insert", ticket(1, 1))
    drop = stream.control("drop-table", table="ticket")
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    assert seats(consumer) == {1: "Standard"}
    (letter,) = consumer.dead_letters()
    assert letter["sequenceNumber"] == drop.sequence_number and letter["table"] == "ticket"
    assert letter["reason"].startswith("ticket: the source dropped the table (drop-table)")


def test_an_added_source_column_reaches_the_replica_and_a_personal_one_stays_empty(
    consumer: Consumer,
) -> None:
    stream = DmsStream()
    stream.add("ticket", "insert", ticket(1, 1))
    stream.control("add-column", table="ticket", details=True, columns={
        "ticket_id": {"type": "INT64"}, "event_id": {"type": "INT64"},
        "section": {"type": "STRING", "length": 16},
        "holder_email": {"type": "STRING", "length": 100},
    })
    stream.add("ticket", "insert", ticket(2, 1) | {"section": "North", "holder_email": "a@b.c"})
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    stream.add("ticket", "update", ticket(1, 1) | {"section": "South", "holder_email": "d@e.f"})
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}

    rows = consumer.sql("SELECT ticket_id, section, holder_email FROM cdc_replica.ticket "
                        "ORDER BY ticket_id")
    assert [(r["ticket_id"], r["section"], r["holder_email"]) for r in rows] == [
        (1, "South", None), (2, "North", None)]
    added = consumer.sql("SELECT table_name, column_name, column_type FROM "
                         "cdc_replica._cdc_columns ORDER BY column_name")
    assert [(r["table_name"], r["column_name"], r["column_type"]) for r in added] == [
        ("ticket", "holder_email", "varchar(400)"), ("ticket", "section", "varchar(64)")]
    types = {r["column_name"]: r["character_maximum_length"] for r in consumer.sql(
        "SELECT column_name, character_maximum_length FROM information_schema.columns "
        "WHERE table_schema = 'cdc_replica' AND table_name = 'ticket'")}
    assert types["section"] == 64
    assert "section" not in {r["column_name"] for r in consumer.sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = 'sport_event_activity'")}  # the spec decides the wide table


def test_a_reload_repairs_a_drifted_replica(
    consumer: Consumer, redshift_data: Any, warehouse_db: str,
) -> None:
    stream = DmsStream()
    for ticket_id in (1, 2, 3):
        stream.add("ticket", "load", ticket(ticket_id, 1, seat_level="Initial"))
    stream.add("ticket", "update", ticket(2, 1, seat_level="Changed"))
    stream.add("ticket_activity", "insert", activity(3, 5))
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    # Drift: the source changed ticket 1 and deleted ticket 3 while the changes were lost.
    stream.clock += timedelta(seconds=5)
    api, spec = data_api(redshift_data, warehouse_db), load_spec()
    started = table_reload.start(api, spec, "ticket", iso(stream.clock))
    stream.add("ticket", "load", ticket(1, 1, seat_level="Drifted"))
    stream.add("ticket", "load", ticket(2, 1, seat_level="Changed"))
    stream.add("ticket", "update", ticket(2, 1, seat_level="After the reload began"))
    old_load = stream.message("ticket", "load", ticket(1, 1, seat_level="Initial"))
    old_load["metadata"]["timestamp"] = iso(datetime.fromisoformat(started) - timedelta(hours=1))
    stream.add_raw(old_load)  # a replay of the initial load
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    assert seats(consumer) == {1: "Drifted", 2: "After the reload began", 3: "Initial"}

    assert table_reload.finish(api, spec, "ticket", dry_run=True) == 1
    assert table_reload.finish(api, spec, "ticket") == 1
    assert seats(consumer) == {1: "Drifted", 2: "After the reload began"}
    wide = consumer.sql("SELECT ticket_id, seat_level FROM public.sport_event_activity")
    assert [(r["ticket_id"], r["seat_level"]) for r in wide] == [(3, None)]
    # A late row of the same reload still lands after the sweep.
    stream.add("ticket", "load", ticket(3, 1, seat_level="Late reload row"))
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    assert seats(consumer)[3] == "Late reload row"


def test_dms_date_time_forms_and_upper_case_identifiers_land(consumer: Consumer) -> None:
    stream = DmsStream()
    stream.add("ticket_activity", "insert", activity(1, 7, "2020-01-09T04:13:38Z",
                                                     "2020-01-09T04:13:38.123456789Z"))
    upper = DmsStream(schema="PUBLIC", clock=stream.clock, lsn=stream.lsn + 0x1000,
                      sequence=stream.sequence + 100)
    upper.add("CUSTOMER", "insert", {k.upper(): v for k, v in customer(7, "Ora Cle").items()})
    assert consumer.invoke(lambda_event(stream.take() + upper.take())) == {
        "batchItemFailures": []}
    (row,) = consumer.sql("SELECT name, created_at, updated_at FROM public.sport_event_activity")
    assert row["name"] == "Ora Cle"
    assert row["created_at"] == datetime(2020, 1, 9, 4, 13, 38)
    assert row["updated_at"] == datetime(2020, 1, 9, 4, 13, 38, 123457)
    assert consumer.dead_letters() == []


def test_an_unchanged_toast_value_is_kept_when_the_spec_marks_the_column(
    consumer: Consumer, monkeypatch: Any, tmp_path: Any, redshift_data: Any, warehouse_db: str,
) -> None:
    spec_file = tmp_path / "spec.toml"
    text = DEFAULT_SPEC_PATH.read_text(encoding="utf-8").replace(
        'columns = { event_id = "bigint", sport_type',
        'keep_when_null = ["location"]\ncolumns = { event_id = "bigint", sport_type')
    spec_file.write_text(text, encoding="utf-8")
    monkeypatch.setenv("PIPELINE_SPEC_PATH", str(spec_file))
    migrate(data_api(redshift_data, warehouse_db), load_spec(spec_file))  # as deployed
    stream = DmsStream()
    stream.add("sport_event", "insert", sport_event(1, location="A long description"))
    stream.add("sport_event", "update", sport_event(1, sport_type="Tennis") | {"location": None})
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    stream.add("sport_event", "update", sport_event(1, sport_type="Golf") | {"location": None})
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    (row,) = consumer.sql("SELECT sport_type, location FROM cdc_replica.sport_event")
    assert (row["sport_type"], row["location"]) == ("Golf", "A long description")
    stream.add("sport_event", "delete", {"event_id": 1, "sport_type": None, "location": None})
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    (gone,) = consumer.sql("SELECT location, _cdc_deleted FROM cdc_replica.sport_event")
    assert (gone["location"], gone["_cdc_deleted"]) == (None, True)


def test_rows_read_before_their_add_column_record_are_reported_for_a_reload(
    consumer: Consumer, caplog: Any, redshift_data: Any, warehouse_db: str,
) -> None:
    stream = DmsStream()
    stream.add("ticket", "insert", ticket(1, 1))
    add_column = stream.message("ticket", "insert", ticket(0, 1))  # only for its position
    stream.add("ticket", "update", ticket(1, 1) | {"section": "North"})
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    # The add-column record committed before that update, but another shard delivers it later.
    control = {"control": {"table-def": {"columns": {"section": {"type": "STRING",
                                                                  "length": 16}}}},
               "metadata": {**add_column["metadata"], "record-type": "control",
                            "operation": "add-column", "partition-key-type": "task-id"}}
    stream.add_raw(control)
    caplog.clear()
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    (warning,) = [r for r in caplog.records if getattr(r, "column", None) == "section"]
    assert warning.levelname == "WARNING" and warning.rows_written_without_it == 1
    assert "North" not in caplog.text
    (row,) = consumer.sql("SELECT section FROM cdc_replica.ticket")
    assert row["section"] is None  # the value came before the column: a reload fills it

    api = data_api(redshift_data, warehouse_db)
    table_reload.start(api, load_spec(), "ticket")  # once the column is in the warehouse
    stream.clock = datetime.now(stream.clock.tzinfo)  # the reload reads after its start
    stream.add("ticket", "load", ticket(1, 1) | {"section": "North"})
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    table_reload.finish(api, load_spec(), "ticket")
    (row,) = consumer.sql("SELECT section FROM cdc_replica.ticket")
    assert row["section"] == "North"


def test_freshness_is_a_metric_per_table_of_the_batch(consumer: Consumer, capsys: Any) -> None:
    stream = DmsStream()
    stream.add("ticket", "insert", ticket(1, 1))
    stream.add("customer", "update", customer(5))
    stream.add("sport_event", "load", sport_event(2))  # a load row has no commit time
    capsys.readouterr()
    assert consumer.invoke(lambda_event(stream.take())) == {"batchItemFailures": []}
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()
                 if line.startswith("{") and "TableFreshness" in line]
    by_table = {d["Table"]: d for d in documents}
    assert sorted(by_table) == ["customer", "ticket"]
    for document in by_table.values():
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert "Table" in directive["Dimensions"][0] and "service" in directive["Dimensions"][0]
        value = document["TableFreshness"]
        assert min(value if isinstance(value, list) else [value]) > 0  # ms since a 2021 commit
