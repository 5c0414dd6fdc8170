"""The ``segrcdb`` family: SegRCDB (Shinoda et al., ICCV 2023), radial contours with per-pixel class masks.

A class is a radial contour's parameters (:data:`.kernels.CLASS_FIELDS`); a sample is an image of
``instances_per_image`` contours of random classes on black and its mask (each pixel the class id
of the last line drawn over it, 0 = background): the ``segmentation`` sample kind. Samples are one
group numbered by image: sample ``(0, K)`` is image ``K``.

- ``official``: the classes of ``random.seed(0)`` and, for image ``K``, official process
  ``t = K // images_per_process`` (``random.seed(t + 1)``, 500 images each as released), its
  image ``K % images_per_process``: the released images and masks, pixel for pixel. A process's
  generator state at each of its images is replayed once per process (milliseconds an image)
  and kept in memory.
- ``native``: class ``g`` from the counter stream ``(seed, g)``, image ``K``'s instance ``i``
  from ``(render seed, K, i)``: any image alone.

Masks: ``M1`` (official) labels the drawn lines; ``M2`` and ``M3`` (the official script's other
modes) fill the last line's polygon (M2 leaving the first line's polygon out, then outlining both;
nothing for one-line classes) with Pillow's polygon fill, whose rule changed between Pillow
versions (one pixel of the reference's tiny image differs between Pillow 9 and 13): their bytes
depend on the installed Pillow.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw

from ...errors import ConfigError, check_choice, check_int, is_number
from ...limits import check
from ...mt19937 import new_state
from ...progress import bar as progress_bar
from ...results import Rendered, SearchResult
from ...seeds import stream_key
from .. import Family, Preset, Renderer, SettingsDict, setting
from ..contours.perlin import GRAD
from .kernels import CLASS_FIELDS, SPEC_FIELDS, native_class, native_image, official_classes, official_image, skip_images

__all__ = ["SegRCDB", "SegRCDBRenderer", "SegRCDBSearch", "SegRCDBSettings", "SegClass", "FAMILY", "MASK_MODES"]

_PAPER = "Shinoda et al., ICCV 2023"
#: Mask modes: M1 (the lines, official), M2 (the ring between the first and last lines), M3 (the last line's polygon).
MASK_MODES = ("M1", "M2", "M3")
#: Most classes a mask can hold (uint8 ids, 0 the background).
MAX_CLASSES = 255


@dataclass(frozen=True)
class SegClass:
    """A class: its index (the class id is ``index + 1``) and its parameter row (:data:`CLASS_FIELDS`)."""

    index: int
    params: tuple


@dataclass(frozen=True)
class SegRCDBSearch(SettingsDict):
    """Distributions of a class (the official ``make_SegRCDB.sh`` values)."""

    vertex_mean: float = 100.0
    min_vertices: int = setting(3, "fewest vertices of a contour")
    max_vertices: int = setting(500, "most vertices of a contour")
    min_lines: int = setting(1, "fewest lines (orbits) of a category")
    max_lines: int = setting(50, "most lines (orbits) of a category")
    max_perlin: float = 4.0
    max_line_width: float = 0.1
    min_radius: int = 0
    max_radius: int = 50
    max_oval: float = 2.0

    def __post_init__(self) -> None:
        from ..contours.family import check_range

        check_range("min_vertices", self.min_vertices, "max_vertices", self.max_vertices, 3)
        check("max_vertices", self.max_vertices, "vertices")
        check_range("min_lines", self.min_lines, "max_lines", self.max_lines, 1)
        check("max_lines", self.max_lines, "lines")
        check_range("min_radius", self.min_radius, "max_radius", self.max_radius, 0)
        for name in ("vertex_mean", "max_perlin", "max_line_width"):
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value < 1e6:
                raise ConfigError(f"{name}: {value!r} is out of range; use a number >= 0")
        if self.vertex_mean <= 0:
            raise ConfigError(f"vertex_mean: {self.vertex_mean!r} must be positive")
        if not is_number(self.max_oval) or not 1 <= self.max_oval < 1e3:
            raise ConfigError(f"max_oval: {self.max_oval!r} is out of range; use a number >= 1")


@dataclass(frozen=True)
class SegRCDBSettings(SettingsDict):
    """How images are drawn: streams, size, contours per image, the mask mode, the official process layout."""

    mode: str = "native"
    seed: int = setting(0, "dataset seed of the sample order and the native streams", minimum=0)
    size: int = setting(512, "image side in pixels (also the centres' range, as the official --start_pos)")
    instances_per_image: int = setting(32, "contours (instances of random classes) per image")
    mask_mode: str = setting(
        "M1", "segmentation mask: M1 the lines (official), M2 the ring, M3 the filled last line", choices=MASK_MODES
    )
    images_per_process: int = setting(500, "official: images of each official process (random.seed(t + 1))")

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, ("official", "native"))
        check_int("seed", self.seed, 0)
        check_int("size", self.size, 1)
        check("size", self.size, "image_size")
        check_int("instances_per_image", self.instances_per_image, 1)
        check("instances_per_image", self.instances_per_image, "lines")
        check_choice("mask_mode", self.mask_mode, MASK_MODES)
        check_int("images_per_process", self.images_per_process, 1)


class SegRCDB(Family):
    """SegRCDB classes, images and masks."""

    name = "segrcdb"
    # Dense 8-bit lines, two PNGs a sample: the compiled encoder writes both in half zlib's time,
    # at Z_RLE's size (docs/benchmarks.md), and the same bytes on every machine.
    png_encoder = "portable"
    paper = "SegRCDB: Shinoda et al., SegRCDB: Semantic Segmentation via Formula-Driven Supervised Learning, ICCV 2023"
    sample_kind: ClassVar[str] = "segmentation"
    instances_per_category = 100_000  # images of the one group
    image_size = 512
    Settings = SegRCDBSettings
    SearchSettings = SegRCDBSearch
    presets = (
        Preset(
            "segrcdb",
            "segrcdb",
            "SegRCDB: the 254 official classes; 20,000 images of 512 px, 32 instances each, M1 masks",
            254,
            "official",
            _PAPER,
            instances=20_000,
            file="segrcdb.json",
        ),
    )

    # -- classes ----------------------------------------------------------------------------
    def spec(self, settings: SegRCDBSearch) -> np.ndarray:
        """The kernels' bounds array."""
        return np.asarray([float(getattr(settings, name)) for name in SPEC_FIELDS])

    def search(self, count, *, mode, seed, settings, workers=None, progress=False) -> SearchResult:
        """As :meth:`fractalshards.families.Family.search` (at most 255 classes: mask ids are bytes)."""
        check_int("categories", count, 1)
        if count > MAX_CLASSES:
            raise ConfigError(f"categories: {count} classes do not fit a uint8 mask; use at most {MAX_CLASSES}")
        self.check_search_mode(mode)
        spec = self.spec(settings)
        rows = np.zeros((count, len(CLASS_FIELDS)))
        if mode == "official":
            official_classes(new_state(seed), count, spec, rows)
        else:
            for g in progress_bar(range(count), desc="search (segrcdb, native)", unit="class", enabled=progress):
                native_class(stream_key(self.name, "class", seed, g), spec, rows[g])
        return SearchResult([SegClass(g, tuple(rows[g].tolist())) for g in range(count)], count)

    def category_to_dict(self, category: SegClass) -> dict:
        """As :meth:`fractalshards.families.Family.category_to_dict`."""
        out: dict = {"index": category.index}
        for name, value in zip(CLASS_FIELDS, category.params):
            out[name] = int(value) if name in ("vertices", "lines", "radius") else float(value)
        return out

    def category_from_dict(self, data: dict) -> SegClass:
        """As :meth:`fractalshards.families.Family.category_from_dict`."""
        row = []
        for name in CLASS_FIELDS:
            value = data[name]
            if not is_number(value):
                raise ValueError(f"class {data.get('index')!r}: {name} must be a finite number")
            if name in ("vertices", "lines", "radius") and value != int(value):
                raise ValueError(f"class {data.get('index')!r}: {name} must be an integer")
            row.append(float(value))
        p = dict(zip(CLASS_FIELDS, row))
        if not (3 <= p["vertices"] and 1 <= p["lines"] and p["radius"] >= 0):
            raise ValueError(f"class {data.get('index')!r}: vertices must be >= 3, lines >= 1 and radius >= 0")
        check(f"class {data.get('index')!r}: vertices", int(p["vertices"]), "vertices")
        check(f"class {data.get('index')!r}: lines", int(p["lines"]), "lines")
        return SegClass(int(data["index"]), tuple(row))

    def check_manifest(self, manifest, source: str) -> None:
        """At most 255 classes (mask ids are bytes)."""
        if len(manifest) > MAX_CLASSES:
            raise ConfigError(f"{source}: {len(manifest)} classes do not fit a uint8 mask; use at most {MAX_CLASSES}")

    # -- samples: one group of images ---------------------------------------------------------
    def groups_of(self, categories: int) -> int:
        """One group: sample ``(0, K)`` is image ``K``."""
        return 1

    def num_classes(self, manifest) -> int:
        """Mask classes: the background and one per class."""
        return len(manifest) + 1

    def instance_label(self, index: int) -> str:
        """As :meth:`fractalshards.families.Family.instance_label`."""
        return f"image {index}"

    def render_settings(self, manifest, options: dict) -> SegRCDBSettings:
        """As :meth:`fractalshards.families.Family.render_settings` (official streams need an official search)."""
        mode = options.get("mode") or ("official" if manifest.render_mode == "official" else "native")
        settings = super().render_settings(manifest, {**options, "mode": mode})
        self.check_official_render(manifest, settings.mode)
        return settings

    def check_limits(self, manifest, settings: SegRCDBSettings) -> None:
        """The image size and contours per image within the limits in force."""
        check("size", settings.size, "image_size")

    def renderer(self, manifest, settings: SegRCDBSettings) -> SegRCDBRenderer:
        """As :meth:`fractalshards.families.Family.renderer`: a :class:`SegRCDBRenderer`."""
        return SegRCDBRenderer(self, manifest, settings)

    def image_shape(self, manifest, settings: SegRCDBSettings) -> tuple[int, ...]:
        """``(size, size)`` grey."""
        return (settings.size, settings.size)

    def bytes_per_sample(self, settings) -> float:
        """An image and its mask (8-bit grey PNGs of lines; measured on official images)."""
        return 170_000.0 * (settings.size / 512) ** 2


