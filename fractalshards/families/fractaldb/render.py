"""Rendering of category instances: settings, point clouds, drawing (PNG encoding is in :mod:`fractalshards.shards`).

Two modes share one kernel (:mod:`fractalshards.families.fractaldb.kernels`):

- ``official``: the official FractalDB point stream (numpy's legacy generator seeded
  with 100, the same uniforms for every image), rescale and flips, so point renders
  are pixel-identical to the official release. Patch masks, unseeded in the official
  code, come from our seeded stream.
- ``native``: every stream is derived from ``(seed, category, weight row)`` (points)
  and ``(seed, category, weight row, patch variant)`` (masks).

In both modes the four flips of one (weight, patch) pair are mirror images of one
drawing, as in the official release.
"""

from __future__ import annotations

import colorsys
import functools
import threading
from dataclasses import dataclass

import numpy as np

from ... import seeds
from ...errors import ConfigError, check_choice, check_int
from ...limits import check
from ...png import TwoLevelImage
from ...results import Rendered
from ...seeds import stream_key
from .. import SettingsDict, setting
from . import kernels as kernel
from .ifs import IFS, cumulative, weight_multipliers
from .instances import Instance

__all__ = [
    "MODES",
    "DRAWS",
    "COLORS",
    "RenderSettings",
    "Rendered",
    "PointCloud",
    "point_cloud",
    "render",
    "render_flips",
    "weight_rows",
]

MODES = ("official", "native")
DRAWS = ("patch", "point")
COLORS = ("gray", "color")

#: Grey value of a marked pixel (the official 127).
GRAY_VALUE = 127
#: Seed of the official point stream.
OFFICIAL_POINT_SEED = 100
#: Length of the hue cycle of colour mode (point index mod 128).
HUE_PERIOD = 128


@dataclass(frozen=True)
class RenderSettings(SettingsDict):
    """Everything that decides the pixels of an instance besides the IFS itself.

    Defaults are FractalDB-1k's: 362 px, 200,000 points, pad 6, 3x3 grey patches,
    weight step 0.4.
    """

    mode: str = "native"
    draw: str = setting("patch", "3x3 patches or 1x1 points", choices=DRAWS)
    color: str = setting("gray", "grey or colour", choices=COLORS)
    size: int = setting(362, "image size in pixels")
    points: int = setting(200_000, "chaos-game points")
    pad: int = 6
    weight_delta: float = 0.4
    seed: int = setting(0, "dataset seed of the sample order, the patch masks and the native streams", minimum=0)

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_choice("draw", self.draw, DRAWS)
        check_choice("color", self.color, COLORS)
        check_int("points", self.points, 2 * kernel.NAN_WINDOW)
        check_int("pad", self.pad, 4, " (3x3 patches sit at +1..+3)")
        check_int("size", self.size, 2 * self.pad + 8)
        if not 0.0 < float(self.weight_delta) < 1.0:
            raise ConfigError(f"weight_delta: {self.weight_delta!r} is out of range; use a number in (0, 1)")
        check_int("seed", self.seed, 0)
        check("size", self.size, "image_size")  # before any canvas or point buffer is allocated
        check("points", self.points, "points")

    @property
    def span(self) -> float:
        """Pixels between the pads that a point cloud is scaled onto (350 at 362 px)."""
        return float(self.size - 2 * self.pad)


@functools.lru_cache(maxsize=4)
def official_uniforms(points: int) -> np.ndarray:
    # The official renderer reseeds numpy's legacy generator with 100 for every image.
    u = np.random.RandomState(OFFICIAL_POINT_SEED).random(points)
    u.setflags(write=False)
    return u


@functools.lru_cache(maxsize=1)
def _palette() -> np.ndarray:
    rows = [colorsys.hsv_to_rgb(k / HUE_PERIOD, 0.75, 0.75) for k in range(HUE_PERIOD)]
    return np.asarray(np.round(np.asarray(rows) * 255.0), dtype=np.uint8)


@functools.lru_cache(maxsize=8)
def weight_rows(delta: float) -> np.ndarray:
    """The ``(25, 6)`` weight multipliers for ``delta``, cached and read-only."""
    rows = weight_multipliers(delta)
    rows.setflags(write=False)
    return rows


@functools.lru_cache(maxsize=1)
def _gray_patch_table() -> np.ndarray:
    return kernel.patch_table(GRAY_VALUE)


