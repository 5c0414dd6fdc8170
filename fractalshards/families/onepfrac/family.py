"""The ``1p-frac`` family: one fractal, perturbed (Nakamura et al., "Scaling Backwards", ECCV 2024).

One base system of ``maps`` (2) maps from Anderson & Farrell's sigma-factor sampler, its
sigma-factor drawn in ``[sigma - 0.1, sigma + 0.1]``; class ``s`` multiplies every
coefficient of every map by its own ``uniform(1 - delta, 1 + delta)`` (probabilities
follow ``|det|`` again), drawn again until the 512 px, 100,000-point fill rate is
greater than ``fill_threshold`` (0.05). One image per class, rendered like a FractalDB
``official`` patch image (numpy's seed-100 point stream, 3x3 patches) at 512 px, unflipped.
Draws are native: the base from ``(seed, "base")``, class ``s`` from ``(seed, s)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, check_int
from ...limits import check
from ...parallel import thread_map
from ...results import Rendered, SearchResult
from .. import Family, Preset, SettingsDict, setting
from ..fractaldb.export import OFFICIAL_CSV, write_official_csv
from ..fractaldb.family import system_record
from ..fractaldb.ifs import IFS, sample_sigma
from ..fractaldb.instances import Instance
from ..fractaldb.render import GRAY_VALUE, RenderSettings, official_uniforms, render
from ..fractaldb.search import Category, SearchSettings, category_from_dict, category_to_dict, fill_rate

__all__ = ["OnePFracSearch", "OnePFrac", "FAMILY"]

#: The unweighted, unflipped drawing: weight row 2 is the identity, flip 1 the raw drawing.
_IDENTITY = Instance(weight=2, flip=1, patch=0)
#: Tag of the base system's stream (class streams are keyed by the class index).
_BASE = 2**32 - 1


@dataclass(frozen=True)
class OnePFracSearch(SettingsDict):
    """The base system's sampler and the perturbation classes' acceptance rule (the paper's values)."""

    sigma: float = setting(3.5, "the base system's sigma-factor", preset_override=True)
    delta: float = setting(0.1, "the perturbation range: each coefficient times uniform(1 - D, 1 + D)", preset_override=True)
    maps: int = setting(2, "maps of the base system")
    canvas: int = setting(512, "canvas of the quality check")
    pad: int = 6
    points: int = setting(100_000, "points of the quality check")
    fill_threshold: float = setting(0.05, "a class is kept when its fill rate is above this")
    max_trials_per_category: int = 10_000

    def __post_init__(self) -> None:
        check_int("maps", self.maps, 1)
        # Each map's budget sigma1 + 2 sigma2 is at most 3, so the sigma-factor must fit in 0.1 .. 3 maps - 0.1.
        top = 3.0 * self.maps - 0.1
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) or not 0.1 <= self.sigma <= top:
            raise ConfigError(
                f"sigma: {self.sigma!r} is out of range; use a number in 0.1..{top:g} for {self.maps} maps (the paper uses 3.5)"
            )
        if isinstance(self.delta, bool) or not isinstance(self.delta, (int, float)) or not 0.0 <= self.delta < 1.0:
            raise ConfigError(f"delta: {self.delta!r} is out of range; use a number in [0, 1) (the paper uses 0.1)")
        check_int("points", self.points, 64)
        check_int("pad", self.pad, 0)
        check_int("canvas", self.canvas, 2 * self.pad + 2)
        if not 0.0 <= float(self.fill_threshold) < 1.0:
            raise ConfigError(f"fill_threshold: {self.fill_threshold!r} is out of range; use a number in [0, 1)")
        check_int("max_trials_per_category", self.max_trials_per_category, 1)
        check("points", self.points, "points")
        check("canvas", self.canvas, "image_size")
        check("maps", self.maps, "maps")

    def fill_settings(self) -> SearchSettings:
        """The fill check's canvas, pad and points in the form :func:`fractalshards.families.fractaldb.search.fill_rate` takes."""
        return SearchSettings(canvas=self.canvas, pad=self.pad, points=self.points, fill_threshold=self.fill_threshold)


