"""Named category sets: ``fractaldb-1k``, ``fractaldb-100`` and ``fractaldb-10k``.

- ``fractaldb-1k``: the official FractalDB-1k categories (official search, seed 1),
  committed as ``manifests/fractaldb-1k.json``; renders in ``official`` mode.
- ``fractaldb-100``: the first 100 categories of ``fractaldb-1k``; ``official`` mode.
- ``fractaldb-10k``: 10,000 categories of the native search (seed 0), generated on
  first use and cached under ``$FRACTALSHARDS_CACHE`` (default
  ``~/.cache/fractalshards``); renders in ``native`` mode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .manifest import CategoryManifest
from .search import SearchSettings, search_native

__all__ = ["PRESETS", "Preset", "load_preset", "manifests_dir", "cache_dir"]


@dataclass(frozen=True)
class Preset:
    """How to obtain a named category set."""

    name: str
    description: str
    categories: int
    render_mode: str
    file: str | None = None  # committed manifest file name
    base: str | None = None  # take the first ``categories`` of this preset
    native_seed: int | None = None  # generate with the native search


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("fractaldb-1k", "FractalDB-1k: the 1,000 official categories", 1000, "official", file="fractaldb-1k.json"),
        Preset("fractaldb-100", "the first 100 categories of FractalDB-1k", 100, "official", base="fractaldb-1k"),
        Preset("fractaldb-10k", "10,000 native-mode categories (seed 0), generated on demand", 10000, "native", native_seed=0),
    )
}


def manifests_dir() -> Path:
    """Folder of the committed manifests: inside the installed package, else the source tree's."""
    packaged = Path(__file__).parent / "manifests"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "manifests"


def cache_dir() -> Path:
    """Where generated presets are cached (``$FRACTALSHARDS_CACHE`` or ``~/.cache/fractalshards``)."""
    return Path(os.environ.get("FRACTALSHARDS_CACHE", Path.home() / ".cache" / "fractalshards"))


def load_preset(name: str, *, progress: bool = False, workers: int | None = None) -> CategoryManifest:
    """Return the category manifest of preset ``name``."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"preset: {name!r} is not known; use one of {', '.join(PRESETS)}")
    if preset.file is not None:
        manifest = CategoryManifest.load(manifests_dir() / preset.file)
    elif preset.base is not None:
        manifest = load_preset(preset.base).subset(preset.categories, name=preset.name)
    else:
        cached = cache_dir() / f"{preset.name}.json"
        if cached.is_file():
            manifest = CategoryManifest.load(cached)
        else:
            settings = SearchSettings()
            result = search_native(preset.categories, seed=preset.native_seed or 0, settings=settings, workers=workers, progress=progress)
            manifest = CategoryManifest.from_search(preset.name, "native", preset.native_seed or 0, settings, result, preset.render_mode)
            cached.parent.mkdir(parents=True, exist_ok=True)
            manifest.save(cached)
    manifest.render_mode = preset.render_mode
    manifest.name = preset.name
    return manifest
