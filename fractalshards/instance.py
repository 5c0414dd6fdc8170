"""One instance of a category set: named (an index, or the family's named parts), rendered and written.

What ``fractalshards render`` does, as library calls::

    from fractalshards.instance import render_instance
    from fractalshards.presets import load_preset

    one = render_instance(load_preset("fractaldb-1k"), category=7, parts={"weight": 12, "flip": 0, "patch": 3})
    one.write("fractal.png")
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import png
from .categories import CategoryManifest
from .errors import ConfigError
from .results import Rendered
from .storage import atomic_write

__all__ = ["RenderedInstance", "choose_category", "choose_instance", "render_instance"]


def choose_instance(family: Any, instance: int | None = None, parts: dict | None = None) -> int:
    """The instance index that ``instance`` or the family's named ``parts`` (``{"weight": 3, ...}``, see
    :attr:`~fractalshards.families.Family.instance_parts`) name; the only one when the family has one."""
    parts = {k: v for k, v in (parts or {}).items() if v is not None}
    if instance is not None and parts:
        names = "/--".join(sorted(parts))
        raise ConfigError(f"instance: give either --instance or --{names}, not both")
    if instance is not None:
        return family.check_instance(instance)
    if parts:
        return family.instance_index(**parts)
    if family.instances_per_category == 1:
        return 0
    named = " ".join(f"--{p} {p[0].upper()}" for p, _ in family.instance_parts)
    raise ConfigError("instance: give --instance I" + (f", or all of {named}" if named else ""))


def choose_category(manifest: CategoryManifest, category: int | None = None) -> int:
    """``category`` if ``manifest`` has it; None: the one group of a family whose samples are one group."""
    if category is None:
        if manifest.family.sample_groups(manifest) != 1:
            raise ConfigError("category: give --category C")
        return 0
    manifest.category(category)  # a one-line error when out of range
    return category


@dataclass(frozen=True)
class RenderedInstance:
    """One rendered instance and what it was rendered from (:func:`render_instance`)."""

    manifest: CategoryManifest
    category: int
    instance: int
    settings: Any
    rendered: Rendered
    #: The instance's 3-D points, float64 ``(N, 3)``, when asked for (3-D families).
    cloud: np.ndarray | None = None

    def write(
        self, out: str | os.PathLike, *, mask_out: str | os.PathLike | None = None, cloud_out: str | os.PathLike | None = None
    ) -> None:
        """The image as a PNG at ``out``, its class mask at ``mask_out`` (8-bit grey PNG) and its point cloud
        at ``cloud_out`` (``.npy``, float64 ``(N, 3)``). Each file is whole or absent: what cannot be written
        (a mask of a family without masks, a cloud not rendered) is an error before any file is."""
        family = self.manifest.family
        if mask_out is not None and self.rendered.mask is None:
            raise ConfigError(f"mask_out: the {family.name} family's samples have no mask; drop --mask-out")
        if cloud_out is not None and self.cloud is None:
            raise ConfigError("cloud_out: render the instance with cloud=True to write its point cloud")
        if self.rendered.image is None:
            raise ConfigError(f"out: the {family.name} family's samples are not images; write them with --cloud-out")
        if cloud_out is not None:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(self.cloud, "<f8"), allow_pickle=False)
            atomic_write(cloud_out, buf.getvalue())
        if mask_out is not None:
            atomic_write(mask_out, png.encode_grey8(self.rendered.mask))
        atomic_write(out, png.encode(self.rendered.image))

    def describe(self) -> str:
        """One line: family, category, instance label, fill rate, and whether the orbit diverged."""
        family = self.manifest.family
        return (
            f"{family.name} category {self.category} instance {family.instance_label(self.instance)} "
            f"fill {self.rendered.fill:.4f}{' diverged' if self.rendered.diverged else ''}"
        )


def render_instance(
    manifest: CategoryManifest,
    *,
    category: int | None = None,
    instance: int | None = None,
    parts: dict | None = None,
    render: dict | None = None,
    cloud: bool = False,
) -> RenderedInstance:
    """Render one instance of ``manifest``: category ``category`` (None: the one group of a family whose
    samples are one group), instance ``instance`` or the family's named ``parts``, with the render options
    ``render`` (``None`` values: the manifest's and family's defaults); ``cloud`` also computes the
    instance's point cloud (3-D families; a one-line error for the others)."""
    family = manifest.family
    chosen = choose_instance(family, instance, parts)
    category = choose_category(manifest, category)
    settings = family.render_settings(manifest, dict(render or {}))
    renderer = family.renderer(manifest, settings)
    points = renderer.point_cloud(category, chosen) if cloud else None  # a one-line error for 2-D families
    return RenderedInstance(manifest, category, chosen, settings, renderer.render(category, chosen), points)
