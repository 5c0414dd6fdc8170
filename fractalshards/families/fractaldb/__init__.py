"""The ``fractaldb`` family: 2-D IFS fractals (FractalDB, Kataoka et al., ACCV 2020 / IJCV 2022), and OFDB's presets.

Modules: :mod:`.ifs` (IFS math, samplers, weight rows), :mod:`.search` (the category search and
its fill rule), :mod:`.instances` (25 weight rows x 4 flips x 10 patches), :mod:`.render` (render
settings and the renderer), :mod:`.kernels` (numba kernels), :mod:`.export` (the official CSV
format) and :mod:`.family` (the :class:`~fractalshards.families.Family` glue and the presets).
"""

from .family import FAMILY, FractalDB

__all__ = ["FAMILIES", "FAMILY", "FractalDB"]

#: The families this package registers.
FAMILIES = (FAMILY,)