class SegRCDBRenderer(Renderer):
    """Images and masks of a SegRCDB manifest: its class rows as one array, made once, and in official
    mode each process's generator state at every image rendered so far."""

    def __init__(self, family: SegRCDB, manifest, settings: SegRCDBSettings) -> None:
        super().__init__(family, manifest, settings)
        family.check_official_render(manifest, settings.mode)
        #: The classes' parameter rows, ``(classes, len(CLASS_FIELDS))`` float64.
        self.classes = np.ascontiguousarray([c.params for c in manifest.categories], np.float64)
        self._processes: dict[int, dict] = {}  # process -> {"states": [...], "lock": ...}
        self._lock = threading.Lock()

    def process_state(self, process: int, image: int) -> np.ndarray:
        """The generator state of official process ``process`` at the start of its image ``image``: states
        are saved at every image as far as asked (about 1.25 MB per whole process), and extended on demand."""
        with self._lock:
            saved = self._processes.setdefault(process, {"states": [new_state(process + 1)], "lock": threading.Lock()})
        with saved["lock"]:
            states = saved["states"]
            while len(states) <= image:
                state = states[-1].copy()
                skip_images(state, 1, self.classes, self.settings.instances_per_image, self.settings.size)
                states.append(state)
            return states[image].copy()

    def render(self, category: int, instance: int) -> Rendered:
        """Image ``instance`` and its mask (``category`` is the group, always 0)."""
        if category != 0:
            raise ConfigError(f"category: segrcdb samples are one group of images; {category!r} is not 0")
        settings, classes = self.settings, self.classes
        k = self.family.check_instance(instance)
        n = settings.instances_per_image
        size = settings.size
        image = np.zeros((size, size), np.uint8)
        mask = np.zeros((size, size), np.uint8)
        labels = np.zeros(n, np.int64)
        vmax = int(classes[:, 0].max())
        ends = np.zeros((n, 2, 2, vmax + 1 if settings.mask_mode != "M1" else 0))
        if settings.mode == "official":
            process, at = divmod(k, settings.images_per_process)
            official_image(self.process_state(process, at), classes, n, image, mask, labels, ends, GRAD)
        else:
            keys = np.array([stream_key(self.family.name, "image", settings.seed, k, i) for i in range(n)], np.uint64)
            native_image(keys, classes, image, mask, labels, ends, GRAD)
        if settings.mask_mode != "M1":
            mask = _polygon_mask(settings.mask_mode, size, classes, labels, ends)
        return Rendered(image, False, info={"classes": labels.tolist()}, mask=mask)

    def record(self, category: int, instance: int, rendered: Rendered) -> dict:
        """The image number, the class id of each instance in drawing order, and the render settings."""
        return {"image": int(instance), "classes": rendered.info["classes"], "render": self.settings.to_dict()}


