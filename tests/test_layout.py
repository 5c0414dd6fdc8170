"""The epoch layout alone (no I/O, no torch): ranks, windows, dealing, elastic remainders, scale."""

from __future__ import annotations

import resource
import time
from collections import Counter

import numpy as np
import pytest

from fractalshards.epochs import EpochLayout, Level, Runs, deal
from fractalshards.errors import ConfigError


def _layout(sizes, *, world, buffer=7, pad=True, history=(), seed=3, epoch=1, shuffle=True) -> EpochLayout:
    return EpochLayout(
        np.asarray(sizes),
        seed=seed,
        epoch=epoch,
        shuffle=shuffle,
        world_size=world,
        shuffle_buffer=buffer,
        pad=pad,
        history=tuple(history),
    )


def _outputs(layout: EpochLayout) -> list[np.ndarray]:
    return [layout.rank(r).output_globals() for r in range(layout.world_size)]


def _consumed(layout: EpochLayout, seen: int) -> list[int]:
    return [int(g) for outs in _outputs(layout) for g in outs[:seen]]


def test_runs_select_matches_indexing():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = np.sort(rng.choice(500, size=rng.integers(1, 200), replace=False))
        runs = Runs.from_sorted(values)
        assert len(runs) == values.size
        np.testing.assert_array_equal(runs.at(np.arange(values.size)), values)
        picks = np.sort(rng.choice(values.size, size=rng.integers(1, values.size + 1), replace=False))
        np.testing.assert_array_equal(runs.select(Runs.from_sorted(picks)).at(np.arange(picks.size)), values[picks])


def test_ranks_split_contiguously_with_padding_and_equal_counts():
    sizes = [14, 14, 14, 14, 9]
    layout = _layout(sizes, world=3, buffer=8)
    outs = _outputs(layout)
    assert [len(o) for o in outs] == [22, 22, 22]
    counts = Counter(int(g) for o in outs for g in o)
    assert set(counts) == set(range(65)) and sum(counts.values()) == 66
    # Each rank reads a contiguous stretch of the epoch's shard order, so few shards.
    for r in range(3):
        shards = {s for s, _, _ in layout.rank(r).segments()}
        assert len(shards) <= 3
    unpadded = _layout(sizes, world=3, pad=False)
    assert [len(o) for o in _outputs(unpadded)] == [21, 21, 21]


def test_windows_are_permutations_and_order_depends_on_seed_and_epoch():
    a = _layout([10] * 6, world=2, buffer=5).rank(1).output_globals()
    assert sorted(a.tolist()) == list(range(30, 60))
    assert _layout([10] * 6, world=2, buffer=5).rank(1).output_globals().tolist() == a.tolist()
    assert _layout([10] * 6, world=2, buffer=5, epoch=2).rank(1).output_globals().tolist() != a.tolist()
    plain = _layout([10] * 6, world=1, buffer=5, shuffle=False).rank(0).output_globals()
    assert plain.tolist() == list(range(60))


@pytest.mark.parametrize("workers,block,start", [(1, 4, 0), (2, 4, 0), (3, 5, 7), (16, 2, 3)])
def test_dealing_partitions_outputs_in_batch_order(workers, block, start):
    got = [deal(start, 53, start, block, workers, w) for w in range(workers)]
    flat = sorted(int(j) for part in got for j in part)
    assert flat == list(range(start, 53))
    # The DataLoader takes one block from each worker in turn: that reproduces output order.
    order = []
    queues = [list(p) for p in got]
    w = 0
    while any(queues):
        order += queues[w][:block]
        queues[w] = queues[w][block:]
        w = (w + 1) % workers
    assert order == list(range(start, 53))


def _check_elastic(sizes, old: Level, new_world: int, new_buffer: int, new_pad: bool = True):
    total = sum(sizes)
    before = _layout(sizes, world=old.world_size, buffer=old.shuffle_buffer, pad=old.pad)
    consumed = _consumed(before, old.samples_seen)
    after = _layout(sizes, world=new_world, buffer=new_buffer, pad=new_pad, history=[old])
    resumed = _outputs(after)
    assert len({len(o) for o in resumed}) == 1  # equal counts on every new rank
    rest = [int(g) for o in resumed for g in o]
    served = set(range(total)) if old.pad else {g for o in _outputs(before) for g in o.tolist()}
    remaining = len(served - set(consumed))
    assert len(after.sequence) == remaining
    # Union is the epoch, each sample once, plus at most new_world - 1 padding repeats
    # (or, without padding, at most new_world - 1 left out).
    if new_pad:
        assert set(consumed) | set(rest) == served
    else:
        assert set(consumed) | set(rest) <= served and len(served - set(consumed) - set(rest)) < new_world
    assert not (set(consumed) & set(rest)) or remaining == 0
    extra = len(rest) - len(set(rest))
    assert extra <= new_world - 1 and (new_pad or extra == 0)
    return after


