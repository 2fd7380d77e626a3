"""The writer against the Redshift Data API stand-in on a real PostgreSQL: every test asserts
the rows that end up in the warehouse."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from shared.data_api import StatementFailed
from shared.migrations import migrate, plan_migration, read_existing
from shared.redshift_writer import RedshiftWriter, S3Stager
from shared.spec import parse_spec
from shared.transform import Transformer
from tests.factories import DmsStream, activity, customer, spec_document, sport_event, ticket
from tests.functional.pipeline_helpers import HMAC_KEY, Pipeline, data_api
from tests.stack_helpers import standin


def token(email: str) -> str:
    return hmac.new(HMAC_KEY, email.lower().encode(), hashlib.sha256).hexdigest()


def seed(stream: DmsStream) -> None:
    """Two events, two tickets, two customers, two purchases."""
    stream.add("sport_event", "load", sport_event(1, "Baseball", "2021-09-01", "Seattle, US"))
    stream.add("sport_event", "load", sport_event(2, "Football", "2021-10-05", "San Francisco, US"))
    stream.add("ticket", "load", ticket(10, 1, "Standard", "S-1", 100))
    stream.add("ticket", "load", ticket(11, 2, "Premium", "P-1", "300.5"))
    stream.add(
        "customer", "load", customer(222, "Teresa Stein", "teresa@example.com", "+1-296-605-8486")
    )
    stream.add(
        "customer", "load", customer(223, "Caleb Houston", "caleb@example.com", "087-237-9316x2670")
    )
    stream.add("ticket_activity", "load", activity(10, 222, "2021-08-15 10:00:00"))
    stream.add("ticket_activity", "load", activity(11, 223, "2021-08-30 11:30:00"))


def test_full_load_lands_denormalized_and_masked(pipeline: Pipeline) -> None:
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())

    assert pipeline.wide() == [
        {
            "ticket_id": 10,
            "event_id": 1,
            "sport_type": "Baseball",
            "start_date": date(2021, 9, 1),
            "location": "Seattle, US",
            "seat_level": "Standard",
            "seat_location": "S-1",
            "ticket_price": Decimal("100.00"),
            "purchased_by": 222,
            "name": "Teresa Stein",
            "email_address": token("teresa@example.com"),
            "phone_number": "+*-***-***-****",
            "created_at": datetime(2021, 8, 15, 10),
            "updated_at": datetime(2021, 8, 15, 10),
        },
        {
            "ticket_id": 11,
            "event_id": 2,
            "sport_type": "Football",
            "start_date": date(2021, 10, 5),
            "location": "San Francisco, US",
            "seat_level": "Premium",
            "seat_location": "P-1",
            "ticket_price": Decimal("300.50"),
            "purchased_by": 223,
            "name": "Caleb Houston",
            "email_address": token("caleb@example.com"),
            "phone_number": "***-***-****x****",
            "created_at": datetime(2021, 8, 30, 11, 30),
            "updated_at": datetime(2021, 8, 30, 11, 30),
        },
    ]
    customers = pipeline.replica("customer")
    assert [c["email"] for c in customers] == [
        token("teresa@example.com"),
        token("caleb@example.com"),
    ]
    assert all(not c["_cdc_deleted"] and c["_cdc_order_key"].startswith("0") for c in customers)


def test_insert_update_and_fact_delete(pipeline: Pipeline) -> None:
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())

    stream.add("ticket_activity", "insert", activity(12, 222, "2021-09-01 09:00:00"))
    stream.add("ticket", "insert", ticket(12, 2, "VIP", "V-9", 999))
    stream.add(
        "ticket_activity", "update", activity(10, 223, "2021-08-15 10:00:00", "2021-09-02 08:00:00")
    )
    stream.add(
        "ticket_activity",
        "delete",
        {"ticket_id": 11, "purchased_by": None, "created_at": None, "updated_at": None},
    )
    pipeline.apply(stream.take())

    rows = {r["ticket_id"]: r for r in pipeline.wide()}
    assert sorted(rows) == [10, 12]
    assert (rows[10]["purchased_by"], rows[10]["name"], rows[10]["updated_at"]) == (
        223,
        "Caleb Houston",
        datetime(2021, 9, 2, 8),
    )
    assert (rows[12]["seat_level"], rows[12]["sport_type"], rows[12]["name"]) == (
        "VIP",
        "Football",
        "Teresa Stein",
    )
    tombstone = [r for r in pipeline.replica("ticket_activity") if r["ticket_id"] == 11]
    assert tombstone[0]["_cdc_deleted"] and tombstone[0]["purchased_by"] is None


def test_dimension_delete_empties_its_columns_in_wide_rows(pipeline: Pipeline) -> None:
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())
    stream.add("customer", "delete", {"customer_id": 222})
    stream.add("sport_event", "delete", {"event_id": 2})
    pipeline.apply(stream.take())

    rows = {r["ticket_id"]: r for r in pipeline.wide()}
    assert (rows[10]["purchased_by"], rows[10]["name"], rows[10]["email_address"]) == (
        222,
        None,
        None,
    )
    assert (rows[11]["event_id"], rows[11]["sport_type"], rows[11]["seat_level"]) == (
        2,
        None,
        "Premium",
    )


def test_primary_key_change_moves_the_row(pipeline: Pipeline) -> None:
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())
    stream.add(
        "ticket_activity",
        "update",
        activity(46, 222, "2021-08-15 10:00:00"),
        before={"ticket_id": 10},
    )
    stream.add(
        "customer",
        "update",
        customer(224, "Teresa Stein", "teresa@example.com"),
        before={"customer_id": 223},
    )
    pipeline.apply(stream.take())

    rows = {r["ticket_id"]: r for r in pipeline.wide()}
    assert sorted(rows) == [11, 46]
    assert rows[46]["name"] == "Teresa Stein"
    assert rows[11]["purchased_by"] == 223 and rows[11]["name"] is None  # 223 moved to 224
    live = [c["customer_id"] for c in pipeline.replica("customer") if not c["_cdc_deleted"]]
    assert live == [222, 224]


def test_fact_before_its_dimensions_is_completed_when_they_arrive(pipeline: Pipeline) -> None:
    stream = DmsStream()
    stream.add("ticket_activity", "insert", activity(50, 300, "2021-09-03 12:00:00"))
    pipeline.apply(stream.take())
    assert [
        (r["ticket_id"], r["purchased_by"], r["name"], r["event_id"]) for r in pipeline.wide()
    ] == [(50, 300, None, None)]

    stream.add("customer", "insert", customer(300, "Late Larry", "larry@example.com"))
    pipeline.apply(stream.take())
    stream.add("ticket", "insert", ticket(50, 7))
    pipeline.apply(stream.take())
    stream.add("sport_event", "insert", sport_event(7, "Hockey", "2021-12-01", "Boston, US"))
    pipeline.apply(stream.take())

    row = pipeline.wide()[0]
    assert (row["name"], row["email_address"], row["event_id"], row["sport_type"]) == (
        "Late Larry",
        token("larry@example.com"),
        7,
        "Hockey",
    )


def test_dimension_change_rewrites_every_wide_row_that_refers_to_it(pipeline: Pipeline) -> None:
    stream = DmsStream()
    seed(stream)
    stream.add("ticket_activity", "insert", activity(12, 222))
    stream.add("ticket", "insert", ticket(12, 1))
    pipeline.apply(stream.take())

    stream.add(
        "customer",
        "update",
        customer(222, "Teresa Stein-Ray", "t.ray@example.com", "+44 20 7946 0958"),
    )
    stream.add("sport_event", "update", sport_event(1, "Baseball", "2021-09-04", "Tacoma, US"))
    pipeline.apply(stream.take())

    rows = [r for r in pipeline.wide() if r["purchased_by"] == 222]
    assert {r["ticket_id"] for r in rows} == {10, 12}
    for row in rows:
        assert (row["name"], row["email_address"], row["phone_number"]) == (
            "Teresa Stein-Ray",
            token("t.ray@example.com"),
            "+** ** **** ****",
        )
        assert (row["start_date"], row["location"]) == (date(2021, 9, 4), "Tacoma, US")


def test_replaying_a_batch_changes_nothing(pipeline: Pipeline) -> None:
    stream = DmsStream()
    seed(stream)
    stream.add("customer", "update", customer(222, "Teresa Once"))
    batch = stream.take()
    pipeline.apply(batch)
    before = pipeline.snapshot()
    pipeline.apply(batch)
    pipeline.apply(list(reversed(batch)))
    assert pipeline.snapshot() == before


def test_an_older_batch_after_a_newer_one_is_ignored(pipeline: Pipeline) -> None:
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())
    stream.add("customer", "update", customer(222, "Older Name"))
    stream.add("ticket_activity", "update", activity(10, 223))
    older = stream.take()
    stream.add("customer", "update", customer(222, "Newer Name"))
    stream.add("ticket_activity", "update", activity(10, 222))
    newer = stream.take()

    pipeline.apply(newer)
    pipeline.apply(older)

    row = pipeline.wide()[0]
    assert (row["ticket_id"], row["purchased_by"], row["name"]) == (10, 222, "Newer Name")


def test_a_late_older_change_cannot_resurrect_a_deleted_row(pipeline: Pipeline) -> None:
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())
    stream.add("customer", "update", customer(223, "Stale Update"))
    stale = stream.take()
    stream.add("ticket_activity", "delete", {"ticket_id": 11})
    stream.add("customer", "delete", {"customer_id": 223})
    pipeline.apply(stream.take())
    pipeline.apply(stale)

    assert [r["ticket_id"] for r in pipeline.wide()] == [10]
    gone = next(c for c in pipeline.replica("customer") if c["customer_id"] == 223)
    assert gone["_cdc_deleted"] and gone["name"] is None


def test_hard_delete_mode_removes_replica_rows(make_pipeline: Any) -> None:
    document = spec_document()
    document["pipeline"]["delete_mode"] = "hard"
    spec = parse_spec(document)
    pipeline = make_pipeline(spec)
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())
    stream.add("ticket_activity", "delete", {"ticket_id": 10})
    stream.add("customer", "delete", {"customer_id": 223})
    pipeline.apply(stream.take())

    assert [r["ticket_id"] for r in pipeline.replica("ticket_activity")] == [11]
    assert [r["customer_id"] for r in pipeline.replica("customer")] == [222]
    assert [(r["ticket_id"], r["name"]) for r in pipeline.wide()] == [(11, None)]


def test_sql_injection_text_lands_verbatim(pipeline: Pipeline) -> None:
    nasty = "O'Brien'); DROP TABLE x;-- \\'; \\\\ \" \n\t% _ $1 :name \u00e9\u6f22\U0001f600"
    stream = DmsStream()
    stream.add("customer", "insert", customer(1, nasty, "o'brien@example.com", "+1 (555) 'x'"))
    stream.add("sport_event", "insert", sport_event(1, nasty[:64], "2021-09-01", nasty[:100]))
    pipeline.apply(stream.take())

    person = pipeline.replica("customer")[0]
    assert person["name"] == nasty
    assert person["phone"] == "+* (***) 'x'"
    assert pipeline.replica("sport_event")[0]["location"] == nasty[:100]
    assert (
        pipeline.sql(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'cdc_replica'"
        )[0]["n"]
        == 12  # four replicas and their stages, _cdc_tables, _cdc_columns, _cdc_landing,
        # _cdc_applied
    )


def test_rejects_leave_good_records_applied_and_land_nothing(pipeline: Pipeline) -> None:
    from tests.factories import bad_records as _bad_records

    stream = DmsStream()
    stream.add("customer", "insert", customer(1, "Good Before"))
    bad = _bad_records(stream)
    stream.add("customer", "insert", customer(2, "Good After"))
    result, _ = pipeline.apply([stream.records[0], *(r for r, _ in bad), stream.records[-1]])

    assert len(result.rejects) == len(bad)
    assert [r["customer_id"] for r in pipeline.replica("customer")] == [1, 2]
    assert pipeline.replica("sport_event") == [] and pipeline.replica("ticket") == []


def test_two_concurrent_writers_lose_no_update(make_pipeline: Any) -> None:
    writers = [make_pipeline(), make_pipeline()]
    stream = DmsStream()
    seed(stream)
    writers[0].apply(stream.take())
    batches: list[list[Any]] = [[], []]
    for i in range(40):
        # Shard 0 gets purchases by customer 222; shard 1 changes customer 222 and events.
        stream.add("ticket_activity", "insert", activity(100 + i, 222))
        batches[0].append(stream.take())
        stream.add("customer", "update", customer(222, f"Name {i}", f"v{i}@example.com"))
        stream.add("sport_event", "update", sport_event(1, "Baseball", "2021-09-01", f"Park {i}"))
        batches[1].append(stream.take())
    errors: list[BaseException] = []

    def run(pipeline: Pipeline, work: list[list[Any]]) -> None:
        try:
            for batch in work:
                pipeline.apply(batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(writers[n], batches[n])) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    rows = [r for r in writers[0].wide() if r["purchased_by"] == 222]
    assert len(rows) == 41
    assert {(r["name"], r["email_address"]) for r in rows} == {
        ("Name 39", token("v39@example.com"))
    }


def test_big_batches_go_through_s3_copy(make_pipeline: Any, staging_bucket: Any) -> None:
    s3, bucket = staging_bucket
    stager = S3Stager(s3, bucket, "staging/test", "arn:aws:iam::123456789012:role/copy")
    pipeline = make_pipeline(stager=stager)
    stream = DmsStream()
    for i in range(2500):
        stream.add("ticket_activity", "insert", activity(i, i % 7))
        if i % 5 == 0:
            stream.add("customer", "insert", customer(i % 7, f"C{i % 7} O'Hara \\ \u00e9"))
    stream.add("ticket", "insert", ticket(1, 1, ticket_price="12.345"))
    _, report = pipeline.apply(stream.take())

    assert report.staged_through_s3  # one COPY of the whole batch
    assert report.data_api_calls == 1
    assert len(pipeline.wide()) == 2500
    assert pipeline.replica("customer")[3]["name"] == "C3 O'Hara \\ \u00e9"
    assert pipeline.replica("ticket")[0]["ticket_price"] == Decimal("12.35")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # staged files removed


def test_big_batches_without_a_bucket_are_split(pipeline: Pipeline) -> None:
    stream = DmsStream()
    names = {i: f"{i:05d} " + "x" * 235 + "\u00e9" * 7 for i in range(10_000)}  # 256 bytes
    for i, name in names.items():  # ~4.5 MB of SQL: more than 40 statements of 100 KB
        stream.add("customer", "insert", customer(i, name, phone="+1 " + "5" * 60))
    _, report = pipeline.apply(stream.take())
    assert report.transactions > 1
    rows = pipeline.sql('SELECT customer_id, name FROM "cdc_replica"."customer"')
    assert {r["customer_id"]: r["name"] for r in rows} == names


def test_a_failed_statement_raises_with_redshift_error_text(pipeline: Pipeline) -> None:
    pipeline.sql('DROP TABLE "cdc_replica"."customer"')
    stream = DmsStream()
    stream.add("customer", "insert", customer(1))
    with pytest.raises(
        StatementFailed, match=r"statement \d+ of \d+ failed: .*customer.*does not exist"
    ):
        pipeline.apply(stream.take())


def test_migrations_are_idempotent_and_follow_spec_edits(
    pipeline: Pipeline, redshift_data: Any, warehouse_db: str
) -> None:
    api = data_api(redshift_data, warehouse_db)
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())
    assert plan_migration(pipeline.spec, read_existing(api, pipeline.spec)).statements == [
        'CREATE SCHEMA IF NOT EXISTS "cdc_replica"',
        'CREATE SCHEMA IF NOT EXISTS "public"',
    ]

    document = spec_document()
    document["tables"]["customer"]["columns"] |= {"name": "varchar(512)", "tier": "varchar(16)"}
    document["targets"]["sport_event_activity"]["columns"]["customer_tier"] = "customer.tier"
    wider = parse_spec(document)
    plan = migrate(api, wider)
    assert plan.rebuild_targets == ["sport_event_activity"]
    assert (
        migrate(api, wider).statements
        == plan_migration(wider, {**read_existing(api, wider)}).statements
    )  # nothing new the second time
    rows = pipeline.wide()
    assert [r["customer_tier"] for r in rows] == [None, None]
    assert rows[0]["name"] == "Teresa Stein"


def test_too_many_active_statements_are_retried(
    pg_server: Any, moto_endpoint: str, make_pipeline: Any
) -> None:
    """A warehouse that runs one statement at a time: concurrent writers back off and retry."""
    import boto3

    with standin(pg_server, moto_endpoint, max_active_statements=1) as endpoint:
        client = boto3.client(
            "redshift-data", endpoint_url=endpoint, region_name="us-east-1"
        )
        writers = [make_pipeline(client=client) for _ in range(3)]
        stream = DmsStream()
        batches = []
        for n in range(3):
            for i in range(20):
                stream.add("customer", "insert", customer(n * 100 + i))
            batches.append(stream.take())
        threads = [
            threading.Thread(target=w.apply, args=(b,))
            for w, b in zip(writers, batches, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(writers[0].replica("customer")) == 60


class _FakeHttp:
    status_code = 400
    headers: ClassVar[dict[str, str]] = {}


def test_throttling_and_serialization_conflicts_are_retried(
    redshift_data: Any, pipeline: Pipeline
) -> None:
    """Inject AWS-side faults through botocore's event hooks; the rows must still land once."""
    faults = {"throttled": 0, "conflicts": 0}

    def throttle(**_: Any) -> Any:
        if faults["throttled"] < 2:
            faults["throttled"] += 1
            return _FakeHttp(), {
                "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}
            }
        return None

    def conflict(parsed: dict[str, Any], **_: Any) -> None:
        # The long-polled submit answers FAILED; the DescribeStatement the writer then makes
        # for the error text names the conflict.
        if parsed.get("Status") == "FINISHED" and not faults["conflicts"]:
            faults["conflicts"] += 1
            parsed["Status"] = "FAILED"

    def conflict_text(parsed: dict[str, Any], **_: Any) -> None:
        if faults["conflicts"] == 1 and parsed.get("SubStatements"):
            faults["conflicts"] += 1
            parsed["Status"] = "FAILED"
            parsed["SubStatements"][-1]["Status"] = "FAILED"
            parsed["SubStatements"][-1]["Error"] = (
                "ERROR: 1023 DETAIL: Serializable isolation violation on table - 123456, "
                "transactions forming the cycle are: 1, 2 (pid:3)"
            )

    events = redshift_data.meta.events
    events.register("before-call.redshift-data.BatchExecuteStatement", throttle)
    events.register("after-call.redshift-data.BatchExecuteStatement", conflict)
    events.register("after-call.redshift-data.DescribeStatement", conflict_text)
    stream = DmsStream()
    seed(stream)
    pipeline.apply(stream.take())

    assert faults == {"throttled": 2, "conflicts": 2}
    assert [r["ticket_id"] for r in pipeline.wide()] == [10, 11]


