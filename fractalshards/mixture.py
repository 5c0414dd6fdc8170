"""Mix streams by weight: :class:`MixedStream`, an ``IterableDataset`` over several :class:`FractalStream`\\ s.

How a mixture is laid out (all of it a function of the seed, the epoch, the weights and the resume
history; never of the number of DataLoader workers):

1. **Draws.** Output ``p`` of a rank (in the current level of the epoch) comes from source ``k``
   where a counter-based uniform of ``(seed, epoch, level, p)`` falls in ``k``'s share of the
   cumulative weights. The draw does not depend on the rank, so every rank takes the same number
   of samples from each source at every step: each source advances in lockstep on every rank, as a
   single stream does, and its own exact and elastic resume (:mod:`fractalshards.epochs`) applies
   unchanged. With ``batching="per_source"`` a draw is made per block of ``batch_size`` outputs
   (the loader's batches), so every batch comes from one source, on every rank.
2. **Sources.** Source ``k`` is read in its own order (its seed, shuffle, split), without repeating
   a sample until it has given every one; then its next *pass* starts (the source's next epoch: a
   new permutation, and with ``fresh_instances`` new instances). A source's pass and position are
   kept per source across the mixture's epochs.
3. **Epochs.** ``epoch_size`` samples per epoch over all ranks (default: the sum of the sources'
   sizes), ``ceil(epoch_size / world_size)`` per rank.
4. **Workers.** Outputs are dealt to DataLoader workers in blocks of the batch size, as a single
   stream's are; each worker reads from each source exactly the outputs its blocks drew from it.

**Resume.** A state (:meth:`FractalLoader.state_dict`) holds the mixture's epoch, outputs consumed
and levels, and every source's own state at that point. Loading it continues exactly; onto another
world size the mixture starts a new level for the rest of its epoch (``epoch_size`` less what the
saved ranks consumed, split among the new ranks) and each source re-splits what its saved ranks
had not consumed (a source's level), so nothing is lost or repeated beyond a single stream's padding.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .catalog import split_ref
from .dataset import open_document
from .epochs import check_same, deal, saved_epoch_and_levels
from .errors import ConfigError, check_choice
from .limits import check, raised
from .mixspec import BATCHINGS, LABELS, MixtureSource, MixtureSpec, check_weights
from .seeds import hash_uniforms_from, stream_key
from .stream import FETCH_THREADS, FractalStream, Position, _Iterating, _SharedPosition
from .stream import STATE_VERSION as STREAM_STATE_VERSION

__all__ = ["MixedStream", "MixPosition", "MixLevel", "MIXTURE_STATE_VERSION", "LABELS", "BATCHINGS", "open_spec", "make_spec"]

#: Version of a mixture's saved state (:meth:`MixedStream.state_at`).
MIXTURE_STATE_VERSION = 1


def open_spec(url: str, storage_options: dict | None = None) -> MixtureSpec:
    """The validated spec at ``url`` (a ``mixture.json``, a folder holding one, or a published ``PREFIX@ref``)."""
    kind, document, _ = open_document(url, storage_options)
    if kind != "mixture":
        raise ConfigError(f"url: {url!r} holds a {kind}, not a mixture spec; write one with 'fractalshards mix'")
    return document  # type: ignore[return-value]


def make_spec(
    urls: Sequence[str],
    weights: Sequence[float],
    *,
    name: str = "mixture",
    seed: int = 0,
    epoch_size: int | None = None,
    labels: str = "disjoint",
    batching: str = "mixed",
    fresh_instances: bool | Sequence[bool] = False,
    storage_options: dict | None = None,
) -> MixtureSpec:
    """A spec of ``urls`` (datasets or recipes) by weight, every source opened, validated and pinned to
    the version it holds now (``PREFIX@tag`` becomes ``PREFIX@<version>``); what ``fractalshards mix`` writes.
    The sources are opened as a :class:`MixedStream` would (labels, shapes, fresh instances checked)."""
    if isinstance(urls, str) or not urls:
        raise ConfigError("sources: give one or more dataset or recipe URLs")
    weights = check_weights(weights, len(urls))
    fresh = [fresh_instances] * len(urls) if isinstance(fresh_instances, bool) else list(fresh_instances)
    if len(fresh) != len(urls):
        raise ConfigError(f"fresh_instances: {len(fresh)} values for {len(urls)} sources")
    # Each source opened once, as a stream would open it (a mixture spec among them is refused there):
    # mismatched labels or shapes, or instances that cannot be fresh, fail here.
    streams = [FractalStream(url, fresh_instances=bool(new), storage_options=storage_options) for url, new in zip(urls, fresh)]
    MixedStream(streams, weights, seed=seed, epoch_size=epoch_size, labels=labels, batching=batching)
    sources = []
    for url, weight, stream in zip(urls, weights, streams):
        base, ref = split_ref(url)
        pinned = f"{base}@{stream.version}" if ref is not None else url
        if "://" not in pinned:  # a local path: absolute, so the spec means the same from any folder
            pinned = os.path.abspath(pinned)
        document = stream.manifest if stream.kind == "dataset" else stream.recipe
        sources.append(MixtureSource(pinned, stream.version, stream.kind, document.name, weight, stream.fresh_instances))
    spec = MixtureSpec(name=name, sources=tuple(sources), seed=seed, epoch_size=epoch_size, labels=labels, batching=batching)
    return spec


@dataclass(frozen=True)
class MixLevel:
    """A stretch of a mixture's epoch run at one world size, and the outputs each rank consumed in it."""

    world_size: int
    samples_seen: int

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return {"world_size": self.world_size, "samples_seen": self.samples_seen}

    @classmethod
    def from_dict(cls, data: object, where: str = "state") -> MixLevel:
        """Validate and parse (one-line errors)."""
        if not isinstance(data, dict) or set(data) != {"world_size", "samples_seen"}:
            raise ConfigError(f"{where}: a mixture level must be an object with world_size and samples_seen")
        for key, low in (("world_size", 1), ("samples_seen", 0)):
            value = data[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{where}: {key} {value!r} is not valid; use an integer >= {low}")
        check("world_size", data["world_size"], "world_size", where)
        return cls(data["world_size"], data["samples_seen"])


@dataclass(frozen=True)
class MixPosition:
    """Where a mixture stands: the epoch, this rank's outputs consumed at the current level, the block
    (batch size) dealt to a worker at a time, the earlier levels of the epoch, and every source's
    position (pass, output, levels) at output ``origin`` of the current level."""

    epoch: int = 0
    start: int = 0
    block: int = 1
    history: tuple[MixLevel, ...] = ()
    origin: int = 0
    bases: tuple[Position, ...] = ()

    def to_bytes(self) -> bytes:
        """The position as JSON bytes (what the shared block holds)."""
        return json.dumps(
            {
                "epoch": self.epoch,
                "start": self.start,
                "block": self.block,
                "history": [lv.to_dict() for lv in self.history],
                "origin": self.origin,
                "bases": [json.loads(b.to_bytes()) for b in self.bases],
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> MixPosition:
        """Inverse of :meth:`to_bytes` (our own bytes, written by this process's loader)."""
        d = json.loads(data)
        return cls(
            d["epoch"],
            d["start"],
            d["block"],
            tuple(MixLevel(**lv) for lv in d["history"]),
            d["origin"],
            tuple(Position.from_bytes(json.dumps(b).encode()) for b in d["bases"]),
        )


class _SharedMixPosition(_SharedPosition):
    def read(self) -> MixPosition:  # type: ignore[override]
        view = memoryview(self.buffer).cast("B")
        n = int.from_bytes(bytes(view[:4]), "little")
        return MixPosition.from_bytes(bytes(view[4 : 4 + n]))


class MixedStream(_Iterating):
    """An ``IterableDataset`` mixing :class:`~fractalshards.stream.FractalStream`\\ s by weight.

    Use it as one stream: with :class:`fractalshards.loader.FractalLoader` (exact and elastic resume
    of the whole mixture), torchrun or Ray Train. How the samples are drawn, and why the mixture
    resumes exactly and elastically, is in this module's documentation.

    Args:
        sources: the streams (datasets or recipes, any family, local or remote), all built with the
            same ``rank`` and ``world_size``; each keeps its own seed, shuffle and decoding.
        weights: one positive number per source; source ``k`` gives ``weights[k] / sum(weights)``
            of the samples.
        seed: the draws' seed (the sources' orders have their own).
        epoch_size: samples per epoch over all ranks (default: the sum of the sources' sizes).
        labels: ``disjoint`` (default) offsets source ``k``'s labels past the classes of the sources
            before it (:attr:`num_classes`, :attr:`label_map`); ``shared`` keeps them, and needs
            sources with the same number of classes.
        batching: ``mixed`` (default) mixes sources within a batch and needs sources whose decoded
            samples agree in shape and layout; ``per_source`` makes every batch of a
            :class:`~fractalshards.loader.FractalLoader` come from one source (sources of different
            sizes or kinds) and yields ``(sample, label, source)``: the source's index picks the
            batch's :attr:`layouts` entry.
    """

    def __init__(
        self,
        sources: Sequence[FractalStream],
        weights: Sequence[float],
        *,
        seed: int = 0,
        epoch_size: int | None = None,
        labels: str = "disjoint",
        batching: str = "mixed",
    ) -> None:
        super().__init__()
        sources = list(sources)
        if not sources or not all(isinstance(s, FractalStream) for s in sources):
            raise ConfigError("sources: give a list of FractalStream (one per dataset or recipe)")
        check("sources", len(sources), "mixture_sources", "mixture")
        self.weights = check_weights(weights, len(sources))
        check_choice("labels", labels, LABELS)
        check_choice("batching", batching, BATCHINGS)
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed: {seed!r} is not valid; use a non-negative integer")
        first = sources[0]
        for k, s in enumerate(sources[1:], 1):
            if (s.rank, s.world_size) != (first.rank, first.world_size):
                raise ConfigError(
                    f"sources: source {k} has rank {s.rank} of {s.world_size} but source 0 has {first.rank} of "
                    f"{first.world_size}; build every source with the same rank and world_size"
                )
        self.sources = sources
        self.seed, self.labels, self.batching = seed, labels, batching
        self.rank, self.world_size = first.rank, first.world_size
        self.limits = first.limits
        sizes = [int(s.shard_samples.sum()) for s in sources]
        if epoch_size is None:
            epoch_size = sum(sizes)
        if not isinstance(epoch_size, int) or isinstance(epoch_size, bool) or epoch_size < self.world_size:
            raise ConfigError(
                f"epoch_size: {epoch_size!r} is not valid; use an integer of at least the world size ({self.world_size})"
            )
        check("epoch_size", epoch_size, "samples", "mixture")
        self.epoch_size = epoch_size
        classes = [s.definition.family.num_classes(s.definition.categories) for s in sources]
        if labels == "shared":
            for k, n in enumerate(classes[1:], 1):
                if n != classes[0]:
                    raise ConfigError(
                        f"labels: source {k} ({sources[k].url}) has {n} classes but source 0 ({sources[0].url}) has "
                        f"{classes[0]}; use labels='disjoint' or sources with the same classes"
                    )
            offsets = [0] * len(sources)
            self.num_classes = classes[0]
        else:
            for k, s in enumerate(sources):
                if not s.definition.kind.labelled:
                    raise ConfigError(
                        f"labels: source {k} ({s.url}) has no class labels ({s.definition.kind.name} samples); "
                        "use labels='shared'"
                    )
            offsets = [int(v) for v in np.concatenate([[0], np.cumsum(classes)[:-1]])]
            self.num_classes = int(sum(classes))
        self.offsets = offsets
        #: Each source's URL, version, classes and the label offset it gets.
        self.label_map = [
            {"source": k, "url": s.url, "version": s.version, "classes": n, "offset": off}
            for k, (s, n, off) in enumerate(zip(sources, classes, offsets))
        ]
        #: What ``decode="packed"`` yields of each source (:class:`~fractalshards.png.PackedLayout`).
        self.layouts = [s.layout for s in sources]
        if batching == "mixed":
            self._check_same_samples()
        self._cumulative = np.cumsum(np.asarray(self.weights, np.float64)) / float(sum(self.weights))
        self._cumulative[-1] = 1.0  # a uniform in [0, 1) always falls in some share
        self._position = MixPosition(bases=tuple(Position() for _ in sources))
        self._shared: _SharedMixPosition | None = None
        self._epoch_bases: dict[int, tuple[Position, ...]] = {0: self._position.bases}
        self.spec: MixtureSpec | None = None

    # -- construction from a spec --
    @classmethod
    def from_spec(cls, url: str, *, storage_options: dict | None = None, **stream_options: Any) -> MixedStream:
        """The mixture a spec (``fractalshards mix ... --out mixture.json``, or a published ``PREFIX@ref``)
        names: each source opened at the version the spec pins (a changed source is refused), with the
        spec's weights, seed, epoch size, labels, batching and fresh instances. ``stream_options`` go to
        every :class:`~fractalshards.stream.FractalStream` (``rank``, ``world_size``, ``decode``, ...)."""
        spec = open_spec(url, storage_options)
        streams = [
            FractalStream(src.url, fresh_instances=src.fresh_instances, storage_options=storage_options, **stream_options)
            for src in spec.sources
        ]
        return cls.of_spec(spec, streams)

    @classmethod
    def of_spec(cls, spec: MixtureSpec, streams: Sequence[FractalStream]) -> MixedStream:
        """The mixture ``spec`` describes, of ``streams`` opened from its sources (in order; e.g. with
        some shards held out): each must hold the version the spec pins (a changed source is refused)."""
        if len(streams) != len(spec.sources):
            raise ConfigError(f"sources: {len(streams)} streams for the spec's {len(spec.sources)} sources")
        for k, (src, stream) in enumerate(zip(spec.sources, streams)):
            if stream.version != src.version:
                raise ConfigError(
                    f"spec: source {k} ({src.url}) is version {stream.version} but the spec pins {src.version}; "
                    "the source changed, write the spec again with 'fractalshards mix'"
                )
        mixture = cls(
            streams,
            [s.weight for s in spec.sources],
            seed=spec.seed,
            epoch_size=spec.epoch_size,
            labels=spec.labels,
            batching=spec.batching,
        )
        mixture.spec = spec
        return mixture

    def _check_same_samples(self) -> None:
        def looks(s: FractalStream) -> tuple:
            d = s.definition
            return (d.kind.name, tuple(d.sample_format.shape), s.decode, s.layout if s.decode == "packed" else None)

        if all(s.decode == "raw" for s in self.sources):
            return  # members' bytes: nothing is decoded, so nothing has to agree
        first = looks(self.sources[0])
        for k, s in enumerate(self.sources[1:], 1):
            mine = looks(s)
            if mine != first:
                what = [
                    f"{name} {a!r} vs {b!r}" for name, a, b in zip(("kind", "shape", "decode", "layout"), first, mine) if a != b
                ]
                raise ConfigError(
                    f"batching: source 0 ({self.sources[0].url}) and source {k} ({s.url}) give different samples "
                    f"({'; '.join(what)}); use batching='per_source' or sources of one shape"
                )

    # -- what a mixture is --
    @property
    def layout(self) -> Any:
        """The packed layout every source shares (``batching="mixed"``); per source: :attr:`layouts`."""
        if self.batching != "mixed":
            raise ConfigError("layout: a per_source mixture has one layout per source; use layouts[source]")
        return self.layouts[0]

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._position.epoch

    @property
    def position(self) -> MixPosition:
        """Where the mixture stands (see :class:`MixPosition`)."""
        return self._position

    @property
    def version(self) -> str:
        """The spec's version when opened from one, else the sources' versions joined."""
        return self.spec.version if self.spec is not None else "+".join(s.version for s in self.sources)

    def _per_rank(self, position: MixPosition) -> int:
        return math.ceil(self._level_total(position.history) / self.world_size)

    def __len__(self) -> int:
        """Samples this rank yields in the current epoch (the current level's)."""
        return self._per_rank(self._position)

    def set_position(self, position: MixPosition) -> None:
        """Move to ``position`` (a loader does; workers read it when an iteration starts)."""
        self._position = position
        if self._shared is not None:
            self._shared.write(position)  # type: ignore[arg-type]

    def share_position(self) -> None:
        """Keep the position in shared memory (call before DataLoader workers start)."""
        if self._shared is None:
            self._shared = _SharedMixPosition()
            self._shared.write(self._position)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its beginning, the sources where an uninterrupted run at this
        world size leaves them (a loader carries them over from the epochs it ran instead)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ConfigError(f"epoch: {epoch!r} is not valid; use a non-negative integer")
        done = max(e for e in self._epoch_bases if e <= epoch)
        bases = self._epoch_bases[done]
        for e in range(done, epoch):
            bases = self._advance_all(MixPosition(epoch=e, bases=bases), self._per_rank(MixPosition()))
            self._epoch_bases[e + 1] = bases
        self.set_position(MixPosition(epoch=epoch, block=self._position.block, bases=bases))

    def next_epoch(self, position: MixPosition) -> MixPosition:
        """The start of the epoch after ``position``'s, each source where this epoch leaves it."""
        bases = self._advance_all(position, self._per_rank(position))
        return MixPosition(epoch=position.epoch + 1, block=position.block, bases=bases)

    # -- draws --
    def draws(self, position: MixPosition, lo: int, hi: int) -> np.ndarray:
        """Source of each output ``lo .. hi - 1`` of the current level (int64; the same on every rank)."""
        level = len(position.history)
        key = (
            stream_key("mixture", self.seed, position.epoch)
            if level == 0
            else stream_key("mixture", self.seed, position.epoch, f"level{level}")
        )
        p = np.arange(lo, hi, dtype=np.int64)
        if self.batching == "per_source":  # one draw per block, at the block's first output
            unit = max(1, position.block)
            p = position.origin + ((p - position.origin) // unit) * unit
            first = int(p[0]) if p.size else lo
            u = np.empty(int(p[-1]) - first + 1 if p.size else 0)
            hash_uniforms_from(key, first, u)
            u = u[p - first]
        else:
            u = np.empty(hi - lo)
            hash_uniforms_from(key, lo, u)
        return np.searchsorted(self._cumulative, u, side="right").astype(np.int64)

    def _advance(self, k: int, base: Position, count: int) -> Position:
        """Source ``k``'s position ``count`` outputs after ``base`` (passes wrap to the next epoch)."""
        source = self.sources[k]
        length = source.per_rank_at(base)
        if base.start + count < length:
            return replace(base, start=base.start + count, block=1)
        rest = base.start + count - length
        fresh = source.per_rank_at(Position(epoch=base.epoch + 1))
        return Position(epoch=base.epoch + 1 + rest // fresh, start=rest % fresh)

    def _advance_all(self, position: MixPosition, upto: int) -> tuple[Position, ...]:
        counts = np.bincount(self.draws(position, position.origin, upto), minlength=len(self.sources))
        return tuple(self._advance(k, b, int(c)) for k, (b, c) in enumerate(zip(position.bases, counts)))

    def source_positions(self, position: MixPosition | None = None) -> tuple[Position, ...]:
        """Every source's position after the outputs ``position`` has consumed (default: the current one)."""
        position = self._position if position is None else position
        return self._advance_all(position, position.start)

    # -- states --
    def state_at(self, position: MixPosition) -> dict:
        """The JSON-able state at ``position``: the mixture's epoch, outputs and levels, and every
        source's own state (:meth:`FractalStream.state_at`) at that point."""
        return {
            "version": MIXTURE_STATE_VERSION,
            "kind": "mixture",
            "mixture": self.version,
            "seed": self.seed,
            "weights": list(self.weights),
            "epoch_size": self.epoch_size,
            "labels": self.labels,
            "batching": self.batching,
            "epoch": position.epoch,
            "samples_seen": position.start,
            "world_size": self.world_size,
            "rank": self.rank,
            "samples_per_rank": self._per_rank(position),
            "history": [lv.to_dict() for lv in position.history],
            "sources": [s.state_at(p) for s, p in zip(self.sources, self.source_positions(position))],
        }

    def position_of_state(self, state: object, block: int = 1) -> MixPosition:
        """Where a saved mixture state resumes this mixture (exactly; or a new level onto another world
        size, each source re-splitting what its saved ranks left). One-line errors for bad states."""
        with raised(self.limits):
            return self._position_of_state(state, block)

    def _position_of_state(self, state: object, block: int) -> MixPosition:
        if not isinstance(state, dict) or state.get("kind") != "mixture":
            raise ConfigError("state: not a mixture's state (kind must be 'mixture'); load it into the stream it was saved from")
        if state.get("version") != MIXTURE_STATE_VERSION:
            raise ConfigError(
                f"state: mixture state version {state.get('version')!r} is not supported; this fractalshards reads "
                f"{MIXTURE_STATE_VERSION}"
            )
        pairs = [
            ("seed", self.seed),
            ("weights", list(self.weights)),
            ("epoch_size", self.epoch_size),
            ("labels", self.labels),
            ("batching", self.batching),
        ]
        check_same(state, pairs, "mixture")
        sources = state.get("sources")
        if not isinstance(sources, list) or len(sources) != len(self.sources):
            raise ConfigError(
                f"state: the mixture was saved with {len(sources) if isinstance(sources, list) else '?'} sources but this "
                f"one has {len(self.sources)}; build the mixture as it was saved"
            )
        epoch, history = saved_epoch_and_levels(state, MixLevel.from_dict, "mixture levels")
        saved = MixLevel.from_dict({"world_size": state.get("world_size"), "samples_seen": state.get("samples_seen")}, "state")
        expected = math.ceil(self._level_total(history) / saved.world_size)
        if state.get("samples_per_rank") != expected:
            raise ConfigError(
                f"state: samples_per_rank is {state.get('samples_per_rank')!r} but the saved split gives {expected}; "
                "the state belongs to another mixture"
            )
        if saved.samples_seen > expected:
            raise ConfigError(f"state: samples_seen {saved.samples_seen} is out of range 0..{expected}")
        # Each source's state replays the ranks of its levels, each bounded alone: bound their sum too
        # (256 sources at the bound each would be 256 times the work one stream's state may ask for).
        check("ranks of the sources' levels", sum(_replayed_ranks(src) for src in sources), "replay_ranks", "state")
        bases = tuple(
            s.position_of_state(src, 1)
            if isinstance(src, dict) and src.get("version") in (1, STREAM_STATE_VERSION)
            else _bad_source(k)
            for k, (s, src) in enumerate(zip(self.sources, sources))
        )
        if saved.world_size == self.world_size:
            start, origin = saved.samples_seen, saved.samples_seen
        else:
            if saved.samples_seen > 0:
                history = history + (saved,)
            start = origin = 0
        return MixPosition(epoch=epoch, start=start, block=block, history=history, origin=origin, bases=bases)

    def _level_total(self, history: tuple[MixLevel, ...]) -> int:
        total = self.epoch_size
        for level in history:
            total = max(0, total - level.world_size * level.samples_seen)
        return total

    # -- iteration (run under the limits and closed at exit as a stream's: _Iterating) --
    def _iterate(self) -> Iterator[Any]:
        worker, workers, position = self._worker_position()
        per_rank = self._per_rank(position)
        start, block = position.start, max(1, position.block)
        if start >= per_rank:
            return
        drawn = self.draws(position, position.origin, per_rank)  # index: output - origin
        mine = deal(start, per_rank, start, block, workers, worker)
        if mine.size == 0:
            return
        # One loading pool for every source: as many threads as one stream runs.
        pool = ThreadPoolExecutor(max_workers=FETCH_THREADS, thread_name_prefix="fractalshards-prefetch")
        chains = []
        try:
            for k, source in enumerate(self.sources):
                is_k = drawn == k
                # Outputs of source k from the origin on (0-based), at each of this worker's outputs.
                offsets = np.cumsum(is_k) - 1
                picked = mine[is_k[mine - position.origin]]
                chains.append(self._chain(k, source, position.bases[k], offsets[picked - position.origin], pool))
            sources = drawn[mine - position.origin].tolist()
            # The per-sample loop, with everything it needs bound once (it is the mixture's own cost).
            nexts = [chain.__next__ for chain in chains]
            offsets = self.offsets
            if self.batching == "per_source":
                for k in sources:
                    yield _tagged(_relabel(nexts[k](), offsets[k]), k)
            elif any(offsets):
                for k in sources:
                    offset = offsets[k]
                    yield _relabel(nexts[k](), offset) if offset else nexts[k]()
            else:
                for k in sources:
                    yield nexts[k]()
        finally:
            for chain in chains:
                chain.close()  # cancels what each source has pending
            pool.shutdown(wait=True, cancel_futures=True)

    def _chain(
        self, k: int, source: FractalStream, base: Position, offsets: np.ndarray, pool: ThreadPoolExecutor
    ) -> Iterator[Any]:
        """Source ``k``'s samples at ``offsets`` outputs after ``base`` (increasing), across its passes."""
        if offsets.size == 0:
            return
        length = source.per_rank_at(base)
        t = base.start + offsets
        fresh = source.per_rank_at(Position(epoch=base.epoch + 1))
        after = t >= length
        passes = np.where(after, base.epoch + 1 + (t - length) // fresh, base.epoch)
        where = np.where(after, (t - length) % fresh, t)
        cuts = np.flatnonzero(np.diff(passes)) + 1
        for lo, hi in zip(np.concatenate([[0], cuts]).tolist(), np.concatenate([cuts, [passes.size]]).tolist()):
            epoch = int(passes[lo])
            outputs = where[lo:hi]
            at = base if epoch == base.epoch else Position(epoch=epoch)
            yield from source.read_outputs(at, _picker(outputs), int(outputs[0]), int(outputs[-1]) + 1, pool)


def _picker(outputs: np.ndarray):
    def pick(lo: int, hi: int) -> np.ndarray:
        return outputs[np.searchsorted(outputs, lo) : np.searchsorted(outputs, hi)]

    return pick


def _replayed_ranks(state: object) -> int:
    """The ranks a source's saved state would replay (its levels' world sizes and its own); what is not
    a count here is refused by the source's own reading, so it counts 0."""
    if not isinstance(state, dict):
        return 0
    levels = state.get("history") if isinstance(state.get("history"), list) else []
    sizes = [lv.get("world_size") for lv in levels if isinstance(lv, dict)] + [state.get("world_size")]
    return sum(n for n in sizes if isinstance(n, int) and not isinstance(n, bool) and n > 0)


def _bad_source(k: int) -> Any:
    raise ConfigError(f"state: sources[{k}] is not a stream state; load the state saved from this mixture")


def _relabel(sample: Any, offset: int) -> Any:
    """A source's sample with its label moved past the sources before it (``labels="disjoint"``)."""
    if offset == 0:
        return sample
    if type(sample) is tuple and len(sample) == 2:  # (image, label): the common case, first
        return sample[0], sample[1] + offset
    if isinstance(sample, tuple) and len(sample) >= 2:
        return (sample[0], sample[1] + offset, *sample[2:])
    if isinstance(sample, dict) and "cls" in sample:
        return {**sample, "cls": str(int(sample["cls"]) + offset).encode()}
    raise ConfigError("labels: a transform changed the sample's form; mixtures relabel (sample, label) pairs")


def _tagged(sample: Any, k: int) -> Any:
    """A ``per_source`` sample with its source's index: ``(sample, label, source)``, or ``__source__`` in raw dicts."""
    if isinstance(sample, tuple):
        return (*sample, k)
    if isinstance(sample, dict):
        return {**sample, "__source__": k}
    return (sample, k)
