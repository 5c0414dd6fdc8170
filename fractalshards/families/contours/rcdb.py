"""The ``rcdb`` family: RCDB, the Radial Contour DataBase (Kataoka et al., CVPR 2022).

A category is a radial contour: ``V`` vertices (exponential, mean 100), ``L`` lines, a
Perlin coefficient and a line-width term; an instance redraws every line's grey level and
noise positions, and the radius, ovals and centre. 512 x 512 grey lines on white.
Official search: 10 threads of 100 categories (``rcdb-1k``); kernels in
:mod:`fractalshards.families.contours.kernels`; the shared machinery in :mod:`.family`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from .. import Preset, SettingsDict, setting
from .family import RadialFamily, check_contour_search
from .kernels import GRAD, IMAGE_SIZE, RCDB_SPEC, rcdb_image, rcdb_native_category, rcdb_official_categories

__all__ = ["RCDBSearch", "RCDB", "FAMILY"]

_RCDB = "Kataoka et al., CVPR 2022"


@dataclass(frozen=True)
class RCDBSearch(SettingsDict):
    """Distributions of a category (the official ``RCDB_render.sh`` values) and the official thread layout."""

    vertex_mean: float = 100.0
    min_vertices: int = setting(3, "fewest vertices of a contour")
    max_vertices: int = setting(200, "most vertices of a contour")
    min_lines: int = setting(1, "fewest lines (orbits) of a category")
    max_lines: int = setting(200, "most lines (orbits) of a category")
    max_perlin: float = 4.0
    max_line_width: float = 0.1
    min_radius: int = 0
    max_radius: int = 100
    categories_per_thread: int = 100
    instances_per_category: int = 1000

    def __post_init__(self) -> None:
        check_contour_search(self, ("vertex_mean", "max_perlin", "max_line_width"))
        if self.vertex_mean <= 0:
            raise ConfigError(f"vertex_mean: {self.vertex_mean!r} must be positive")


class RCDB(RadialFamily):
    """RCDB categories and instances."""

    name = "rcdb"
    paper = "RCDB: Kataoka et al., Replacing Labeled Real-image Datasets with Auto-generated Contours, CVPR 2022"
    SearchSettings = RCDBSearch
    presets = (
        Preset("rcdb-1k", "rcdb", "RCDB-1k: the 1,000 official categories", 1000, "official", _RCDB, file="rcdb-1k.json"),
        Preset(
            "rcdb-21k",
            "rcdb",
            "21,000 native RCDB categories (seed 0), generated on demand",
            21000,
            "native",
            _RCDB,
            native_seed=0,
        ),
    )
    spec_fields = RCDB_SPEC
    grey_levels = 257  # randint(0, 256): 256 draws as 255 (Pillow clips the fill)
    rcdb = True
    typical_bytes = 35_000

    def _replay(self, state, count, instances, spec, out, stride, states, shapes) -> None:
        rcdb_official_categories(state, count, instances, spec, out, stride, states, shapes)

    def _native_category(self, key, spec, row) -> None:
        rcdb_native_category(key, spec, row)

    def _image(self, p, shape, greys, ux, uy):
        return rcdb_image(
            IMAGE_SIZE,
            int(p["vertices"]),
            shape[2],
            shape[3],
            shape[4],
            p["perlin"],
            p["line_width"],
            shape[0],
            shape[1],
            greys,
            ux,
            uy,
            GRAD,
        )


FAMILY = RCDB()
