"""Stream a built dataset into torch: ``FractalStream`` and ``FractalLoader`` (the torch glue).

The order of an epoch is :mod:`fractalshards.epochs`'s (a pure function of seed,
epoch, rank, world size, shuffle buffer and resume history, never of the number of
DataLoader workers); shards are read and parsed by :mod:`fractalshards.shards`;
remote shards go through the node cache of :mod:`fractalshards.cache`, so every
worker and rank of a node that share the cache folder fetch a shard once.

Each DataLoader worker walks its rank's shards in order (the next ones are
loaded in a background thread while the current window is decoded), indexes each
shard's tar headers once and slices out only the samples dealt to it.

The stream's *position* (epoch, samples already consumed, the resume history,
the batch size used for dealing) is written only by :class:`FractalLoader`. It
reaches the workers through a small shared-memory block that they read whenever
an iteration starts, so ``persistent_workers=True`` sees every new epoch and
every loaded state, in exactly the order that fresh workers would give.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import struct
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .cache import DEFAULT_CACHE_LIMIT, ShardCache, default_cache_dir
from .dataset import open_definition
from .definition import DatasetDefinition
from .epochs import EpochLayout, Level, RankLayout, deal
from .errors import ConfigError, ShardIntegrityError, TransferError, check_choice
from .hashing import VERSION_LENGTH
from .kinds import decode_npy
from .limits import Limits, check, current, raised
from .png import decode_packed
from .results import pack_rendered
from .shards import ShardPlan, decode_png, index_tar, render_sample, sample_data
from .storage import Store, redact

__all__ = ["FractalStream", "FractalLoader", "ShardIntegrityError", "TransferError", "DECODES", "STATE_VERSION"]

#: Decoding choices: ``tensor`` (uint8 CHW, 3 channels), ``float`` (normalised float32 CHW),
#: ``numpy`` (uint8 HWC, 3 channels), ``raw`` (the sample dict of bytes), ``packed`` (each image as
#: compact as its PNG: see :attr:`FractalStream.layout` and :class:`fractalshards.png.PackedLayout`).
DECODES = ("tensor", "float", "numpy", "raw", "packed")
#: Version of :meth:`FractalLoader.state_dict`; version 1 states (no history) are still read.
STATE_VERSION = 2
#: Shards loaded ahead of the shuffle window being decoded, per worker.
PREFETCH_SHARDS = 2
#: Shards fetched at once, per worker: a window's shards (and those ahead) download in parallel,
#: so a cold epoch waits for about one round trip per window, not one per shard.
FETCH_THREADS = 4
#: Where samples come from: ``auto`` renders a recipe and reads a built dataset's shards.
SOURCES = ("auto", "shards", "render")
#: Whole-shard fetch attempts (each on top of the store client's own request retries).
FETCH_ATTEMPTS = 3


@dataclass(frozen=True)
class _Position:
    """Where the stream stands: written by FractalLoader, read by every worker at iteration start."""

    epoch: int = 0
    start: int = 0  # outputs of this rank already consumed at the current level
    block: int = 1  # outputs dealt to a worker at a time (the batch size)
    history: tuple[Level, ...] = ()

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"epoch": self.epoch, "start": self.start, "block": self.block, "history": [lv.to_dict() for lv in self.history]}
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> _Position:
        d = json.loads(data)
        return cls(d["epoch"], d["start"], d["block"], tuple(Level(**lv) for lv in d["history"]))


class _SharedPosition:
    """A shared-memory block holding the position, readable by forked and spawned workers."""

    SIZE = 1 << 16

    def __init__(self) -> None:
        self.buffer = multiprocessing.RawArray("B", self.SIZE)

    def write(self, position: _Position) -> None:
        data = position.to_bytes()
        if len(data) + 4 > self.SIZE:
            raise ConfigError(f"state: resume history too long ({len(position.history)} levels); start a new epoch")
        view = memoryview(self.buffer).cast("B")
        view[4 : 4 + len(data)] = data
        view[:4] = struct.pack("<I", len(data))

    def read(self) -> _Position:
        view = memoryview(self.buffer).cast("B")
        (n,) = struct.unpack("<I", bytes(view[:4]))
        return _Position.from_bytes(bytes(view[4 : 4 + n]))


class _ShardLoader:
    """Loads whole shards for one process: local files directly, remote ones through the node cache."""

    def __init__(
        self,
        store: Store,
        hashes: dict[str, str],
        definition: DatasetDefinition,
        verify: bool,
        cache: ShardCache | None,
        version: str,
    ) -> None:
        self.store = store.for_this_process()
        self.hashes, self.definition, self.verify, self.cache, self.version = hashes, definition, verify, cache, version

    def load(self, shard: str) -> _StoredShard:
        """The shard's bytes and sample index; checked against the manifest (hash when verifying, count always)."""
        if self.cache is not None:
            data = self.cache.get(self.version, shard, self.hashes[shard], lambda: self._fetch(shard))
        else:
            data = self._fetch(shard)
            if self.verify:
                digest = hashlib.sha256(data).hexdigest()
                if digest != self.hashes[shard]:
                    raise ShardIntegrityError(
                        f"{shard}: sha256 {digest[:16]}... does not match the manifest's {self.hashes[shard][:16]}... "
                        f"({len(data)} bytes read); the shard is truncated or altered"
                    )
        index = index_tar(data, shard)
        plan = ShardPlan.of(self.definition, self.definition.shard_index(shard))
        plan.check_index(index)  # keys, order and members; labels and PNG headers as each sample is read
        return _StoredShard(memoryview(data), index, self.store.url_of(shard), plan)

    def _fetch(self, shard: str) -> bytes:
        # The store's client retries each request; this bounds what is left (a connection
        # reset mid-body, a stalled read) to a few whole-shard attempts and one line naming the shard.
        for attempt in range(FETCH_ATTEMPTS):
            try:
                return self.store.read_bytes(shard)
            except FileNotFoundError as exc:
                raise ShardIntegrityError(f"{shard}: missing from {self.store.url}; the dataset is incomplete") from exc
            except ShardIntegrityError:  # what is stored is wrong (a link, a device): trying again changes nothing
                raise
            except Exception as exc:  # noqa: BLE001 - backends raise many types (botocore, aiohttp, OSError)
                if attempt + 1 == FETCH_ATTEMPTS:
                    message = redact(f"{type(exc).__name__}: {exc}", self.store.storage_options).splitlines()[0][:300]
                    raise TransferError(
                        f"{shard}: could not be fetched from {self.store.url} after {FETCH_ATTEMPTS} "
                        f"attempts ({message}); check the network and the endpoint"
                    ) from exc
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


