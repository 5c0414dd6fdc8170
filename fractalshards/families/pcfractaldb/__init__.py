"""The ``pc-fractaldb`` family: PC-FractalDB (Yamada et al., CVPR 2022), 3-D fractal point clouds as samples.

It reuses ExFractalDB's categories and orbits (:mod:`fractalshards.families.exfractaldb`); :mod:`.family`
makes the mixed point clouds of the ``points`` sample kind.
"""

from .family import FAMILY

__all__ = ["FAMILIES", "FAMILY"]

#: The families this package registers.
FAMILIES = (FAMILY,)
