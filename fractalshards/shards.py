"""The shard format, both ways: writing and reading WebDataset tars (PNGs are written by :mod:`fractalshards.png`).

An image sample is three members, in this order: ``<key>.cls`` (category index as
text), ``<key>.json`` (its parameters) and ``<key>.png``; other sample kinds have their own
(:mod:`fractalshards.kinds`: ``json``, ``png``, ``seg.png`` for segmentation; ``cls``, ``json``,
``npy`` for point clouds). Members are plain
USTAR entries with a fixed mtime, uid/gid 0, empty owner names and mode 0444, so
the same samples give the same bytes anywhere; ``tar tf`` and
``webdataset.WebDataset`` read them with no fractalshards code.

Reading (:func:`index_tar`, :func:`read_samples`) works on a shard's bytes in
memory: one pass over the 512-byte headers gives every member's offset, so a
DataLoader worker slices out only the samples it yields. Member names are
checked (no absolute paths, ``..`` or backslashes), header checksums are
verified, and only :data:`SAFE_EXTENSIONS` members are kept (nothing is
ever unpickled); anything wrong is a :class:`ShardIntegrityError` naming the
shard. No torch here: ``verify`` and ``preview`` read shards with this module.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from . import png
from .definition import DatasetDefinition, ShardSpec, sample_key
from .errors import ShardIntegrityError
from .kinds import MASK_FORMATS, npy_bytes, npy_header
from .parallel import resolve_workers
from .results import Rendered
from .storage import Store, sha256_bytes

__all__ = [
    "TAR_MTIME",
    "SAFE_EXTENSIONS",
    "ShardEntry",
    "TarSample",
    "sample_record",
    "tar_bytes",
    "render_sample",
    "sample_png",
    "sample_data",
    "render_shard",
    "build_shard",
    "journal_dir",
    "journal_name",
    "decode_png",
    "index_tar",
    "read_samples",
    "read_planned",
    "ShardPlan",
]

log = logging.getLogger(__name__)

#: mtime of every member: 2000-01-01T00:00:00Z, fixed so that bytes never depend on the clock.
TAR_MTIME = 946684800


@dataclass
class ShardEntry:
    """A shard as the dataset manifest lists it, plus build statistics."""

    name: str
    samples: int
    bytes: int
    sha256: str
    diverged: int = 0
    skipped: bool = False
    seconds: float = 0.0

    def manifest_entry(self) -> dict:
        """The fields that go into the manifest (no timings: manifests are deterministic)."""
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256, "diverged": self.diverged}

    def to_dict(self) -> dict:
        """All fields, JSON-able."""
        return asdict(self)


def sample_record(definition: DatasetDefinition, category: int, instance: int, rendered: Rendered) -> dict:
    """The ``.json`` member of a sample: its key, category, instance, the family's parameters
    (everything needed to re-render it), whether it diverged and its fill rate."""
    fields = definition.family.record(definition.categories, category, instance, definition.render, rendered)
    return {
        **fields,
        "key": sample_key(category, instance),
        "category": category,
        "instance": instance,
        "diverged": bool(rendered.diverged),
        "fill": rendered.fill,
    }


#: The constant fields of every member header (mode 0444, uid/gid 0, mtime, regular file, ustar magic;
#: owner names and device numbers empty), laid out as the tarfile module writes them in USTAR format.
_HEADER = bytearray(512)
_HEADER[100:108] = b"0000444\0"
_HEADER[108:116] = b"0000000\0"
_HEADER[116:124] = b"0000000\0"
_HEADER[136:148] = b"%011o\0" % TAR_MTIME
_HEADER[148:156] = b" " * 8  # the checksum counts its own field as spaces
_HEADER[156:157] = b"0"
_HEADER[257:265] = b"ustar\x0000"
_HEADER_SUM = sum(_HEADER)
_RECORD = 20 * 512  # tarfile pads an archive to whole records of 20 blocks


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A deterministic USTAR archive of ``(name, data)`` members, in the given order.

    Byte for byte what ``tarfile`` writes in USTAR format for these members (tested), in
    a tenth of its time: one template header, two fields and a checksum per member.
    """
    parts: list[bytes] = []
    total = 0
    for name, data in members:
        raw = name.encode("ascii")
        if len(raw) > 100:  # names of up to 100 ASCII characters, as every sample key gives
            raise ValueError(f"tar member name {name!r} is longer than 100 bytes")
        size = len(data)
        header = bytearray(_HEADER)
        header[0 : len(raw)] = raw
        size_field = b"%011o\0" % size
        header[124:136] = size_field
        checksum = _HEADER_SUM + sum(raw) + sum(size_field)
        header[148:155] = b"%06o\0" % checksum
        parts.append(bytes(header))
        parts.append(data)
        pad = -size % 512
        if pad:
            parts.append(bytes(pad))
        total += 512 + size + pad
    total += 1024  # two zero blocks end the archive
    parts.append(bytes(1024 + (-total % _RECORD)))
    return b"".join(parts)


