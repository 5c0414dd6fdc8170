"""The ``exfractaldb`` family: ExFractalDB and MV-FractalDB, 3-D fractals (3-D IFS point clouds) rendered as points.

A category is a 3-D IFS (2-7 affine maps of 12 coefficients and their probabilities) whose
orbit passes the official variance check; an instance is one of the 145 official weight rows
(a..l scaled one at a time) seen from one of ``views`` viewpoints: instance ``i`` is weight row
``i % 145``, view ``i // 145``. Images are ``size`` x ``size`` grey, white points on black, as the
official OpenGL renderer draws them (its arithmetic in numba: :mod:`.kernels`).

- ``official``: the official streams, seeded as the reference's vectors: numpy's legacy generator
  seeded ``seed`` (1) for the search, seeded ``instance_seed`` (2) for the instances (10,000
  uniforms each, categories then weight rows in order), Python's ``random`` seeded ``view_seed``
  (5) for the view jitter (one draw per view, in the order categories, written point clouds,
  views). The official code never seeds them, so the released sets cannot be replayed; with these
  seeds the official code's CSVs, point clouds and renders are reproduced bit for bit.
  Instance ``(c, t)``'s generator state comes from one pass over the instances before it, made
  once per machine and cached (``$FRACTALSHARDS_CACHE/streams/``).
- ``native``: trial ``n`` of the search from the counter stream (seed, n); instance ``(c, t)``'s
  uniforms from (render seed, c, t); views from (render seed, c, t, view).

Views: ``fixed`` is MV-FractalDB's: azimuth ``(k / views) 2 pi``, 30 degrees of tilt about the same
axis, and the official jitter of up to +-pi degrees; ``random`` (ExFractalDB's, whose rule is not in
the official code) draws the azimuth in [0, 2 pi) and the jitter in +-30 degrees.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, check_choice, check_int, is_number
from ...limits import check
from ...mt19937 import new_state, numpy_state, skip_randoms
from ...mt19937 import random as py_random
from ...parallel import resolve_workers
from ...progress import bar as progress_bar
from ...results import Rendered, SearchResult
from ...seeds import stream_key, uniform_at
from ...statecache import StateLayout, saved_states
from .. import Family, Preset, Renderer, SettingsDict, setting
from .kernels import (
    ACCEPTED,
    CLOSE,
    REJECTED,
    draw_points,
    fill_random,
    fill_uniforms,
    native_trials,
    official_instances,
    official_trials,
    orbit,
    projection,
    scale,
    view_matrix,
    weight_rows,
)

__all__ = [
    "ExFractalDB",
    "ExFractalRenderer",
    "ExFractalSearch",
    "ExFractalSettings",
    "Fractal3D",
    "FAMILY",
    "WEIGHTS",
    "VIEW_MODES",
]

_MV = "Yamada et al., IROS 2021"
_EX = "Kataoka et al., CVPR 2022"
#: The official weight rows (``weights_ins145.csv``).
WEIGHTS = weight_rows()
ROWS = WEIGHTS.shape[0]
VIEW_MODES = ("fixed", "random")
#: Most views per weight row (the instance space is 145 x this).
MAX_VIEWS = 12
#: Official instance states are saved every STATE_STRIDE weight rows (a render skips at most 15
#: instances' uniforms); SAVED per category, 25 KB.
STATE_STRIDE = 16
SAVED = -(-ROWS // STATE_STRIDE)


@dataclass(frozen=True)
class Fractal3D:
    """A category: its index, the trial that found it, its maps ``(n, 12)`` (a..l) and their probabilities."""

    index: int
    trial: int
    maps: np.ndarray
    probabilities: np.ndarray

    @property
    def params(self) -> tuple:
        """The maps and probabilities as one tuple (comparisons and hashing)."""
        return (self.trial, tuple(self.maps.ravel().tolist()), tuple(self.probabilities.tolist()))


@dataclass(frozen=True)
class ExFractalSearch(SettingsDict):
    """The official ``category_search.py`` settings (``--variance 0.05``, 10,000 points, 2-7 maps)."""

    variance: float = setting(0.05, "least variance of every axis of an accepted orbit")
    points: int = setting(10_000, "uniforms drawn per orbit (the orbit keeps one fewer)")
    min_maps: int = 2
    max_maps: int = 7

    def __post_init__(self) -> None:
        if not is_number(self.variance) or not 0 <= self.variance < 1:
            raise ConfigError(f"variance: {self.variance!r} is out of range; use a number in [0, 1)")
        check_int("points", self.points, 2)
        check("points", self.points, "points")
        check_int("min_maps", self.min_maps, 1)
        check_int("max_maps", self.max_maps, self.min_maps, " (and >= min_maps)")
        check("max_maps", self.max_maps, "maps")


@dataclass(frozen=True)
class ExFractalSettings(SettingsDict):
    """How instances are drawn and seen."""

    mode: str = "native"
    seed: int = setting(0, "dataset seed of the sample order and the native streams", minimum=0)
    size: int = setting(224, "image side in pixels (the official 224; a multiple of 4 for the official pixels)")
    views: int = setting(12, "views per weight row (instance i: weight row i mod 145, view i div 145)")
    view_mode: str = setting(
        "fixed", "fixed: MV-FractalDB's 12 azimuths and jitter; random: random viewpoints", choices=VIEW_MODES
    )
    instance_seed: int = setting(2, "official: numpy seed of the instance streams (the vectors' 2)", minimum=0)
    view_seed: int = setting(5, "official: Python random seed of the view jitter (the vectors' 5)", minimum=0)

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, ("official", "native"))
        check_int("seed", self.seed, 0)
        check_int("size", self.size, 4)
        check("size", self.size, "image_size")
        if not isinstance(self.views, int) or isinstance(self.views, bool) or not 1 <= self.views <= MAX_VIEWS:
            raise ConfigError(f"views: {self.views!r} is out of range; use an integer in 1..{MAX_VIEWS}")
        check_choice("view_mode", self.view_mode, VIEW_MODES)
        check_int("instance_seed", self.instance_seed, 0)
        check_int("view_seed", self.view_seed, 0)


def _accept(pts: np.ndarray, variance: float, answer: int) -> bool:
    # The official check: no NaN in the y row, and numpy's variance of each axis above the bound
    # (the kernels' quick verdict decides; numpy's own where it is within a hair of the bound).
    if answer != CLOSE:
        return answer == ACCEPTED
    with np.errstate(all="ignore"):
        return not np.isnan(pts[1]).any() and all(float(np.var(pts[a])) > variance for a in range(3))


def _points(maps: np.ndarray, probs: np.ndarray, r: np.ndarray, divisor: float) -> np.ndarray:
    cum = _cumulative(probs)
    pts = np.empty((3, r.shape[0] - 1))
    lo, hi = orbit(maps, cum, r, pts)
    scale(pts, lo, hi, divisor)
    return pts


def _cumulative(p: np.ndarray) -> np.ndarray:
    out = np.empty(len(p))
    acc = 0.0
    for k, v in enumerate(p.tolist()):
        acc += v
        out[k] = acc
    return out


class ExFractalDB(Family):
    """ExFractalDB / MV-FractalDB categories, instances and renders."""

    name = "exfractaldb"
    paper = "ExFractalDB: Kataoka et al., Replacing Labeled Real-image Datasets with Auto-generated Contours, CVPR 2022"
    instances_per_category = ROWS * MAX_VIEWS
    image_size = 224
    Settings = ExFractalSettings
    SearchSettings = ExFractalSearch
    instance_parts = (("weight", "weight row of the official instance file (0-144)"), ("view", "view index"))
    presets = (
        Preset(
            "mv-fractaldb-1k", "exfractaldb", "MV-FractalDB-1k: 1,000 categories x 145 weight rows x 12 fixed views",
            1000, "official", _MV, instances=ROWS * MAX_VIEWS, file="mv-fractaldb-1k.json",
        ),
        Preset(
            "exfractaldb-1k", "exfractaldb", "ExFractalDB-1k: the mv-fractaldb-1k categories seen from random views (native)",
            1000, "native", _EX, instances=1000, base="mv-fractaldb-1k",
        ),
        Preset(
            "exfractaldb-21k", "exfractaldb", "ExFractalDB-21k: 21,000 native categories seen from random views",
            21000, "native", _EX, instances=1000, native_seed=0,
        ),
    )  # fmt: skip

    def default_seed(self, mode: str) -> int:
        """The official search seed of the reference's vectors (1), else 0."""
        return 1 if mode == "official" else 0

    # -- categories -------------------------------------------------------------------------
    def search(self, count, *, mode, seed, settings, workers=None, progress=False) -> SearchResult:
        """As :meth:`fractalshards.families.Family.search`."""
        check_int("categories", count, 1)
        self.check_search_mode(mode)
        found: list[Fractal3D] = []
        bar = progress_bar(total=count, desc=f"search ({self.name}, {mode})", unit="cat", enabled=progress)
        if mode == "official":
            state = numpy_state(seed)
            most = settings.max_maps
            maps, p, cum = np.empty((most, 12)), np.empty(most), np.empty(most)
            r, pts = np.empty(settings.points), np.empty((3, settings.points - 1))
            trial = 0
            while len(found) < count:
                # Compiled trials until one passes or is close to the bound (numpy's np.var decides).
                done, answer, n = official_trials(
                    state, settings.min_maps, settings.max_maps, settings.variance, 4096, maps, p, cum, r, pts
                )
                trial += done
                if answer != REJECTED and _accept(pts, settings.variance, answer):
                    found.append(Fractal3D(len(found), trial - 1, maps[:n].copy(), p[:n].copy()))
                    bar.update(1)
        else:
            # Category c is the first accepted trial of its own stream: categories are independent.
            with ThreadPoolExecutor(max_workers=resolve_workers(workers)) as pool:
                for cat in pool.map(lambda c: self._native_category(seed, settings, c), range(count)):
                    found.append(cat)
                    bar.update(1)
            trial = sum(c.trial + 1 for c in found)
        bar.close()
        return SearchResult(found, trial)

    def search_at(self, indices, *, mode, seed, settings) -> list:
        """Native categories are independent: each searched alone."""
        if mode != "native":
            return super().search_at(indices, mode=mode, seed=seed, settings=settings)
        return [self._native_category(seed, settings, c) for c in indices]

    def _native_category(self, seed: int, settings: ExFractalSearch, index: int) -> Fractal3D:
        # Trial t of category `index` draws from stream (seed, index, t): compiled, a batch of keys at a time.
        most = settings.max_maps
        draws = np.empty(1 + 12 * most + settings.points)
        maps, p, cum = np.empty((most, 12)), np.empty(most), np.empty(most)
        pts = np.empty((3, settings.points - 1))
        attempt, batch = 0, 64
        while attempt <= 100_000:
            keys = np.array([stream_key(self.name, "trial", seed, index, attempt + k) for k in range(batch)], np.uint64)
            k, answer, n = native_trials(keys, settings.min_maps, most, settings.variance, draws, maps, p, cum, pts)
            if k < batch and _accept(pts, settings.variance, answer):
                return Fractal3D(index, attempt + k, maps[:n].copy(), p[:n].copy())
            attempt += k + 1 if k < batch else batch  # past a close trial np.var refused, or the batch
            batch = 256
        raise ConfigError(f"variance: no 3-D IFS passed in 100,000 trials for category {index}; lower --variance")

    def subset_trials(self, manifest, categories: list) -> int:
        """Trials needed for the first categories (official: one stream; native: each category's own)."""
        if not categories:
            return 0
        if manifest.mode == "official":
            return categories[-1].trial + 1
        return sum(c.trial + 1 for c in categories)

    def category_to_dict(self, category: Fractal3D) -> dict:
        """As :meth:`fractalshards.families.Family.category_to_dict`: the CSV's rows (a..l, p)."""
        rows = np.concatenate([category.maps, category.probabilities[:, None]], axis=1)
        return {"index": category.index, "trial": category.trial, "maps": rows.tolist()}

    def category_from_dict(self, data: dict) -> Fractal3D:
        """As :meth:`fractalshards.families.Family.category_from_dict`."""
        rows = data["maps"]
        if not isinstance(rows, list) or not 1 <= len(rows) <= 64:
            raise ValueError(f"category {data.get('index')!r}: maps must be a list of 1..64 rows")
        if any(not isinstance(r, list) or len(r) != 13 or not all(is_number(v) for v in r) for r in rows):
            raise ValueError(f"category {data.get('index')!r}: every map row must be 13 finite numbers (a..l, p)")
        arr = np.array(rows, np.float64)
        if not (arr[:, 12] >= 0).all() or not 0.999 <= float(arr[:, 12].sum()) <= 1.001:
            raise ValueError(f"category {data.get('index')!r}: map probabilities must be >= 0 and sum to 1")
        trial = data.get("trial", 0)
        if not isinstance(trial, int) or trial < 0:
            raise ValueError(f"category {data.get('index')!r}: trial must be a non-negative integer")
        return Fractal3D(int(data["index"]), trial, np.ascontiguousarray(arr[:, :12]), np.ascontiguousarray(arr[:, 12]))

    def export_csv(self, category: Fractal3D) -> bytes:
        """The official ``%06d.csv`` of a category (``np.savetxt``: '%.18e', ',')."""
        import io

        buf = io.BytesIO()
        np.savetxt(buf, np.concatenate([category.maps, category.probabilities[:, None]], axis=1), delimiter=",")
        return buf.getvalue()

    # -- instances --------------------------------------------------------------------------
    def instance_fields(self, index: int) -> dict:
        """Instance ``i``: weight row ``i % 145``, view ``i // 145``."""
        i = self.check_instance(index)
        return {"weight": i % ROWS, "view": i // ROWS}

    def instance_index(self, **parts: int) -> int:
        """Inverse of :meth:`instance_fields`."""
        if set(parts) != {"weight", "view"}:
            raise ConfigError("instance: the exfractaldb family names an instance by --weight T and --view V (or --instance I)")
        t, v = parts["weight"], parts["view"]
        if not 0 <= t < ROWS or not 0 <= v < MAX_VIEWS:
            raise ConfigError(f"instance: weight {t} / view {v} is out of range; use 0..{ROWS - 1} and 0..{MAX_VIEWS - 1}")
        return v * ROWS + t

    def instance_label(self, index: int) -> str:
        """``w<row> v<view>``."""
        f = self.instance_fields(index)
        return f"w{f['weight']} v{f['view']}"

    def render_settings(self, manifest, options: dict) -> ExFractalSettings:
        """As :meth:`fractalshards.families.Family.render_settings` (official streams need an official search)."""
        mode = options.get("mode") or ("official" if manifest.render_mode == "official" else "native")
        view_mode = options.get("view_mode") or ("fixed" if mode == "official" else "random")
        settings = super().render_settings(manifest, {**options, "mode": mode, "view_mode": view_mode})
        self.check_official_render(manifest, settings.mode)
        return settings

    def check_limits(self, manifest, settings: ExFractalSettings) -> None:
        """The image size within the limits in force."""
        check("size", settings.size, "image_size")

    # -- rendering --------------------------------------------------------------------------
    def renderer(self, manifest, settings: ExFractalSettings) -> ExFractalRenderer:
        """As :meth:`fractalshards.families.Family.renderer`: an :class:`ExFractalRenderer`."""
        return ExFractalRenderer(self, manifest, settings)

    def pass_layout(self, manifest, points: int) -> StateLayout:
        """The arrays of a saved official instance pass (:mod:`fractalshards.statecache`): each category's
        generator state every STATE_STRIDE weight rows, which rows the official code writes, and the
        state after the last category."""
        return StateLayout(
            rows={"states": ((SAVED, 625), np.uint32), "valid": ((ROWS,), np.bool_)},
            fixed={"next": ((625,), np.uint32)},
            most=len(manifest),
        )

    def extend_pass(self, manifest, settings: ExFractalSettings, search, saved: dict | None, count: int) -> dict:
        """The official instance pass of ``saved`` (None: none yet) extended to its first ``count`` categories."""
        done = 0 if saved is None else len(saved["valid"])
        state = numpy_state(settings.instance_seed) if saved is None else saved["next"].copy()
        states = np.zeros((count - done, SAVED, 625), np.uint32)
        valid = np.zeros((count - done, ROWS), bool)
        r, pts = np.empty(search.points), np.empty((3, search.points - 1))
        for c in range(done, count):
            cat = manifest.category(c)
            official_instances(
                state, cat.maps, cat.probabilities, WEIGHTS, STATE_STRIDE, r, pts, states[c - done], valid[c - done]
            )
        if saved is not None:
            states = np.concatenate([saved["states"], states])
            valid = np.concatenate([saved["valid"], valid])
        return {"states": states, "valid": valid, "next": state}

    def image_shape(self, manifest, settings: ExFractalSettings) -> tuple[int, ...]:
        """``(size, size)`` grey (white points on black)."""
        return (settings.size, settings.size)

    def grey_level(self, settings) -> int:
        """Two-level images: points are 255."""
        return 255

    def bytes_per_sample(self, settings) -> float:
        """A 1-bit PNG of a few hundred points."""
        return 1_500.0 * (settings.size / 224) ** 2


class ExFractalRenderer(Renderer):
    """Renders of an ExFractalDB / MV-FractalDB manifest: its search settings parsed once and, in official
    mode, the official instance pass as far as rendered (saved per machine: :mod:`fractalshards.statecache`)."""

    family: ExFractalDB

    def __init__(self, family: ExFractalDB, manifest, settings) -> None:
        super().__init__(family, manifest, settings)
        self.search = family.search_settings_from_dict(manifest.search)
        self._pass: dict | None = None
        self._lock = threading.Lock()

    def official_pass(self, upto: int) -> dict:
        """The official instance pass up to category ``upto``: each category's generator state at its
        start and which of its 145 point clouds the official code writes (no NaN in y)."""
        with self._lock:
            saved = self._pass
            if saved is not None and len(saved["valid"]) > upto:
                return saved
        fam, manifest, settings, search = self.family, self.manifest, self.settings, self.search
        count = max(upto + 1, min(len(manifest), 2 * upto + 2))
        saved = saved_states(
            fam.name,
            {"categories": self.manifest_hash, "seed": settings.instance_seed, "points": search.points, "stride": STATE_STRIDE},
            fam.pass_layout(manifest, search.points),
            enough=lambda saved: len(saved["valid"]) > upto,
            extend=lambda saved: fam.extend_pass(manifest, settings, search, saved, count),
        )
        with self._lock:
            self._pass = saved
        return saved

    def point_cloud(self, category: int, instance: int) -> np.ndarray:
        """Instance ``(category, weight row)``'s point cloud, float64 ``(N, 3)`` (the official PLY's vertices)."""
        return np.ascontiguousarray(self.axes(category, instance).T)

    def axes(self, category: int, instance: int) -> np.ndarray:
        """The point cloud as the kernels lay it out, ``(3, N)``: a render reads it as it is (the
        transposed copy cost as much as the orbit)."""
        cat = self.manifest.category(category)
        t = self.family.instance_fields(instance)["weight"]
        points = self.search.points
        r = np.empty(points)
        if self.settings.mode == "official":
            state = self.official_pass(category)["states"][category, t // STATE_STRIDE].copy()
            skip_randoms(state, (t % STATE_STRIDE) * points)
            fill_random(state, r)
        else:
            fill_uniforms(stream_key(self.family.name, "instance", self.settings.seed, category, t), r)
        return _points(cat.maps * WEIGHTS[t], cat.probabilities, r, float(points))

    def view(self, category: int, instance: int) -> tuple[float, float, float]:
        """(azimuth, tilt, jitter) in radians, as the official render.py computes them (float64)."""
        settings, name = self.settings, self.family.name
        f = self.family.instance_fields(instance)
        t, k = f["weight"], f["view"]
        if settings.view_mode == "fixed":
            theta = ((k / settings.views) * math.pi) * 2.0
            if settings.mode == "official":
                passed = self.official_pass(category)
                before = int(passed["valid"][:category].sum()) + int(passed["valid"][category, :t].sum())
                state = new_state(settings.view_seed)
                skip_randoms(state, before * settings.views + k)
                u = -math.pi + (math.pi - -math.pi) * py_random(state)
            else:
                u = -math.pi + 2 * math.pi * float(uniform_at(stream_key(name, "view", settings.seed, category, t, k), 0))
            return theta, math.radians(30), math.radians(u)
        key = stream_key(name, "view", settings.seed, category, t, k)
        theta = 2 * math.pi * float(uniform_at(key, 0))
        return theta, math.radians(30), math.radians(-30 + 60 * float(uniform_at(key, 1)))

    def render(self, category: int, instance: int) -> Rendered:
        """White points on black (a point cloud the official code does not write, one with a NaN, renders
        black and is flagged ``diverged``)."""
        axes = self.axes(category, instance)
        size = self.settings.size
        image = np.zeros((size, size), np.uint8)
        diverged = bool(np.isnan(axes[1]).any())
        theta, tilt, jitter = self.view(category, instance) if not diverged else (0.0, 0.0, 0.0)
        if not diverged:
            view, proj = view_matrix(theta, tilt, jitter, 4.0), projection(np.float32(math.radians(45)))
            draw_points(axes.T, view, proj, image)  # (N, 3) as a view: no copy
        return Rendered(image, diverged, info={"azimuth": theta, "jitter": jitter})

    def record(self, category: int, instance: int, rendered: Rendered) -> dict:
        """The instance's weight row and view, the view's angles and the render settings."""
        return {**self.family.instance_fields(instance), **rendered.info, "render": self.settings.to_dict()}


FAMILY = ExFractalDB()
