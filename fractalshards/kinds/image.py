"""The ``image`` kind: an image and a class (``<key>.cls``, ``<key>.json``, ``<key>.png``).

A loader yields ``(image, label)``. The PNG is the definition's encoder's (:mod:`fractalshards.png`):
two-level grey images as 1-bit palette PNGs, other grey images 8-bit grey, colour images RGB; every
stored PNG's header must be the definition's size and one of those formats before it is decoded.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import png
from ..errors import ShardIntegrityError
from ..results import Rendered, pack_rendered
from .base import Decoding, Field, FileSet, SampleFormat, SampleKind, check_png, decoded_png, image_output, pixel_differences

__all__ = ["ImageKind", "IMAGE"]

#: Croissant's label of a sample: the category index before the dash of its key (KEY_FORMAT).
LABEL_REGEX = "^([0-9]+)-[0-9]+\\.png$"


class ImageKind(SampleKind):
    """An image and a class (see the module doc)."""

    name = "image"
    members = ("cls", "json", "png")
    labelled = True
    hf_task = "image-classification"
    hf_task_id = "multi-class-image-classification"
    tag = "image-classification"
    task_words = "image-classification"
    yields = "(image, label)"
    noun = "image"
    member_doc = "`<key>.png` (the image), `<key>.cls` (the category index as text)"

    def layout(self, fmt: SampleFormat) -> png.PackedLayout:
        """Packed 1-bit rows of two-level images, grey bytes of other grey images, RGB bytes of colour."""
        height, width = fmt.shape[0], fmt.shape[1]
        if len(fmt.shape) == 3:
            return png.PackedLayout("rgb", height, width)
        return (
            png.PackedLayout("bits", height, width, fmt.level)
            if fmt.level is not None
            else png.PackedLayout("grey", height, width)
        )

    def encode(self, rendered: Rendered, fmt: SampleFormat) -> dict[str, bytes]:
        """``{"png": ...}`` with the definition's encoder and level (two-level renders from their bits)."""
        return {"png": png.encode(rendered.encodable, fmt.compress_level, fmt.encoder)}

    def check(self, sample: dict, fmt: SampleFormat, where: str) -> None:
        """The PNG's size and format are the definition's."""
        formats = png.COLOUR_FORMATS if len(fmt.shape) == 3 else png.GREY_FORMATS
        check_png(sample.get("png", b""), fmt.shape[1], fmt.shape[0], formats, where, "an image")

    def arrays(self, sample: dict, fmt: SampleFormat, mode: str, where: str) -> dict[str, np.ndarray]:
        """``{"packed": ...}`` in ``packed`` mode (straight from the PNG's rows), else ``{"image": pixels}``."""
        if mode == "packed":
            layout = self.layout(fmt)
            try:
                return {"packed": png.decode_packed(sample["png"], layout)}
            except Exception as exc:  # noqa: BLE001 - zlib and Pillow raise many types for a damaged image
                raise ShardIntegrityError(
                    f"{where} does not decode as its definition's {layout.kind} images ({type(exc).__name__}: {exc})"
                ) from exc
        return {"image": decoded_png(sample["png"], where, "an image", fmt.shape)}

    def rendered_arrays(self, rendered: Rendered, fmt: SampleFormat, mode: str) -> dict[str, np.ndarray]:
        """As :meth:`arrays`; two-level renders are packed from their 1-bit rows (no unpacking)."""
        if mode == "packed":
            return {"packed": pack_rendered(rendered, self.layout(fmt))}
        return {"image": rendered.image}

    def image_of(self, arrays: dict[str, np.ndarray], decoding: Decoding) -> Any:
        """The image part of :meth:`output` (a packed array as a tensor, else :func:`image_output`)."""
        if "packed" in arrays:
            import torch

            return torch.from_numpy(arrays["packed"])
        return image_output(arrays["image"], decoding)

    def output(self, arrays: dict[str, np.ndarray], label: int | None, decoding: Decoding) -> Any:
        """``(image, label)``, the transform applied to the image."""
        image = self.image_of(arrays, decoding)
        return (decoding.transform(image) if decoding.transform is not None else image), label

    def compare(self, sample: dict, rendered: Rendered, fmt: SampleFormat, where: str) -> list[str]:
        """The stored image's pixels against the render's."""
        return self._compare_png(sample, "png", "image", rendered.image, where)

    @staticmethod
    def _compare_png(sample: dict, member: str, what: str, fresh: np.ndarray, where: str) -> list[str]:
        try:
            stored = png.decode(sample[member], fresh.shape)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding, not a crash
            return [f"{where}: {what} does not decode ({type(exc).__name__})"]
        return pixel_differences(where, what, stored, fresh)

    def picture(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The image itself."""
        return arrays["image"]

    def ray_row(self, sample: dict, fmt: SampleFormat, decode: bool, where: str) -> dict:
        """``{"image": pixels, "label", "key"}``, or ``{"png": bytes, "label", "key"}`` undecoded."""
        row: dict = {"key": sample["__key__"], "label": self.label(sample, where)}
        if decode:
            row["image"] = decoded_png(sample["png"], where, "an image", fmt.shape)
        else:
            row["png"] = sample["png"]
        return row

    def hf_features(self) -> list[dict]:
        """``png`` (image), ``cls`` (int64), ``json`` (string)."""
        return [{"name": "png", "dtype": "image"}, {"name": "cls", "dtype": "int64"}, {"name": "json", "dtype": "string"}]

    def croissant(self, file_set: FileSet, field: Field) -> tuple[list[dict], list[dict], str]:
        """The PNGs and labels as FileSets; image, label and key fields."""
        files = [
            file_set("png-files", "the images, one per sample", "image/png", "*[0-9].png"),  # not the masks' *.seg.png
            file_set("cls-files", "the labels, one per sample: the category index as decimal text", "text/plain", "*.cls"),
        ]
        fields = [
            field("image", "sc:ImageObject", "the image (PNG)", "content"),
            field("label", "sc:Integer", "the category index (also the .cls member)", "filename", LABEL_REGEX),
            field("key", "sc:Text", "the webdataset key, <category>-<instance>", "filename", "^(.*)\\.png$"),
        ]
        return files, fields, "one record per image: the image, its label (category index) and its webdataset key"


#: The shipped instance.
IMAGE = ImageKind()