def render_sample(definition: DatasetDefinition, category: int, instance: int, record: bool = True) -> tuple[dict, Rendered]:
    """One sample as a shard stores it, less the PNG: ``({"__key__", "cls", "json"}, rendered)``.

    Shards (:func:`render_shard`) and the rendered stream share it, so both give the same
    labels and records; the PNG is :func:`sample_png` of ``rendered``. With
    ``record=False`` the ``.json`` member is left out (a decoding loader has no use for it).
    """
    out = definition.family.render(definition.categories, category, instance, definition.render)
    return sample_of(definition, category, instance, out, record), out


def sample_of(definition: DatasetDefinition, category: int, instance: int, out: Rendered, record: bool = True) -> dict:
    """The members of a rendered sample but its data (:func:`render_sample`, for a render made elsewhere: a GPU's)."""
    sample = {"__key__": sample_key(category, instance)}
    if definition.kind.labelled:
        sample["cls"] = str(category).encode()
    if record:
        fields = sample_record(definition, category, instance, out)
        sample["json"] = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return sample


def sample_png(definition: DatasetDefinition, rendered: Rendered) -> bytes:
    """The ``.png`` member of a rendered sample, with the definition's encoder and level."""
    return png.encode(rendered.encodable, definition.png_compress_level, definition.png_encoder)


def sample_data(definition: DatasetDefinition, rendered: Rendered) -> dict[str, bytes]:
    """The data members of a rendered sample, by its kind (:mod:`fractalshards.kinds`): ``png``; ``png``
    and ``seg.png`` (the class mask, 8-bit grey); or ``npy`` (the points, float32)."""
    kind = definition.kind.name
    if kind == "points":
        return {"npy": npy_bytes(rendered.points)}
    out = {"png": sample_png(definition, rendered)}
    if kind == "segmentation":
        out["seg.png"] = png.encode_grey8(rendered.mask, definition.png_compress_level, definition.png_encoder)
    return out


def render_shard(definition: DatasetDefinition, spec: ShardSpec, renderer=None) -> tuple[bytes, int]:
    """Render every sample of ``spec``; returns the tar bytes and how many samples diverged.

    ``renderer`` (a :class:`fractalshards.gpu.GPURenderer`) renders the shard's images on a GPU in
    one batch; the records, PNGs (on every host core) and tar are made here, the same bytes as the CPU's."""
    members = []
    diverged = 0
    renders = datas = None
    if renderer is not None:
        renders = renderer.rendered(spec.pairs)
        # What is left to the host in a GPU build is the PNGs: on every core (zlib releases the GIL).
        with ThreadPoolExecutor(max_workers=resolve_workers(None)) as pool:
            datas = list(pool.map(lambda r: sample_data(definition, r), renders))
    order = definition.kind.members
    for k, (category, instance) in enumerate(spec.pairs):
        if renders is None:
            sample, rendered = render_sample(definition, category, instance)
        else:
            rendered = renders[k]
            sample = sample_of(definition, category, instance, rendered)
        diverged += rendered.diverged
        sample.update(sample_data(definition, rendered) if datas is None else datas[k])
        key = sample["__key__"]
        members.extend((f"{key}.{ext}", sample[ext]) for ext in order)
    return tar_bytes(members), diverged


def journal_dir(definition: DatasetDefinition) -> str:
    """The folder where a build of ``definition`` records its finished shards (for resuming)."""
    return f"_build/{definition.version}"


def journal_name(definition: DatasetDefinition, shard: str) -> str:
    """Where a finished shard's entry is recorded during a build."""
    return f"{journal_dir(definition)}/{shard}.json"


def _intact(store: Store, definition: DatasetDefinition, spec: ShardSpec, expected: dict) -> bool:
    if store.size(spec.name) != expected["bytes"]:
        return False
    data = store.read_bytes(spec.name)
    if sha256_bytes(data) != expected["sha256"]:
        return False
    try:
        for _ in read_planned(data, ShardPlan.of(definition, spec.index)):
            pass
    except ShardIntegrityError as exc:
        log.warning("%s: kept from an earlier run but fails its checks (%s); rebuilding it", spec.name, exc)
        return False
    return True


