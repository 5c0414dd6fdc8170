"""PNG writing: the encoders a dataset definition can name, and the two-level image they share.

Both encoders are lossless and deterministic; any PNG reader gives back the same
pixels from either (Pillow, webdataset, Ray Data, Hugging Face ``datasets``).

- ``direct`` (the default): every image written here, rows unfiltered, compressed
  by zlib at the definition's level. A two-level grey image (every FractalDB grey
  render) is a 1-bit palette PNG written from its packed rows (the render kernel's
  own output), deflated with run-length matches only (``Z_RLE``); other grey images
  are 8-bit grey, colour images RGB, deflated with zlib's default strategy. On our images
  it is 3-6x faster than Pillow and 10-20% smaller: Pillow's adaptive row filters cost
  time and, on random mask bits and thin anti-alias-free lines, bytes (measured on
  FractalDB, VisualAtom and RCDB renders; ``benchmarks/build.py``, README).
- ``pillow``: every image through Pillow (two-level grey as a 1-bit palette PNG),
  with Pillow's row filters. Definitions stored before encoders were named mean
  this one, so those datasets rebuild to the same bytes.

Compressed bytes depend on the zlib library (and Pillow's build, for ``pillow``):
machines with the same libraries write the same shards; pixels are the same
everywhere, and ``verify`` compares pixels.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "ENCODERS",
    "DEFAULT_ENCODER",
    "LEGACY_ENCODER",
    "TwoLevelImage",
    "two_level",
    "encode",
    "read_header",
    "GREY_FORMATS",
    "COLOUR_FORMATS",
    "library_versions",
]

ENCODERS = ("direct", "pillow")
#: The encoder of new dataset definitions.
DEFAULT_ENCODER = "direct"
#: The encoder a definition that names none was built with.
LEGACY_ENCODER = "pillow"

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class TwoLevelImage:
    """A grey image whose pixels are 0 or ``level``, as 1-bit PNG scanlines.

    ``scanlines`` is ``(height, 1 + ceil(width / 8))`` uint8: a filter byte (0), then
    the row's pixels one bit each, the leftmost the most significant; padding bits are 0.
    """

    scanlines: np.ndarray
    width: int
    level: int

    @property
    def height(self) -> int:
        """Rows."""
        return int(self.scanlines.shape[0])

    def unpack(self) -> np.ndarray:
        """The ``(height, width)`` uint8 pixels."""
        return np.unpackbits(self.scanlines[:, 1:], axis=1, count=self.width) * np.uint8(self.level)

    def count(self) -> int:
        """Pixels at ``level`` (all non-zero pixels when ``level`` is not 0)."""
        return int(np.unpackbits(self.scanlines[:, 1:]).sum(dtype=np.int64))


def two_level(image: np.ndarray) -> TwoLevelImage | None:
    """``image`` as a :class:`TwoLevelImage` when it is grey with at most one non-zero value, else None."""
    if image.ndim != 2 or image.dtype != np.uint8:
        return None
    top = int(image.max()) if image.size else 0
    on = image != 0
    if top and np.count_nonzero(image == top) != np.count_nonzero(on):
        return None
    packed = np.packbits(on, axis=1)
    scanlines = np.zeros((image.shape[0], packed.shape[1] + 1), np.uint8)
    scanlines[:, 1:] = packed
    return TwoLevelImage(scanlines, int(image.shape[1]), top)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(
    width: int,
    height: int,
    depth: int,
    colour_type: int,
    palette: bytes | None,
    rows: np.ndarray,
    compress_level: int,
    strategy: int,
) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)  # deflate, no interlace
    chunks = [_SIGNATURE, _chunk(b"IHDR", header)]
    if palette is not None:
        chunks.append(_chunk(b"PLTE", palette))
    deflate = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 8, strategy)
    data = deflate.compress(np.ascontiguousarray(rows).data) + deflate.flush()
    chunks += [_chunk(b"IDAT", data), _chunk(b"IEND", b"")]
    return b"".join(chunks)


def _direct(image: np.ndarray | TwoLevelImage, compress_level: int) -> bytes:
    packed = image if isinstance(image, TwoLevelImage) else two_level(image)
    if packed is not None:
        level = packed.level
        # Run-length matches only: on random mask bits and empty runs, 25% faster than zlib's
        # default search and 5% smaller (FractalDB-1k renders; 10% smaller than Pillow's PNG).
        return _png(
            packed.width, packed.height, 1, 3, bytes((0, 0, 0, level, level, level)), packed.scanlines, compress_level, zlib.Z_RLE
        )
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint8 or channels not in (1, 3):
        raise ValueError(f"image: {image.dtype} {image.shape} is not uint8 grey (H, W) or RGB (H, W, 3)")
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # filter byte 0 (none), then the row
    rows[:, 1:] = image.reshape(height, width * channels)
    # zlib's default search: on the contour families' 8-bit lines it is a third smaller than Z_RLE.
    return _png(width, height, 8, 0 if channels == 1 else 2, None, rows, compress_level, zlib.Z_DEFAULT_STRATEGY)


def _pillow(image: np.ndarray, compress_level: int) -> bytes:
    buf = io.BytesIO()
    if image.ndim == 2:
        top = int(image.max())
        if np.count_nonzero(image == top) + np.count_nonzero(image == 0) == image.size:
            pim = Image.fromarray((image != 0).view(np.uint8), mode="P")
            pim.putpalette([0, 0, 0, top, top, top])
            pim.save(buf, format="PNG", bits=1, compress_level=compress_level)
        else:
            Image.fromarray(image, mode="L").save(buf, format="PNG", compress_level=compress_level)
    else:
        Image.fromarray(image, mode="RGB").save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def encode(image: np.ndarray | TwoLevelImage, compress_level: int = 1, encoder: str = DEFAULT_ENCODER) -> bytes:
    """PNG bytes of ``image`` (uint8 ``(H, W)`` grey, ``(H, W, 3)`` RGB, or a :class:`TwoLevelImage`).

    A grey image of two values (0 and one other) is a 1-bit palette PNG, other grey
    images 8-bit grey, colour images RGB; ``encoder`` is ``direct`` or ``pillow``
    (module doc). A :class:`TwoLevelImage` costs ``direct`` no packing.
    """
    if encoder == "direct":
        return _direct(image, compress_level)
    if encoder == "pillow":
        return _pillow(image.unpack() if isinstance(image, TwoLevelImage) else image, compress_level)
    raise ValueError(f"encoder: {encoder!r} is not one of {', '.join(ENCODERS)}")


def read_header(data: bytes) -> tuple[int, int, int, int] | None:
    """``(width, height, bit depth, colour type)`` from a PNG's IHDR, or None when ``data`` does not start like a PNG."""
    if len(data) < 33 or data[:8] != _SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, colour_type


#: The (bit depth, colour type) pairs our encoders write: two-level grey as 1-bit palette, other
#: grey as 8-bit grey, colour as 8-bit RGB.
GREY_FORMATS = ((1, 3), (8, 0))
COLOUR_FORMATS = ((8, 2),)


def library_versions() -> dict:
    """The libraries whose versions decide compressed bytes (recorded in manifests, outside the fingerprint):
    zlib for ``direct``, Pillow and its zlib for ``pillow``."""
    from PIL import __version__ as pillow_version
    from PIL import features

    return {"zlib": zlib.ZLIB_RUNTIME_VERSION, "pillow": pillow_version, "pillow_zlib": features.version("zlib") or ""}
