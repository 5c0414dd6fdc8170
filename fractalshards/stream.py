"""Stream a built dataset into torch: ``FractalStream`` and ``FractalLoader``.

Tar parsing is the ``webdataset`` library's (``tar_file_expander``,
``group_by_keys``); shards are opened through the dataset's fsspec store (local,
``file://``, ``s3://``...), so nothing shells out.

How an epoch is laid out (all of it a pure function of ``(seed, epoch, rank,
world_size)``, never of the number of DataLoader workers):

1. **Shard order.** The dataset's shards are permuted with a seed of
   ``(seed, epoch)`` (kept in order when ``shuffle=False``), and their samples,
   in stored order, form one sequence of ``N`` positions.
2. **Ranks.** Each rank takes a contiguous range of ``ceil(N / world_size)``
   positions, so it reads only about ``1 / world_size`` of the shards. Positions
   past ``N`` wrap to the start of the sequence: at most ``world_size - 1``
   samples per epoch are repeated, like ``DistributedSampler``'s padding, and every
   rank yields exactly the same number of samples, so DDP never hangs. With
   ``pad=False`` the ranks take ``floor(N / world_size)`` and up to
   ``world_size - 1`` samples are left out instead.
3. **Shuffle.** The rank's range is cut into windows of ``shuffle_buffer``
   samples and each window is permuted with a seed of ``(seed, epoch, rank,
   window)``: a bounded-memory shuffle that can be replayed exactly.
4. **Workers.** The rank's output sequence is dealt to DataLoader workers in
   blocks of ``batch_size`` (block ``j`` to worker ``j % num_workers``), which is
   the order in which the DataLoader hands batches out, so the batches arrive in
   the rank's sequence order whatever ``num_workers`` is. Every worker reads the
   rank's shards and decodes only its own samples.

Resuming: :class:`FractalLoader` counts samples as batches arrive in the main
process; ``state_dict()`` is ``{epoch, samples_seen, seed, world_size, rank,
...}`` and a new loader with ``load_state_dict(state)`` yields exactly the rest of
the epoch.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset import tariterators

from .dataset import load_dataset
from .errors import ConfigError
from .plan import seeded_permutation
from .storage import Store

__all__ = [
    "FractalStream",
    "FractalLoader",
    "ShardIntegrityError",
    "DECODES",
    "open_shards",
    "iter_shard_samples",
    "samples_from_tar",
    "decode_image",
]

#: Decoding choices: ``tensor`` (uint8 CHW, 3 channels), ``float`` (normalised float32 CHW),
#: ``numpy`` (uint8 HWC, 3 channels), ``raw`` (the sample dict of bytes).
DECODES = ("tensor", "float", "numpy", "raw")
#: Members a sample may carry; anything else in a shard is ignored, never decoded.
SAFE_EXTENSIONS = ("png", "cls", "json")
STATE_VERSION = 1


class ShardIntegrityError(IOError):
    """A shard is truncated, altered or unsafe; the message names it."""


# -- reading shards ---------------------------------------------------------------------


def _check_member_name(shard: str) -> Callable[[str], bool]:
    def check(fname: str) -> bool:
        parts = fname.split("/")
        if fname.startswith("/") or ".." in parts or "\\" in fname:
            raise ShardIntegrityError(f"{shard}: unsafe member name {fname!r} (absolute path or '..'); refusing to read it")
        ext = fname.rsplit(".", 1)[-1] if "." in fname else ""
        return ext in SAFE_EXTENSIONS
    return check


def open_shards(store: Store, names: Iterable[str]) -> Iterator[dict]:
    """Stage: shard names -> ``{"url", "stream"}`` dicts, opened through fsspec."""
    for name in names:
        with store.fs.open(store.path(name), "rb") as stream:
            yield {"url": store.url_of(name), "stream": stream}


def iter_shard_samples(store: Store, names: Iterable[str]) -> Iterator[dict]:
    """Samples (``{"__key__", "png", "cls", "json"}`` of raw bytes) of the named shards, in order."""
    for name in names:
        yield from samples_from_tar(name, open_shards(store, [name]))


def samples_from_tar(shard: str, opened: Iterable[dict]) -> Iterator[dict]:
    """Samples of an opened shard (``[{"url", "stream"}]``) via webdataset's tar stages.

    Member names are checked (no absolute paths, no ``..``); only ``png``, ``cls`` and
    ``json`` members are kept; errors name ``shard``.
    """
    files = tariterators.tar_file_expander(opened, select_files=_check_member_name(shard))
    try:
        yield from tariterators.group_by_keys(files)
    except ShardIntegrityError:
        raise
    except Exception as exc:  # tarfile.ReadError, EOF in a truncated member, ...
        raise ShardIntegrityError(f"{shard}: cannot be read ({type(exc).__name__}: {exc}); it is truncated or corrupt") from exc


class _ShardSource:
    """Opens shards for a worker: local files directly, remote ones whole (or from the cache)."""

    def __init__(self, store: Store, hashes: dict[str, str], verify: bool, cache_dir: str | None, cache_limit: int, version: str):
        self.store = store.for_this_process()
        self.hashes = hashes
        self.verify = verify
        self.cache_dir = Path(cache_dir) / version if cache_dir and not store.is_local else None
        self.cache_limit = cache_limit

    @property
    def fetches_whole(self) -> bool:
        """Whether shards are read whole into memory (remote stores, or to verify)."""
        return not self.store.is_local or self.verify

    def samples(self, shard: str, fetched: tuple[bytes, str] | None = None) -> Iterator[dict]:
        """Raw samples of ``shard``; ``fetched`` is what :meth:`fetch` returned, when already fetched."""
        if not self.fetches_whole:
            yield from samples_from_tar(shard, open_shards(self.store, [shard]))
            return
        data, digest = fetched if fetched is not None else self.fetch(shard)
        if self.verify:
            if digest != self.hashes[shard]:
                raise ShardIntegrityError(
                    f"{shard}: sha256 {digest[:16]}... does not match the manifest's {self.hashes[shard][:16]}... "
                    f"({len(data)} bytes read); the shard is truncated or altered"
                )
        yield from samples_from_tar(shard, [{"url": self.store.url_of(shard), "stream": io.BytesIO(data)}])

    def fetch(self, shard: str) -> tuple[bytes, str]:
        """The whole shard (from the cache when there is one) and its sha256, hashed once."""
        if self.cache_dir is not None:
            cached = self.cache_dir / shard
            if cached.is_file():
                os.utime(cached)  # recency for the eviction below
                data = cached.read_bytes()
                digest = hashlib.sha256(data).hexdigest()
                if digest == self.hashes[shard]:
                    return data, digest
        data = self.store.read_bytes(shard)
        digest = hashlib.sha256(data).hexdigest() if self.verify or self.cache_dir is not None else ""
        if self.cache_dir is not None and digest == self.hashes[shard]:  # never cache a bad copy
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_dir / f".{shard}.{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, cached)  # concurrent workers may both fetch; the rename is atomic
            self._evict()
        return data, digest

    def _evict(self) -> None:
        files = sorted((p for p in self.cache_dir.parent.rglob("shard-*.tar")), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.cache_limit:
                break
            try:
                size = p.stat().st_size
                p.unlink()
                total -= size
            except FileNotFoundError:
                pass


# -- decoding ---------------------------------------------------------------------------


def decode_image(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 ``(H, W, 3)``; grey (palette or 1-channel) PNGs are expanded."""
    return np.asarray(_decode_chw(data).permute(1, 2, 0))