def build_shard(
    store: Store, definition: DatasetDefinition, spec: ShardSpec, expected: dict | None = None, renderer=None
) -> ShardEntry:
    """Build one shard straight into ``store`` and return its entry.

    ``expected`` is the shard's entry from an earlier run of the same definition
    (manifest or build journal): when the stored shard has its size and sha256 and passes the
    checks of a read (members, keys, labels and image headers against the definition's plan),
    nothing is rendered (resume). Otherwise the shard is rendered, written whole, and its entry
    recorded in the build journal: a journal is a hint, never trusted on its own (a shared
    output folder may hold a planted shard and a forged entry that match each other).
    ``renderer`` renders on a GPU (see :func:`render_shard`).
    """
    start = time.perf_counter()
    if expected is not None and _intact(store, definition, spec, expected):
        return ShardEntry(
            spec.name,
            spec.samples,
            int(expected["bytes"]),
            str(expected["sha256"]),
            int(expected.get("diverged", 0)),
            skipped=True,
            seconds=time.perf_counter() - start,
        )
    data, diverged = render_shard(definition, spec, renderer)
    entry = ShardEntry(spec.name, spec.samples, len(data), sha256_bytes(data), diverged)
    store.write_bytes(spec.name, data)
    store.write_bytes(journal_name(definition, spec.name), json.dumps(entry.manifest_entry(), sort_keys=True).encode())
    entry.seconds = time.perf_counter() - start
    return entry


