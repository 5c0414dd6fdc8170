"""The ``fractaldb`` family: 2-D IFS fractals (FractalDB, Kataoka et al., ACCV 2020 / IJCV 2022).

Categories come from :mod:`fractalshards.families.fractaldb.search` (official: FractalDB-1k's numpy
stream; native: one stream per category), instances are 25 weight rows x 4 flips x
10 patch variants (:mod:`fractalshards.families.fractaldb.instances`), pixels from
:mod:`fractalshards.families.fractaldb.render`. OFDB (one image per category) is this family with one
instance, ``(weight 0, flip 0, patch 0)``.
"""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError
from ...results import Rendered
from .. import Family, Preset, settings_from_options
from .export import OFFICIAL_CSV, write_official_csv
from .ifs import IFS
from .instances import INSTANCES_PER_CATEGORY, Instance, instance_from_index
from .render import GRAY_VALUE, MODES, RenderSettings, render, weight_rows
from .search import Category, SearchSettings, category_from_dict, category_to_dict, search, search_native

__all__ = ["FractalDB", "FAMILY", "system_record"]

#: Stride through the instance indices of a preview; coprime with 1000 and not a multiple of
#: 25, 4 or 10, so consecutive picks change the weight row, flip and patch.
_PREVIEW_STRIDE = 389
#: Bytes per sample at 362 px (direct 1-bit PNG ~7.1 KiB + JSON ~0.7 KiB + tar headers and padding ~2.4 KiB),
#: measured on FractalDB-1k (the pillow encoder: ~10.9 KiB).
BYTES_PER_SAMPLE_362 = 10_400
_FDB = "Kataoka et al., ACCV 2020"
_OFDB = "Nakamura et al., ICCV 2023"


def system_record(system: IFS, row: Any, settings: RenderSettings) -> dict:
    """The IFS part of a sample record: the weighted maps and the probabilities."""
    return {
        "maps": (system.coefficients * row).tolist(),
        "probabilities": system.probabilities.tolist(),
        "render": settings.to_dict(),
    }


