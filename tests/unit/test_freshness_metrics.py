"""The freshness values both Lambda handlers emit (``shared.freshness.freshness_metrics``):
``SourceLag`` from the newest commit, ``TableFreshness`` per table with its ``Table``
dimension, all measured to one instant."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.freshness import FreshnessMetric, freshness_metrics

NOW = datetime(2024, 5, 1, 10, 0, 3, tzinfo=UTC)
COMMITS = {"ticket": "2024-05-01T10:00:01.250000Z", "customer": "2024-05-01T10:00:00.000000Z"}


def test_source_lag_then_each_table_in_table_order() -> None:
    assert freshness_metrics(COMMITS, now=NOW) == [
        FreshnessMetric("SourceLag", 1750.0, {}),
        FreshnessMetric("TableFreshness", 3000.0, {"Table": "customer"}),
        FreshnessMetric("TableFreshness", 1750.0, {"Table": "ticket"}),
    ]


def test_a_newest_commit_without_tables_still_gives_the_source_lag() -> None:
    # A landed message whose per-table map did not fit in SQS's 256 KiB keeps the newest only.
    assert freshness_metrics({}, "2024-05-01T10:00:02Z", now=NOW) == [
        FreshnessMetric("SourceLag", 1000.0, {})]


def test_nothing_to_measure_without_a_commit() -> None:
    assert freshness_metrics({}, now=NOW) == []