# -- the PNG codec ------------------------------------------------------------------------


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 ``(H, W)`` for grey images (palette or 1-channel), ``(H, W, 3)`` for colour.

    Our grey renders are 1-bit palette PNGs with the entries ``(0, v)``: their
    pixels are ``index * v``, cheaper than a palette lookup.
    """
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


# -- reading ------------------------------------------------------------------------------

#: Members a sample may carry; anything else in a shard is ignored, never decoded.
SAFE_EXTENSIONS = ("png", "cls", "json", "seg.png", "npy")
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's split: key up to the first dot of the basename
_BLOCK = 512


@dataclass(frozen=True)
class TarSample:
    """Where one sample's members lie in a shard's bytes: ``members[ext] = (offset, size)``."""

    key: str
    members: dict

    def read(self, data: bytes | memoryview, url: str = "") -> dict:
        """The sample as webdataset gives it: ``{"__key__", "__url__", ext: bytes, ...}``."""
        out = {"__key__": self.key, "__url__": url}
        for ext, (offset, size) in self.members.items():
            out[ext] = bytes(data[offset : offset + size])
        return out


#: Member types read as files (tarfile's REGTYPE, AREGTYPE, CONTTYPE); anything else is refused.
_FILE_TYPES = (b"0", b"\0", b"7")
_POSIX_MAGIC = b"ustar\x0000"
# The numeric fields our writer always sets (mode, uid, gid, mtime, device numbers): valid by construction.
_FIXED_100_124, _FIXED_136_148, _FIXED_329_345 = bytes(_HEADER[100:124]), bytes(_HEADER[136:148]), bytes(_HEADER[329:345])
_NUMERIC_FIELDS = (
    ("mode", (100, 108)),
    ("uid", (108, 116)),
    ("gid", (116, 124)),
    ("mtime", (136, 148)),
    ("devmajor", (329, 337)),
    ("devminor", (337, 345)),
)
_GNU_MAGIC = b"ustar  \0"


def _octal(field: bytes, shard: str, what: str, at: int) -> int:
    # tarfile's reading of a numeric field: up to the first NUL, spaces stripped, octal digits only.
    # Base-256 (GNU binary) numbers, signs and any other character are refused: nothing here is
    # read differently from tarfile, and a negative size cannot stall the reader.
    text = field.split(b"\0", 1)[0].strip(b" ")
    if text.translate(None, b"01234567"):  # a character that is not an octal digit
        raise ShardIntegrityError(
            f"{shard}: tar header at byte {at} has {what} {field!r}, not an octal number; the shard is corrupt or crafted"
        )
    return int(text, 8) if text else 0


def _member_name(header: bytes, shard: str, at: int) -> str:
    magic = header[257:265]
    if magic not in (_POSIX_MAGIC, _GNU_MAGIC):
        raise ShardIntegrityError(f"{shard}: tar header at byte {at} is not a USTAR header (magic {magic!r}); refusing it")
    try:
        name = header[0:100].split(b"\0", 1)[0].decode("utf-8")
        # tarfile joins a non-empty prefix field to the name whatever the magic says.
        prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ShardIntegrityError(f"{shard}: tar member at byte {at} has a name that is not UTF-8; refusing it") from exc
    return f"{prefix}/{name}" if prefix else name


_CONTROL = re.compile(r"[\x00-\x1f]")


def _check_name(shard: str, name: str) -> None:
    parts = name.split("/")
    if not name or name.startswith("/") or name.endswith("/") or ".." in parts or "\\" in name or any(ord(c) < 32 for c in name):
        raise ShardIntegrityError(
            f"{shard}: unsafe member name {name!r} (empty, absolute, a folder, '..' or a control character); refusing to read it"
        )


def index_tar(data: bytes | memoryview, shard: str = "shard") -> list[TarSample]:
    """Index a tar archive in memory: its samples in stored order, with member offsets.

    Reads exactly what ``tarfile`` and webdataset read, or refuses: only plain USTAR
    headers of regular files are accepted (pax and GNU extended headers, which can change
    a member's size or name, links, folders and devices are refused), numeric fields must be
    octal, every member must lie inside the archive and its name must be safe and UTF-8.
    Every header's checksum is verified, and each header advances the position by at least
    one block, so time and memory are bounded by the bytes read. Anything else is a
    :class:`ShardIntegrityError` naming ``shard`` and the member.
    """
    view = memoryview(data)
    size_total = len(view)
    samples: list[TarSample] = []
    current: TarSample | None = None
    pos = 0
    while True:
        if pos + _BLOCK > size_total:
            if pos == size_total:
                break  # no end-of-archive blocks: tolerated, as tar itself does
            raise ShardIntegrityError(f"{shard}: ends inside a tar header at byte {pos}; it is truncated")
        header = bytes(view[pos : pos + _BLOCK])
        if header.count(0) == _BLOCK:
            break  # end of archive
        # The checksum first, before any field is believed (tarfile's unsigned sum; the signed
        # variant it also accepts is refused here).
        stated = _octal(header[148:156], shard, "checksum", pos)
        if stated != sum(header) - sum(header[148:156]) + 8 * 32:
            raise ShardIntegrityError(f"{shard}: tar header at byte {pos} has a bad checksum; the shard is corrupt")
        kind = header[156:157]
        name = _member_name(header, shard, pos)
        # tarfile parses every numeric field and ends the archive at a header it cannot parse:
        # such a header is refused here rather than read past.
        if header[100:124] != _FIXED_100_124 or header[136:148] != _FIXED_136_148 or header[329:345] != _FIXED_329_345:
            for what, (lo, hi) in _NUMERIC_FIELDS:  # not our writer's constant fields: parse each
                _octal(header[lo:hi], shard, f"{what} of member {name!r}", pos)
        if kind not in _FILE_TYPES:
            raise ShardIntegrityError(
                f"{shard}: member {name!r} at byte {pos} is of tar type {kind!r} (an extended header, link, folder or "
                "device); a shard holds plain files only"
            )
        size = _octal(header[124:136], shard, f"size of member {name!r}", pos)
        start = pos + _BLOCK
        end = start + size
        if end > size_total:
            raise ShardIntegrityError(
                f"{shard}: member {name!r} at byte {pos} runs past the end ({end} > {size_total} bytes); it is truncated"
            )
        pos = start + -(-size // _BLOCK) * _BLOCK
        _check_name(shard, name)
        match = _KEY.match(name)
        if match is None:
            continue
        key, ext = match.group(1), match.group(2).lower()
        if ext not in SAFE_EXTENSIONS:
            continue
        if current is None or current.key != key:
            current = TarSample(key, {})
            samples.append(current)
        if ext in current.members:
            raise ShardIntegrityError(f"{shard}: member {name!r} appears twice in sample {key!r}; the shard is corrupt")
        current.members[ext] = (start, size)
    return samples


@dataclass(frozen=True)
class ShardPlan:
    """What one shard of a definition must hold: its samples' keys in order, their labels, the
    members of its sample kind and their headers (the images' PNG size and format, the masks' 8-bit
    grey PNG of the same size, the point clouds' ``.npy`` header). Every read path checks shards
    against it, so a shard whose hash was re-signed still cannot mislabel, reorder or swap samples,
    nor smuggle in a huge image or another array."""

    name: str
    keys: tuple[str, ...]
    labels: tuple[bytes, ...]
    width: int
    height: int
    formats: tuple[tuple[int, int], ...]
    members: tuple[str, ...] = ("cls", "json", "png")
    points: int = 0

    @classmethod
    def of(cls, definition: DatasetDefinition, index: int) -> ShardPlan:
        """The plan of shard ``index`` of ``definition``."""
        spec = definition.shard_spec(index)
        kind = definition.kind
        shape = definition.family.image_shape(definition.categories, definition.render)
        points = 0
        if kind.name == "points":  # (N, 3): the cloud's point count
            points, width, height, formats = int(shape[0]), 0, 0, ()
        else:
            width, height = shape[1], shape[0]
            formats = png.COLOUR_FORMATS if len(shape) == 3 else png.GREY_FORMATS
        return cls(
            spec.name,
            tuple(sample_key(c, i) for c, i in spec.pairs),
            tuple(str(c).encode() for c, _ in spec.pairs) if kind.labelled else (),
            width,
            height,
            formats,
            kind.members,
            points,
        )

    def check_index(self, samples: list[TarSample]) -> None:
        """The shard's samples are the plan's, in its order, each with its kind's members."""
        keys = [s.key for s in samples]
        if keys != list(self.keys):
            if len(keys) != len(self.keys):
                raise ShardIntegrityError(
                    f"{self.name}: holds {len(keys)} samples but its plan has {len(self.keys)}; it is truncated or altered"
                )
            at = next(i for i, (a, b) in enumerate(zip(keys, self.keys)) if a != b)
            raise ShardIntegrityError(
                f"{self.name}: sample {at} is {keys[at]!r} but the definition's plan has {self.keys[at]!r} there; "
                "the shard was altered or crafted"
            )
        needed = [m for m in self.members if m != "json"]
        for s in samples:
            missing = [m for m in needed if m not in s.members]
            if missing:
                raise ShardIntegrityError(
                    f"{self.name}: sample {s.key!r} has no {' or '.join(missing)} member; the shard is not this dataset's"
                )

    def check_sample(self, position: int, sample: dict) -> None:
        """Sample ``position`` (as read) has the plan's label and the headers of the definition's data."""
        key = self.keys[position]
        if self.labels:
            cls = sample.get("cls", b"")
            if cls.strip() != self.labels[position]:
                raise ShardIntegrityError(
                    f"{self.name}: sample {key!r} has label {cls[:20]!r} but its category is "
                    f"{self.labels[position].decode()}; the shard was altered or crafted"
                )
        if self.points:
            data = sample.get("npy", b"")
            if (
                data[: len(npy_header(self.points))] != npy_header(self.points)
                or len(data) != len(npy_header(self.points)) + 12 * self.points
            ):
                raise ShardIntegrityError(
                    f"{self.name}: sample {key!r} is not a float32 ({self.points}, 3) point cloud as the definition "
                    "makes; the shard was altered or crafted"
                )
            return
        self._check_png(key, sample.get("png", b""), self.formats, "an image")
        if "seg.png" in self.members:
            self._check_png(key, sample.get("seg.png", b""), MASK_FORMATS, "a mask")

    def _check_png(self, key: str, data: bytes, formats, what: str) -> None:
        header = png.read_header(data)
        if header is None or header[:2] != (self.width, self.height) or header[2:] not in formats:
            raise ShardIntegrityError(
                f"{self.name}: sample {key!r} has {what} header {header} where the definition makes "
                f"{self.width}x{self.height} ones; the shard was altered or crafted"
            )


def read_planned(data: bytes | memoryview, plan: ShardPlan, url: str = "") -> Iterator[dict]:
    """:func:`read_samples`, each sample checked against ``plan`` (keys, order, labels, PNG headers)."""
    samples = index_tar(data, plan.name)
    plan.check_index(samples)
    for position, sample in enumerate(samples):
        out = sample.read(data, url or plan.name)
        plan.check_sample(position, out)
        yield out


def read_samples(data: bytes | memoryview, shard: str = "shard", url: str = "") -> Iterator[dict]:
    """Samples of a shard held in memory, in stored order (``{"__key__", "png", "cls", "json"}`` of bytes)."""
    for sample in index_tar(data, shard):
        yield sample.read(data, url or shard)