class _Workspace:
    """Per-thread buffers, so a render allocates nothing but its image."""

    def __init__(self, points: int) -> None:
        self.points = points
        self.xs = np.empty(points, np.float64)
        self.ys = np.empty(points, np.float64)
        self.uniforms = np.empty(points, np.float64)
        self.drop = np.empty(points, np.bool_)
        self.px = np.empty(points, np.int32)
        self.py = np.empty(points, np.int32)
        self.masks = np.empty(points, np.uint16)
        self.bounds = np.empty(4, np.float64)
        self.scale = np.empty(4, np.float64)
        self.order = np.empty(points, np.int32)
        self.choices = np.empty(points, np.uint8)
        # Pixel coordinates of the 1-bit path: uint16 halves their memory traffic (pixels < 65,536).
        self.qx = np.empty(points, np.uint16)
        self.qy = np.empty(points, np.uint16)
        self.seen = np.empty(0, np.uint8)

    def seen_for(self, size: int) -> np.ndarray:
        """A zeroed scratch map of ``size * size + 1`` bytes (see :func:`kernel.last_at_each_pixel`)."""
        nbytes = size * size + 1
        if self.seen.shape[0] < nbytes:
            self.seen = np.empty(nbytes, np.uint8)
        out = self.seen[:nbytes]
        out[:] = 0
        return out


_local = threading.local()


def _workspace(points: int) -> _Workspace:
    ws = getattr(_local, "workspace", None)
    if ws is None or ws.points < points:
        ws = _Workspace(points)
        _local.workspace = ws
    return ws


@dataclass
class PointCloud:
    """Integer pixel coordinates of a rescaled point cloud (views into a thread's buffers)."""

    px: np.ndarray
    py: np.ndarray
    diverged: bool


def _uniforms(system: IFS, category: int, weight: int, settings: RenderSettings, ws: _Workspace):
    n = settings.points
    rows = weight_rows(settings.weight_delta)
    coef = np.ascontiguousarray(system.coefficients * rows[weight])
    cum = cumulative(system.probabilities)
    if settings.mode == "official":
        uniforms = official_uniforms(n)
    else:
        uniforms = ws.uniforms[:n]
        seeds.hash_uniforms(stream_key("points", settings.seed, category, weight), uniforms)
    return coef, cum, uniforms


def point_cloud(system: IFS, category: int, weight: int, settings: RenderSettings) -> PointCloud:
    """Chaos game and rescale of weight row ``weight`` of ``system``.

    The returned arrays are views into per-thread buffers: use them before the next call.
    """
    n = settings.points
    ws = _workspace(n)
    coef, cum, uniforms = _uniforms(system, category, weight, settings, ws)
    kernel.chaos_game(coef, cum, uniforms, n, ws.xs, ws.ys)
    length, diverged = kernel.drop_divergent(ws.xs, ws.ys, n, ws.drop)
    kernel.to_pixels(ws.xs, length, settings.span, float(settings.pad), ws.px)
    kernel.to_pixels(ws.ys, length, settings.span, float(settings.pad), ws.py)
    return PointCloud(ws.px[:length], ws.py[:length], bool(diverged))


def _walk(system: IFS, category: int, weight: int, settings: RenderSettings, ws: _Workspace) -> bool:
    """The chaos game into ``ws.xs``/``ws.ys``, its bounds into ``ws.bounds``; True when it diverged (a NaN)."""
    coef, cum, uniforms = _uniforms(system, category, weight, settings, ws)
    kernel.map_choices(cum, uniforms, settings.points, ws.choices)
    return not kernel.chaos_walk(coef, ws.choices, settings.points, ws.xs, ws.ys, ws.bounds)


def _rescale(diverged: bool, settings: RenderSettings, ws: _Workspace) -> int:
    """Pixels of the walk into ``ws.qx``/``ws.qy`` (the official NaN rule first if it diverged); returns how many."""
    b = ws.bounds
    length = settings.points
    if diverged:
        length, _ = kernel.drop_divergent(ws.xs, ws.ys, length, ws.drop)
        if length:
            b[0], b[1] = kernel.axis_bounds(ws.xs, length)
            b[2], b[3] = kernel.axis_bounds(ws.ys, length)
    ws.scale[0], ws.scale[1] = kernel.axis_scale(b[0], b[1])
    ws.scale[2], ws.scale[3] = kernel.axis_scale(b[2], b[3])
    kernel.scale_points(ws.xs, ws.ys, length, ws.scale, settings.span, float(settings.pad), ws.qx, ws.qy)
    return length


