"""Stream a dataset or recipe into torch: :class:`FractalStream`, an ``IterableDataset``.

The order of an epoch is :mod:`fractalshards.epochs`'s (a pure function of seed, epoch, rank, world
size, shuffle buffer and resume history, never of the number of DataLoader workers); samples come
from a source of :mod:`fractalshards.sources` (stored shards, through the node cache of
:mod:`fractalshards.cache` when remote, or renders of the definition) and are decoded by the
definition's sample kind (:mod:`fractalshards.kinds`).

Each DataLoader worker walks its rank's shards in order (the next ones are loaded in background
threads while the current window is decoded), indexes each shard's tar headers once and slices out
only the samples dealt to it.

The stream's :class:`Position` (epoch, samples already consumed, the resume history, the batch size
used for dealing) is written only by its loader (:class:`fractalshards.loader.FractalLoader`). It
reaches the workers through a small shared-memory block that they read whenever an iteration starts,
so ``persistent_workers=True`` sees every new epoch and every loaded state, in exactly the order
that fresh workers would give.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import multiprocessing
import os
import struct
import weakref
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .cache import DEFAULT_CACHE_LIMIT, ShardCache, default_cache_dir
from .dataset import open_definition
from .epochs import EpochLayout, Level, RankLayout, check_same, deal, per_rank, saved_epoch_and_levels
from .errors import ConfigError, ShardIntegrityError, TransferError, check_choice
from .hashing import VERSION_LENGTH
from .kinds import DECODES, Decoding
from .limits import Limits, check, current, raised
from .sources import RenderedShard, RenderedSource, StoredShard, StoredSource

__all__ = ["FractalStream", "Position", "ShardIntegrityError", "TransferError", "DECODES", "STATE_VERSION"]

#: Shards loaded ahead of the shuffle window being decoded, per worker.
PREFETCH_SHARDS = 2
#: Shards fetched at once, per worker: a window's shards (and those ahead) download in parallel,
#: so a cold epoch waits for about one round trip per window, not one per shard.
FETCH_THREADS = 4
#: Where samples come from: ``auto`` renders a recipe and reads a built dataset's shards.
SOURCES = ("auto", "shards", "render")
#: Version of a saved loader state (:meth:`FractalStream.state_at`); version 1 states (no history) are still read.
STATE_VERSION = 2


@dataclass(frozen=True)
class Position:
    """Where a stream stands: the epoch, this rank's outputs already consumed at the current level, the
    block dealt to a worker at a time (the batch size) and the resume history. Written by the stream's
    loader (:class:`fractalshards.loader.FractalLoader`), read by every worker when an iteration starts."""

    epoch: int = 0
    start: int = 0  # outputs of this rank already consumed at the current level
    block: int = 1  # outputs dealt to a worker at a time (the batch size)
    history: tuple[Level, ...] = ()

    def to_bytes(self) -> bytes:
        """The position as JSON bytes (what the shared block holds)."""
        return json.dumps(
            {"epoch": self.epoch, "start": self.start, "block": self.block, "history": [lv.to_dict() for lv in self.history]}
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Position:
        """Inverse of :meth:`to_bytes` (our own bytes, written by this process's loader)."""
        d = json.loads(data)
        return cls(d["epoch"], d["start"], d["block"], tuple(Level(**lv) for lv in d["history"]))


class _SharedPosition:
    """A shared-memory block holding the position, readable by forked and spawned workers."""

    SIZE = 1 << 16

    def __init__(self) -> None:
        self.buffer = multiprocessing.RawArray("B", self.SIZE)

    def write(self, position: Position) -> None:
        data = position.to_bytes()
        if len(data) + 4 > self.SIZE:
            raise ConfigError(f"state: resume history too long ({len(position.history)} levels); start a new epoch")
        view = memoryview(self.buffer).cast("B")
        view[4 : 4 + len(data)] = data
        view[:4] = struct.pack("<I", len(data))

    def read(self) -> Position:
        view = memoryview(self.buffer).cast("B")
        (n,) = struct.unpack("<I", bytes(view[:4]))
        return Position.from_bytes(bytes(view[4 : 4 + n]))


class _Iterating(IterableDataset):
    """What an iteration of a stream or a mixture shares: it runs under the object's limits, is closed
    at exit when left unfinished, and each DataLoader worker reads the position its loader wrote."""

    limits: Limits

    def __iter__(self) -> Iterator[Any]:
        samples = self._limited()
        _OPEN.add(samples)
        return samples

    def _limited(self) -> Iterator[Any]:
        with raised(self.limits):
            yield from self._iterate()

    def _iterate(self) -> Iterator[Any]:
        raise NotImplementedError

    def _worker_position(self) -> tuple[int, int, Any]:
        """``(worker, workers, position)``: this DataLoader worker's place and the position to start from."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        shared = self._shared  # type: ignore[attr-defined]
        return worker, workers, shared.read() if (shared is not None and info is not None) else self._position  # type: ignore[attr-defined]


class FractalStream(_Iterating):
    """An ``IterableDataset`` of a built dataset's samples, ``(image, label)`` by default.

    Args:
        url: dataset folder or URL (path, ``file://``, ``s3://bucket/prefix``, ``PREFIX@tag``) holding ``manifest.json``.
        rank: this process's place in data-parallel training; default from ``torch.distributed``
            when it is initialised, else 0.
        world_size: the number of data-parallel processes; default from ``torch.distributed``, else 1.
        shuffle: permute shard order and shuffle samples within windows, anew every epoch.
        seed: shuffling seed; with the epoch it decides the order completely.
        shuffle_buffer: window of the sample shuffle (the shards overlapping one window are held per worker).
        decode: one of :data:`DECODES` (what each mode gives is the sample kind's: :mod:`fractalshards.kinds`).
        transform: applied to the decoded image (a uint8 or float CHW tensor, or an HWC array).
        verify: check every shard's sha256 against the manifest before using it (default: a flipped
            digit in a ``.cls`` member is a wrong label that no parser would notice).
        cache_dir: the node-local shard cache for remote stores: ``None`` (default) uses
            ``$FRACTALSHARDS_CACHE/shards`` or ``~/.cache/fractalshards/shards``, a path uses that
            folder, ``False`` turns caching off (every worker then fetches the shards it reads).
            Local datasets are read in place.
        cache_limit: bytes the cache folder may hold; least recently used shards are evicted.
        storage_options: fsspec options (credentials and endpoint otherwise come from the environment).
        pad: give every rank ``ceil(N / world_size)`` samples, repeating a few (default), or
            ``floor(N / world_size)``, leaving a few out.
        shards: use only these shard names (e.g. to hold one out for evaluation).
        mean: normalisation mean of ``decode="float"`` (FractalDB's 0.2).
        std: normalisation standard deviation of ``decode="float"`` (FractalDB's 0.5).
        source: ``shards`` reads a built dataset's shards; ``render`` renders every sample in the
            DataLoader workers from the definition (a recipe's, or a dataset's manifest: no shard
            byte is read); ``auto`` (default) renders a recipe and reads a dataset's shards. Both
            give the same samples in the same order, pixel for pixel.
        limits: bounds on what the dataset and loader states may ask for
            (:class:`fractalshards.limits.Limits`; default: the ones in force).
        fresh_instances: render instances that no earlier epoch rendered: epoch ``e`` renders
            instance ``i + e * K`` of each category (``K`` the definition's instances per category;
            labels, shard plan and order as usual), so the data never repeats. Native-mode
            definitions whose family draws instances from streams keyed by the instance number
            (see :meth:`fractalshards.families.Family.fresh_instances`); samples are rendered.
    """

    def __init__(
        self,
        url: str,
        *,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        decode: str = "tensor",
        transform: Callable | None = None,
        verify: bool = True,
        cache_dir: str | os.PathLike | None | bool = None,
        storage_options: dict | None = None,
        cache_limit: int = DEFAULT_CACHE_LIMIT,
        pad: bool = True,
        shards: Sequence[str] | None = None,
        mean: float = 0.2,
        std: float = 0.5,
        source: str = "auto",
        limits: Limits | None = None,
        fresh_instances: bool = False,
    ) -> None:
        super().__init__()
        #: The bounds in force when this stream reads (also in DataLoader workers, which get a copy).
        self.limits = limits if limits is not None else current()
        with raised(self.limits):  # the reads below ask for sizes: they are bounded
            check_choice("source", source, SOURCES)
            if decode not in DECODES:
                raise ConfigError(f"decode: {decode!r} is not known; use one of {', '.join(DECODES)}")
            if not isinstance(shuffle_buffer, int) or isinstance(shuffle_buffer, bool) or shuffle_buffer < 1:
                raise ConfigError(f"shuffle_buffer: {shuffle_buffer!r} is not valid; use a positive integer")
            kind, document, self.store = open_definition(url, storage_options)
            if kind == "recipe" and source == "shards":
                raise ConfigError(f"source: {url!r} is a recipe and has no shards; use source='render' or build it first")
            if not isinstance(fresh_instances, bool):
                raise ConfigError(f"fresh_instances: {fresh_instances!r} is not valid; use True or False")
            if fresh_instances and source == "shards":
                raise ConfigError("fresh_instances: new instances are rendered, not read; use source='render' or 'auto'")
            self.url = url
            self.kind = kind
            #: Whether each epoch renders instances no earlier epoch rendered.
            self.fresh_instances = fresh_instances
            self.source = "render" if source == "render" or kind == "recipe" or fresh_instances else "shards"
            self.manifest = document if kind == "dataset" else None
            self.recipe = document if kind == "recipe" else None
            #: The dataset definition: what a rendered source renders, and what stored shards are checked
            #: against (keys, labels, their kind's headers).
            self.definition = document.definition if kind == "recipe" else document.definition()
            self.definition_id = document.version if kind == "recipe" else document.definition_id
            if fresh_instances:
                why = self.definition.family.fresh_instances(self.definition.render)
                if why is not None:
                    raise ConfigError(f"fresh_instances: {url!r} cannot render new instances: {why}; use fresh_instances=False")
            self._version = document.version
            if kind == "dataset":
                entries = list(document.shards)  # the definition's plan (checked when the manifest was read)
            else:
                entries = [_Entry(name, samples) for name, samples in self.definition.shard_sizes()]
            if shards is not None:
                known = {s.name for s in entries}
                unknown = [s for s in shards if s not in known]
                if unknown:
                    raise ConfigError(f"shards: {unknown[:3]} are not in {url!r}; use names from its manifest")
                wanted = set(shards)
                entries = [s for s in entries if s.name in wanted]
            if not entries:
                raise ConfigError("shards: no shard selected; the stream would be empty")
            self.shard_names = [s.name for s in entries]
            self.shard_samples = np.array([s.samples for s in entries], np.int64)
            self.hashes = {s.name: s.sha256 for s in entries}
            self.sizes = {s.name: s.bytes for s in entries}  # each shard is read to exactly this, no further
            if rank is None or world_size is None:
                dist_rank, dist_world = _distributed()
                rank = dist_rank if rank is None else rank
                world_size = dist_world if world_size is None else world_size
            if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
                raise ConfigError(f"rank/world_size: {rank!r}/{world_size!r} is not valid; use 0 <= rank < world_size")
            self.rank, self.world_size = rank, world_size
            total = int(self.shard_samples.sum())
            if total < world_size:
                raise ConfigError(f"world_size: {world_size} ranks for {total} samples leaves a rank empty; use fewer ranks")
            self.pad = bool(pad)
            self.shuffle, self.seed, self.shuffle_buffer = bool(shuffle), int(seed), shuffle_buffer
            self.decode, self.transform, self.verify = decode, transform, bool(verify)
            #: What ``decode="packed"`` yields: the definition's :class:`~fractalshards.png.PackedLayout`
            #: (``bits`` with its grey ``level``, ``grey`` or ``rgb``), the same for every sample.
            self.layout = self.definition.packed_layout
            self._decoding = None if decode == "raw" else Decoding(decode, float(mean), float(std), transform)
            if cache_dir is True:
                cache_dir = None
            self.cache = None
            if cache_dir is not False and not self.store.is_local and self.source == "shards":
                self.cache = ShardCache(default_cache_dir() if cache_dir is None else cache_dir, cache_limit)
                self.cache.path(self.version, self.shard_names[0])  # validates the version and a name before any fetch
            self.mean, self.std = float(mean), float(std)
            self._position = Position()
            self._shared: _SharedPosition | None = None  # share_position(): for a loader's worker processes
            self._layout_cache: tuple | None = None

        # -- public --

    def __len__(self) -> int:
        """Samples this rank yields in the current epoch (the same on every rank)."""
        return self._rank_layout(self._position).per_rank

    @property
    def epoch(self) -> int:
        """The current epoch (shard and sample order change with it)."""
        return self._position.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning (a :class:`FractalLoader` does this itself)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ConfigError(f"epoch: {epoch!r} is not valid; use a non-negative integer")
        self.set_position(replace(self._position, epoch=epoch, start=0, history=()))

    @property
    def version(self) -> str:
        """The version being streamed (a dataset's, or a recipe's)."""
        return self._version

    @property
    def shard_set(self) -> str:
        """A short hash of the streamed shard names (part of a saved state)."""
        return hashlib.sha256("\n".join(self.shard_names).encode()).hexdigest()[
            :VERSION_LENGTH
        ]  # states saved before keep theirs

    def epoch_keys(self) -> list[tuple[str, int]]:
        """``(shard, index in shard)`` of every sample this rank yields from the current position, in order.

        Cheap (no I/O): what :meth:`__iter__` will yield, for checks and debugging.
        """
        layout = self._rank_layout(self._position)
        globals_ = layout.output_globals(self._position.start)
        shard = layout.epoch.shard_of(globals_)
        first = layout.epoch.bounds[shard]
        return [(self.shard_names[int(layout.epoch.order[s])], int(g - f)) for s, g, f in zip(shard, globals_, first)]

    # -- position (a loader's to write) --
    @property
    def position(self) -> Position:
        """Where the stream stands (see :class:`Position`)."""
        return self._position

    def set_position(self, position: Position) -> None:
        """Move the stream to ``position`` (a loader does: the workers read it when an iteration starts)."""
        self._position = position
        if self._shared is not None:
            self._shared.write(position)

    def share_position(self) -> None:
        """Keep the position in shared memory from now on, so that worker processes (forked or spawned,
        persistent or not) read every new epoch and loaded state; call it before the workers start."""
        if self._shared is None:
            self._shared = _SharedPosition()
            self._shared.write(self._position)

    def _rank_layout(self, position: Position) -> RankLayout:
        key = (position.epoch, position.history)
        if self._layout_cache is None or self._layout_cache[0] != key:
            epoch = EpochLayout(
                self.shard_samples,
                seed=self.seed,
                epoch=position.epoch,
                shuffle=self.shuffle,
                world_size=self.world_size,
                shuffle_buffer=self.shuffle_buffer,
                pad=self.pad,
                history=position.history,
            )
            self._layout_cache = (key, epoch.rank(self.rank))
        return self._layout_cache[1]

    # -- saved states (a loader's) --
    def state_at(self, position: Position) -> dict:
        """The JSON-able state of this rank at ``position`` (what :meth:`FractalLoader.state_dict` saves):
        epoch, outputs consumed, the split and its history, and what identifies the stream."""
        state = {
            "version": STATE_VERSION,
            "dataset_version": self.version,
            "definition": self.definition_id,  # shared by a recipe and the dataset built from it
            "shard_set": self.shard_set,
            "epoch": position.epoch,
            "samples_seen": position.start,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "shuffle_buffer": self.shuffle_buffer,
            "pad": self.pad,
            "world_size": self.world_size,
            "rank": self.rank,
            "samples_per_rank": self._rank_layout(position).per_rank,
            "history": [lv.to_dict() for lv in position.history],
        }
        if self.fresh_instances:  # absent otherwise: states saved before it existed stay the same bytes
            state["fresh_instances"] = True
        return state

    def position_of_state(self, state: object, block: int = 1) -> Position:
        r"""Where a saved state (:meth:`state_at`, of any rank of an earlier run) resumes this stream.

        The definition, shard selection, seed and shuffle must be the same; world size, shuffle
        buffer and padding may differ (elastic resume: the samples no saved rank consumed become a
        new level, see :mod:`fractalshards.epochs`). Bad states are one-line :class:`ConfigError`\ s.
        """
        with raised(self.limits):  # a state from storage asks for world sizes and levels
            return self._position_of_state(state, block)

    def _position_of_state(self, state: object, block: int) -> Position:
        if not isinstance(state, dict) or state.get("version") not in (1, STATE_VERSION):
            raise ConfigError(
                f"state: version {state.get('version') if isinstance(state, dict) else None!r} is not supported; "
                f"this fractalshards reads versions 1 and {STATE_VERSION}"
            )
        # The definition decides the order: a state of a shard stream resumes the rendered stream and back.
        checks = [
            ("definition", self.definition_id) if "definition" in state else ("dataset_version", self.version),
            ("seed", self.seed),
            ("shuffle", self.shuffle),
        ]
        if state["version"] >= 2:
            checks.append(("shard_set", self.shard_set))
        checks.append(("fresh_instances", self.fresh_instances))
        check_same(state, checks, "stream", defaults={"fresh_instances": False})
        epoch, history = saved_epoch_and_levels(state, Level.from_dict, "levels", required=False)
        saved = Level.from_dict(
            {
                "world_size": state.get("world_size"),
                "shuffle_buffer": state.get("shuffle_buffer"),
                "pad": state.get("pad", self.pad),
                "samples_seen": state.get("samples_seen"),
            },
            "state",
        )
        # Every level's ranks are replayed on resume: their sum bounds the work, whatever each level's size.
        ranks = sum(lv.world_size for lv in history) + saved.world_size
        check("ranks of the state's levels", ranks, "replay_ranks", "state")
        # Check the saved level against its own layout: the state must fit this dataset.
        saved_layout = EpochLayout(
            self.shard_samples,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            world_size=saved.world_size,
            shuffle_buffer=saved.shuffle_buffer,
            pad=saved.pad,
            history=history,
        )
        if state.get("samples_per_rank") != saved_layout.per_rank:
            raise ConfigError(
                f"state: samples_per_rank is {state.get('samples_per_rank')!r} but the saved split gives "
                f"{saved_layout.per_rank}; the state belongs to another dataset or shard selection"
            )
        if saved.samples_seen > saved_layout.per_rank:
            raise ConfigError(f"state: samples_seen {saved.samples_seen} is out of range 0..{saved_layout.per_rank}")
        same_split = (saved.world_size, saved.shuffle_buffer, saved.pad) == (self.world_size, self.shuffle_buffer, self.pad)
        if same_split:
            seen = saved.samples_seen
        else:
            # A new level starts: what the saved ranks had not consumed, re-split among ours.
            if saved.samples_seen > 0:
                history = history + (saved,)
            seen = 0
        return Position(epoch=epoch, start=seen, block=block, history=history)

    def next_epoch(self, position: Position) -> Position:
        """Where the epoch after ``position``'s starts (a loader moves there when an epoch runs out)."""
        return Position(epoch=position.epoch + 1, start=0, block=position.block)

    def per_rank_at(self, position: Position) -> int:
        """Outputs of this rank at ``position``'s epoch and level (a level with no history needs no layout:
        the count is the same every epoch, and the cached layout of the epoch being read stays)."""
        if not position.history:
            return per_rank(int(self.shard_samples.sum()), self.world_size, self.pad)
        return self._rank_layout(position).per_rank

    # -- iteration --
    def _iterate(self) -> Iterator[Any]:
        worker, workers, position = self._worker_position()
        start, block = position.start, max(1, position.block)
        yield from self.read_outputs(position, lambda lo, hi: deal(max(start, lo), hi, start, block, workers, worker), start)

    def _source(self, epoch: int) -> RenderedSource | StoredSource:
        if self.source == "render":
            offset = epoch * self.definition.instances if self.fresh_instances else 0
            return RenderedSource(self.definition, self.store.url, instance_offset=offset)
        return StoredSource(self.store, self.hashes, self.definition, self.verify, self.cache, self.version, sizes=self.sizes)

    def read_outputs(
        self,
        position: Position,
        pick: Callable[[int, int], np.ndarray],
        first: int,
        end: int | None = None,
        pool: ThreadPoolExecutor | None = None,
    ) -> Iterator[Any]:
        """The samples of this rank's outputs chosen by ``pick(lo, hi)`` (an increasing array of output
        positions in ``lo .. hi - 1``, asked window by window) from output ``first`` on, up to ``end``
        (default: the level's end), at ``position``'s epoch and level. What an iteration of this stream
        reads (``pick`` deals outputs to this worker) and what a mixture reads of each of its sources.
        Shards are loaded ahead in ``pool`` (default: one of this iteration's own; a mixture shares one
        among its sources, so that it runs no more loading threads than one stream)."""
        layout = self._rank_layout(position)
        b = layout.shuffle_buffer
        end = layout.per_rank if end is None else min(end, layout.per_rank)
        if first >= end:
            return
        source = self._source(position.epoch)
        first_window = first // b
        segments = layout.segments(first_window * b)
        names = [self.shard_names[s] for s, _, _ in segments]
        # Input positions covered by each segment, for lookups.
        seg_lo = np.concatenate([[first_window * b], first_window * b + np.cumsum([n for _, _, n in segments])]).tolist()
        own_pool = pool is None
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="fractalshards-prefetch")
        pending: deque[Future] = deque()
        next_submit = 0
        active: dict[int, StoredShard | RenderedShard] = {}
        next_load = 0
        try:
            for w in range(first_window, -(-end // b)):
                lo, hi = w * b, min((w + 1) * b, layout.per_rank)
                outputs = pick(lo, hi)
                # Load every segment that overlaps this window (in order), drop those behind it.
                # Every shard this window needs, and PREFETCH_SHARDS after them, are fetched at once.
                need = bisect_right(seg_lo, hi - 1)
                while next_submit < len(segments) and next_submit < need + PREFETCH_SHARDS:
                    pending.append(pool.submit(source.load, names[next_submit]))
                    next_submit += 1
                while next_load < len(segments) and seg_lo[next_load] < hi:
                    active[next_load] = pending.popleft().result()
                    next_load += 1
                for k in [k for k in active if seg_lo[k + 1] <= lo]:
                    del active[k]
                if outputs.size == 0:
                    continue
                perm = layout.window_perm(w)
                for q in (lo + perm[outputs - lo]).tolist():
                    k = bisect_right(seg_lo, q) - 1
                    yield active[k].get(segments[k][1] + q - seg_lo[k], self._decoding)
        finally:
            for future in pending:
                future.cancel()
            if own_pool:
                pool.shutdown(wait=True, cancel_futures=True)


#: Iterations not run to their end: closed at exit, while the modules their cleanup needs (the prefetch
#: pool's) are still there; left to the garbage collector they printed a traceback at interpreter exit.
_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_iterations() -> None:
    for samples in list(_OPEN):
        samples.close()


@dataclass(frozen=True)
class _Entry:
    """A shard of a recipe: a name and a sample count (nothing stored)."""

    name: str
    samples: int
    sha256: str = ""
    bytes: int = 0


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1
