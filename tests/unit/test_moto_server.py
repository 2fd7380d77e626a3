"""local.moto_server: moto's Kinesis answers unchanged, in time that does not grow with the
stream ("Amazon Kinesis Data Streams Quotas and Limits": a shard's throughput does not depend
on what it retains)."""

from __future__ import annotations

from moto.kinesis.models import Shard

from local.moto_server import patch


def filled_shard(count: int) -> Shard:
    shard = Shard(0, starting_hash=0, ending_hash=2**128 - 1)
    for n in range(count):
        shard.put_record(f"key-{n}", f"data-{n}", "1")
    return shard


def test_reads_give_what_moto_gives() -> None:
    # Given a shard filled by moto's own code, read at many positions with moto's walk
    unpatched = Shard.get_records
    shard = filled_shard(50)
    expected = {(after, limit): unpatched(shard, str(after), limit)
                for after in (0, 1, 17, 49, 50, 60) for limit in (None, 1, 10, 100)}
    # When the patched reader reads at the same positions
    patch()
    got = {key: shard.get_records(str(key[0]), key[1]) for key in expected}
    # Then every answer is the same records, position and lag
    for key, (records, position, behind) in expected.items():
        assert [r.sequence_number for r in got[key][0]] == [r.sequence_number for r in records]
        assert got[key][1:] == (position, behind), key


def test_a_shard_that_is_not_consecutive_falls_back_to_the_walk() -> None:
    patch()
    shard = filled_shard(10)
    del shard.records[5]
    records, position, _ = shard.get_records("3", 3)
    assert [r.sequence_number for r in records] == [4, 6, 7]
    assert position == 7
