"""Named category sets (presets) of every registered family, as ``fractalshards presets`` lists them.

Each family declares its own (:attr:`fractalshards.families.Family.presets`): a committed
manifest (``manifests/<file>``, shipped inside the wheel), the first categories of another
preset, or a set generated on first use by the family's native search. Generated sets are
cached under ``$FRACTALSHARDS_CACHE`` (default ``~/.cache/fractalshards``), keyed by their
search settings; a cached file that does not match its settings is generated again.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from .categories import CategoryManifest
from .errors import ConfigError
from .families import Preset, family_names, get_family
from .hashing import canonical_hash, version_id
from .kinds import get_kind
from .storage import cache_root, locked

log = logging.getLogger(__name__)

__all__ = ["Preset", "all_presets", "get_preset", "load_preset", "load_source", "manifests_dir", "preset_table"]


def all_presets() -> dict[str, Preset]:
    """Every registered family's presets by name, in registry order (``fractaldb`` first)."""
    out: dict[str, Preset] = {}
    for name in family_names():
        for preset in get_family(name).presets:
            if preset.family != name:
                raise ConfigError(f"preset: {preset.name!r} is declared by the {name} family but names {preset.family!r}")
            out.setdefault(preset.name, preset)
    return out


def preset_table() -> list[dict]:
    """One row per preset, as ``fractalshards presets`` lists them (``--json`` prints these rows): name,
    family, sample kind, categories, instances, samples, image size, render mode, paper, description and
    where its categories come from."""
    rows = []
    for p in all_presets().values():
        family = get_family(p.family)
        samples = family.groups_of(p.categories) * p.instances  # segmentation images are one group
        rows.append(
            {
                "name": p.name,
                "family": p.family,
                "kind": get_kind(family.sample_kind).name,
                "categories": p.categories,
                "instances": p.instances,
                "images": samples,
                "samples": samples,
                "size": family.image_size,
                "render_mode": p.render_mode,
                "paper": p.paper,
                "description": p.description,
                "source": "committed" if p.file or p.base else "generated on first use, cached",
            }
        )
    return rows


def __getattr__(name: str):
    # PRESETS is computed on first use: listing presets loads every family (PEP 562).
    if name == "PRESETS":
        return all_presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def manifests_dir() -> Path:
    """Folder of the committed manifests: inside the installed package, else the source tree's."""
    packaged = Path(__file__).parent / "manifests"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "manifests"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a one-line error listing the known ones."""
    preset = all_presets().get(name)
    if preset is None:
        raise ConfigError(f"preset: {name!r} is not known; use one of {', '.join(all_presets())}")
    return preset


def load_preset(
    name: str, *, progress: bool = False, workers: int | None = None, search: dict | None = None, categories: int | None = None
) -> CategoryManifest:
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
        raise ConfigError(
            f"{key}: {name!r} is a fixed set of categories; --{key.replace('_', '-')} applies to "
            "generated presets (or 'fractalshards search')"
        )
    if preset.file is not None:
        manifest = CategoryManifest.load(manifests_dir() / preset.file)
    elif preset.base is not None:
        manifest = load_preset(preset.base).subset(preset.categories, name=preset.name)
    else:
        settings = family.search_settings({**preset.search, **overrides})
        seed = preset.native_seed or 0
        tag = "" if not overrides else "-" + version_id(canonical_hash(settings.to_dict()), 12)
        folder = cache_root()
        folder.mkdir(parents=True, exist_ok=True)
        full = folder / f"{preset.name}{tag}.json"
        manifest = _cached(full, settings, preset.categories, family.name)
        if manifest is None:
            count = categories or preset.categories
            cached = full if categories is None else folder / f"{preset.name}{tag}[{count}].json"
            with locked(folder / f".{cached.name}.lock"):  # one process generates; the others wait and read it
                manifest = _cached(cached, settings, count, family.name)
                if manifest is None:
                    result = family.search(count, mode="native", seed=seed, settings=settings, workers=workers, progress=progress)
                    manifest = CategoryManifest.from_search(
                        preset.name, "native", seed, settings, result, preset.render_mode, family=family.name
                    )
                    manifest.save(cached)
    if manifest.family_name != preset.family:
        raise ConfigError(
            f"preset: {name!r} holds {manifest.family_name} categories, not {preset.family}; reinstall fractalshards"
        )
    if categories is not None and len(manifest) > categories:
        manifest = manifest.subset(categories)
    return manifest.with_names(
        name=preset.name if categories is None else f"{preset.name}[:{categories}]", render_mode=preset.render_mode
    )


def load_source(
    *,
    preset: str | None = None,
    manifest: str | Path | None = None,
    categories: int | None = None,
    search: dict | None = None,
    progress: bool = False,
    workers: int | None = None,
) -> CategoryManifest:
    """The categories a command names: preset ``preset`` (:func:`load_preset`, with ``search`` overrides
    of a generated one) or the manifest file ``manifest``; ``categories`` keeps only the first N.

    Search overrides (``None`` values are ignored) apply to generated presets only: a manifest file
    keeps its categories, and an override given with one is a one-line error naming its flag."""
    if (preset is None) == (manifest is None):
        raise ConfigError("source: give exactly one of --preset NAME and --manifest FILE")
    if preset is not None:
        return load_preset(preset, progress=progress, workers=workers, search=search, categories=categories)
    given = [k for k, v in (search or {}).items() if v is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{given[0]}: {flag} applies to a generated --preset; a --manifest keeps its categories")
    loaded = CategoryManifest.load(manifest)
    return loaded.subset(categories) if categories is not None and categories < len(loaded) else loaded


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
    # A cache folder may be shared: spot-check the first category and one at random against a fresh search.
    fam = get_family(family)
    picks = sorted({0, random.SystemRandom().randrange(len(manifest))})
    fresh = fam.search_at(picks, mode=manifest.mode, seed=manifest.seed, settings=settings)
    if [fam.category_to_dict(c) for c in fresh] != [fam.category_to_dict(manifest.categories[i]) for i in picks]:
        log.warning("%s: cached categories do not match a fresh search; searching again", path)
        return None
    return manifest
