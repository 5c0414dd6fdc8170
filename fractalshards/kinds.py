"""Sample kinds: what one sample of a dataset is, on disk and in a loader.

A family declares its kind (:attr:`fractalshards.families.Family.sample_kind`); everything that
writes, checks, reads or describes samples asks the kind, never the family:

- ``image``: an image and a class: ``<key>.cls``, ``<key>.json``, ``<key>.png``;
  a loader yields ``(image, label)``.
- ``segmentation``: an image and its per-pixel class mask (uint8 class ids, 0 = background):
  ``<key>.json``, ``<key>.png``, ``<key>.seg.png`` (8-bit grey PNG of the same size);
  a loader yields ``(image, mask)``.
- ``points``: a point cloud and a class: ``<key>.cls``, ``<key>.json``, ``<key>.npy``
  (float32 ``(N, 3)``, NumPy's format 1.0, C order, written byte for byte the same everywhere);
  a loader yields ``(points, label)``.

Reading is strict: a ``.seg.png`` must have the image's size and 8-bit grey format, a ``.npy``
exactly the header this module writes for the definition's point count (parsed by hand: never
``np.load``, never a pickle), so a re-signed shard cannot smuggle in another shape or dtype.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError

__all__ = [
    "KINDS",
    "SampleKind",
    "get_kind",
    "npy_bytes",
    "npy_header",
    "decode_npy",
    "MASK_FORMATS",
]

#: The kinds a family may declare.
KINDS = ("image", "segmentation", "points")
#: A mask is an 8-bit grey PNG (class ids; 0 is the background).
MASK_FORMATS = ((8, 0),)


@dataclass(frozen=True)
class SampleKind:
    """What a sample of one kind holds (see the module doc)."""

    name: str
    #: Member extensions, in stored order.
    members: tuple[str, ...]
    #: Whether samples carry a class label (a ``cls`` member).
    labelled: bool
    #: The member holding the sample's main data.
    data: str
    #: Hugging Face ``task_categories`` and ``task_ids`` of a dataset card.
    hf_task: str
    hf_task_id: str
    #: What a loader yields, in words (for docs and ``info``).
    yields: str


_KINDS = {
    "image": SampleKind(
        "image", ("cls", "json", "png"), True, "png", "image-classification", "multi-class-image-classification", "(image, label)"
    ),
    "segmentation": SampleKind(
        "segmentation", ("json", "png", "seg.png"), False, "png", "image-segmentation", "semantic-segmentation", "(image, mask)"
    ),
    "points": SampleKind("points", ("cls", "json", "npy"), True, "npy", "other", "point-cloud-classification", "(points, label)"),
}


def get_kind(name: str) -> SampleKind:
    """The kind called ``name``; anything else is a one-line error."""
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ConfigError(f"sample_kind: {name!r} is not a sample kind; use one of {', '.join(KINDS)}")
    return kind


# -- point clouds as .npy -------------------------------------------------------------------------------
_NPY_MAGIC = b"\x93NUMPY\x01\x00"


def npy_header(count: int) -> bytes:
    """The ``.npy`` header (format 1.0) of a float32 ``(count, 3)`` C-order array, padded to 64 bytes."""
    text = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({count}, 3), }}"
    total = len(_NPY_MAGIC) + 2 + len(text) + 1
    text += " " * (-total % 64) + "\n"
    return _NPY_MAGIC + struct.pack("<H", len(text)) + text.encode("latin1")


def npy_bytes(points: np.ndarray) -> bytes:
    """``points`` (``(N, 3)``) as ``.npy`` bytes of float32, the same bytes on any machine."""
    arr = np.asarray(points)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"points: shape {arr.shape} is not (N, 3)")
    return npy_header(arr.shape[0]) + np.ascontiguousarray(arr, dtype="<f4").tobytes()


def decode_npy(data: bytes, count: int) -> np.ndarray:
    """A float32 ``(count, 3)`` array from ``.npy`` bytes that must be exactly what :func:`npy_bytes`
    writes for ``count`` points; a ``ValueError`` naming what differs otherwise."""
    header = npy_header(count)
    if data[: len(header)] != header:
        raise ValueError(f"not a float32 ({count}, 3) .npy written by fractalshards")
    body = len(data) - len(header)
    if body != count * 12:
        raise ValueError(f"holds {body} bytes of points where ({count}, 3) float32 is {count * 12}")
    return np.frombuffer(data, "<f4", offset=len(header)).reshape(count, 3)