def _decode_chw(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        if im.mode == "P":
            index = np.asarray(im)  # decodes; palette indices, one byte per pixel
            palette = np.asarray(im.getpalette() or [0, 0, 0], np.uint8).reshape(-1, 3)
            if np.array_equal(palette[:, 0], palette[:, 1]) and np.array_equal(palette[:, 1], palette[:, 2]):
                levels = palette[:, 0]
                # Our grey renders: two entries (0, v) -> index * v, cheaper than a lookup.
                grey = index * levels[1] if len(levels) == 2 and levels[0] == 0 else levels.take(index)
                return torch.from_numpy(grey).unsqueeze(0).expand(3, -1, -1)
            return torch.from_numpy(palette.take(index, axis=0)).permute(2, 0, 1)
        if im.mode == "L":
            return torch.from_numpy(np.asarray(im)).unsqueeze(0).expand(3, -1, -1)
        return torch.from_numpy(np.asarray(im.convert("RGB"))).permute(2, 0, 1)


# -- the dataset --------------------------------------------------------------------------


class FractalStream(IterableDataset):
    """An ``IterableDataset`` of a built dataset's samples, ``(image, label)`` by default.

    Args:
        url: dataset folder or URL (path, ``file://``, ``s3://bucket/prefix``) holding ``manifest.json``.
        rank, world_size: this process's place in data-parallel training; default from
            ``torch.distributed`` when it is initialised, else 0 and 1.
        shuffle: permute shard order and shuffle samples within windows, anew every epoch.
        seed: shuffling seed; with the epoch it decides the order completely.
        shuffle_buffer: window of the sample shuffle (raw bytes of this many samples are held per worker).
        decode: one of :data:`DECODES`.
        transform: applied to the decoded image (a uint8 or float CHW tensor, or an HWC array).
        verify: check every shard's sha256 against the manifest before using it.
        cache_dir: cache remote shards here (checked against their sha256), at most ``cache_limit`` bytes.
        storage_options: fsspec options (credentials and endpoint otherwise come from the environment).
        pad: give every rank ``ceil(N / world_size)`` samples, repeating a few (default), or
            ``floor(N / world_size)``, leaving a few out.
        shards: use only these shard names (e.g. to hold one out for evaluation).
        mean, std: normalisation of ``decode="float"`` (FractalDB's 0.2 and 0.5).
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
        verify: bool = False,
        cache_dir: str | None = None,
        storage_options: dict | None = None,
        cache_limit: int = 20 * 2**30,
        pad: bool = True,
        shards: Sequence[str] | None = None,
        mean: float = 0.2,
        std: float = 0.5,
    ) -> None:
        super().__init__()
        if decode not in DECODES:
            raise ConfigError(f"decode: {decode!r} is not known; use one of {', '.join(DECODES)}")
        if not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer: {shuffle_buffer!r} is not valid; use a positive integer")
        self.manifest, self.store = load_dataset(url, storage_options)
        self.url = url
        entries = self.manifest.shards
        if shards is not None:
            known = {s["name"] for s in entries}
            unknown = [s for s in shards if s not in known]
            if unknown:
                raise ConfigError(f"shards: {unknown[:3]} are not in {url!r}; use names from its manifest")
            wanted = set(shards)
            entries = [s for s in entries if s["name"] in wanted]
        if not entries:
            raise ConfigError("shards: no shard selected; the stream would be empty")
        self.shard_names = [s["name"] for s in entries]
        self.shard_samples = np.array([int(s["samples"]) for s in entries], np.int64)
        self.hashes = {s["name"]: s["sha256"] for s in entries}
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
        self.num_samples_total = total
        self.pad = pad
        self.per_rank = math.ceil(total / world_size) if pad else total // world_size
        self.shuffle, self.seed, self.shuffle_buffer = shuffle, int(seed), shuffle_buffer
        self.decode, self.transform, self.verify = decode, transform, verify
        self.cache_dir, self.cache_limit = cache_dir, cache_limit
        self.mean, self.std = float(mean), float(std)
        self.epoch = 0
        # Set by FractalLoader: samples of this epoch already consumed, and the block size.
        self.start = 0
        self.block_size = 1

    # -- public --
    def __len__(self) -> int:
        """Samples this rank yields per epoch (the same on every rank)."""
        return self.per_rank

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch: shard and sample order change with it."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ConfigError(f"epoch: {epoch!r} is not valid; use a non-negative integer")
        self.epoch = epoch
        self.start = 0

    @property
    def version(self) -> str:
        """The dataset version being streamed."""
        return self.manifest.version

    def epoch_keys(self) -> list[tuple[str, int]]:
        """``(shard, index in shard)`` of every sample this rank yields this epoch, in order.

        Cheap (no I/O): what :meth:`__iter__` will yield, for checks and debugging.
        """
        layout = self._layout()
        keys = []
        for q in self._output_positions(0):
            s, g = self._locate(q, layout)
            keys.append((self.shard_names[int(layout[0][s])], int(g - layout[1][s])))
        return keys

    # -- layout --
    def _shard_order(self) -> np.ndarray:
        n = len(self.shard_names)
        return seeded_permutation(n, "stream-shards", self.seed, self.epoch) if self.shuffle else np.arange(n)

    def _layout(self) -> tuple[np.ndarray, np.ndarray]:
        order = self._shard_order()
        counts = self.shard_samples[order]
        return order, np.concatenate([[0], np.cumsum(counts)])

    def _locate(self, q: int, layout) -> tuple[int, int]:
        """Input position ``q`` of this rank -> (index into the epoch's shard order, global position)."""
        g = (self.rank * self.per_rank + q) % self.num_samples_total  # past the end wraps: the padding
        return int(np.searchsorted(layout[1], g, side="right") - 1), g

    def _window_perm(self, window: int, length: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(length)
        return seeded_permutation(length, "stream-window", self.seed, self.epoch, self.rank, window)

    def _output_positions(self, start: int) -> Iterator[int]:
        """Input positions of outputs ``start .. per_rank - 1``, in output order."""
        b = self.shuffle_buffer
        for w in range(start // b, math.ceil(self.per_rank / b)):
            lo, hi = w * b, min((w + 1) * b, self.per_rank)
            perm = self._window_perm(w, hi - lo)
            for j in range(max(start, lo) - lo, hi - lo):
                yield lo + int(perm[j])

    # -- iteration --
    def _segments(self, q0: int, layout) -> list[tuple[str, int, int, int]]:
        """``(shard, first index, samples to take, samples in shard)`` covering input positions ``q0 ..``."""
        order, bounds = layout
        segments = []
        q = q0
        while q < self.per_rank:
            s, g = self._locate(q, layout)
            take = min(int(bounds[s + 1] - g), self.per_rank - q)
            segments.append((self.shard_names[int(order[s])], int(g - bounds[s]), take, int(self.shard_samples[order[s]])))
            q += take
        return segments

    def _reader(self, q0: int, layout) -> Iterator[dict]:
        """Raw samples of input positions ``q0, q0 + 1, ...`` of this rank, read shard by shard.

        Remote shards are fetched whole, the next one in a background thread while the
        current one is decoded.
        """
        source = _ShardSource(self.store, self.hashes, self.verify, self.cache_dir, self.cache_limit, self.version)
        segments = self._segments(q0, layout)
        pool = ThreadPoolExecutor(max_workers=1) if source.fetches_whole else None
        try:
            ahead = pool.submit(source.fetch, segments[0][0]) if pool and segments else None
            for k, (name, first, take, size) in enumerate(segments):
                fetched = ahead.result() if ahead is not None else None
                ahead = pool.submit(source.fetch, segments[k + 1][0]) if pool and k + 1 < len(segments) else None
                seen = 0
                for index, sample in enumerate(source.samples(name, fetched)):
                    if index < first:
                        continue
                    yield sample
                    seen += 1
                    if seen == take:
                        break
                if seen < take:
                    raise ShardIntegrityError(f"{name}: holds fewer samples than the manifest's {size}")
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        start, block = self.start, max(1, self.block_size)
        if start >= self.per_rank:
            return
        layout = self._layout()
        b = self.shuffle_buffer
        first_window = start // b
        reader = self._reader(first_window * b, layout)
        for w in range(first_window, math.ceil(self.per_rank / b)):
            lo, hi = w * b, min((w + 1) * b, self.per_rank)
            raw = [next(reader) for _ in range(hi - lo)]
            perm = self._window_perm(w, hi - lo)
            for j in range(max(start, lo) - lo, hi - lo):
                if ((lo + j - start) // block) % workers == worker:
                    yield self._decode(raw[int(perm[j])])

    def _decode(self, sample: dict) -> Any:
        if self.decode == "raw":
            return sample
        if "png" not in sample or "cls" not in sample:
            raise ShardIntegrityError(f"sample {sample.get('__key__')!r} of {sample.get('__url__')}: png or cls member missing")
        label = int(sample["cls"])
        image = _decode_chw(sample["png"])
        if self.decode == "float":
            image = (image.float() / 255.0 - self.mean) / self.std
        elif self.decode == "numpy":
            image = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FractalLoader(DataLoader):
    """A ``DataLoader`` over a :class:`FractalStream` with exact mid-epoch resume.

    ``state_dict()`` counts the samples that arrived in this (main) process (a
    ``break`` out of the loop keeps the position; running out of an epoch moves on
    to the next one);
    ``load_state_dict(state)`` on a new loader over a new stream makes it yield
    exactly the rest of that epoch. ``persistent_workers`` is not supported: the
    workers must see each epoch's new order.
    """

    def __init__(self, stream: FractalStream, batch_size: int = 1, num_workers: int = 0, **dataloader_kwargs: Any) -> None:
        if not isinstance(stream, FractalStream):
            raise ConfigError("stream: FractalLoader takes a FractalStream; use torch's DataLoader for other datasets")
        if dataloader_kwargs.get("persistent_workers"):
            raise ConfigError("persistent_workers: not supported (workers would keep the first epoch's order); leave it False")
        for bad in ("sampler", "batch_sampler", "shuffle"):
            if dataloader_kwargs.get(bad) not in (None, False):
                raise ConfigError(f"{bad}: FractalStream orders samples itself; set shuffle/seed on the stream instead")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size: {batch_size!r} is not valid; use a positive integer")
        stream.block_size = batch_size
        super().__init__(stream, batch_size=batch_size, num_workers=num_workers, **dataloader_kwargs)
        self._seen = 0

    @property
    def stream(self) -> FractalStream:
        """The underlying stream."""
        return self.dataset  # type: ignore[return-value]

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning."""
        self.stream.set_epoch(epoch)
        self._seen = 0

    def __iter__(self) -> Iterator[Any]:
        # The stream is copied into the workers when the iterator starts: set the start first.
        self.stream.start = self._seen
        for batch in super().__iter__():
            # Batches are the stream's blocks in order, so each holds batch_size samples
            # except the epoch's last: counted without looking inside (any collate_fn works).
            self._seen = min(self._seen + self.stream.block_size, len(self.stream))
            yield batch
        # The epoch ran out (a `break` never gets here): the next iteration is the next epoch.
        self._seen = 0
        self.stream.start = 0
        self.stream.epoch += 1

    def state_dict(self) -> dict:
        """Small JSON-able progress of this rank: epoch, samples seen, seed, world size..."""
        s = self.stream
        return {
            "version": STATE_VERSION,
            "dataset_version": s.version,
            "epoch": s.epoch,
            "samples_seen": self._seen,
            "seed": s.seed,
            "shuffle": s.shuffle,
            "shuffle_buffer": s.shuffle_buffer,
            "world_size": s.world_size,
            "rank": s.rank,
            "samples_per_rank": s.per_rank,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`; the stream must be set up the same way."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ConfigError(f"state: version {state.get('version') if isinstance(state, dict) else None!r} is not supported; "
                              f"this fractalshards reads version {STATE_VERSION}")
        s = self.stream
        for key, mine in (("dataset_version", s.version), ("seed", s.seed), ("shuffle", s.shuffle),
                          ("shuffle_buffer", s.shuffle_buffer), ("world_size", s.world_size), ("rank", s.rank),
                          ("samples_per_rank", s.per_rank)):
            if state.get(key) != mine:
                raise ConfigError(f"state: {key} is {state.get(key)!r} but this stream has {mine!r}; build the stream as it was saved")
        seen = int(state["samples_seen"])
        if not 0 <= seen <= s.per_rank:
            raise ConfigError(f"state: samples_seen {seen} is out of range 0..{s.per_rank}")
        s.epoch = int(state["epoch"])
        self._seen = seen
        s.start = seen
