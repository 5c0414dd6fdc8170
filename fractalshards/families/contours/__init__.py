"""The contour families: ``visualatom`` (Takashima et al., CVPR 2023) and ``rcdb`` (Kataoka et al., CVPR 2022).

What they share lives here once: :mod:`.perlin` (``noise.pnoise1`` bit for bit), :mod:`.lines`
(Pillow's width-1 polyline), :mod:`.kernels` (the instance renderers and the official and native
draws) and :mod:`.family` (categories as parameter rows, saved generator states, the two modes);
Python's ``random`` is replayed by :mod:`fractalshards.mt19937`. :mod:`.visualatom` and
:mod:`.rcdb` set each family's distributions, kernels and presets.
"""

from .rcdb import FAMILY as RCDB_FAMILY
from .visualatom import FAMILY as VISUALATOM_FAMILY

__all__ = ["FAMILIES", "RCDB_FAMILY", "VISUALATOM_FAMILY"]

#: The families this package registers.
FAMILIES = (VISUALATOM_FAMILY, RCDB_FAMILY)
