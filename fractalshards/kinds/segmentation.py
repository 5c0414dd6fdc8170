"""The ``segmentation`` kind: an image and its per-pixel class mask (``<key>.json``, ``<key>.png``,
``<key>.seg.png``).

The mask holds uint8 class ids (0 = background) as an 8-bit grey PNG of the image's size, whatever
its values (a reader takes the bytes as ids). A loader yields ``(image, mask)``; a transform is a
joint one, ``transform(image, mask)`` (the same crop and flip on both).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import png
from ..results import Rendered
from .base import Decoding, Field, FileSet, SampleFormat, check_png, decoded_png
from .image import ImageKind

__all__ = ["SegmentationKind", "SEGMENTATION", "MASK_FORMATS", "PALETTE"]

#: A mask is an 8-bit grey PNG (class ids; 0 is the background).
MASK_FORMATS = ((8, 0),)


def _palette() -> np.ndarray:
    # Class id -> a colour: 0 black, the others spread around the hue circle (golden-ratio steps).
    hue = (np.arange(256) * 0.6180339887) % 1.0
    k = (np.array([5.0, 3.0, 1.0])[None, :] + hue[:, None] * 6.0) % 6.0
    rgb = 1.0 - 0.75 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)  # HSV with saturation 0.75, value 1
    out = (rgb * 255).astype(np.uint8)
    out[0] = 0
    return out


#: The colours a preview shows class ids in.
PALETTE = _palette()


class SegmentationKind(ImageKind):
    """An image and its class mask (see the module doc)."""

    name = "segmentation"
    members = ("json", "png", "seg.png")
    labelled = False
    hf_task = "image-segmentation"
    hf_task_id = "semantic-segmentation"
    tag = "image-segmentation"
    task_words = "image-segmentation"
    yields = "(image, mask)"
    member_doc = "`<key>.png` (the image), `<key>.seg.png` (its class mask: 8-bit grey class ids, 0 = background)"

    def encode(self, rendered: Rendered, fmt: SampleFormat) -> dict[str, bytes]:
        """The image's PNG and the mask as 8-bit grey."""
        out = super().encode(rendered, fmt)
        out["seg.png"] = png.encode_grey8(rendered.mask, fmt.compress_level, fmt.encoder)
        return out

    def check(self, sample: dict, fmt: SampleFormat, where: str) -> None:
        """The image's header, and the mask's: 8-bit grey, the image's size."""
        super().check(sample, fmt, where)
        check_png(sample.get("seg.png", b""), fmt.shape[1], fmt.shape[0], MASK_FORMATS, where, "a mask")

    def arrays(self, sample: dict, fmt: SampleFormat, mode: str, where: str) -> dict[str, np.ndarray]:
        """The image's arrays and ``mask``."""
        mask = decoded_png(sample["seg.png"], where, "a mask", fmt.shape[:2])
        return {**super().arrays(sample, fmt, mode, where), "mask": mask}

    def rendered_arrays(self, rendered: Rendered, fmt: SampleFormat, mode: str) -> dict[str, np.ndarray]:
        """The image's arrays and the render's ``mask``."""
        return {**super().rendered_arrays(rendered, fmt, mode), "mask": rendered.mask}

    def output(self, arrays: dict[str, np.ndarray], label: int | None, decoding: Decoding) -> Any:
        """``(image, mask)``: the mask a uint8 ``(H, W)`` tensor (an array in ``numpy`` mode)."""
        mask = arrays["mask"]
        mask = np.ascontiguousarray(mask) if mask.flags.writeable else np.array(mask)  # Pillow's arrays are read-only
        image = self.image_of(arrays, decoding)
        if decoding.mode != "numpy":
            import torch

            mask = torch.from_numpy(mask)
        if decoding.transform is not None:  # a joint transform: the same crop and flip on both
            return decoding.transform(image, mask)
        return image, mask

    def compare(self, sample: dict, rendered: Rendered, fmt: SampleFormat, where: str) -> list[str]:
        """The image's and the mask's pixels against the render's."""
        return super().compare(sample, rendered, fmt, where) + self._compare_png(sample, "seg.png", "mask", rendered.mask, where)

    def picture(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The image, and beside it the mask in :data:`PALETTE` (class 0 black)."""
        image = arrays["image"]
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        return np.concatenate([rgb, PALETTE[arrays["mask"]]], axis=1)

    def ray_row(self, sample: dict, fmt: SampleFormat, decode: bool, where: str) -> dict:
        """``{"image", "mask", "key"}``, or ``{"png", "mask_png", "key"}`` undecoded."""
        row: dict = {"key": sample["__key__"]}
        if decode:
            row["image"] = decoded_png(sample["png"], where, "an image", fmt.shape)
            row["mask"] = decoded_png(sample["seg.png"], where, "a mask", fmt.shape[:2])
        else:
            row["png"] = sample["png"]
            row["mask_png"] = sample["seg.png"]
        return row

    def hf_features(self) -> list[dict]:
        """``png`` and ``seg.png`` (images), ``json`` (string)."""
        return [{"name": "png", "dtype": "image"}, {"name": "seg.png", "dtype": "image"}, {"name": "json", "dtype": "string"}]

    def croissant(self, file_set: FileSet, field: Field) -> tuple[list[dict], list[dict], str]:
        """The images and masks as FileSets; image, mask and key fields."""
        files, fields, _ = super().croissant(file_set, field)
        files[1] = file_set(
            "mask-files", "the class masks, one per image: 8-bit grey PNG of class ids (0 = background)", "image/png", "*.seg.png"
        )
        mask_doc = "the class mask (8-bit grey PNG of class ids, 0 = background)"
        fields[1] = field("mask", "sc:ImageObject", mask_doc, "content", files_id="mask-files")
        return files, fields, "one record per image: the image, its class mask and its webdataset key"

    def describe(self, totals: dict, num_classes: int) -> str:
        """Images and masks, and the classes of the masks."""
        return f"{totals['samples']:,} images and their class masks ({num_classes:,} classes, 0 = background)"


#: The shipped instance.
SEGMENTATION = SegmentationKind()
