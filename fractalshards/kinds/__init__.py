"""Sample kinds: what one sample of a dataset is, on disk and everywhere it is read.

A family declares its kind (:attr:`fractalshards.families.Family.sample_kind`: a registered name, or a
:class:`SampleKind` instance of its own); everything that writes, checks, reads, verifies, previews,
describes or loads samples asks the kind (:mod:`fractalshards.kinds.base`), never the family, and no
module outside this package branches on a kind's name. Shipped:

- ``image`` (:mod:`~fractalshards.kinds.image`): an image and a class: ``<key>.cls``, ``<key>.json``,
  ``<key>.png``; a loader yields ``(image, label)``.
- ``segmentation`` (:mod:`~fractalshards.kinds.segmentation`): an image and its per-pixel class mask
  (uint8 class ids, 0 = background): ``<key>.json``, ``<key>.png``, ``<key>.seg.png`` (8-bit grey PNG
  of the same size); a loader yields ``(image, mask)``.
- ``points`` (:mod:`~fractalshards.kinds.points`): a point cloud and a class: ``<key>.cls``,
  ``<key>.json``, ``<key>.npy`` (float32 ``(N, 3)``, NumPy's format 1.0, the same bytes everywhere);
  a loader yields ``(points, label)``.

A new kind (a clip of frames, an image with its point cloud...) is a :class:`SampleKind` subclass from
any package: give an instance as a family's ``sample_kind``, or :func:`register_kind` it and name it.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import DECODES, Decoding, SampleFormat, SampleKind
from .image import IMAGE, ImageKind
from .points import POINTS, PointsKind
from .segmentation import SEGMENTATION, SegmentationKind

__all__ = [
    "DECODES",
    "Decoding",
    "SampleFormat",
    "SampleKind",
    "ImageKind",
    "SegmentationKind",
    "PointsKind",
    "register_kind",
    "get_kind",
    "kind_names",
]

_KINDS: dict[str, SampleKind] = {}


def register_kind(kind: SampleKind) -> SampleKind:
    """Add ``kind`` to the registry under its name and return the registered one. A name is taken by
    the first kind of it: another class under a taken name (a plugin's ``image``) is a one-line error."""
    if not isinstance(kind, SampleKind) or not isinstance(kind.name, str) or not kind.name:
        raise ConfigError(f"sample_kind: {kind!r} is not a SampleKind instance with a name")
    for member in kind.members:
        if not member or member.startswith(".") or "/" in member or member.lower() != member:
            raise ConfigError(f"sample_kind: {kind.name!r} has member {member!r}; use lower-case extensions such as 'png'")
    known = _KINDS.setdefault(kind.name, kind)
    if type(known) is not type(kind):
        raise ConfigError(
            f"sample_kind: {kind.name!r} is taken by {type(known).__name__}; give {type(kind).__name__} another name"
        )
    return known


def get_kind(kind: object) -> SampleKind:
    """The kind ``kind`` names (or ``kind`` itself, registered); anything else is a one-line error."""
    if isinstance(kind, SampleKind):
        return register_kind(kind)
    found = _KINDS.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise ConfigError(f"sample_kind: {kind!r} is not a sample kind; use one of {', '.join(kind_names())}")
    return found


def kind_names() -> list[str]:
    """Names of every registered kind."""
    return list(_KINDS)


for _shipped in (IMAGE, SEGMENTATION, POINTS):
    register_kind(_shipped)
