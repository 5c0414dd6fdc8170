"""Rendering a definition on a GPU: :class:`GPURenderer`, the samples drawn by the family's CUDA kernels
straight into device tensors.

Needs the ``gpu`` extra (``pip install 'fractalshards[gpu]'``: numba-cuda). A family that has
GPU kernels returns a renderer from :meth:`fractalshards.families.Family.gpu_renderer`; the
images come in the definition's ``packed`` layout (:class:`fractalshards.png.PackedLayout`: 1-bit
rows of two-level images, grey or RGB bytes), pixel for pixel the CPU kernels' (the families'
kernels use :mod:`fractalshards.gpu.ops`), so a GPU-rendered batch, a CPU-rendered one and a
stored shard's PNG decode to the same pixels.

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``: the kernels run on the CPU, as
Python, small settings only) the same code runs and the tensors are CPU tensors: that is how the
kernels are tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .definition import DatasetDefinition
from .errors import ConfigError
from .gpu.contract import DeviceRenderer
from .results import Rendered, pack_rendered

__all__ = ["simulated", "check_device", "GPURenderer"]


def _cuda():
    try:
        from numba import cuda
    except ImportError as exc:  # pragma: no cover - the gpu extra is in the dev install
        raise ConfigError("device: rendering on the GPU needs the gpu extra; pip install 'fractalshards[gpu]'") from exc
    if not hasattr(cuda, "to_device"):  # pragma: no cover - numba without numba-cuda
        raise ConfigError("device: numba's CUDA target is missing; pip install 'fractalshards[gpu]' (numba-cuda)")
    return cuda


def simulated() -> bool:
    """True when numba's CUDA simulator stands in for a GPU (``NUMBA_ENABLE_CUDASIM=1``)."""
    from numba.core import config

    return bool(config.ENABLE_CUDASIM)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a CUDA ``torch.device`` that can be rendered on, else a one-line error.

    Under the simulator the tensors live on the CPU, so ``cuda`` is accepted there with no GPU.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device: {device!r} is not a device; use cuda or cuda:N") from exc
    if dev.type != "cuda":
        raise ConfigError(f"device: {device!r} is not a GPU; use cuda or cuda:N (or render on the CPU with FractalStream)")
    cuda = _cuda()
    if simulated():
        return dev
    if not cuda.is_available() or not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} was asked for but no GPU is visible here; use a GPU machine or render on the CPU")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device: {device!r} does not exist; this machine has {torch.cuda.device_count()} GPUs")
    return dev


class GPURenderer:
    """A definition's samples rendered on one GPU, in the definition's packed layout.

    ``render(pairs)`` takes ``(category, instance)`` pairs and returns ``(images, diverged)``:
    a uint8 tensor ``(len(pairs), *layout.shape)`` on the device and a host bool array of the
    samples whose chaos game diverged (those the family handed back to its CPU kernels).
    """

    def __init__(self, definition: DatasetDefinition, device: str | torch.device = "cuda") -> None:
        self.device = check_device(device)
        self.definition = definition
        family = definition.family
        self._impl = family.gpu_renderer(definition.categories, definition.render)
        if self._impl is None:
            raise ConfigError(f"device: the {family.name} family has no GPU kernels; render it on the CPU (--device cpu)")
        if not isinstance(self._impl, DeviceRenderer):  # pragma: no cover - a plugin's mistake
            raise ConfigError(f"device: the {family.name} family's device renderer is not a DeviceRenderer; fix the family")
        self.layout = definition.packed_layout
        if self._impl.layout != self.layout:  # pragma: no cover - a family's own inconsistency
            raise ConfigError(f"device: the {family.name} family's GPU layout {self._impl.layout} is not its packed layout")
        self._cuda = _cuda()
        #: True when numba's CUDA simulator stands in for the GPU (the tensors are then CPU tensors).
        self.simulated = simulated()

    def render(self, pairs: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, np.ndarray]:
        """Render ``pairs`` (see the class docstring)."""
        images, diverged, _, _ = self._render(pairs)
        return images, diverged

    def _render(
        self, pairs: Sequence[tuple[int, int]]
    ) -> tuple[torch.Tensor, np.ndarray, dict[int, Rendered], list[dict | None]]:
        # Also the CPU's renders of the divergent samples, by position (rendered() reuses them), and
        # what each sample's record reports from its render (the family's info, or None).
        cuda = self._cuda
        shape = (len(pairs), *self.layout.shape)
        background = int(self._impl.background)  # what a canvas holds before drawing
        if not pairs:
            device = "cpu" if simulated() else self.device
            return torch.full(shape, background, dtype=torch.uint8, device=device), np.zeros(0, bool), {}, []
        if simulated():
            target = cuda.to_device(np.full(shape, background, np.uint8))
            diverged, infos = self._impl.render_into(list(pairs), target)
            images = torch.from_numpy(target.copy_to_host())
        else:  # pragma: no cover - needs a GPU
            images = torch.full(shape, background, dtype=torch.uint8, device=self.device)
            with cuda.gpus[self.device.index or 0]:
                diverged, infos = self._impl.render_into(list(pairs), cuda.as_cuda_array(images))
        cpu = {int(b): self._impl.render_cpu(*pairs[int(b)]) for b in np.flatnonzero(diverged)}
        for b, rendered in cpu.items():
            images[b] = torch.from_numpy(pack_rendered(rendered, self.layout)).to(images.device)
        return images, diverged, cpu, infos or [None] * len(pairs)

    def rendered(self, pairs: Sequence[tuple[int, int]]) -> list[Rendered]:
        """``pairs`` rendered on the GPU and brought to the host as the PNG encoder takes them
        (what a build writes: the same bytes as a CPU build's)."""
        images, _, cpu, infos = self._render(pairs)
        host = images.cpu().numpy()
        # A divergent sample keeps the CPU's own render, with everything it reports.
        return [cpu[b] if b in cpu else self._impl.to_rendered(host[b], infos[b]) for b in range(len(pairs))]
