"""Instances of a category: 25 weight rows x 4 flips x 10 patch variants = 1,000.

Instance index ``i`` maps to ``(weight, flip, patch)`` with the weight row varying
fastest::

    i = weight + 25 * (flip + 4 * patch)

so the first 25 instances are every weight row (flip 0, patch 0), the first 100
add every flip, and all 1,000 add every patch variant. Asking for ``K < 1000``
instances per category takes indices ``0 .. K-1``. The numbers are the official
file name's: ``NNNNN_<weight>_count_<patch>_flip<flip>.png``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from .ifs import NUM_WEIGHT_ROWS

__all__ = [
    "Instance",
    "FreshInstance",
    "NUM_FLIPS",
    "NUM_PATCHES",
    "INSTANCES_PER_CATEGORY",
    "instance_from_index",
    "official_filename",
]

NUM_FLIPS = 4
NUM_PATCHES = 10
INSTANCES_PER_CATEGORY = NUM_WEIGHT_ROWS * NUM_FLIPS * NUM_PATCHES


@dataclass(frozen=True, order=True)
class Instance:
    """One image variant of a category: weight row, flip and patch variant."""

    weight: int
    flip: int
    patch: int

    def __post_init__(self) -> None:
        for field, value, limit in (
            ("weight", self.weight, NUM_WEIGHT_ROWS),
            ("flip", self.flip, NUM_FLIPS),
            ("patch", self.patch, NUM_PATCHES),
        ):
            if not isinstance(value, int) or not 0 <= value < limit:
                raise ConfigError(f"{field}: {value!r} is out of range; use an integer in 0..{limit - 1}")

    @property
    def index(self) -> int:
        """The instance index (inverse of :func:`instance_from_index`)."""
        return self.weight + NUM_WEIGHT_ROWS * (self.flip + NUM_FLIPS * self.patch)


@dataclass(frozen=True, order=True)
class FreshInstance(Instance):
    """An instance past the released 1,000 (``FractalStream(fresh_instances=True)``, native patch
    drawing): the same mapping with patch variants 10 and on, whose masks come from streams keyed by
    the variant like the first ten's, so every index is a new image."""

    def __post_init__(self) -> None:
        for field, value, limit in (("weight", self.weight, NUM_WEIGHT_ROWS), ("flip", self.flip, NUM_FLIPS)):
            if not isinstance(value, int) or not 0 <= value < limit:
                raise ConfigError(f"{field}: {value!r} is out of range; use an integer in 0..{limit - 1}")
        if not isinstance(self.patch, int) or self.patch < 0:
            raise ConfigError(f"patch: {self.patch!r} is out of range; use a non-negative integer")


def instance_from_index(index: int, unbounded: bool = False) -> Instance:
    """Return the :class:`Instance` of ``index`` in ``0 .. 999`` (any ``index >= 0`` when ``unbounded``:
    a :class:`FreshInstance` past 999)."""
    top = None if unbounded else INSTANCES_PER_CATEGORY
    if not isinstance(index, int) or index < 0 or (top is not None and index >= top):
        raise ConfigError(f"instance: {index!r} is out of range; use an integer in 0..{INSTANCES_PER_CATEGORY - 1}")
    weight = index % NUM_WEIGHT_ROWS
    rest = index // NUM_WEIGHT_ROWS
    kind = Instance if index < INSTANCES_PER_CATEGORY else FreshInstance
    return kind(weight=weight, flip=rest % NUM_FLIPS, patch=rest // NUM_FLIPS)


def official_filename(category: int, instance: Instance) -> str:
    """The official release's file name of an image, e.g. ``00007_13_count_0_flip2.png``."""
    return f"{category:05d}_{instance.weight:02d}_count_{instance.patch}_flip{instance.flip}.png"
