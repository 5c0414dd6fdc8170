"""A family defined by the test suite alone: registered through the ``fractalshards.families`` entry
point, it must build, stream, verify and preview without touching any module of fractalshards.

A category is a pair of stripe frequencies; an instance shifts the stripes by a counter-based
draw. Images are grey, ``size`` x ``size``, many-valued (so they take the 8-bit PNG path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fractalshards.errors import ConfigError, check_int
from fractalshards.families import Family, SettingsDict, setting
from fractalshards.results import Rendered, SearchResult
from fractalshards.seeds import hash_uniforms, stream_key


@dataclass(frozen=True)
class ToyCategory:
    index: int
    fx: float
    fy: float


@dataclass(frozen=True)
class ToySettings(SettingsDict):
    mode: str = "native"
    size: int = 24
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode != "native":
            raise ConfigError(f"mode: {self.mode!r} is not known; the toy family renders in native mode only")
        check_int("size", self.size, 8)
        check_int("seed", self.seed, 0)


@dataclass(frozen=True)
class ToySearch(SettingsDict):
    max_frequency: float = setting(3.0, "toy: the highest stripe frequency")


class Toy(Family):
    name = "toy"
    paper = "none: the test suite's own family"
    search_modes = ("native",)
    instances_per_category = 5
    image_size = 24
    Settings = ToySettings
    SearchSettings = ToySearch

    def search(self, count, *, mode, seed, settings, workers=None, progress=False):
        self.check_search_mode(mode)
        u = np.empty(2 * count)
        hash_uniforms(stream_key("toy", "categories", seed), u)
        cats = [
            ToyCategory(i, 0.5 + u[2 * i] * settings.max_frequency, 0.5 + u[2 * i + 1] * settings.max_frequency)
            for i in range(count)
        ]
        return SearchResult(cats, count)

    def category_to_dict(self, category):
        return {"index": category.index, "fx": category.fx, "fy": category.fy}

    def category_from_dict(self, data):
        return ToyCategory(int(data["index"]), float(data["fx"]), float(data["fy"]))

    def render(self, manifest, category, instance, settings):
        self.check_instance(instance)
        cat = manifest.category(category)
        shift = np.empty(1)
        hash_uniforms(stream_key("toy", "shift", settings.seed, category, instance), shift)
        y, x = np.mgrid[0 : settings.size, 0 : settings.size] / settings.size
        wave = np.sin(2 * np.pi * (cat.fx * x + cat.fy * y + shift[0]))
        image = np.round((wave + 1.0) * 127.5).astype(np.uint8)
        return Rendered(image, False)

    def record(self, manifest, category, instance, settings, rendered):
        cat = manifest.category(category)
        return {"fx": cat.fx, "fy": cat.fy, "render": settings.to_dict()}


FAMILY = Toy()