def test_a_non_retryable_api_error_is_clear(redshift_data: Any, pipeline: Pipeline) -> None:
    def refuse(**_: Any) -> Any:
        return _FakeHttp(), {
            "Error": {
                "Code": "ValidationException",
                "Message": "Workgroup local-workgroup not found",
            }
        }

    redshift_data.meta.events.register("before-call.redshift-data.BatchExecuteStatement", refuse)
    stream = DmsStream()
    stream.add("customer", "insert", customer(1))
    with pytest.raises(StatementFailed, match="ValidationException: Workgroup local-workgroup"):
        pipeline.apply(stream.take())


def test_a_writer_whose_spec_is_not_the_migrated_one_fails_with_a_clear_error(
    make_pipeline: Any,
) -> None:
    """The apply procedures are the migrated spec's SQL: a consumer running another spec (a
    deployment whose migration did not run) must not apply batches with them."""
    pipeline = make_pipeline()
    document = spec_document()
    document["tables"]["sport_event"]["keep_when_null"] = ["location"]
    other = RedshiftWriter(parse_spec(document), pipeline.writer.api)
    stream = DmsStream()
    stream.add("customer", "insert", customer(1))
    result = Transformer(other.spec, HMAC_KEY).transform(stream.take())
    with pytest.raises(StatementFailed, match="migrated to another spec; run the schema "
                                              "migration"):
        other.stage_and_merge(result.changes, result.table_events)
    assert pipeline.replica("customer") == []