def _draw_bits(
    length: int, category: int, instance: Instance, settings: RenderSettings, ws: _Workspace
) -> tuple[TwoLevelImage, int]:
    """The patches of the first ``length`` pixels of ``ws.qx``/``ws.qy``, flipped, as 1-bit rows; and the set pixels."""
    size = settings.size
    stride = 1 + (size + 7) // 8
    bits = np.zeros(size * stride + 1, np.uint8)  # one spare byte: the last row's 16-bit window
    key = stream_key("masks", settings.seed, category, instance.weight, instance.patch)
    count = kernel.draw_patch_bits(ws.qx, ws.qy, length, key, instance.flip, size, stride, bits, ws.seen_for(size), ws.order)
    return TwoLevelImage(bits[:-1].reshape(size, stride), size, GRAY_VALUE), int(count)


def _render_patch_bits(system: IFS, category: int, instance: Instance, settings: RenderSettings) -> Rendered:
    # Grey patch mode: the chaos game keeps the axis bounds, so a cloud without NaN
    # (nearly all) needs no NaN pass and no bounds pass; divergent clouds take the
    # official NaN rule first. Both axes are scaled in one vectorised pass (kept apart
    # from the drawing, which would stop the divisions vectorising), then only the
    # patches that can show are drawn, straight into 1-bit scanlines, in the flip's
    # orientation. Same pixels as _draw + _flip. Three stages, which benchmarks/build.py times.
    ws = _workspace(settings.points)
    diverged = _walk(system, category, instance.weight, settings, ws)
    length = _rescale(diverged, settings, ws)
    image, count = _draw_bits(length, category, instance, settings, ws)
    return Rendered(None, diverged, bits=image, count=count)


def _draw(cloud: PointCloud, category: int, weight: int, patch: int, settings: RenderSettings) -> np.ndarray:
    size = settings.size
    length = cloud.px.shape[0]
    masks = None
    if settings.draw == "patch":
        masks = _workspace(settings.points).masks[:length]
        kernel.hash_masks(stream_key("masks", settings.seed, category, weight, patch), masks)
    if settings.color == "gray":
        canvas = np.zeros((size, size), np.uint8)
        if masks is None:
            kernel.draw_points(cloud.px, cloud.py, length, GRAY_VALUE, canvas)
        else:
            kernel.draw_patches(cloud.px, cloud.py, length, masks, _gray_patch_table(), canvas)
    else:
        canvas = np.zeros((size, size, 3), np.uint8)
        if masks is None:
            kernel.draw_points_color(cloud.px, cloud.py, length, _palette(), canvas)
        else:
            kernel.draw_patches_color(cloud.px, cloud.py, length, masks, _palette(), canvas)
    return canvas


def _flip(drawing: np.ndarray, flip: int) -> np.ndarray:
    # The official drawing is flipped top-bottom first; flip1 is the raw drawing.
    if flip == 0:
        out = drawing[::-1]
    elif flip == 1:
        out = drawing
    elif flip == 2:
        out = drawing[::-1, ::-1]
    else:
        out = drawing[:, ::-1]
    return np.ascontiguousarray(out)


def render_flips(system: IFS, category: int, weight: int, patch: int, settings: RenderSettings) -> tuple[list[np.ndarray], bool]:
    """Render the four flips of one (weight row, patch variant): one chaos game, one drawing."""
    cloud = point_cloud(system, category, weight, settings)
    drawing = _draw(cloud, category, weight, patch, settings)
    return [_flip(drawing, f) for f in range(4)], cloud.diverged


def render(system: IFS, category: int, instance: Instance, settings: RenderSettings) -> Rendered:
    """Render one instance of a category.

    Args:
        system: the category's IFS.
        category: the category index (part of every random stream's key).
        instance: weight row, flip and patch variant.
        settings: the render settings.
    """
    if settings.draw == "patch" and settings.color == "gray":
        return _render_patch_bits(system, category, instance, settings)
    cloud = point_cloud(system, category, instance.weight, settings)
    drawing = _draw(cloud, category, instance.weight, instance.patch, settings)
    return Rendered(_flip(drawing, instance.flip), cloud.diverged)
