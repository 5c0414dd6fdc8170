"""Category search: draw random systems, keep those whose rendering fills enough.

Two modes:

- ``official``: one numpy legacy generator seeded once (seed 1 for FractalDB-1k)
  feeds every trial in order, exactly as the official code does, so the k-th
  accepted trial is the official category k. No draw depends on an outcome, so
  the main thread consumes the stream in order while the fill checks (numba, no
  GIL) run on a thread pool.
- ``native``: category ``i`` has its own generator seeded from ``(seed, i)`` and
  draws trials until one is accepted, so categories are independent: searched in
  parallel, and the first 1,000 of a 10,000-category search equal a 1,000-category
  search.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ... import seeds
from ...errors import ConfigError, check_choice, check_int, is_int, is_number
from ...limits import check
from ...parallel import resolve_workers, thread_map
from ...progress import bar as progress_bar
from ...results import SearchResult
from .. import SettingsDict, setting
from . import kernels as kernel
from .ifs import IFS, SAMPLERS, cumulative, sample_fractaldb, sample_sigma

__all__ = [
    "SEARCH_MODES",
    "SearchSettings",
    "Category",
    "category_to_dict",
    "category_from_dict",
    "fill_rate",
    "search",
    "search_official",
    "search_native",
]

SEARCH_MODES = ("official", "native")


@dataclass(frozen=True)
class SearchSettings(SettingsDict):
    """The quality check and the sampler. Defaults are FractalDB's."""

    sampler: str = setting("fractaldb", "the system sampler (sigma: Anderson & Farrell's; native mode only)", choices=SAMPLERS)
    min_maps: int = setting(2, "fewest maps per system")
    max_maps: int = setting(7, "most maps per system")
    canvas: int = setting(512, "canvas of the quality check")
    pad: int = 6
    points: int = setting(100_000, "points of the quality check")
    fill_threshold: float = setting(0.2, "minimum fill rate to accept")
    max_trials_per_category: int = 100_000

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, SAMPLERS)
        if not (isinstance(self.min_maps, int) and isinstance(self.max_maps, int) and 1 <= self.min_maps <= self.max_maps):
            raise ConfigError(
                f"min_maps/max_maps: {self.min_maps!r}..{self.max_maps!r} is not a valid range; use 1 <= min_maps <= max_maps"
            )
        check_int("canvas", self.canvas, 2 * self.pad + 2)
        check_int("points", self.points, 2 * kernel.NAN_WINDOW)
        if not 0.0 <= float(self.fill_threshold) <= 1.0:
            raise ConfigError(f"fill_threshold: {self.fill_threshold!r} is out of range; use a number in [0, 1]")
        check_int("max_trials_per_category", self.max_trials_per_category, 1)
        check("points", self.points, "points")
        check("canvas", self.canvas, "image_size")
        check("max_maps", self.max_maps, "maps")

    @property
    def span(self) -> float:
        """Pixels between the pads (500 on the 512 canvas)."""
        return float(self.canvas - 2 * self.pad)


@dataclass(frozen=True)
class Category:
    """An accepted system: its index, the trial that produced it and its fill rate."""

    index: int
    system: IFS
    trial: int
    fill: float


def category_to_dict(category: Category) -> dict:
    """A category as manifest JSON: index, trial, fill and the maps' rows ``[a, b, c, d, e, f, p]``."""
    return {"index": category.index, "trial": category.trial, "fill": category.fill, "maps": category.system.to_rows()}


def category_from_dict(data: dict) -> Category:
    """Inverse of :func:`category_to_dict`, for stored data: every field of its type (an integer is not a
    bool, a number is finite); a bad one is a ``ValueError`` naming it."""
    index, trial, fill, maps = data["index"], data["trial"], data["fill"], data["maps"]
    if not is_int(index) or not is_int(trial) or index < 0 or trial < 0:
        raise ValueError(f"category {index!r}: index and trial must be non-negative integers")
    if not is_number(fill) or not 0.0 <= fill <= 1.0:
        raise ValueError(f"category {index!r}: fill must be a number in [0, 1]")
    if not isinstance(maps, list) or not all(isinstance(r, list) and all(is_number(v) for v in r) for r in maps):
        raise ValueError(f"category {index!r}: maps must be lists of finite numbers")
    return Category(index, IFS.from_rows(maps), trial, float(fill))


class _Buffers:
    def __init__(self, points: int, canvas: int) -> None:
        self.xs = np.empty(points, np.float64)
        self.ys = np.empty(points, np.float64)
        self.drop = np.empty(points, np.bool_)
        self.px = np.empty(points, np.int32)
        self.py = np.empty(points, np.int32)
        self.uniforms = np.empty(points, np.float64)
        self.canvas = np.zeros((canvas, canvas), np.uint8)


_local = threading.local()


def _buffers(settings: SearchSettings) -> _Buffers:
    buf = getattr(_local, "search_buffers", None)
    if buf is None or buf.xs.shape[0] != settings.points or buf.canvas.shape[0] != settings.canvas:
        buf = _Buffers(settings.points, settings.canvas)
        _local.search_buffers = buf
    return buf


