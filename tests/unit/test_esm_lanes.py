"""``local.event_source_mapping.lanes``: which concurrent batch of a shard a record goes to
(ParallelizationFactor keeps each partition key in order) and where the shard's checkpoint
is when lanes finish out of order ("How Lambda processes records from Amazon Kinesis Data
Streams", https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html)."""

from __future__ import annotations

from collections import Counter

import pytest

from local.event_source_mapping.lanes import ShardProgress, lane_of


def test_a_partition_key_always_goes_to_the_same_lane() -> None:
    keys = [f"public.ticket:{i}" for i in range(2000)]
    for factor in range(1, 11):
        lanes = [lane_of(key, factor) for key in keys]
        assert lanes == [lane_of(key, factor) for key in keys]
        assert set(lanes) == set(range(factor))


def test_keys_spread_over_the_lanes() -> None:
    counts = Counter(lane_of(f"customer:{i}", 3) for i in range(3000))
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def test_factor_one_is_a_single_lane() -> None:
    assert {lane_of(key, 1) for key in ("a", "b", "", "ünïcode")} == {0}


@pytest.mark.parametrize("factor", [0, 11, -1])
def test_a_factor_out_of_range_says_what_is_allowed(factor: int) -> None:
    with pytest.raises(ValueError, match=r"parallelization factor must be 1\.\.10"):
        lane_of("k", factor)


def test_the_checkpoint_waits_for_every_predecessor() -> None:
    progress = ShardProgress()
    for sequence_number in ("10", "11", "12", "13", "14"):
        progress.read(sequence_number)

    assert progress.finish(["11", "13"]) is None  # "10" is still in flight in another lane
    assert (len(progress), progress.unfinished) == (5, 3)
    assert progress.finish(["10"]) == "11"  # 10 and 11 done; 12 holds the rest back
    assert progress.finish(["14"]) is None
    assert progress.finish(["12"]) == "14"
    assert (len(progress), progress.unfinished) == (0, 0)


def test_the_checkpoint_compares_sequence_numbers_as_numbers() -> None:
    progress = ShardProgress()
    progress.read("9")
    progress.read("10")  # "10" < "9" as text
    assert progress.finish(["9", "10"]) == "10"


def test_records_must_be_read_in_the_shards_order() -> None:
    progress = ShardProgress()
    progress.read("20")
    with pytest.raises(ValueError, match="must be read in order"):
        progress.read("19")