def _corners(ends: np.ndarray, v: int) -> list:
    # A line's polygon as the official script lists it: each segment's two ends, in order.
    xs, ys = ends[0, : v + 1].tolist(), ends[1, : v + 1].tolist()
    out = []
    for j in range(v):
        out += [(xs[j], ys[j]), (xs[j + 1], ys[j + 1])]
    return out


def _polygon_mask(mode: str, size: int, classes: np.ndarray, labels: np.ndarray, ends: np.ndarray) -> np.ndarray:
    # The official script's M2/M3 masks, drawn with Pillow's polygon fill in instance order.
    mask = Image.new("L", (size, size))
    draw = ImageDraw.Draw(mask)
    for i, cls in enumerate(labels.tolist()):
        v = int(classes[cls - 1, 0])
        lines = int(classes[cls - 1, 1])
        last = _corners(ends[i, 1 if lines > 1 else 0], v)
        if mode == "M3":
            draw.polygon(last, fill=cls)
        elif lines > 1:  # M2: the ring between the first and the last line
            first = _corners(ends[i, 0], v)
            draw.polygon(last, fill=cls)
            draw.polygon(first, fill=0)
            draw.polygon(last, outline=cls)
            draw.polygon(first, outline=cls)
    return np.asarray(mask).copy()


FAMILY = SegRCDB()