def fill_rate(system: IFS, uniforms: np.ndarray | int, settings: SearchSettings = SearchSettings()) -> float:
    """Fraction of the canvas that a 1x1-point rendering of ``system`` covers.

    ``uniforms`` is the chaos game's uniform stream (at least ``points - 1`` values),
    or an integer key of the counter-based stream.
    """
    buf = _buffers(settings)
    n = settings.points
    if isinstance(uniforms, (int, np.integer)):
        seeds.hash_uniforms(np.uint64(uniforms), buf.uniforms)
        uniforms = buf.uniforms
    kernel.chaos_game(system.coefficients, cumulative(system.probabilities), uniforms, n, buf.xs, buf.ys)
    length, _ = kernel.drop_divergent(buf.xs, buf.ys, n, buf.drop)
    kernel.to_pixels(buf.xs, length, settings.span, float(settings.pad), buf.px)
    kernel.to_pixels(buf.ys, length, settings.span, float(settings.pad), buf.py)
    count = kernel.fill_count(buf.px, buf.py, length, buf.canvas)
    return count / float(settings.canvas * settings.canvas)


def search_official(
    num_categories: int,
    *,
    seed: int = 1,
    settings: SearchSettings = SearchSettings(),
    workers: int | None = None,
    progress: bool = False,
) -> SearchResult:
    """Reproduce the official FractalDB category search (seed 1 gives FractalDB-1k).

    The main thread draws every trial from one ``RandomState(seed)`` in the official
    order (``randint``, ``uniform`` per map, ``random(points)``); fill checks run on
    ``workers`` threads, and trials are accepted strictly in trial order.
    """
    if settings.sampler != "fractaldb":
        raise ConfigError("sampler: the official search uses the 'fractaldb' sampler; use --mode native for 'sigma'")
    _check_count(num_categories)
    workers = resolve_workers(workers)
    rs = np.random.RandomState(seed)
    categories: list[Category] = []
    pending: deque = deque()
    trial = 0
    bar = progress_bar(total=num_categories, desc="search (official)", unit="cat", enabled=progress)

    def check(system: IFS, uniforms: np.ndarray) -> float:
        return fill_rate(system, uniforms, settings)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        while len(categories) < num_categories:
            # Keep a few trials in flight per thread; each holds its uniforms (800 KB).
            while len(pending) < 4 * workers:
                system = sample_fractaldb(rs, settings.min_maps, settings.max_maps)
                uniforms = rs.random(settings.points)
                pending.append((trial, system, pool.submit(check, system, uniforms)))
                trial += 1
            t, system, fut = pending.popleft()
            fill = fut.result()
            if fill >= settings.fill_threshold:
                categories.append(Category(len(categories), system, t, fill))
                bar.update(1)
        for _, _, fut in pending:
            fut.cancel()
    bar.close()
    # Trials drawn past the last acceptance were speculative: count only those needed.
    return SearchResult(categories, categories[-1].trial + 1 if categories else 0)


def _native_category(index: int, seed: int, settings: SearchSettings) -> Category:
    rng = np.random.default_rng([seed, index])
    sampler: Callable = sample_fractaldb if settings.sampler == "fractaldb" else sample_sigma
    for trial in range(settings.max_trials_per_category):
        system = sampler(rng, settings.min_maps, settings.max_maps)
        key = int(rng.integers(0, 2**63))
        fill = fill_rate(system, key, settings)
        if fill >= settings.fill_threshold:
            return Category(index, system, trial, fill)
    raise ConfigError(
        f"fill_threshold: no system reached {settings.fill_threshold} in "
        f"{settings.max_trials_per_category} trials for category {index}; lower the threshold"
    )


def search_native(
    num_categories: int,
    *,
    seed: int = 0,
    settings: SearchSettings = SearchSettings(),
    start: int = 0,
    workers: int | None = None,
    progress: bool = False,
) -> SearchResult:
    """Search categories ``start .. start + num_categories - 1``, each from its own ``(seed, i)`` stream."""
    _check_count(num_categories)
    results = thread_map(
        lambda i: _native_category(i, seed, settings),
        range(start, start + num_categories),
        workers=workers,
        desc="search (native)",
        unit="cat",
        progress=progress,
    )
    return SearchResult(results, sum(c.trial + 1 for c in results))


def search(
    num_categories: int,
    *,
    mode: str = "native",
    seed: int | None = None,
    settings: SearchSettings = SearchSettings(),
    workers: int | None = None,
    progress: bool = False,
) -> SearchResult:
    """Search ``num_categories`` categories in ``mode`` (``official`` or ``native``).

    ``seed`` defaults to 1 in official mode (FractalDB-1k) and 0 in native mode.
    """
    check_choice("mode", mode, SEARCH_MODES)
    if seed is not None and (not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"seed: {seed!r} is not valid; use a non-negative integer")
    if mode == "official":
        return search_official(
            num_categories, seed=1 if seed is None else seed, settings=settings, workers=workers, progress=progress
        )
    return search_native(num_categories, seed=0 if seed is None else seed, settings=settings, workers=workers, progress=progress)


def _check_count(num_categories: int) -> None:
    if not isinstance(num_categories, int) or num_categories < 1:
        raise ConfigError(f"categories: {num_categories!r} is not valid; use a positive integer")
