"""Warehouse freshness: how long ago the newest source commit of what was just applied.

The consumers' transform gives each batch's newest source commit per table as DMS renders the
``commit-timestamp`` (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, UTC: ``shared.order_key``). Whoever makes
the batch visible in the warehouse reports it: the Kinesis consumer when it applies inline, the
batch applier after its transaction commits (the consumer that only landed the batch reports
``LandingLag`` instead). Pure functions: ``freshness_metrics`` gives the values, both Lambda
handlers emit them as they are (the Glue job imports this package too, so no Powertools here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

SOURCE_LAG = "SourceLag"
TABLE_FRESHNESS = "TableFreshness"


def commit_moment(iso_timestamp: str) -> datetime:
    """The instant of a commit timestamp (an ISO 8601 string; no offset means UTC, as DMS's
    rendering is UTC). Raises ``ValueError`` for a string that is not one."""
    moment = datetime.fromisoformat(iso_timestamp)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def milliseconds_since(iso_timestamp: str, now: datetime | None = None) -> float:
    """Milliseconds from the commit ``iso_timestamp`` to ``now`` (default: the clock)."""
    return ((now or datetime.now(UTC)) - commit_moment(iso_timestamp)).total_seconds() * 1000


def newest_by_table(maps: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """Per table, the newest commit timestamp among ``maps`` (compared as instants)."""
    newest: dict[str, str] = {}
    for commits in maps:
        for table, commit in commits.items():
            if table not in newest or commit_moment(commit) > commit_moment(newest[table]):
                newest[table] = commit
    return newest


def newest_commit(commits: Iterable[str]) -> str | None:
    """The newest of ``commits`` (compared as instants); None when there is none."""
    return max(commits, key=commit_moment, default=None)


@dataclass(frozen=True)
class FreshnessMetric:
    """One metric value in milliseconds, with the dimensions of its own (beyond the function's
    ``service``): ``SourceLag`` has none, ``TableFreshness`` has ``Table``."""

    name: str
    milliseconds: float
    dimensions: Mapping[str, str]


def freshness_metrics(newest_commit_by_table: Mapping[str, str], newest: str | None = None,
                      now: datetime | None = None) -> list[FreshnessMetric]:
    """The freshness of what was just made visible in the warehouse: ``SourceLag``, ms since
    the newest source commit (``newest``, by default the newest of ``newest_commit_by_table``;
    a landed message may carry it without the per-table map), then ``TableFreshness`` per table
    in table order; nothing when there is no commit. Every value is measured to the same
    ``now`` (default: the clock)."""
    newest = newest or newest_commit(newest_commit_by_table.values())
    if newest is None:
        return []
    moment = now or datetime.now(UTC)
    return [FreshnessMetric(SOURCE_LAG, milliseconds_since(newest, moment), {}),
            *(FreshnessMetric(TABLE_FRESHNESS, milliseconds_since(commit, moment),
                              {"Table": table})
              for table, commit in sorted(newest_commit_by_table.items()))]
