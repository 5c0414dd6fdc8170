"""The order of a streamed epoch: pure numpy, no torch, no I/O.

Everything here is a function of ``(shard sizes, seed, epoch, world size,
shuffle buffer, resume history)``; never of the number of DataLoader workers,
the batch size or the machine. :class:`~fractalshards.stream.FractalStream`
reads shards in the order this module gives; the tests check it alone, at the
scale of 21M samples on 1,024 ranks, without reading a byte.

How an epoch is laid out:

1. **Shard order.** The shards are permuted with a seed of ``(seed, epoch)``
   (kept in order when ``shuffle=False``); their samples, in stored order, form
   one sequence of ``N`` *global positions*.
2. **Ranks.** Each of ``W`` ranks takes a contiguous range of ``P =
   ceil(N / W)`` positions, so it reads only about ``1 / W`` of the shards.
   Positions past ``N`` wrap to the start: at most ``W - 1`` samples per epoch
   are repeated, like ``DistributedSampler``'s padding, so every rank yields the
   same count and DDP never hangs. With ``pad=False`` a rank takes ``floor(N /
   W)`` and up to ``W - 1`` samples are left out instead.
3. **Shuffle.** A rank's range is cut into windows of ``shuffle_buffer``
   positions and each window is permuted with a seed of ``(seed, epoch, rank,
   window)``: a bounded-memory shuffle that can be replayed exactly. This is the
   rank's *output order*.
4. **Workers.** Output positions are dealt to DataLoader workers in blocks of
   ``batch_size`` (block ``j`` to worker ``j % num_workers``), the order in which
   the DataLoader hands batches out, so batches arrive in output order whatever
   the number of workers.

**Elastic resume.** Ranks advance in lockstep, so one number, the samples each
rank has consumed, describes the progress of all of them. When a run resumes
with another world size, shuffle buffer or padding, the samples that no old rank
consumed (padding repeats dropped) keep their order in the old sequence and
become the sequence of a new *level*, which the new ranks split, pad and shuffle
exactly as in steps 2-4 (window seeds gain the level number). Levels compose:
a state records the ``(world_size, shuffle_buffer, pad, samples_seen)`` of every
earlier level of the epoch, a few numbers each, and the sequence of the current
level is recomputed from them. A sequence is held as *runs* (start, length) of
global positions, so its memory grows with the number of ranks, not of samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from .errors import ConfigError
from .limits import check
from .seeds import seeded_permutation

L = TypeVar("L")

__all__ = [
    "Level",
    "Runs",
    "EpochLayout",
    "RankLayout",
    "shard_order",
    "deal",
    "per_rank",
    "check_same",
    "saved_epoch_and_levels",
]


@dataclass(frozen=True)
class Level:
    """How one stretch of an epoch was (or is) consumed: the split, and how far each rank got."""

    world_size: int
    shuffle_buffer: int
    pad: bool = True
    samples_seen: int = 0

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return {
            "world_size": self.world_size,
            "shuffle_buffer": self.shuffle_buffer,
            "pad": self.pad,
            "samples_seen": self.samples_seen,
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "state") -> Level:
        """Validate and parse; a bad field is a one-line :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a level must be an object with world_size, shuffle_buffer, pad, samples_seen")
        out = {}
        for key, kind, low in (("world_size", int, 1), ("shuffle_buffer", int, 1), ("samples_seen", int, 0)):
            value = data.get(key)
            if not isinstance(value, kind) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{where}: {key} {value!r} is not valid; use an integer >= {low}")
            out[key] = value
        check("world_size", out["world_size"], "world_size", where)  # a layout allocates per rank
        check("shuffle_buffer", out["shuffle_buffer"], "samples", where)  # and a permutation per window
        pad = data.get("pad", True)
        if not isinstance(pad, bool):
            raise ConfigError(f"{where}: pad {pad!r} is not valid; use true or false")
        return cls(pad=pad, **out)


