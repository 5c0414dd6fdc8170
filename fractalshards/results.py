"""What a family's search and renderer hand to the core: :class:`SearchResult` and :class:`Rendered`.

Plain containers that name no family: the category objects inside a search result are
the family's own (written and read by its ``category_to_dict``/``category_from_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .png import PackedLayout, TwoLevelImage

__all__ = ["SearchResult", "Rendered", "pack_rendered", "from_packed", "DIVERGED_MEANING"]

#: What a sample's ``diverged`` means, said wherever diverged samples are counted (the build summary,
#: ``info``, previews, the docs).
DIVERGED_MEANING = (
    "diverged: the weighted maps blew up (a NaN or infinity in the chaos game); as in the official "
    "scripts those points are dropped and the sample is kept, drawn from what is left (often near-blank)"
)


@dataclass
class SearchResult:
    """Categories in index order (each with an ``index`` attribute), and how many trials were drawn in all."""

    categories: list
    trials: int


class Rendered:
    """A rendered sample and what happened: an image (``(H, W)`` uint8 grey or ``(H, W, 3)``
    colour), with its class ``mask`` (uint8 ``(H, W)``) for segmentation samples; or, for point
    cloud samples, ``points`` (float ``(N, 3)``) and no image (see :mod:`fractalshards.kinds`).
    ``parts`` holds any further named arrays a sample kind of a family's own writes (a second view,
    the frames of a clip).

    Two-level renders may come as 1-bit scanlines only (``bits``, what the PNG encoder
    compresses, with ``count`` set pixels); ``image`` unpacks them on first use.
    """

    __slots__ = ("_count", "_image", "bits", "diverged", "info", "mask", "parts", "points")

    def __init__(
        self,
        image: np.ndarray | None,
        diverged: bool,
        info: dict | None = None,
        *,
        bits: TwoLevelImage | None = None,
        count: int | None = None,
        mask: np.ndarray | None = None,
        points: np.ndarray | None = None,
        parts: dict[str, np.ndarray] | None = None,
    ) -> None:
        if image is None and bits is None and points is None and not parts:
            raise ValueError("Rendered needs an image, its bits, points or parts")
        if count is not None and bits is None:
            raise ValueError("Rendered: a set-pixel count comes with the bits it counts")
        self._image = image
        self.bits = bits
        self.diverged = diverged
        #: What a family computed on the way that its sample record reports (e.g. an instance's shape).
        self.info = {} if info is None else info
        self._count = count
        self.mask = mask
        self.points = points
        #: Named arrays of a sample kind of a family's own (empty for the shipped kinds).
        self.parts = {} if parts is None else parts

    @property
    def image(self) -> np.ndarray:
        """The pixels (None for a point cloud)."""
        if self._image is None and self.bits is not None:
            self._image = self.bits.unpack()
        return self._image

    @property
    def encodable(self) -> np.ndarray | TwoLevelImage:
        """What :func:`fractalshards.png.encode` takes at no conversion cost: the bits when there are."""
        return self.bits if self.bits is not None else self.image

    @property
    def fill(self) -> float:
        """Fraction of pixels that are not black (of a sample without an image: 1)."""
        if self._image is None and self.bits is None:
            return 1.0
        if self._count is not None:
            return self._count / (self.bits.height * self.bits.width)
        img = self.image if self.image.ndim == 2 else self.image.max(axis=2)
        return float(np.count_nonzero(img)) / img.size


def pack_rendered(rendered: Rendered, layout: PackedLayout) -> np.ndarray:
    """A render in the ``packed`` layout (:class:`fractalshards.png.PackedLayout`): two-level renders
    come as the PNG's 1-bit rows already (the filter byte dropped, no unpacking)."""
    if layout.kind == "bits":
        if rendered.bits is not None and rendered.bits.level in (0, layout.level):
            return (
                np.ascontiguousarray(rendered.bits.scanlines[:, 1:]) if rendered.bits.level else np.zeros(layout.shape, np.uint8)
            )
        return np.packbits(rendered.image != 0, axis=1)
    return rendered.image


def from_packed(packed: np.ndarray, layout: PackedLayout, diverged: bool) -> Rendered:
    """The inverse of :func:`pack_rendered`: a render made in the packed layout (on a GPU) as the
    encoder takes it (two-level images as their PNG rows, with a zero filter byte per row)."""
    if layout.kind == "bits":
        scanlines = np.zeros((layout.height, packed.shape[1] + 1), np.uint8)
        scanlines[:, 1:] = packed
        bits = TwoLevelImage(scanlines, layout.width, layout.level)
        return Rendered(None, diverged, bits=bits, count=bits.count())
    return Rendered(np.ascontiguousarray(packed), diverged)
