"""The applier queue's message (``shared.applier.landed_message`` / ``parse_landed``) and the
freshness arithmetic (``shared.freshness``): what a consumer sends is what the applier reads,
an older consumer's message still parses (deploys roll), a bad field is refused with its
reason, and the body stays within SQS's 262,144-byte limit ("Amazon SQS message quotas",
Amazon SQS Developer Guide: a message is at most 256 KiB)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from shared.applier import MAX_MESSAGE_BYTES, NotALandedBatch, landed_message, parse_landed
from shared.freshness import milliseconds_since, newest_by_table, newest_commit

BATCH = "0123456789abcdef0123456789abcdef"
KEY = f"staging/{BATCH}.json"
COMMITS = {"ticket": "2024-05-01T10:00:01.250000Z", "customer": "2024-05-01T10:00:00.000000Z"}


def test_the_applier_reads_what_the_consumer_sent() -> None:
    body = landed_message(BATCH, KEY, COMMITS)

    batch = parse_landed("m-1", body, "staging/")

    assert (batch.batch_id, batch.key) == (BATCH, KEY)
    assert batch.newest_commit_by_table == COMMITS
    assert batch.newest_commit == "2024-05-01T10:00:01.250000Z"


def test_a_message_of_an_older_consumer_parses_without_commits() -> None:
    old = json.dumps({"batch_id": BATCH, "key": KEY})

    batch = parse_landed("m-1", old, "staging/")

    assert (batch.batch_id, batch.key, batch.newest_commit, batch.newest_commit_by_table) == (
        BATCH, KEY, None, {})


def test_a_batch_without_commit_timestamps_sends_the_old_format() -> None:
    assert json.loads(landed_message(BATCH, KEY, {})) == {"batch_id": BATCH, "key": KEY}


@pytest.mark.parametrize(("fields", "reason"), [
    ({"newest_commit_by_table": ["ticket"]}, "newest_commit_by_table is not an object"),
    ({"newest_commit_by_table": {"ticket": "yesterday"}},
     "newest_commit_by_table is not an object"),
    ({"newest_commit_by_table": {"ticket": 1714557601}},
     "newest_commit_by_table is not an object"),
    ({"newest_commit_by_table": {"": "2024-05-01T10:00:00Z"}},
     "newest_commit_by_table is not an object"),
    ({"newest_commit": "soon"}, "newest_commit is not an ISO 8601 commit timestamp"),
])
def test_a_bad_commit_field_is_refused_with_its_reason(fields: dict[str, object],
                                                       reason: str) -> None:
    body = json.dumps({"batch_id": BATCH, "key": KEY, **fields})

    with pytest.raises(NotALandedBatch, match=reason):
        parse_landed("m-1", body, "staging/")


def test_a_thousand_tables_of_the_longest_names_fit_one_message() -> None:
    """Redshift identifiers are at most 127 bytes ("Names and identifiers", Amazon Redshift
    Database Developer Guide): 1,000 such tables, each with a commit timestamp."""
    commits = {f"t{n:04d}".ljust(127, "x"): f"2024-05-01T10:00:{n % 60:02d}.123456Z"
               for n in range(1000)}

    body = landed_message(BATCH, KEY, commits)

    size = len(body.encode())
    assert size < MAX_MESSAGE_BYTES
    assert size == 160_174  # 160 bytes a table: name, timestamp, quotes, colon, comma
    assert parse_landed("m-1", body, "staging/").newest_commit_by_table == commits


def test_commits_that_would_not_fit_leave_the_newest_overall() -> None:
    commits = {f"t{n:05d}".ljust(127, "x"): "2024-05-01T10:00:00.000000Z" for n in range(1700)}
    commits["t_last"] = "2024-05-01T11:00:00.000000Z"

    body = landed_message(BATCH, KEY, commits)

    assert len(body.encode()) < MAX_MESSAGE_BYTES
    batch = parse_landed("m-1", body, "staging/")
    assert (batch.newest_commit, batch.newest_commit_by_table) == (
        "2024-05-01T11:00:00.000000Z", {})


def test_freshness_is_measured_from_the_newest_commit_as_an_instant() -> None:
    now = datetime(2024, 5, 1, 10, 0, 3, tzinfo=UTC)

    assert milliseconds_since("2024-05-01T10:00:01.250000Z", now) == 1750.0
    assert milliseconds_since("2024-05-01T10:00:01.250000", now) == 1750.0  # no offset: UTC
    assert newest_commit(["2024-05-01T12:00:00+02:00", "2024-05-01T10:00:01Z"]) == (
        "2024-05-01T10:00:01Z")
    assert newest_by_table([COMMITS, {"ticket": "2024-05-01T09:00:00Z",
                                      "sport_event": "2024-05-01T08:00:00Z"}]) == {
        **COMMITS, "sport_event": "2024-05-01T08:00:00Z"}