class Runs:
    """An ordered sequence of global positions, as runs ``[start, start + length)``."""

    __slots__ = ("starts", "lengths", "ends")

    def __init__(self, starts: np.ndarray, lengths: np.ndarray) -> None:
        keep = lengths > 0
        self.starts = np.ascontiguousarray(starts[keep], np.int64)
        self.lengths = np.ascontiguousarray(lengths[keep], np.int64)
        #: Index (in this sequence) just past each run.
        self.ends = np.cumsum(self.lengths)

    @classmethod
    def whole(cls, n: int) -> Runs:
        """``0 .. n - 1`` in order."""
        return cls(np.array([0], np.int64), np.array([n], np.int64))

    @classmethod
    def from_sorted(cls, values: np.ndarray) -> Runs:
        """Runs of an increasing array of positions."""
        values = np.asarray(values, np.int64)
        if values.size == 0:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))
        breaks = np.flatnonzero(np.diff(values) != 1) + 1
        firsts = np.concatenate([[0], breaks])
        lasts = np.concatenate([breaks, [values.size]])
        return cls(values[firsts], lasts - firsts)

    def __len__(self) -> int:
        return int(self.ends[-1]) if self.ends.size else 0

    def at(self, index: np.ndarray) -> np.ndarray:
        """Global positions of sequence indices ``index``."""
        index = np.asarray(index, np.int64)
        run = np.searchsorted(self.ends, index, side="right")
        return self.starts[run] + (index - (self.ends[run] - self.lengths[run]))

    def select(self, index_runs: Runs) -> Runs:
        """The sub-sequence at sequence indices ``index_runs`` (itself runs of indices), as global runs."""
        if len(index_runs) == 0:
            return Runs(np.zeros(0, np.int64), np.zeros(0, np.int64))
        a = index_runs.starts
        b = index_runs.starts + index_runs.lengths  # exclusive
        first = np.searchsorted(self.ends, a, side="right")
        last = np.searchsorted(self.ends, b - 1, side="right")
        pieces = last - first + 1
        owner = np.repeat(np.arange(a.size), pieces)
        run = np.repeat(first, pieces) + (np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces))
        run_lo = self.ends[run] - self.lengths[run]  # sequence index where each run begins
        lo = np.maximum(run_lo, a[owner])
        hi = np.minimum(self.ends[run], b[owner])
        return Runs(self.starts[run] + (lo - run_lo), hi - lo)


def shard_order(num_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The epoch's shard order (indices into the dataset's shard list)."""
    return seeded_permutation(num_shards, "stream-shards", seed, epoch) if shuffle else np.arange(num_shards, dtype=np.int64)


def per_rank(total: int, world_size: int, pad: bool) -> int:
    """Outputs of each rank when ``total`` samples are split among ``world_size`` ranks (padded or not)."""
    return math.ceil(total / world_size) if pad else total // world_size


def check_same(state: dict, pairs: list[tuple[str, object]], what: str, defaults: dict | None = None) -> None:
    """A one-line error unless the saved ``state`` holds each ``(key, mine)`` as this ``what`` has it
    (``defaults``: what a key absent from older states means)."""
    defaults = defaults or {}
    for key, mine in pairs:
        saved = state.get(key, defaults.get(key))
        if saved != mine:
            raise ConfigError(f"state: {key} is {saved!r} but this {what} has {mine!r}; build the {what} as it was saved")


def saved_epoch_and_levels(
    state: dict, parse: Callable[[object, str], L], what: str, required: bool = True
) -> tuple[int, tuple[L, ...]]:
    """The epoch and the earlier levels of a saved state, each level read by ``parse``; the number of
    levels bounded before any is read (``required=False``: a state without history has none)."""
    epoch = state.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ConfigError(f"state: epoch {epoch!r} is not valid; use a non-negative integer")
    raw = state.get("history") if required else state.get("history", [])
    if not isinstance(raw, list):
        raise ConfigError(f"state: history must be a list of {what}")
    check("history", len(raw), "levels", "state")
    return epoch, tuple(parse(lv, "state: history") for lv in raw)


class EpochLayout:
    """One epoch of one stream: shard order, the resume levels, and the current level's split.

    Args:
        shard_samples: samples of each shard, in the dataset's shard order.
        seed, epoch, shuffle: decide the shard order and every shuffle window.
        world_size, shuffle_buffer, pad: the current split.
        history: earlier levels of this epoch (oldest first), from resumed states.
    """

    def __init__(
        self,
        shard_samples: np.ndarray,
        *,
        seed: int,
        epoch: int,
        shuffle: bool,
        world_size: int,
        shuffle_buffer: int,
        pad: bool = True,
        history: tuple[Level, ...] = (),
    ) -> None:
        self.shard_samples = np.asarray(shard_samples, np.int64)
        self.seed, self.epoch, self.shuffle = int(seed), int(epoch), bool(shuffle)
        self.order = shard_order(len(self.shard_samples), self.seed, self.epoch, self.shuffle)
        #: Global position where each shard of the epoch's order begins (and the total at the end).
        self.bounds = np.concatenate([[0], np.cumsum(self.shard_samples[self.order])]).astype(np.int64)
        self.total = int(self.bounds[-1])
        self.history = tuple(history)
        sequence = Runs.whole(self.total)
        for number, level in enumerate(self.history):
            sequence = _remaining(self, sequence, number, level)
        #: The current level's sequence of global positions.
        self.sequence = sequence
        self.level = len(self.history)
        self.world_size, self.shuffle_buffer, self.pad = int(world_size), int(shuffle_buffer), bool(pad)
        self.per_rank = per_rank(len(sequence), self.world_size, self.pad)

    def rank(self, rank: int) -> RankLayout:
        """The layout of one rank at the current level."""
        if not 0 <= rank < self.world_size:
            raise ConfigError(f"rank: {rank} is out of range 0..{self.world_size - 1}")
        return RankLayout(self, self.sequence, self.level, rank, self.world_size, self.shuffle_buffer, self.per_rank)

    def shard_of(self, positions: np.ndarray) -> np.ndarray:
        """Index into the epoch's shard order of each global position."""
        return np.searchsorted(self.bounds, positions, side="right") - 1


