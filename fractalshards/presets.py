"""Named category sets of every family, as ``fractalshards presets`` lists them.

- ``fractaldb-1k`` (FractalDB-1k: the official categories, committed as
  ``manifests/fractaldb-1k.json``), ``fractaldb-100`` (its first 100) and ``fractaldb-10k``
  (native search, seed 0, generated on first use).
- ``visualatom-1k`` and ``rcdb-1k``: the official categories (official search, seed 1,
  committed); ``visualatom-21k`` and ``rcdb-21k``: native, generated on first use.
- ``ofdb-1k``: the FractalDB-1k categories, one image each (instance 0: weight row 0, flip
  0, patch 0); ``ofdb-21k``: 21,000 native FractalDB categories, one image each.
- ``1p-frac``: 1,000 perturbation classes of one sigma-factor fractal, one image each;
  ``sigma`` and ``delta`` can be overridden (:func:`load_preset`'s ``search``).

Generated sets are cached under ``$FRACTALSHARDS_CACHE`` (default ``~/.cache/fractalshards``),
keyed by their search settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .cache import cache_root, locked
from .errors import ConfigError
from .families import get_family
from .manifest import CategoryManifest, canonical_hash

__all__ = ["PRESETS", "Preset", "load_preset", "manifests_dir", "cache_dir"]


@dataclass(frozen=True)
class Preset:
    """How to obtain a named category set, and what a dataset of it is by default."""

    name: str
    family: str
    description: str
    categories: int
    render_mode: str
    paper: str
    instances: int = 1000  # instances per category by default, and at most
    file: str | None = None  # committed manifest file name
    base: str | None = None  # take the first ``categories`` of this preset
    native_seed: int | None = None  # generate with the family's native search
    search: dict = field(default_factory=dict)  # search settings of a generated set


_FDB = "Kataoka et al., ACCV 2020"
_VA = "Takashima et al., CVPR 2023"
_RCDB = "Kataoka et al., CVPR 2022"
_OFDB = "Nakamura et al., ICCV 2023"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("fractaldb-1k", "fractaldb", "FractalDB-1k: the 1,000 official categories", 1000, "official", _FDB,
               file="fractaldb-1k.json"),
        Preset("fractaldb-100", "fractaldb", "the first 100 categories of FractalDB-1k", 100, "official", _FDB,
               base="fractaldb-1k"),
        Preset("fractaldb-10k", "fractaldb", "10,000 native FractalDB categories (seed 0), generated on demand", 10000,
               "native", _FDB, native_seed=0),
        Preset("visualatom-1k", "visualatom", "VisualAtom-1k: the 1,000 official categories", 1000, "official", _VA,
               file="visualatom-1k.json"),
        Preset("visualatom-21k", "visualatom", "21,000 native VisualAtom categories (seed 0), generated on demand", 21000,
               "native", _VA, native_seed=0),
        Preset("rcdb-1k", "rcdb", "RCDB-1k: the 1,000 official categories", 1000, "official", _RCDB, file="rcdb-1k.json"),
        Preset("rcdb-21k", "rcdb", "21,000 native RCDB categories (seed 0), generated on demand", 21000, "native", _RCDB,
               native_seed=0),
        Preset("ofdb-1k", "fractaldb", "2D-OFDB-1k: the FractalDB-1k categories, one image each", 1000, "official", _OFDB,
               instances=1, base="fractaldb-1k"),
        Preset("ofdb-21k", "fractaldb", "2D-OFDB-21k: 21,000 native FractalDB categories, one image each", 21000,
               "native", _OFDB, instances=1, native_seed=0),
        Preset("1p-frac", "1p-frac", "1p-frac: 1,000 perturbations of one fractal (sigma 3.5, delta 0.1), one image each",
               1000, "official", "Nakamura et al., ECCV 2024", instances=1, native_seed=0),
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
    return cache_root()


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a one-line error listing the known ones."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ConfigError(f"preset: {name!r} is not known; use one of {', '.join(PRESETS)}")
    return preset


def load_preset(name: str, *, progress: bool = False, workers: int | None = None,
                search: dict | None = None, categories: int | None = None) -> CategoryManifest:
    """Return the category manifest of preset ``name``.

    ``search`` overrides search settings of a generated preset (``{"sigma": 4.0}`` for
    ``1p-frac``); ``None`` values are ignored. A committed set takes no overrides.
    ``categories`` takes only the first ``N`` categories (named ``<preset>[:N]``); a
    generated preset then searches only those (its categories are independent, so they
    equal the full set's first ``N``).
    """
    preset = get_preset(name)
    family = get_family(preset.family)
    if categories is not None and (not isinstance(categories, int) or not 1 <= categories <= preset.categories):
        raise ConfigError(f"categories: {categories!r} is out of range for {name}; use 1..{preset.categories}")
    if categories == preset.categories:
        categories = None
    overrides = {k: v for k, v in (search or {}).items() if v is not None}
    if overrides and preset.native_seed is None:
        key = sorted(overrides)[0]
        raise ConfigError(f"{key}: {name!r} is a fixed set of categories; --{key.replace('_', '-')} applies to "
                          "generated presets (or 'fractalshards search')")
    if preset.file is not None:
        manifest = CategoryManifest.load(manifests_dir() / preset.file)
    elif preset.base is not None:
        manifest = load_preset(preset.base).subset(preset.categories, name=preset.name)
    else:
        settings = family.search_settings({**preset.search, **overrides})
        seed = preset.native_seed or 0
        tag = "" if not overrides else "-" + canonical_hash(settings.to_dict()).split(":", 1)[1][:12]
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        full = folder / f"{preset.name}{tag}.json"
        manifest = _cached(full, settings, preset.categories, family.name)
        if manifest is None:
            count = categories or preset.categories
            cached = full if categories is None else folder / f"{preset.name}{tag}[{count}].json"
            with locked(folder / f".{cached.name}.lock"):  # one process generates; the others wait and read it
                manifest = _cached(cached, settings, count, family.name)
                if manifest is None:
                    result = family.search(count, mode="native", seed=seed, settings=settings, workers=workers,
                                           progress=progress)
                    manifest = CategoryManifest.from_search(preset.name, "native", seed, settings, result,
                                                            preset.render_mode, family=family.name)
                    manifest.save(cached)
    if manifest.family_name != preset.family:
        raise ConfigError(f"preset: {name!r} holds {manifest.family_name} categories, not {preset.family}; "
                          "reinstall fractalshards")
    if categories is not None and len(manifest) > categories:
        manifest = manifest.subset(categories)
    manifest.render_mode = preset.render_mode
    manifest.name = preset.name if categories is None else f"{preset.name}[:{categories}]"
    return manifest


def _cached(path: Path, settings: object, count: int, family: str) -> CategoryManifest | None:
    # A cache written by another version (or for other settings) is generated again, not trusted.
    if not path.is_file():
        return None
    try:
        manifest = CategoryManifest.load(path)
    except ConfigError:
        return None
    if manifest.search != settings.to_dict() or len(manifest) != count or manifest.family_name != family:
        return None
    return manifest