class FractalDB(Family):
    """IFS fractal categories with FractalDB's instance space and renderer."""

    name = "fractaldb"
    paper = "FractalDB: Kataoka et al., Pre-training without Natural Images, ACCV 2020 / IJCV 2022"
    instances_per_category = INSTANCES_PER_CATEGORY
    image_size = 362
    Settings = RenderSettings
    SearchSettings = SearchSettings
    export_formats = (OFFICIAL_CSV,)
    instance_parts = (
        ("weight", "weight row 0..24 (the official file names' 'ww')"),
        ("flip", "flip 0..3"),
        ("patch", "patch variant 0..9 (the official file names' 'count')"),
    )
    presets = (
        Preset(
            "fractaldb-1k",
            "fractaldb",
            "FractalDB-1k: the 1,000 official categories",
            1000,
            "official",
            _FDB,
            file="fractaldb-1k.json",
        ),
        Preset(
            "fractaldb-100", "fractaldb", "the first 100 categories of FractalDB-1k", 100, "official", _FDB, base="fractaldb-1k"
        ),
        Preset(
            "fractaldb-10k",
            "fractaldb",
            "10,000 native FractalDB categories (seed 0), generated on demand",
            10000,
            "native",
            _FDB,
            native_seed=0,
        ),
        Preset(
            "ofdb-1k",
            "fractaldb",
            "2D-OFDB-1k: the FractalDB-1k categories, one image each",
            1000,
            "official",
            _OFDB,
            instances=1,
            base="fractaldb-1k",
        ),
        Preset(
            "ofdb-21k",
            "fractaldb",
            "2D-OFDB-21k: 21,000 native FractalDB categories, one image each",
            21000,
            "native",
            _OFDB,
            instances=1,
            native_seed=0,
        ),
    )

    def default_seed(self, mode: str) -> int:
        """Seed 1 in official mode (FractalDB-1k), 0 in native mode."""
        return 1 if mode == "official" else 0

    def default_name(self, mode: str, seed: int, settings: SearchSettings, count: int) -> str:
        """``<mode>-<sampler>-seed<seed>-<count>``, e.g. ``native-sigma-seed0-500``."""
        return f"{mode}-{settings.sampler}-seed{seed}-{count}"

    def export(self, manifest, fmt: str, out) -> list:
        """``official-csv``: ``out/00000.csv ...`` as FractalDB's release."""
        self.check_export_format(fmt)
        return write_official_csv(manifest, out)

    def search(self, count, *, mode, seed, settings, workers=None, progress=False):
        """As :meth:`fractalshards.families.Family.search`."""
        return search(count, mode=mode, seed=seed, settings=settings, workers=workers, progress=progress)

    def search_at(self, indices, *, mode, seed, settings) -> list:
        """Native categories are independent: each searched alone (official ones share one stream)."""
        if mode != "native":
            return super().search_at(indices, mode=mode, seed=seed, settings=settings)
        return [search_native(1, seed=seed, settings=settings, start=i, workers=1).categories[0] for i in indices]

    def category_to_dict(self, category: Category) -> dict:
        """As :meth:`fractalshards.families.Family.category_to_dict`."""
        return category_to_dict(category)

    def category_from_dict(self, data: dict) -> Category:
        """As :meth:`fractalshards.families.Family.category_from_dict`."""
        return category_from_dict(data)

    def subset_trials(self, manifest, categories):
        """As :meth:`fractalshards.families.Family.subset_trials`."""
        # Official: one stream, so the first k categories took trials up to the k-th's; native: per category.
        if manifest.mode == "official":
            return categories[-1].trial + 1
        return sum(c.trial + 1 for c in categories)

    def instance_fields(self, index: int) -> dict:
        """As :meth:`fractalshards.families.Family.instance_fields`."""
        inst = instance_from_index(self.check_instance(index))
        return {"weight": inst.weight, "flip": inst.flip, "patch": inst.patch}

    def instance_index(self, **parts: int) -> int:
        """As :meth:`fractalshards.families.Family.instance_index`."""
        names = ("weight", "flip", "patch")
        if sorted(parts) != sorted(names) or any(parts[n] is None for n in names):
            raise ConfigError("instance: give --instance I, or all three of --weight W --flip F --patch P")
        return Instance(**{n: parts[n] for n in names}).index

    def instance_label(self, index: int) -> str:
        """As :meth:`fractalshards.families.Family.instance_label`."""
        inst = instance_from_index(index)
        return f"#{index} w{inst.weight:02d} f{inst.flip} p{inst.patch}"

    def preview_instances(self, count: int, available: int) -> list[int]:
        """As :meth:`fractalshards.families.Family.preview_instances`."""
        # Instance 2 first (identity weight row, flip 0, patch 0), then a stride through all variants.
        if available < INSTANCES_PER_CATEGORY:
            return list(range(count))
        return [(2 + k * _PREVIEW_STRIDE) % available for k in range(count)]

    def render_settings(self, manifest, options: dict) -> RenderSettings:
        """As :meth:`fractalshards.families.Family.render_settings`."""
        mode = options.get("mode") or (manifest.render_mode if manifest.render_mode in MODES else "native")
        return settings_from_options(RenderSettings, {**options, "mode": mode}, "render setting", self.name)

    def fresh_instances(self, settings: RenderSettings) -> str | None:
        """As :meth:`fractalshards.families.Family.fresh_instances`: native patch drawings have a patch
        variant for every index (masks keyed by it); official and point renders have the released 1,000."""
        if settings.mode == "official":
            return "official mode renders the released instance space (1,000 per category)"
        if settings.draw != "patch":
            return "point drawings have no patch variants past the 1,000 weight x flip x patch instances"
        return None

    def render(self, manifest, category: int, instance: int, settings: RenderSettings) -> Rendered:
        """As :meth:`fractalshards.families.Family.render`."""
        inst = instance_from_index(self.check_instance(instance, settings), unbounded=True)
        return render(manifest.category(category).system, category, inst, settings)

    def record(self, manifest, category, instance, settings, rendered) -> dict:
        """As :meth:`fractalshards.families.Family.record`."""
        inst = instance_from_index(self.check_instance(instance, settings), unbounded=True)
        fields = {"weight": inst.weight, "flip": inst.flip, "patch": inst.patch}
        row = weight_rows(settings.weight_delta)[fields["weight"]]
        return {**fields, **system_record(manifest.category(category).system, row, settings)}

    def grey_level(self, settings: RenderSettings) -> int | None:
        """Grey renders are two-level, 0 and the official 127 (patches and points alike)."""
        return GRAY_VALUE if settings.color == "gray" else None

    def device_renderer(self) -> type:
        """As :meth:`fractalshards.families.Family.device_renderer` (:mod:`.gpu`: numba-cuda)."""
        from .gpu import FractalGPU

        return FractalGPU

    def instance_of(self, index: int) -> Instance:
        """The :class:`~fractalshards.families.fractaldb.instances.Instance` (weight row, flip, patch
        variant) of instance ``index``."""
        return instance_from_index(index)

    def image_shape(self, manifest, settings: RenderSettings) -> tuple[int, ...]:
        """``(size, size)``, or ``(size, size, 3)`` in colour."""
        return (settings.size, settings.size, 3) if settings.color == "color" else (settings.size, settings.size)

    def bytes_per_sample(self, settings: RenderSettings) -> float:
        """As :meth:`fractalshards.families.Family.bytes_per_sample`."""
        per_sample = BYTES_PER_SAMPLE_362 * (settings.size / 362.0) ** 2 if settings.draw == "patch" else 4000
        return per_sample * (3 if settings.color == "color" else 1)

    def describe_settings(self, settings: RenderSettings) -> str:
        """As :meth:`fractalshards.families.Family.describe_settings`."""
        s = settings
        return (
            f"mode={s.mode} draw={s.draw} color={s.color} size={s.size} points={s.points} pad={s.pad} "
            f"weight_delta={s.weight_delta} seed={s.seed}"
        )


FAMILY = FractalDB()