class OnePFrac(Family):
    """1p-frac: perturbation classes of one sigma-factor system, one image each."""

    name = "1p-frac"
    paper = "1p-frac: Nakamura et al., Scaling Backwards: Minimal Synthetic Pre-training?, ECCV 2024"
    search_modes = ("native",)
    instances_per_category = 1
    Settings = RenderSettings
    SearchSettings = OnePFracSearch
    export_formats = (OFFICIAL_CSV,)
    presets = (
        Preset(
            "1p-frac",
            "1p-frac",
            "1p-frac: 1,000 perturbations of one fractal (sigma 3.5, delta 0.1), one image each",
            1000,
            "official",
            "Nakamura et al., ECCV 2024",
            instances=1,
            native_seed=0,
        ),
    )
    render_overrides = {"mode": "official", "size": 512, "points": 100_000, "pad": 6}

    def base_system(self, seed: int, settings: OnePFracSearch) -> IFS:
        """The one system every class perturbs."""
        rng = np.random.default_rng([seed, _BASE])
        s = float(settings.sigma)
        return sample_sigma(rng, settings.maps, settings.maps, alpha_range=(s - 0.1, s + 0.1))

    def perturb(self, base: IFS, rng: np.random.Generator, delta: float) -> IFS:
        """One draw of a class: every coefficient times its own ``uniform(1 - delta, 1 + delta)``."""
        factors = rng.uniform(1.0 - delta, 1.0 + delta, base.coefficients.shape)
        coefficients = base.coefficients * factors
        try:
            return IFS.from_coefficients(coefficients)
        except ValueError:  # all determinants zero: uniform selection, and the fill check decides
            return IFS(coefficients, np.full(len(coefficients), 1.0 / len(coefficients)))

    def search(self, count, *, mode, seed, settings, workers=None, progress=False) -> SearchResult:
        """As :meth:`fractalshards.families.Family.search`."""
        check_int("categories", count, 1)
        self.check_search_mode(mode)  # native only: the classes are random draws, there is no official stream
        base = self.base_system(seed, settings)
        out = thread_map(
            lambda i: self._class(i, base, seed, settings),
            range(count),
            workers=workers,
            desc="search (1p-frac)",
            unit="class",
            progress=progress,
        )
        return SearchResult(out, sum(c.trial + 1 for c in out))

    def search_at(self, indices, *, mode, seed, settings) -> list:
        """Classes are independent: each searched alone."""
        self.check_search_mode(mode)
        base = self.base_system(seed, settings)
        return [self._class(i, base, seed, settings) for i in indices]

    def _class(self, index: int, base: IFS, seed: int, settings: OnePFracSearch) -> Category:
        # The images' own point stream: the fill checked is the image's.
        uniforms, check = official_uniforms(settings.points), settings.fill_settings()
        rng = np.random.default_rng([seed, index])
        for trial in range(settings.max_trials_per_category):
            system = self.perturb(base, rng, settings.delta)
            fill = fill_rate(system, uniforms, check)
            if fill > settings.fill_threshold:
                return Category(index, system, trial, fill)
        raise ConfigError(
            f"fill_threshold: class {index} found no perturbation filling more than "
            f"{settings.fill_threshold} in {settings.max_trials_per_category} trials; "
            "lower --delta or choose another --seed"
        )

    def export(self, manifest, fmt: str, out) -> list:
        """``official-csv``: ``out/00000.csv ...``, one IFS per class, as FractalDB's release."""
        self.check_export_format(fmt)
        return write_official_csv(manifest, out)

    def category_to_dict(self, category: Category) -> dict:
        """As :meth:`fractalshards.families.Family.category_to_dict`."""
        return category_to_dict(category)

    def category_from_dict(self, data: dict) -> Category:
        """As :meth:`fractalshards.families.Family.category_from_dict`."""
        return category_from_dict(data)

    def subset_trials(self, manifest, categories) -> int:
        """As :meth:`fractalshards.families.Family.subset_trials`."""
        return sum(c.trial + 1 for c in categories)

    def render(self, manifest, category: int, instance: int, settings: RenderSettings) -> Rendered:
        """As :meth:`fractalshards.families.Family.render`."""
        self.check_instance(instance)
        return render(manifest.category(category).system, category, _IDENTITY, settings)

    def device_renderer(self) -> type:
        """As :meth:`fractalshards.families.Family.device_renderer`: FractalDB's kernels, one drawing per class."""
        from ..fractaldb.gpu import FractalGPU

        return FractalGPU

    def instance_of(self, index: int) -> Instance:
        """Every instance is the category's one drawing (no weight row, flip or patch variant)."""
        self.check_instance(index)
        return _IDENTITY

    def record(self, manifest, category, instance, settings, rendered) -> dict:
        """As :meth:`fractalshards.families.Family.record`."""
        return system_record(manifest.category(category).system, 1.0, settings)

    def grey_level(self, settings: RenderSettings) -> int | None:
        """Grey renders are two-level, 0 and the official 127 (patches and points alike)."""
        return GRAY_VALUE if settings.color == "gray" else None

    def image_shape(self, manifest, settings: RenderSettings) -> tuple[int, ...]:
        """``(size, size)``, or ``(size, size, 3)`` in colour."""
        return (settings.size, settings.size, 3) if settings.color == "color" else (settings.size, settings.size)

    def bytes_per_sample(self, settings: RenderSettings) -> float:
        """As :meth:`fractalshards.families.Family.bytes_per_sample`."""
        return 10_900 * (settings.size / 362.0) ** 2 * (3 if settings.color == "color" else 1)


FAMILY = OnePFrac()