class _StoredShard:
    """A loaded shard: its bytes, member index and plan (each sample is checked against it as it is read)."""

    def __init__(self, data: memoryview, index: list, url: str, plan: ShardPlan) -> None:
        self.data, self.index, self.url, self.plan = data, index, url, plan

    def sample(self, i: int) -> dict:
        out = self.index[i].read(self.data, self.url)
        self.plan.check_sample(i, out)
        return out


class _RenderedShard:
    """A shard of a definition, rendered sample by sample on demand (nothing is read)."""

    def __init__(self, definition: DatasetDefinition, index: int, url: str, raw: bool, packed: bool = False) -> None:
        self.definition, self.pairs, self.url = definition, definition.shard_spec(index).pairs, url
        self.raw = raw  # the shard's own members (record, PNG), or the pixels a decoding loader wants
        self.packed = packed  # ... or the packed image, straight from the renderer's 1-bit rows

    def sample(self, i: int) -> dict:
        category, instance = self.pairs[i]
        sample, rendered = render_sample(self.definition, category, instance, record=self.raw)
        sample["__url__"] = self.url
        if self.raw:  # exactly the shard's bytes: the encoder is deterministic
            sample.update(sample_data(self.definition, rendered))
        elif rendered.points is not None:
            sample["points"] = np.asarray(rendered.points, np.float32)
        elif self.packed:
            sample["packed"] = pack_rendered(rendered, self.definition.packed_layout)
        else:
            sample["pixels"] = rendered.image
        if rendered.mask is not None and not self.raw:
            sample["mask"] = rendered.mask
        return sample


