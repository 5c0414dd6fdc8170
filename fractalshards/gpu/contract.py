"""What a family's device renderer is: :class:`DeviceRenderer`.

A family with CUDA kernels names its renderer class (:meth:`fractalshards.families.Family.device_renderer`);
:meth:`~fractalshards.families.Family.gpu_renderer` builds it as ``cls(family, manifest, settings)``, the
one constructor every device renderer has, and :class:`fractalshards.gpu_renderer.GPURenderer` drives
it: a canvas of the packed layout filled with :attr:`~DeviceRenderer.background` goes in,
:meth:`~DeviceRenderer.render_into` draws the batch, the samples it marks divergent are rendered again
by :meth:`~DeviceRenderer.render_cpu`, and :meth:`~DeviceRenderer.to_rendered` brings a packed image to
the host as the family's CPU :meth:`~fractalshards.families.Family.render` returns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..png import PackedLayout
from ..results import Rendered

__all__ = ["DeviceRenderer"]


@runtime_checkable
class DeviceRenderer(Protocol):
    """A family's renderer of one manifest's samples on the GPU (see the module doc)."""

    #: The family's packed layout of the settings' images (what :meth:`render_into` draws).
    layout: PackedLayout
    #: The byte a canvas holds before anything is drawn (black 0, white 255).
    background: int

    def __init__(self, family: Any, manifest: Any, settings: Any) -> None: ...

    def render_into(self, pairs: Sequence[tuple[int, int]], out: Any) -> tuple[np.ndarray, list[dict | None] | None]:
        """Draw ``pairs`` into the device array ``out`` (``(len(pairs), *layout.shape)`` uint8 holding
        :attr:`background`); returns a host bool array (True: the sample diverged, for :meth:`render_cpu`)
        and each sample's :attr:`~fractalshards.results.Rendered.info` (or None)."""
        ...

    def to_rendered(self, packed: np.ndarray, info: dict | None = None) -> Rendered:
        """A packed host copy of one image as the family's CPU render returns it."""
        ...

    def render_cpu(self, category: int, instance: int) -> Rendered:
        """The CPU's render of one sample (for the samples the device hands back)."""
        ...