@pytest.mark.parametrize("old_world,new_world", [(4, 3), (4, 2), (2, 5), (3, 3), (1, 4), (5, 1)])
@pytest.mark.parametrize("seen", [0, 1, 6, 9, 13])
def test_elastic_remainder_is_exactly_the_unconsumed_samples(old_world, new_world, seen):
    sizes = [11, 14, 14, 9, 17]  # 65 samples
    per_rank = -(-65 // old_world)
    _check_elastic(sizes, Level(old_world, 6, True, min(seen, per_rank)), new_world, new_buffer=5)


def test_elastic_with_a_changed_buffer_and_no_padding():
    sizes = [11, 14, 14, 9, 17]
    _check_elastic(sizes, Level(3, 4, False, 10), 4, new_buffer=9, new_pad=False)
    _check_elastic(sizes, Level(4, 10, True, 17), 2, new_buffer=3, new_pad=True)


def test_successive_resumes_compose_4_2_6():
    sizes = [30, 25, 40, 33, 12, 20]  # 160
    first = Level(4, 8, True, 13)
    l1 = _layout(sizes, world=4, buffer=8)
    consumed = set(_consumed(l1, 13))
    l2 = _layout(sizes, world=2, buffer=5, history=[first])
    consumed |= set(_consumed(l2, 21))
    second = Level(2, 5, True, 21)
    l3 = _layout(sizes, world=6, buffer=4, history=[first, second])
    rest = [int(g) for o in _outputs(l3) for g in o]
    assert len({len(o) for o in _outputs(l3)}) == 1
    assert set(rest) | consumed == set(range(160))
    assert not set(rest) & consumed
    assert len(rest) - len(set(rest)) <= 5


def test_bad_history_is_refused():
    with pytest.raises(ConfigError, match="samples_seen"):
        _layout([10, 10], world=2, history=[Level(2, 4, True, 11)])
    with pytest.raises(ConfigError, match="world_size"):
        Level.from_dict({"world_size": 0, "shuffle_buffer": 3, "samples_seen": 0})
    with pytest.raises(ConfigError, match="pad"):
        Level.from_dict({"world_size": 2, "shuffle_buffer": 3, "samples_seen": 0, "pad": "yes"})


def test_internet_scale_layout_and_elastic_resume_in_seconds():
    """21M samples in 2,100 shards on 1,024 ranks x 16 workers, then a resume on 768 ranks."""
    sizes = np.full(2_100, 10_000, np.int64)
    total = int(sizes.sum())
    world, workers, batch, buffer = 1_024, 16, 256, 5_000
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    layout = EpochLayout(sizes, seed=0, epoch=5, shuffle=True, world_size=world, shuffle_buffer=buffer)
    per_rank = layout.per_rank
    assert per_rank == -(-total // world)
    seen = 7 * batch + 100  # mid-window, mid-batch
    coverage = np.zeros(total, np.uint8)
    touched = []
    for r in range(world):
        rank = layout.rank(r)
        segments = rank.segments()
        touched.append(len({s for s, _, _ in segments}))
        assert sum(n for _, _, n in segments) == per_rank
        done, partial = rank.consumed_inputs(seen)
        coverage[rank.inputs_to_global(np.arange(len(done)))] += 1
        coverage[rank.inputs_to_global(partial)] += 1
    # Each rank touches about 1/1,024 of the shards (2,100 / 1,024 ~ 2, plus boundaries).
    assert max(touched) <= 4 and np.mean(touched) < 3.1
    # One rank's 16 workers partition its outputs.
    dealt = np.concatenate([deal(0, per_rank, 0, batch, workers, w) for w in range(workers)])
    assert np.array_equal(np.sort(dealt), np.arange(per_rank))

    resumed = EpochLayout(
        sizes, seed=0, epoch=5, shuffle=True, world_size=768, shuffle_buffer=buffer, history=(Level(world, buffer, True, seen),)
    )
    counts = set()
    for r in range(768):
        rank = resumed.rank(r)
        counts.add(rank.per_rank)
        # Inputs in order: cheap (no shuffle needed to count coverage).
        runs = rank.global_runs()
        for start, length in zip(runs.starts.tolist(), runs.lengths.tolist()):
            coverage[start : start + length] += 1
    elapsed = time.perf_counter() - t0
    assert len(counts) == 1
    # Every sample exactly once, except the resumed level's padding (< 768 repeats).
    assert coverage.min() == 1
    assert int((coverage > 1).sum()) < 768 and coverage.max() == 2
    assert elapsed < 60, f"layout took {elapsed:.1f} s"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mib < 400, f"peak memory grew by {grown_mib:.0f} MiB"
