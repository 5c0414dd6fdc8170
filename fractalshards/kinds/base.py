"""The :class:`SampleKind` interface: one class owns everything about one kind of sample.

A kind owns its tar members and their formats, encoding a rendered sample into them, checking
stored members against what the definition makes (sizes, shapes, dtypes, headers), every decode
mode of a loader (the packed layout included), what a sample is to a verifier, a preview, a dataset
card (Hugging Face features, Croissant fields) and a Ray Data row. The modules that do those things
call the kind; none of them branches on a kind's name.

What a kind needs of a definition is one :class:`SampleFormat`, computed once per definition
(:attr:`fractalshards.definition.DatasetDefinition.sample_format`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .. import png
from ..errors import ShardIntegrityError
from ..results import Rendered

__all__ = ["DECODES", "SampleFormat", "Decoding", "SampleKind", "FileSet", "Field"]

#: Decoding choices of a loader: ``tensor`` (uint8 CHW, 3 channels), ``float`` (normalised float32 CHW),
#: ``numpy`` (uint8 HWC, 3 channels), ``raw`` (the sample dict of bytes), ``packed`` (each image as
#: compact as its PNG: :class:`fractalshards.png.PackedLayout`).
DECODES = ("tensor", "float", "numpy", "raw", "packed")

#: ``file_set(id, description, encoding, includes)``: a Croissant FileSet over the dataset's shards.
FileSet = Callable[[str, str, str, str], dict]
#: ``field(name, data_type, description, file_property, regex=None, files_id=...)``: a Croissant Field.
Field = Callable[..., dict]


@dataclass(frozen=True)
class SampleFormat:
    """What a definition decides about its samples' data: the family's sample shape (``(H, W)`` grey,
    ``(H, W, 3)`` colour, ``(N, 3)`` points), the grey level of two-level images (None otherwise) and
    the PNG level and encoder. Every sample of the definition is written, checked and read against it."""

    shape: tuple[int, ...]
    level: int | None = None
    compress_level: int = 1
    encoder: str = png.DEFAULT_ENCODER


@dataclass(frozen=True)
class Decoding:
    """How a loader decodes: ``mode`` (one of :data:`DECODES` but ``raw``), the normalisation of
    ``float`` and a ``transform`` applied to what the kind yields."""

    mode: str = "tensor"
    mean: float = 0.2
    std: float = 0.5
    transform: Callable | None = None


class SampleKind:
    """What a sample of one kind is, on disk and everywhere it is read (see the module doc).

    Subclasses set the class attributes and implement the methods that raise
    ``NotImplementedError``; register an instance with :func:`fractalshards.kinds.register_kind`, or
    give it as a family's :attr:`~fractalshards.families.Family.sample_kind`.
    """

    #: Registry name (a family names its kind by it).
    name: ClassVar[str] = ""
    #: Member extensions, in stored order (``cls`` holds the label of labelled kinds, ``json`` the record).
    members: ClassVar[tuple[str, ...]] = ()
    #: Whether samples carry a class label (a ``cls`` member).
    labelled: ClassVar[bool] = True
    #: Hugging Face ``task_categories`` and ``task_ids`` of a dataset card, and the card's task tag.
    hf_task: ClassVar[str] = "other"
    hf_task_id: ClassVar[str] = ""
    tag: ClassVar[str] = ""
    #: The task in a card's sentence ("a formula-driven <task> dataset").
    task_words: ClassVar[str] = ""
    #: What a loader yields, in words (for docs and ``info``).
    yields: ClassVar[str] = ""
    #: One sample, in words (plural with an "s").
    noun: ClassVar[str] = "sample"
    #: The data and label members, in a card's words ("Each sample is <member_doc> and <key>.json").
    member_doc: ClassVar[str] = ""

    @property
    def data_members(self) -> tuple[str, ...]:
        """The members that hold the sample's data (not its label or record)."""
        return tuple(m for m in self.members if m not in ("cls", "json"))

    def __repr__(self) -> str:
        return f"<sample kind {self.name!r}>"

    # -- the definition's format ---------------------------------------------------------
    def layout(self, fmt: SampleFormat) -> png.PackedLayout | None:
        """What ``decode="packed"`` gives of a sample's image (None: the kind has no image)."""
        return None

    # -- writing --------------------------------------------------------------------------
    def encode(self, rendered: Rendered, fmt: SampleFormat) -> dict[str, bytes]:
        """The data members of a rendered sample (:attr:`data_members`), bytes the same on every machine."""
        raise NotImplementedError

    # -- checking what is stored ----------------------------------------------------------
    def check(self, sample: dict, fmt: SampleFormat, where: str) -> None:
        """A :class:`ShardIntegrityError` unless every data member of ``sample`` has the header, size,
        shape and dtype ``fmt`` makes (read before anything is decoded). ``where`` names the sample."""
        raise NotImplementedError

    # -- reading --------------------------------------------------------------------------
    def arrays(self, sample: dict, fmt: SampleFormat, mode: str, where: str) -> dict[str, np.ndarray]:
        """The decoded data of a stored sample (``image``/``mask``/``points``/``packed``... by kind); a
        :class:`ShardIntegrityError` naming ``where`` when a member does not decode."""
        raise NotImplementedError

    def rendered_arrays(self, rendered: Rendered, fmt: SampleFormat, mode: str) -> dict[str, np.ndarray]:
        """:meth:`arrays` of a fresh render (nothing encoded): the same arrays as its stored members give."""
        raise NotImplementedError

    def output(self, arrays: dict[str, np.ndarray], label: int | None, decoding: Decoding) -> Any:
        """What a loader yields for a sample (:attr:`yields`) in ``decoding``'s mode."""
        raise NotImplementedError

    def label(self, sample: dict, where: str) -> int | None:
        """The label of a stored sample (its ``cls`` member), None for an unlabelled kind."""
        if not self.labelled:
            return None
        if "cls" not in sample:
            raise ShardIntegrityError(f"{where} has no cls member; the shard is not a fractalshards dataset")
        try:
            return int(sample["cls"])
        except ValueError as exc:
            raise ShardIntegrityError(f"{where} has a label {sample['cls'][:20]!r} that is not an integer") from exc

    def decode(self, sample: dict, fmt: SampleFormat, decoding: Decoding, where: str) -> Any:
        """A stored sample as a loader yields it."""
        for member in self.data_members:
            if member not in sample:
                raise ShardIntegrityError(f"{where} has no {member} member; the shard is not a fractalshards dataset")
        label = self.label(sample, where)
        return self.output(self.arrays(sample, fmt, decoding.mode, where), label, decoding)

    def decode_rendered(self, rendered: Rendered, label: int, fmt: SampleFormat, decoding: Decoding) -> Any:
        """A fresh render as a loader yields it: what :meth:`decode` gives of its stored members."""
        return self.output(self.rendered_arrays(rendered, fmt, decoding.mode), label if self.labelled else None, decoding)

    # -- verifying ------------------------------------------------------------------------
    def compare(self, sample: dict, rendered: Rendered, fmt: SampleFormat, where: str) -> list[str]:
        """How a stored sample's data differs from a fresh render of it (an empty list: not at all)."""
        raise NotImplementedError

    # -- showing and describing -----------------------------------------------------------
    def picture(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """A preview tile of a sample (uint8 grey or RGB) from its ``numpy`` :meth:`arrays`."""
        raise NotImplementedError

    def ray_row(self, sample: dict, fmt: SampleFormat, decode: bool, where: str) -> dict:
        """A Ray Data row of a stored (checked) sample: decoded arrays, or the members' bytes."""
        raise NotImplementedError

    def hf_features(self) -> list[dict]:
        """The ``dataset_info.features`` of a Hugging Face dataset card."""
        raise NotImplementedError

    def croissant(self, file_set: FileSet, field: Field) -> tuple[list[dict], list[dict], str]:
        """Croissant 1.1 FileSets, the record set's Fields and its description, built with ``file_set``
        and ``field`` (:mod:`fractalshards.card`'s helpers)."""
        raise NotImplementedError

    def describe(self, totals: dict, num_classes: int) -> str:
        """What a dataset of this kind holds, in a card's words (``totals`` of its manifest)."""
        grid = f"{totals['categories']:,} categories x {totals['instances_per_category']:,} instances"
        return f"{grid} = {totals['samples']:,} {self.noun}s"


# -- helpers the shipped kinds share ----------------------------------------------------------------
def check_png(data: bytes, width: int, height: int, formats: tuple, where: str, what: str) -> None:
    """A :class:`ShardIntegrityError` unless ``data`` is a PNG that :func:`fractalshards.png.parse` accepts,
    of ``width`` x ``height`` in one of ``formats``."""
    try:
        header = png.parse(data).header
    except ValueError as exc:
        raise ShardIntegrityError(
            f"{where} has {what} that is not a sound PNG ({exc}); the shard was altered or crafted"
        ) from exc
    if header[:2] != (width, height) or header[2:] not in formats:
        raise ShardIntegrityError(
            f"{where} has {what} header {header} where the definition makes {width}x{height} ones; "
            "the shard was altered or crafted"
        )


def decoded_png(data: bytes, where: str, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`fractalshards.png.decode` to exactly ``shape`` (the plan's), a damaged PNG or another shape a
    :class:`ShardIntegrityError` naming ``where``."""
    try:
        return png.decode(data, shape)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a damaged image
        raise ShardIntegrityError(f"{where} has {what} that does not decode ({type(exc).__name__}: {exc})") from exc


def image_output(pixels: np.ndarray, decoding: Decoding) -> Any:
    """An image's pixels (uint8 ``(H, W)`` or ``(H, W, 3)``) in a decode mode: HWC arrays of 3 channels
    (``numpy``), uint8 CHW tensors (``tensor``) or normalised float32 ones (``float``)."""
    if decoding.mode == "numpy":
        return np.ascontiguousarray(np.broadcast_to(pixels[..., None], (*pixels.shape, 3)) if pixels.ndim == 2 else pixels)
    import torch

    # Contiguous CHW: collating stride-0 views is several times slower than copying here.
    chw = np.broadcast_to(pixels, (3, *pixels.shape)) if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    image = torch.from_numpy(np.ascontiguousarray(chw))
    if decoding.mode == "float":
        image = (image.float() / 255.0 - decoding.mean) / decoding.std
    return image


def pixel_differences(where: str, what: str, stored: np.ndarray, fresh: np.ndarray) -> list[str]:
    """A verifier's finding when ``stored`` pixels are not ``fresh``'s (an empty list when they are)."""
    if stored.shape == fresh.shape and np.array_equal(stored, fresh):
        return []
    differing = int(np.count_nonzero(stored != fresh)) if stored.shape == fresh.shape else -1
    return [f"{where}: {what} pixels differ from a fresh render ({differing if differing >= 0 else 'shape'} differ)"]