class RankLayout:
    """One rank's input positions (in the level's sequence) and output order."""

    def __init__(
        self, epoch: EpochLayout, sequence: Runs, level: int, rank: int, world_size: int, shuffle_buffer: int, per_rank: int
    ) -> None:
        self.epoch, self.sequence, self.level = epoch, sequence, level
        self.rank, self.world_size, self.shuffle_buffer, self.per_rank = rank, world_size, shuffle_buffer, per_rank

    def window_perm(self, window: int) -> np.ndarray:
        """Output order within ``window``: ``perm[j]`` is the input offset of output ``window * b + j``."""
        b = self.shuffle_buffer
        length = min(b, self.per_rank - window * b)
        if not self.epoch.shuffle:
            return np.arange(length, dtype=np.int64)
        if self.level == 0:  # the original key: states saved before levels existed stay valid
            return seeded_permutation(length, "stream-window", self.epoch.seed, self.epoch.epoch, self.rank, window)
        return seeded_permutation(
            length, "stream-window", self.epoch.seed, self.epoch.epoch, f"level{self.level}", self.rank, window
        )

    @property
    def windows(self) -> int:
        """Number of shuffle windows."""
        return math.ceil(self.per_rank / self.shuffle_buffer)

    def index_runs(self, q0: int = 0, q1: int | None = None) -> Runs:
        """Sequence indices of input positions ``q0 .. q1 - 1`` (padding wraps to the start)."""
        q1 = self.per_rank if q1 is None else q1
        n = len(self.sequence)
        lo, hi = self.rank * self.per_rank + q0, self.rank * self.per_rank + q1
        if hi <= lo or n == 0:
            return Runs.from_sorted(np.zeros(0, np.int64))
        starts, lengths = [], []
        while lo < hi:  # at most a couple of turns: padding is shorter than the sequence
            a = lo % n
            take = min(hi - lo, n - a)
            starts.append(a)
            lengths.append(take)
            lo += take
        return Runs(np.array(starts, np.int64), np.array(lengths, np.int64))

    def global_runs(self, q0: int = 0, q1: int | None = None) -> Runs:
        """Global positions of input positions ``q0 .. q1 - 1``, as runs."""
        return self.sequence.select(self.index_runs(q0, q1))

    def inputs_to_global(self, q: np.ndarray) -> np.ndarray:
        """Global positions of input positions ``q``."""
        n = len(self.sequence)
        return self.sequence.at((self.rank * self.per_rank + np.asarray(q, np.int64)) % n)

    def segments(self, q0: int = 0) -> list[tuple[int, int, int]]:
        """``(shard index, first sample, count)`` reading input positions ``q0 ..`` in order."""
        runs = self.global_runs(q0)
        bounds = self.epoch.bounds
        out: list[tuple[int, int, int]] = []
        for start, length in zip(runs.starts.tolist(), runs.lengths.tolist()):
            while length > 0:
                s = int(np.searchsorted(bounds, start, side="right") - 1)
                take = min(length, int(bounds[s + 1]) - start)
                shard = int(self.epoch.order[s])
                first = start - int(bounds[s])
                if out and out[-1][0] == shard and out[-1][1] + out[-1][2] == first:
                    out[-1] = (shard, out[-1][1], out[-1][2] + take)
                else:
                    out.append((shard, first, take))
                start += take
                length -= take
        return out

    def output_inputs(self, start: int = 0) -> Iterator[np.ndarray]:
        """Input positions of outputs ``start ..``, one array per window, in output order."""
        b = self.shuffle_buffer
        for w in range(start // b, self.windows):
            perm = self.window_perm(w)
            yield w * b + perm[max(0, start - w * b) :]

    def output_globals(self, start: int = 0) -> np.ndarray:
        """Global positions of outputs ``start ..`` in output order (memory: one int64 per output)."""
        parts = list(self.output_inputs(start))
        return self.inputs_to_global(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def split_at(self, seen: int) -> tuple[int, np.ndarray, np.ndarray, int]:
        """Where the first ``seen`` outputs leave this rank: ``(lo, taken, left, hi)``.

        The consumed inputs are ``0 .. lo - 1`` and ``taken`` (part of the window at ``lo``);
        the unconsumed ones are ``left`` (the rest of that window, sorted) and ``hi .. per_rank - 1``.
        """
        b = self.shuffle_buffer
        w, o = divmod(min(seen, self.per_rank), b)
        lo = w * b
        if lo >= self.per_rank:
            return self.per_rank, np.zeros(0, np.int64), np.zeros(0, np.int64), self.per_rank
        perm = self.window_perm(w)
        return lo, lo + perm[:o], np.sort(lo + perm[o:]), min(lo + b, self.per_rank)

    def consumed_inputs(self, seen: int) -> tuple[Runs, np.ndarray]:
        """Input positions of the first ``seen`` outputs: full windows as runs, plus the partial window's."""
        lo, taken, _, _ = self.split_at(seen)
        return Runs.whole(lo), taken


def _remaining(epoch: EpochLayout, sequence: Runs, number: int, level: Level) -> Runs:
    """The sequence (global runs) of samples that level ``number`` left unconsumed, in its order."""
    n = len(sequence)
    level_per_rank = per_rank(n, level.world_size, level.pad)
    if level.samples_seen > level_per_rank:
        raise ConfigError(
            f"state: samples_seen {level.samples_seen} is more than the {level_per_rank} samples per rank of "
            f"level {number}; the state belongs to another dataset or shard selection"
        )
    served = min(n, level_per_rank * level.world_size)  # indices ever served at this level (pad=False leaves a tail)
    keep_starts: list[np.ndarray] = []
    keep_lengths: list[np.ndarray] = []
    wrapped_consumed: list[np.ndarray] = []
    for r in range(level.world_size):
        rank = RankLayout(epoch, sequence, number, r, level.world_size, level.shuffle_buffer, level_per_rank)
        base = r * level_per_rank
        lo, taken, left, hi = rank.split_at(level.samples_seen)
        # Unconsumed inputs: the rest of the current window, then every later window.
        idx_left = base + left
        runs_left = Runs.from_sorted(idx_left[idx_left < served])
        keep_starts.append(runs_left.starts)
        keep_lengths.append(runs_left.lengths)
        tail_lo, tail_hi = base + hi, min(base + level_per_rank, served)
        if tail_hi > tail_lo:
            keep_starts.append(np.array([tail_lo], np.int64))
            keep_lengths.append(np.array([tail_hi - tail_lo], np.int64))
        # Consumed padding repeats (indices past the sequence end): their originals count as consumed.
        if base + level_per_rank > n:
            idx = base + np.concatenate([np.arange(lo, dtype=np.int64), taken])
            wrapped_consumed.append(idx[idx >= n] % n)
    starts = np.concatenate(keep_starts) if keep_starts else np.zeros(0, np.int64)
    lengths = np.concatenate(keep_lengths) if keep_lengths else np.zeros(0, np.int64)
    index_runs = Runs(starts, lengths)  # increasing: ranks are contiguous and in order
    if wrapped_consumed:
        index_runs = _without(index_runs, np.unique(np.concatenate(wrapped_consumed)))
    return sequence.select(index_runs)


def _without(runs: Runs, points: np.ndarray) -> Runs:
    """``runs`` (increasing) less the positions ``points`` (few: padding repeats)."""
    if points.size == 0 or len(runs) == 0:
        return runs
    starts, lengths = runs.starts.tolist(), runs.lengths.tolist()
    out_s, out_l = [], []
    pts = sorted(set(int(p) for p in points))
    k = 0
    for s, n in zip(starts, lengths):
        e = s + n
        while k < len(pts) and pts[k] < s:
            k += 1
        cur = s
        while k < len(pts) and pts[k] < e:
            if pts[k] > cur:
                out_s.append(cur)
                out_l.append(pts[k] - cur)
            cur = pts[k] + 1
            k += 1
        if e > cur:
            out_s.append(cur)
            out_l.append(e - cur)
    return Runs(np.array(out_s, np.int64), np.array(out_l, np.int64))


def deal(lo: int, hi: int, start: int, block: int, workers: int, worker: int) -> np.ndarray:
    """Output positions ``lo .. hi - 1`` that DataLoader worker ``worker`` of ``workers`` yields
    when an iteration begins at output ``start``: blocks of ``block`` outputs counted from
    ``start``, block ``j`` to worker ``j % workers`` (the DataLoader's batch order)."""
    j = np.arange(lo, hi, dtype=np.int64)
    if workers <= 1:
        return j
    return j[((j - start) // max(1, block)) % workers == worker]
