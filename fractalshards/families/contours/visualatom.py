"""The ``visualatom`` family: VisualAtom (Takashima et al., CVPR 2023), circular harmonics with Perlin-noise orbits.

A category is a contour: ``V`` vertices on an oval of radius ``r0``, ``L`` orbits, a Perlin
coefficient, a line-width term and two sinusoid frequencies; an instance redraws every
orbit's grey level and noise positions and the centre. 512 x 512 grey lines on black.
Official search: 20 threads of 50 categories (``visualatom-1k``); kernels in
:mod:`fractalshards.families.contours.kernels`; the shared machinery in :mod:`.family`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import check_int
from .. import Preset, SettingsDict, setting
from .family import RadialFamily, check_contour_search
from .kernels import (
    GRAD,
    IMAGE_SIZE,
    VISUALATOM_SPEC,
    visualatom_image,
    visualatom_native_category,
    visualatom_official_categories,
)

__all__ = ["VisualAtomSearch", "VisualAtom", "FAMILY"]

_VA = "Takashima et al., CVPR 2023"


@dataclass(frozen=True)
class VisualAtomSearch(SettingsDict):
    """Distributions of a category (the official ``make_VisualAtom.sh`` values) and the official thread layout."""

    min_vertices: int = setting(200, "fewest vertices of a contour")
    max_vertices: int = setting(1000, "most vertices of a contour")
    min_lines: int = setting(1, "fewest lines (orbits) of a category")
    max_lines: int = setting(200, "most lines (orbits) of a category")
    max_perlin: float = 4.0
    max_line_width: float = 0.1
    min_radius: int = 10
    max_radius: int = 60
    max_freq: int = 20
    categories_per_thread: int = 50
    instances_per_category: int = 1000

    def __post_init__(self) -> None:
        check_contour_search(self, ("max_perlin", "max_line_width"))
        check_int("max_freq", self.max_freq, 1)


class VisualAtom(RadialFamily):
    """VisualAtom categories and instances."""

    name = "visualatom"
    paper = "VisualAtom: Takashima et al., Visual Atoms: Pre-training Vision Transformers with Sinusoidal Waves, CVPR 2023"
    SearchSettings = VisualAtomSearch
    presets = (
        Preset(
            "visualatom-1k",
            "visualatom",
            "VisualAtom-1k: the 1,000 official categories",
            1000,
            "official",
            _VA,
            file="visualatom-1k.json",
        ),
        Preset(
            "visualatom-21k",
            "visualatom",
            "21,000 native VisualAtom categories (seed 0), generated on demand",
            21000,
            "native",
            _VA,
            native_seed=0,
        ),
    )
    spec_fields = VISUALATOM_SPEC
    grey_levels = 256  # randint(0, 255)
    rcdb = False

    def _replay(self, state, count, instances, spec, out, stride, states, shapes) -> None:
        visualatom_official_categories(state, count, instances, spec, out, stride, states, shapes)

    def _native_category(self, key, spec, row) -> None:
        visualatom_native_category(key, spec, row)

    def _image(self, p, shape, greys, ux, uy):
        return visualatom_image(
            IMAGE_SIZE,
            int(p["vertices"]),
            p["radius"],
            p["oval_x"],
            p["oval_y"],
            p["perlin"],
            p["line_width"],
            p["freq1"],
            p["freq2"],
            shape[0],
            shape[1],
            greys,
            ux,
            uy,
            GRAD,
        )


FAMILY = VisualAtom()
