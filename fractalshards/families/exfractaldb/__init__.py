"""The ``exfractaldb`` family: ExFractalDB (Kataoka et al., CVPR 2022) and MV-FractalDB (Yamada et al., IROS 2021).

:mod:`.kernels` holds the 3-D IFS orbits and the official renderer's arithmetic (no OpenGL);
:mod:`.family` the categories, the weight-row instances, the views and the two modes.
"""

from .family import FAMILY

__all__ = ["FAMILIES", "FAMILY"]

#: The families this package registers.
FAMILIES = (FAMILY,)