class _RenderLoader:
    """The rendered source's stand-in for :class:`_ShardLoader`."""

    def __init__(self, definition: DatasetDefinition, url: str, raw: bool, packed: bool = False) -> None:
        self.definition, self.url, self.raw, self.packed = definition, url, raw, packed

    def load(self, shard: str) -> _RenderedShard:
        return _RenderedShard(self.definition, self.definition.shard_index(shard), f"{self.url}#{shard}", self.raw, self.packed)


class FractalStream(IterableDataset):
    """An ``IterableDataset`` of a built dataset's samples, ``(image, label)`` by default.

    Args:
        url: dataset folder or URL (path, ``file://``, ``s3://bucket/prefix``, ``PREFIX@tag``) holding ``manifest.json``.
        rank, world_size: this process's place in data-parallel training; default from
            ``torch.distributed`` when it is initialised, else 0 and 1.
        shuffle: permute shard order and shuffle samples within windows, anew every epoch.
        seed: shuffling seed; with the epoch it decides the order completely.
        shuffle_buffer: window of the sample shuffle (the shards overlapping one window are held per worker).
        decode: one of :data:`DECODES`.
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
        mean, std: normalisation of ``decode="float"`` (FractalDB's 0.2 and 0.5).
        source: ``shards`` reads a built dataset's shards; ``render`` renders every sample in the
            DataLoader workers from the definition (a recipe's, or a dataset's manifest: no shard
            byte is read); ``auto`` (default) renders a recipe and reads a dataset's shards. Both
            give the same samples in the same order, pixel for pixel.
        limits: bounds on what the dataset and loader states may ask for
            (:class:`fractalshards.limits.Limits`; default: the ones in force).
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
            self.url = url
            self.kind = kind
            self.source = "render" if source == "render" or kind == "recipe" else "shards"
            self.manifest = document if kind == "dataset" else None
            self.recipe = document if kind == "recipe" else None
            # What renders a rendered source, and what stored shards are checked against (keys, labels, headers).
            self._definition = document.definition if kind == "recipe" else document.definition()
            self.definition_id = document.version if kind == "recipe" else document.definition_id
            self._version = document.version
            if kind == "dataset":
                entries = list(document.shards)  # the definition's plan (checked when the manifest was read)
            else:
                entries = [_Entry(name, samples) for name, samples in self._definition.shard_sizes()]
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
            self.layout = self._definition.packed_layout
            if cache_dir is True:
                cache_dir = None
            self.cache = None
            if cache_dir is not False and not self.store.is_local and self.source == "shards":
                self.cache = ShardCache(default_cache_dir() if cache_dir is None else cache_dir, cache_limit)
                self.cache.path(self.version, self.shard_names[0])  # validates the version and a name before any fetch
            self.mean, self.std = float(mean), float(std)
            self._position = _Position()
            self._shared: _SharedPosition | None = None  # set by FractalLoader for its worker processes
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
        self._set_position(replace(self._position, epoch=epoch, start=0, history=()))

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

    # -- position --
    def _set_position(self, position: _Position) -> None:
        self._position = position
        if self._shared is not None:
            self._shared.write(position)

    def _rank_layout(self, position: _Position) -> RankLayout:
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

    # -- iteration --
    def __iter__(self) -> Iterator[Any]:
        with raised(self.limits):
            yield from self._iterate()

    def _iterate(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        position = self._shared.read() if (self._shared is not None and info is not None) else self._position
        layout = self._rank_layout(position)
        start, block, b = position.start, max(1, position.block), layout.shuffle_buffer
        if start >= layout.per_rank:
            return
        if self.source == "render":
            loader = _RenderLoader(self._definition, self.store.url, self.decode == "raw", self.decode == "packed")
        else:
            loader = _ShardLoader(
                self.store,
                self.hashes,
                self._definition,
                self.verify,
                self.cache,
                self.version,
            )
        first_window = start // b
        segments = layout.segments(first_window * b)
        names = [self.shard_names[s] for s, _, _ in segments]
        # Input positions covered by each segment, for lookups.
        seg_lo = np.concatenate([[first_window * b], first_window * b + np.cumsum([n for _, _, n in segments])]).tolist()
        pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="fractalshards-prefetch")
        pending: deque[Future] = deque()
        next_submit = 0
        active: dict[int, _StoredShard | _RenderedShard] = {}
        next_load = 0
        try:
            for w in range(first_window, layout.windows):
                lo, hi = w * b, min((w + 1) * b, layout.per_rank)
                outputs = deal(max(start, lo), hi, start, block, workers, worker)
                # Load every segment that overlaps this window (in order), drop those behind it.
                # Every shard this window needs, and PREFETCH_SHARDS after them, are fetched at once.
                need = bisect_right(seg_lo, hi - 1)
                while next_submit < len(segments) and next_submit < need + PREFETCH_SHARDS:
                    pending.append(pool.submit(loader.load, names[next_submit]))
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
                    shard, first, _ = segments[k]
                    yield self._decode(active[k].sample(first + q - seg_lo[k]), names[k])
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _decode(self, sample: dict, shard: str) -> Any:
        if self.decode == "raw":
            return sample
        key = sample.get("__key__")
        kind = self._definition.kind
        if kind.name == "points":
            return self._decode_points(sample, shard, key)
        if "png" not in sample and "pixels" not in sample and "packed" not in sample:
            raise ShardIntegrityError(f"{shard}: sample {key!r} has no png member; the shard is not a fractalshards dataset")
        if kind.name == "segmentation":
            mask = self._decode_mask(sample, shard, key)
            image = self._decode_image(sample, shard, key)
            if self.transform is not None:  # a joint transform: the same crop and flip on both
                return self.transform(image, mask)
            return image, mask
        label = self._label(sample, shard, key)
        image = self._decode_image(sample, shard, key)
        return (self.transform(image) if self.transform is not None else image), label

    def _label(self, sample: dict, shard: str, key: Any) -> int:
        if "cls" not in sample:
            raise ShardIntegrityError(f"{shard}: sample {key!r} has no cls member; the shard is not a fractalshards dataset")
        try:
            return int(sample["cls"])
        except ValueError as exc:
            raise ShardIntegrityError(
                f"{shard}: sample {key!r} has a label {sample['cls'][:20]!r} that is not an integer"
            ) from exc

    def _decode_points(self, sample: dict, shard: str, key: Any) -> Any:
        label = self._label(sample, shard, key)
        if "points" in sample:
            points = sample["points"]
        else:
            count = self._definition.family.image_shape(self._definition.categories, self._definition.render)[0]
            try:
                points = decode_npy(sample.get("npy", b""), count)
            except ValueError as exc:
                raise ShardIntegrityError(f"{shard}: sample {key!r}: its npy member {exc}") from exc
        out = points if self.decode == "numpy" else torch.from_numpy(np.array(points, np.float32))
        return (self.transform(out) if self.transform is not None else out), label

    def _decode_mask(self, sample: dict, shard: str, key: Any) -> Any:
        if "mask" in sample:
            mask = sample["mask"]
        else:
            try:
                mask = decode_png(sample["seg.png"])
            except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a damaged image
                raise ShardIntegrityError(
                    f"{shard}: sample {key!r} has a mask that does not decode ({type(exc).__name__}: {exc})"
                ) from exc
        mask = np.ascontiguousarray(mask) if mask.flags.writeable else np.array(mask)  # Pillow's arrays are read-only
        return mask if self.decode == "numpy" else torch.from_numpy(mask)

    def _decode_image(self, sample: dict, shard: str, key: Any) -> Any:
        if self.decode == "packed":
            try:
                packed = sample["packed"] if "packed" in sample else decode_packed(sample["png"], self.layout)
            except Exception as exc:  # noqa: BLE001 - zlib and Pillow raise many types for a damaged image
                raise ShardIntegrityError(
                    f"{shard}: sample {key!r} does not decode as its definition's {self.layout.kind} images "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            return torch.from_numpy(packed)
        try:
            pixels = sample["pixels"] if "pixels" in sample else decode_png(sample["png"])
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a damaged image
            raise ShardIntegrityError(
                f"{shard}: sample {key!r} has an image that does not decode ({type(exc).__name__}: {exc})"
            ) from exc
        if self.decode == "numpy":  # HWC, 3 channels, straight from the pixels
            return np.ascontiguousarray(np.broadcast_to(pixels[..., None], (*pixels.shape, 3)) if pixels.ndim == 2 else pixels)
        # Contiguous CHW: collating stride-0 views is several times slower than copying here.
        chw = np.broadcast_to(pixels, (3, *pixels.shape)) if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        image = torch.from_numpy(np.ascontiguousarray(chw))
        if self.decode == "float":
            image = (image.float() / 255.0 - self.mean) / self.std
        return image


@dataclass(frozen=True)
class _Entry:
    """A shard of a recipe: a name and a sample count (nothing stored)."""

    name: str
    samples: int
    sha256: str = ""


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FractalLoader(DataLoader):
    """A ``DataLoader`` over a :class:`FractalStream` with exact and elastic mid-epoch resume.

    Batches arrive in the rank's output order whatever ``num_workers`` is (workers are
    dealt blocks of ``batch_size`` samples). ``state_dict()`` counts the samples that
    arrived in this (main) process (a ``break`` keeps the position; running out of an
    epoch moves on to the next one). ``load_state_dict(state)`` on a new loader makes it
    yield exactly the rest of that epoch, also when the state was saved with another
    world size, shuffle buffer, batch size or number of workers: the samples no old rank
    consumed are re-split among the new ranks (see :mod:`fractalshards.epochs`).
    ``persistent_workers=True`` is supported: live workers learn each new epoch and each
    loaded state from this process.
    """

    def __init__(self, stream: FractalStream, batch_size: int = 1, num_workers: int = 0, **dataloader_kwargs: Any) -> None:
        if not isinstance(stream, FractalStream):
            raise ConfigError("stream: FractalLoader takes a FractalStream; use torch's DataLoader for other datasets")
        for bad in ("sampler", "batch_sampler", "shuffle"):
            if dataloader_kwargs.get(bad) not in (None, False):
                raise ConfigError(f"{bad}: FractalStream orders samples itself; set shuffle/seed on the stream instead")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size: {batch_size!r} is not valid; use a positive integer")
        if num_workers > 0 and stream._shared is None:
            stream._shared = _SharedPosition()
        super().__init__(stream, batch_size=batch_size, num_workers=num_workers, **dataloader_kwargs)
        stream._set_position(replace(stream._position, block=batch_size))
        self._seen = stream._position.start

    @property
    def stream(self) -> FractalStream:
        """The underlying stream."""
        return self.dataset  # type: ignore[return-value]

    @property
    def epoch(self) -> int:
        """The epoch the next iteration yields (or continues)."""
        return self.stream.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning."""
        self.stream.set_epoch(epoch)
        self._seen = 0

    def __iter__(self) -> Iterator[Any]:
        per_rank = self._begin()
        for batch in super().__iter__():
            self._count(per_rank)
            yield batch
        self._finish()

    # The position bookkeeping of an iteration (RenderLoader, which makes its own batches, shares it).
    def _begin(self) -> int:
        # The position must reach the workers before they start (or resume) iterating.
        stream = self.stream
        stream._set_position(replace(stream._position, start=self._seen, block=self.batch_size))
        return len(stream)

    def _count(self, per_rank: int) -> None:
        # Batches are the stream's blocks in order, so each holds batch_size samples except the
        # epoch's last: counted without looking inside (any collate_fn works).
        self._seen = min(self._seen + self.batch_size, per_rank)

    def _finish(self) -> None:
        # The epoch ran out (a `break` never gets here): the next iteration is the next epoch.
        self._seen = 0
        stream = self.stream
        stream._set_position(_Position(epoch=stream.epoch + 1, start=0, block=self.batch_size))

    def state_dict(self) -> dict:
        """Small JSON-able progress: epoch, samples each rank has consumed, the split and its history."""
        s = self.stream
        return {
            "version": STATE_VERSION,
            "dataset_version": s.version,
            "definition": s.definition_id,  # shared by a recipe and the dataset built from it
            "shard_set": s.shard_set,
            "epoch": s.epoch,
            "samples_seen": self._seen,
            "seed": s.seed,
            "shuffle": s.shuffle,
            "shuffle_buffer": s.shuffle_buffer,
            "pad": s.pad,
            "world_size": s.world_size,
            "rank": s.rank,
            "samples_per_rank": len(s),
            "history": [lv.to_dict() for lv in s._position.history],
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict` of any rank of an earlier run.

        The dataset, shard selection, seed and shuffle must be the same; world size,
        shuffle buffer, padding, batch size and workers may differ (elastic resume).
        """
        with raised(self.stream.limits):  # a state from storage asks for world sizes and levels
            self._load_state_dict(state)

    def _load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("version") not in (1, STATE_VERSION):
            raise ConfigError(
                f"state: version {state.get('version') if isinstance(state, dict) else None!r} is not supported; "
                f"this fractalshards reads versions 1 and {STATE_VERSION}"
            )
        s = self.stream
        # The definition decides the order: a state of a shard stream resumes the rendered stream and back.
        checks = [
            ("definition", s.definition_id) if "definition" in state else ("dataset_version", s.version),
            ("seed", s.seed),
            ("shuffle", s.shuffle),
        ]
        if state["version"] >= 2:
            checks.append(("shard_set", s.shard_set))
        for key, mine in checks:
            if state.get(key) != mine:
                raise ConfigError(
                    f"state: {key} is {state.get(key)!r} but this stream has {mine!r}; build the stream as it was saved"
                )
        epoch = state.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ConfigError(f"state: epoch {epoch!r} is not valid; use a non-negative integer")
        raw_history = state.get("history", [])
        if not isinstance(raw_history, list):
            raise ConfigError("state: history must be a list of levels")
        check("history", len(raw_history), "levels", "state")
        history = tuple(Level.from_dict(lv, "state: history") for lv in raw_history)
        saved = Level.from_dict(
            {
                "world_size": state.get("world_size"),
                "shuffle_buffer": state.get("shuffle_buffer"),
                "pad": state.get("pad", s.pad),
                "samples_seen": state.get("samples_seen"),
            },
            "state",
        )
        # Check the saved level against its own layout: the state must fit this dataset.
        saved_layout = EpochLayout(
            s.shard_samples,
            seed=s.seed,
            epoch=epoch,
            shuffle=s.shuffle,
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
        same_split = (saved.world_size, saved.shuffle_buffer, saved.pad) == (s.world_size, s.shuffle_buffer, s.pad)
        if same_split:
            seen = saved.samples_seen
        else:
            # A new level starts: what the saved ranks had not consumed, re-split among ours.
            if saved.samples_seen > 0:
                history = history + (saved,)
            seen = 0
        s._set_position(_Position(epoch=epoch, start=seen, block=self.batch_size, history=history))
        self._seen = seen
