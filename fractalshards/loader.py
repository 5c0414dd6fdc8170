"""Load a stream in batches: :class:`FractalLoader` (a ``DataLoader`` with exact and elastic resume)
and :class:`RenderLoader` (the same batches rendered on a GPU).

A loader owns its stream's position (:class:`fractalshards.stream.Position`): it counts the samples
that reached this process and writes where the next iteration starts, so :meth:`FractalLoader.state_dict`
is exact whatever the number of workers. :class:`RenderLoader` makes its batches another way
(:meth:`FractalLoader.batches`) and keeps everything else, states included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import DataLoader

from .errors import ConfigError
from .gpu_renderer import GPURenderer
from .mixture import MixedStream
from .stream import STATE_VERSION, FractalStream

__all__ = ["FractalLoader", "RenderLoader", "STATE_VERSION"]


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
        if not isinstance(stream, (FractalStream, MixedStream)):
            raise ConfigError(
                "stream: FractalLoader takes a FractalStream or a MixedStream; use torch's DataLoader for other datasets"
            )
        for bad in ("sampler", "batch_sampler", "shuffle"):
            if dataloader_kwargs.get(bad) not in (None, False):
                raise ConfigError(f"{bad}: FractalStream orders samples itself; set shuffle/seed on the stream instead")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size: {batch_size!r} is not valid; use a positive integer")
        if num_workers > 0:
            stream.share_position()
        super().__init__(stream, batch_size=batch_size, num_workers=num_workers, **dataloader_kwargs)
        stream.set_position(replace(stream.position, block=batch_size))
        self._seen = stream.position.start

    @property
    def stream(self) -> FractalStream | MixedStream:
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
        for batch in self.batches():
            self._count(per_rank)
            yield batch
        self._finish()

    def batches(self) -> Iterator[Any]:
        """The batches of the stream from its current position, in order: the ``DataLoader``'s (workers,
        ``collate_fn``, pinning). A loader that makes its batches another way (on a GPU:
        :class:`RenderLoader`) overrides this alone; the position bookkeeping of an iteration, and so
        :meth:`state_dict`, stay this class's."""
        return super().__iter__()

    # The position bookkeeping of an iteration.
    def _begin(self) -> int:
        # The position must reach the workers before they start (or resume) iterating.
        stream = self.stream
        stream.set_position(replace(stream.position, start=self._seen, block=self.batch_size))
        return len(stream)

    def _count(self, per_rank: int) -> None:
        # Batches are the stream's blocks in order, so each holds batch_size samples except the
        # epoch's last: counted without looking inside (any collate_fn works).
        self._seen = min(self._seen + self.batch_size, per_rank)

    def _finish(self) -> None:
        # The epoch ran out (a `break` never gets here): the next iteration is the next epoch.
        self._seen = 0
        stream = self.stream
        stream.set_position(replace(stream.next_epoch(stream.position), block=self.batch_size))

    def state_dict(self) -> dict:
        """Small JSON-able progress: epoch, samples each rank has consumed, the split and its history
        (of a mixture: its own and every source's, see :class:`fractalshards.mixture.MixedStream`)."""
        return self.stream.state_at(replace(self.stream.position, start=self._seen))

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict` of any rank of an earlier run.

        The dataset, shard selection, seed and shuffle must be the same; world size,
        shuffle buffer, padding, batch size and workers may differ (elastic resume).
        """
        position = self.stream.position_of_state(state, self.batch_size)
        self.stream.set_position(position)
        self._seen = position.start


class RenderLoader(FractalLoader):
    """A loader with no workers that renders every batch on the GPU: ``(images, labels)`` on the device.

    It yields exactly the samples, order, rank split (from ``torch.distributed`` unless ``rank`` and
    ``world_size`` are given), padding and labels of
    ``FractalLoader(FractalStream(source, source="render", decode="packed", ...), batch_size)``,
    images in the definition's packed layout (``loader.stream.layout``; feed them to
    :class:`fractalshards.augment.DeviceTransform`), and it is one: ``state_dict()``,
    ``load_state_dict()`` and ``set_epoch()`` are FractalLoader's, so states move between the two
    (elastic resume included).

    Args:
        source: a recipe or a dataset (its definition is rendered; no shard byte is read).
        batch_size: samples per batch.
        device: ``cuda`` or ``cuda:N`` (under numba's CUDA simulator the tensors are CPU tensors).
        seed: the order's seed, as :class:`fractalshards.stream.FractalStream`'s.
        shuffle: shuffle shards and samples, as a stream does.
        shuffle_buffer: the shuffle window, as a stream's.
        drop_last: leave out the epoch's last batch when it is short.
        stream_options: any other :class:`~fractalshards.stream.FractalStream` argument (``rank``,
            ``world_size``, ``pad``, ``shards``, ``storage_options``, ``limits``).
    """

    def __init__(
        self,
        source: str,
        batch_size: int,
        device: str | torch.device = "cuda",
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 1000,
        drop_last: bool = False,
        **stream_options: Any,
    ) -> None:
        for fixed in ("source", "decode", "transform"):
            if fixed in stream_options:
                raise ConfigError(f"{fixed}: RenderLoader renders packed images itself; drop {fixed}=")
        if stream_options.get("fresh_instances"):
            raise ConfigError("fresh_instances: RenderLoader renders the planned instances; use FractalStream for fresh ones")
        stream = FractalStream(
            source, source="render", decode="packed", seed=seed, shuffle=shuffle, shuffle_buffer=shuffle_buffer, **stream_options
        )
        self.renderer = GPURenderer(stream.definition, device)
        super().__init__(stream, batch_size=batch_size, num_workers=0, drop_last=drop_last)
        self._labels_device = torch.device("cpu") if self.renderer.simulated else self.renderer.device

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of the stream's current position, each rendered on the GPU in one call."""
        stream, definition, size = self.stream, self.renderer.definition, self.batch_size
        keys = stream.epoch_keys()
        specs: dict[str, Any] = {}
        for lo in range(0, len(keys), size):
            chunk = keys[lo : lo + size]
            if self.drop_last and len(chunk) < size:
                break
            pairs = []
            for shard, index in chunk:
                if shard not in specs:
                    specs[shard] = definition.shard_spec(definition.shard_index(shard)).pairs
                pairs.append(tuple(int(v) for v in specs[shard][index]))
            images, _ = self.renderer.render(pairs)
            labels = torch.tensor([c for c, _ in pairs], dtype=torch.int64).to(self._labels_device)
            yield images, labels

    def __len__(self) -> int:
        n = len(self.stream)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
