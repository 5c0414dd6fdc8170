"""The ``1p-frac`` family: perturbations of one fractal (Nakamura et al., "Scaling Backwards", ECCV 2024).

It reuses FractalDB's IFS math, fill check and renderer (:mod:`fractalshards.families.fractaldb`);
:mod:`.family` holds its sampler, acceptance rule and presets.
"""

from .family import FAMILY, OnePFrac, OnePFracSearch

__all__ = ["FAMILIES", "FAMILY", "OnePFrac", "OnePFracSearch"]

#: The families this package registers.
FAMILIES = (FAMILY,)
