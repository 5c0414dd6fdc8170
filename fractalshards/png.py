"""PNG both ways: the encoders a dataset definition can name, the two-level image they share, and the
compact ("packed") decode the loader uses.

Both encoders are lossless and deterministic; any PNG reader gives back the same
pixels from either (Pillow, webdataset, Ray Data, Hugging Face ``datasets``).

- ``direct`` (the default): every image written here, rows unfiltered, compressed
  by zlib at the definition's level. A two-level grey image (every FractalDB grey
  render) is a 1-bit palette PNG written from its packed rows (the render kernel's
  own output), deflated with run-length matches only (``Z_RLE``); other grey images
  are 8-bit grey, colour images RGB, deflated with zlib's default strategy. On our images
  it is 3-6x faster than Pillow and 10-20% smaller: Pillow's adaptive row filters cost
  time and, on random mask bits and thin anti-alias-free lines, bytes (measured on
  FractalDB, VisualAtom and RCDB renders; ``benchmarks/build.py``, docs/benchmarks.md).
- ``portable``: the rows as ``direct`` writes them (unfiltered; two-level grey as 1-bit palette),
  deflated by :mod:`fractalshards.deflate` instead of zlib: run-length matches and per-block
  Huffman codes, compiled. Its bytes depend on no library, so they are the same on every machine;
  on SegRCDB's 512 px images and masks it is 2x zlib's fastest level and as small as ``Z_RLE``
  (about 12% larger than ``direct`` on the image, 5% smaller on the mask). The definition's zlib
  level does not apply.
- ``pillow``: every image through Pillow (two-level grey as a 1-bit palette PNG),
  with Pillow's row filters. Definitions stored before encoders were named mean
  this one, so those datasets rebuild to the same bytes.

Reading: :func:`decode` gives any PNG's pixels (Pillow); :func:`decode_packed` gives a PNG as
compact as it is stored, in a :class:`PackedLayout` the definition decides: two-level images as
their packed 1-bit rows, other grey images as ``(H, W)`` bytes, colour as ``(H, W, 3)``. An
unfiltered PNG (every ``direct`` one) is decoded by inflating its rows alone, with no Pillow; any
other PNG goes through Pillow and is packed after.

Compressed bytes of ``direct`` depend on the zlib library (and Pillow's build, for ``pillow``):
machines with the same libraries write the same shards; ``portable`` bytes are the same on every
machine; pixels are the same everywhere, and ``verify`` compares pixels.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import deflate

__all__ = [
    "ENCODERS",
    "DEFAULT_ENCODER",
    "LEGACY_ENCODER",
    "TwoLevelImage",
    "two_level",
    "encode",
    "read_header",
    "PngInfo",
    "parse",
    "PackedLayout",
    "decode",
    "decode_packed",
    "GREY_FORMATS",
    "COLOUR_FORMATS",
    "library_versions",
]

ENCODERS = ("direct", "pillow", "portable")
#: The encoder of new dataset definitions: ``portable``, whose bytes depend on no library (``direct``'s
#: depend on the zlib build: zlib-ng, the default of several distributions and of Pillow's wheels,
#: deflates differently, so a definition would get other shard bytes on another machine).
DEFAULT_ENCODER = "portable"
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
    strategy: int | None,
) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)  # deflate, no interlace
    chunks = [_SIGNATURE, _chunk(b"IHDR", header)]
    if palette is not None:
        chunks.append(_chunk(b"PLTE", palette))
    if strategy is None:  # the portable encoder
        data = deflate.compress(rows)
    else:
        stream = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 8, strategy)
        data = stream.compress(np.ascontiguousarray(rows).data) + stream.flush()
    chunks += [_chunk(b"IDAT", data), _chunk(b"IEND", b"")]
    return b"".join(chunks)


def _direct(image: np.ndarray | TwoLevelImage, compress_level: int, portable: bool = False) -> bytes:
    packed = image if isinstance(image, TwoLevelImage) else two_level(image)
    if packed is not None:
        level = packed.level
        # Run-length matches only: on random mask bits and empty runs, 25% faster than zlib's
        # default search and 5% smaller (FractalDB-1k renders; 10% smaller than Pillow's PNG).
        return _png(
            packed.width,
            packed.height,
            1,
            3,
            bytes((0, 0, 0, level, level, level)),
            packed.scanlines,
            compress_level,
            None if portable else zlib.Z_RLE,
        )
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype != np.uint8 or channels not in (1, 3):
        raise ValueError(f"image: {image.dtype} {image.shape} is not uint8 grey (H, W) or RGB (H, W, 3)")
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # filter byte 0 (none), then the row
    rows[:, 1:] = image.reshape(height, width * channels)
    # zlib's default search: on the contour families' 8-bit lines it is a third smaller than Z_RLE.
    strategy = None if portable else zlib.Z_DEFAULT_STRATEGY
    return _png(width, height, 8, 0 if channels == 1 else 2, None, rows, compress_level, strategy)


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
    images 8-bit grey, colour images RGB; ``encoder`` is ``direct``, ``portable`` or ``pillow``
    (module doc). A :class:`TwoLevelImage` costs ``direct`` no packing.
    """
    if encoder in ("direct", "portable"):
        return _direct(image, compress_level, encoder == "portable")
    if encoder == "pillow":
        return _pillow(image.unpack() if isinstance(image, TwoLevelImage) else image, compress_level)
    raise ValueError(f"encoder: {encoder!r} is not one of {', '.join(ENCODERS)}")


