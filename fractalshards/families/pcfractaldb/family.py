"""The ``pc-fractaldb`` family: PC-FractalDB (Yamada et al., CVPR 2022), 3-D fractal point clouds as samples.

Categories are ExFractalDB's 3-D IFS (the same search and acceptance rule, :mod:`fractalshards.families.exfractaldb`);
a sample is a point cloud and its class (the ``points`` sample kind): ``main_points`` (7,999) points
of one of the category's 145 weight-row orbits and ``other_points`` (2,000) of another category's,
each part normalised (one min/max, to [-1, 1]) and centred alone, then the whole centred again, as
the reference describes the official objects. The official code picks the points and the other
category with an unseeded ``random.sample``; here every choice is a counter-based stream of
(seed, category, instance): native mode only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ...errors import ConfigError, check_int
from ...limits import check
from ...results import Rendered
from ...seeds import hash_permutation, stream_key, uniform_at
from .. import Preset, SettingsDict, setting
from ..exfractaldb.family import ROWS, WEIGHTS, ExFractalDB, ExFractalRenderer, _points
from ..exfractaldb.kernels import fill_uniforms

__all__ = ["PCFractalDB", "PCRenderer", "PCSettings", "FAMILY"]

_PC = "Yamada et al., CVPR 2022"


@dataclass(frozen=True)
class PCSettings(SettingsDict):
    """How a point cloud is made: its two parts' point counts and the dataset seed."""

    mode: str = "native"
    seed: int = setting(0, "dataset seed of the sample order and the native streams", minimum=0)
    main_points: int = setting(7_999, "points of the sample's own category")
    other_points: int = setting(2_000, "points of another category mixed in (0: none)", minimum=0)

    def __post_init__(self) -> None:
        if self.mode != "native":
            raise ConfigError(
                f"mode: {self.mode!r} is not known; pc-fractaldb renders in native mode (the official code is unseeded)"
            )
        check_int("seed", self.seed, 0)
        check_int("main_points", self.main_points, 1)
        check_int("other_points", self.other_points, 0)
        check("main_points", self.main_points + self.other_points, "points")
        if self.main_points > 9_999 or self.other_points > 9_999:
            raise ConfigError("main_points/other_points: an orbit has 9,999 points; use at most 9999 for each part")


def _part(cloud: np.ndarray, key: np.uint64, count: int) -> np.ndarray:
    # ``count`` distinct points of ``cloud`` (a counter-based permutation's first), normalised and centred.
    order = np.empty(cloud.shape[0], np.int64)
    hash_permutation(key, order)
    part = cloud[np.sort(order[:count])]
    lo, hi = part.min(), part.max()
    with np.errstate(all="ignore"):
        part = ((part - lo) / (hi - lo)) * 2.0 - 1.0
    return part - part.mean(axis=0)


class PCFractalDB(ExFractalDB):
    """PC-FractalDB categories and point clouds."""

    name = "pc-fractaldb"
    paper = "PC-FractalDB: Yamada et al., Point Cloud Pre-training with Natural 3D Structures, CVPR 2022"
    sample_kind: ClassVar[str] = "points"
    search_modes = ("native",)
    instances_per_category = ROWS
    image_size = 0  # samples are point clouds, not images
    Settings = PCSettings
    instance_parts = ()
    presets = (
        Preset(
            "pc-fractaldb-1k", "pc-fractaldb", "PC-FractalDB-1k: 1,000 native 3-D IFS categories, 145 point clouds each",
            1000, "native", _PC, instances=ROWS, native_seed=0,
        ),
    )  # fmt: skip

    def instance_fields(self, index: int) -> dict:
        """Instance ``t`` is weight row ``t``."""
        return {"weight": self.check_instance(index)}

    def instance_index(self, **parts: int) -> int:
        """As :meth:`fractalshards.families.Family.instance_index`."""
        if set(parts) != {"weight"}:
            raise ConfigError("instance: the pc-fractaldb family names an instance by its weight row; give --instance T")
        return self.check_instance(parts["weight"])

    def instance_label(self, index: int) -> str:
        """``w<row>``."""
        return f"w{index}"

    def render_settings(self, manifest, options: dict) -> PCSettings:
        """As :meth:`fractalshards.families.Family.render_settings`."""
        return super(ExFractalDB, self).render_settings(manifest, {**options, "mode": options.get("mode") or "native"})

    def check_limits(self, manifest, settings: PCSettings) -> None:
        """The point count within the limits in force."""
        check("main_points", settings.main_points + settings.other_points, "points")

    def renderer(self, manifest, settings: PCSettings) -> PCRenderer:
        """As :meth:`fractalshards.families.Family.renderer`: a :class:`PCRenderer`."""
        return PCRenderer(self, manifest, settings)

    def image_shape(self, manifest, settings: PCSettings) -> tuple[int, ...]:
        """``(points, 3)``: every sample's array shape."""
        return (settings.main_points + (settings.other_points if len(manifest) > 1 else 0), 3)

    def grey_level(self, settings) -> None:
        """Not images."""
        return None

    def bytes_per_sample(self, settings: PCSettings) -> float:
        """float32 points and the record."""
        return 12.0 * (settings.main_points + settings.other_points) + 1_500.0


class PCRenderer(ExFractalRenderer):
    """Point clouds of a PC-FractalDB manifest (its search settings parsed once)."""

    def orbit(self, category: int, t: int) -> np.ndarray:
        """Weight row ``t``'s orbit of ``category``, float64 ``(N, 3)``."""
        cat = self.manifest.category(category)
        points = self.search.points
        r = np.empty(points)
        fill_uniforms(stream_key(self.family.name, "instance", self.settings.seed, category, t), r)
        return np.ascontiguousarray(_points(cat.maps * WEIGHTS[t], cat.probabilities, r, float(points)).T)

    def point_cloud(self, category: int, instance: int) -> np.ndarray:
        """The sample's float64 ``(main + other, 3)`` points (see the module doc)."""
        name, settings, count = self.family.name, self.settings, len(self.manifest)
        t = self.family.check_instance(instance)
        key = stream_key(name, "mix", settings.seed, category, t)
        main = _part(self.orbit(category, t), stream_key(name, "main", settings.seed, category, t), settings.main_points)
        parts = [main]
        if settings.other_points and count > 1:
            other = (category + 1 + int(uniform_at(key, 0) * (count - 1))) % count
            row = int(uniform_at(key, 1) * ROWS)
            cloud = self.orbit(other, row)
            parts.append(_part(cloud, stream_key(name, "other", settings.seed, category, t), settings.other_points))
        whole = np.concatenate(parts)
        return whole - whole.mean(axis=0)

    def render(self, category: int, instance: int) -> Rendered:
        """A point cloud (float32 as stored); one with a NaN (a divergent orbit) is flagged ``diverged``."""
        points = self.point_cloud(category, instance).astype(np.float32)
        diverged = bool(np.isnan(points).any())
        return Rendered(None, diverged, info={}, points=np.nan_to_num(points, nan=0.0) if diverged else points)

    def record(self, category: int, instance: int, rendered: Rendered) -> dict:
        """The weight row and the render settings."""
        return {"weight": int(instance), "render": self.settings.to_dict()}


FAMILY = PCFractalDB()
