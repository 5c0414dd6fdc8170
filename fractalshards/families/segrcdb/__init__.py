"""The ``segrcdb`` family: SegRCDB (Shinoda et al., ICCV 2023), radial contours with per-pixel class masks.

:mod:`.kernels` draws classes, images and masks (RCDB's contours, lines and noise, from
:mod:`fractalshards.families.contours`); :mod:`.family` holds the classes, the two modes and the
official process layout.
"""

from .family import FAMILY

__all__ = ["FAMILIES", "FAMILY"]

#: The families this package registers.
FAMILIES = (FAMILY,)