def encode_grey8(image: np.ndarray, compress_level: int = 1, encoder: str = DEFAULT_ENCODER) -> bytes:
    """PNG bytes of a uint8 ``(H, W)`` array as 8-bit grey whatever its values (class masks: a
    reader takes the bytes as ids, so a mask of one class is not written as a palette image)."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"mask: {image.dtype} {image.shape} is not uint8 (H, W)")
    if encoder == "pillow":
        buf = io.BytesIO()
        Image.fromarray(image, mode="L").save(buf, format="PNG", compress_level=compress_level)
        return buf.getvalue()
    if encoder not in ("direct", "portable"):
        raise ValueError(f"encoder: {encoder!r} is not one of {', '.join(ENCODERS)}")
    height, width = image.shape
    rows = np.zeros((height, 1 + width), np.uint8)
    rows[:, 1:] = image
    return _png(width, height, 8, 0, None, rows, compress_level, None if encoder == "portable" else zlib.Z_DEFAULT_STRATEGY)


@dataclass(frozen=True)
class PngInfo:
    """A PNG as :func:`parse` read it: its IHDR fields, its palette and its image data."""

    width: int
    height: int
    depth: int
    colour_type: int
    interlace: int
    plte: bytes | None
    idat_parts: tuple

    @property
    def idat(self) -> bytes:
        """The image data, its IDAT chunks joined."""
        return b"".join(self.idat_parts)

    @property
    def header(self) -> tuple[int, int, int, int]:
        """``(width, height, bit depth, colour type)``."""
        return self.width, self.height, self.depth, self.colour_type


#: Bit depths each colour type allows (the PNG specification's table).
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def parse(data: bytes | memoryview) -> PngInfo:
    """The one strict reading of a stored PNG, before any decoder sees it: the signature, then exactly one
    ``IHDR`` (first, 13 bytes, a valid depth and colour type, compression and filter method 0), at most one
    ``PLTE`` (before the image data, present exactly when the colour type is a palette's, no more entries
    than the depth can index), consecutive ``IDAT``, then ``IEND`` and nothing after; no other chunk
    (what Pillow would read from an ancillary chunk, ``tRNS`` for one, would change the pixels). Anything
    else is a one-line ``ValueError``: a reader decodes only what this accepted, so every decoder
    (Pillow, :func:`decode_packed`) sees the header that was checked. Chunk CRCs are not computed here
    (they guard against noise, not against a forger; the shard's sha256 does): a third of the cost."""
    view = memoryview(data)
    if bytes(view[:8]) != _SIGNATURE:
        raise ValueError("not a PNG (no signature)")
    pos, end, ihdr, plte, idat, idat_done = 8, len(data), None, None, [], False
    while True:
        if pos + 12 > end:
            raise ValueError("ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", view, pos)
        if pos + 12 + length > end:
            raise ValueError(f"chunk {kind!r} runs past the end")
        body = view[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if ihdr is None and kind != b"IHDR":
            raise ValueError(f"the first chunk is {kind!r}, not IHDR")
        if kind == b"IHDR":
            if ihdr is not None or length != 13:
                raise ValueError("a second IHDR" if ihdr is not None else f"an IHDR of {length} bytes")
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            if plte is not None or idat:
                raise ValueError("a second PLTE" if plte is not None else "a PLTE after the image data")
            plte = bytes(body)
        elif kind == b"IDAT":
            if idat_done:
                raise ValueError("IDAT chunks that are not consecutive")
            idat.append(body)
        elif kind == b"IEND":
            if length or pos != end:
                raise ValueError("data after IEND" if pos != end else "an IEND with data")
            break
        else:
            raise ValueError(f"a {kind!r} chunk (a stored PNG holds IHDR, PLTE, IDAT and IEND only)")
        if kind != b"IDAT" and idat:
            idat_done = True
    width, height, depth, colour_type, compression, filtering, interlace = ihdr
    if not (width and height) or depth not in _DEPTHS.get(colour_type, ()) or compression or filtering or interlace > 1:
        raise ValueError(f"an invalid IHDR ({width}x{height}, depth {depth}, colour type {colour_type})")
    if not idat:
        raise ValueError("no image data")
    if (colour_type == 3) != (plte is not None):
        raise ValueError("a palette image without a PLTE" if colour_type == 3 else f"a PLTE in a colour type {colour_type} image")
    if plte is not None and (not plte or len(plte) % 3 or len(plte) // 3 > 2**depth):
        raise ValueError(f"a PLTE of {len(plte)} bytes for {depth}-bit indices")
    return PngInfo(width, height, depth, colour_type, interlace, plte, tuple(idat))


def read_header(data: bytes) -> tuple[int, int, int, int] | None:
    """``(width, height, bit depth, colour type)`` of a PNG that :func:`parse` accepts, else None."""
    try:
        return parse(data).header
    except ValueError:
        return None


#: The (bit depth, colour type) pairs our encoders write: two-level grey as 1-bit palette, other
#: grey as 8-bit grey, colour as 8-bit RGB.
GREY_FORMATS = ((1, 3), (8, 0))
COLOUR_FORMATS = ((8, 2),)


@dataclass(frozen=True)
class PackedLayout:
    """What a packed sample is: ``kind`` ``bits`` (two-level: ``uint8 (H, ceil(W/8))``, leftmost pixel the
    most significant bit, a set bit meaning ``level``), ``grey`` (``uint8 (H, W)``) or ``rgb``
    (``uint8 (H, W, 3)``)."""

    kind: str
    height: int
    width: int
    level: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one packed image."""
        if self.kind == "bits":
            return (self.height, (self.width + 7) // 8)
        return (self.height, self.width) if self.kind == "grey" else (self.height, self.width, 3)

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """The ``uint8`` pixels of one packed image (grey ``(H, W)`` or ``(H, W, 3)``)."""
        if self.kind == "bits":
            return np.unpackbits(packed, axis=-1, count=self.width) * np.uint8(self.level)
        return packed


try:  # ISA-L's inflate: 1.5x zlib's on our 1-bit rows (measured), the same bytes out
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - a platform without its wheels
    _inflate = zlib


def _inflate_unfiltered(info: PngInfo) -> np.ndarray | None:
    """The rows of an unfiltered, non-interlaced PNG (filter bytes dropped); None when it is filtered or
    interlaced (Pillow then). Inflating stops at the size the header promises."""
    width, height, depth, colour_type = info.header
    if info.interlace:
        return None
    channels = {0: 1, 2: 3, 3: 1}.get(colour_type)
    if channels is None or depth not in (1, 8) or (depth == 1 and colour_type == 2):
        return None
    row = 1 + (width * channels * depth + 7) // 8
    expected = row * height
    inflater = _inflate.decompressobj()
    raw = inflater.decompress(info.idat, expected)  # never more than the header promises
    if len(raw) != expected or inflater.decompress(inflater.unconsumed_tail, 1):
        raise ValueError(f"the image data holds {len(raw)}+ bytes, not the {expected} its header says")
    rows = np.frombuffer(raw, np.uint8).reshape(height, row)
    if rows[:, 0].any():
        return None  # filtered rows: Pillow undoes the filters
    return rows[:, 1:]


def decode_packed(data: bytes, layout: PackedLayout) -> np.ndarray:
    """The image of PNG ``data`` (:func:`parse` first) in ``layout``, of exactly ``layout.shape`` (a
    ``ValueError`` when it does not fit: another size, mode, or a two-level dataset's image with other values)."""
    info = parse(data)
    try:
        packed = _decode_packed(info, data, layout)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - zlib, ISA-L and Pillow raise many types for damaged data
        raise ValueError(f"the image data does not decode ({type(exc).__name__}: {exc})") from exc
    if packed.shape != layout.shape or packed.dtype != np.uint8:
        raise ValueError(f"decoded as {packed.dtype} {packed.shape}, not the layout's uint8 {layout.shape}")
    return packed


def _decode_packed(info: PngInfo, data: bytes, layout: PackedLayout) -> np.ndarray:
    width, height, depth, colour_type = info.header
    if (width, height) != (layout.width, layout.height):
        raise ValueError(f"the image is {width}x{height}, not {layout.width}x{layout.height}")
    rows = _inflate_unfiltered(info)
    if rows is not None:
        plte = info.plte
        if depth == 1 and colour_type == 3:  # two-level: entries (0, v)
            palette = np.frombuffer(plte or b"", np.uint8).reshape(-1, 3)
            level = int(palette[1, 0]) if len(palette) > 1 else 0
            if len(palette) > 2 or (len(palette) and palette[0].any()) or (len(palette) > 1 and len(set(palette[1])) != 1):
                raise ValueError("a 1-bit palette other than (black, one grey)")
            if layout.kind == "bits":
                if level not in (0, layout.level):
                    raise ValueError(f"grey level {level}, not the definition's {layout.level}")
                return np.array(rows) if level else np.zeros_like(rows)
            grey = np.unpackbits(rows, axis=1, count=width) * np.uint8(level)
            return grey if layout.kind == "grey" else np.repeat(grey[..., None], 3, axis=2)
        if depth == 8 and colour_type == 0 and layout.kind == "grey":
            return np.array(rows)
        if depth == 8 and colour_type == 2 and layout.kind == "rgb":
            return np.array(rows).reshape(height, width, 3)
    # Filtered, or of another mode than the layout's: Pillow decodes, then it is packed.
    with Image.open(io.BytesIO(data)) as im:
        if im.size != (layout.width, layout.height):
            raise ValueError(f"the image is {im.size[0]}x{im.size[1]}, not {layout.width}x{layout.height}")
        pixels = np.array(im.convert("RGB" if layout.kind == "rgb" else "L"))  # writable, for torch
    if layout.kind != "bits":
        return pixels
    if np.count_nonzero((pixels != 0) & (pixels != layout.level)):
        raise ValueError(f"values other than 0 and the definition's grey level {layout.level}")
    return np.packbits(pixels != 0, axis=1)


def decode(data: bytes, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """PNG bytes (:func:`parse` first) -> uint8 ``(H, W)`` for grey images (palette or 1-channel),
    ``(H, W, 3)`` for colour; with ``shape``, a ``ValueError`` unless the pixels are exactly that.

    Our grey renders are 1-bit palette PNGs with the entries ``(0, v)``: their
    pixels are ``index * v``, cheaper than a palette lookup.
    """
    info = parse(data)
    if shape is not None and (info.height, info.width) != tuple(shape[:2]):
        raise ValueError(f"the image is {info.width}x{info.height}, not {shape[1]}x{shape[0]}")
    try:
        pixels = _decode(data)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged data
        raise ValueError(f"the image data does not decode ({type(exc).__name__}: {exc})") from exc
    if pixels.dtype != np.uint8 or (shape is not None and pixels.shape != tuple(shape)):
        raise ValueError(f"decoded as {pixels.dtype} {pixels.shape}, not uint8 {shape}")
    return pixels


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        if im.mode == "P":
            index = np.asarray(im)  # decodes; palette indices, one byte per pixel
            palette = np.asarray(im.getpalette() or [0, 0, 0], np.uint8).reshape(-1, 3)
            if np.array_equal(palette[:, 0], palette[:, 1]) and np.array_equal(palette[:, 1], palette[:, 2]):
                levels = palette[:, 0]
                if len(levels) == 2 and levels[0] == 0:
                    return index * levels[1]
                return levels.take(index)
            return palette.take(index, axis=0)
        if im.mode == "L":
            return np.asarray(im)
        if im.mode in ("1", "LA", "I", "I;16"):
            return np.asarray(im.convert("L"))
        return np.asarray(im.convert("RGB"))


def library_versions() -> dict:
    """The libraries whose versions decide compressed bytes (recorded in manifests, outside the fingerprint):
    zlib for ``direct``, Pillow and its zlib for ``pillow``."""
    from PIL import __version__ as pillow_version
    from PIL import features

    return {"zlib": zlib.ZLIB_RUNTIME_VERSION, "pillow": pillow_version, "pillow_zlib": features.version("zlib") or ""}
