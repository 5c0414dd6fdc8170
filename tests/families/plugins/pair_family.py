"""A sample kind and a family defined by the test suite alone: a stereo-like pair of images and a class.

``PairKind`` stores ``<key>.cls``, ``<key>.json``, ``<key>.png`` (the left image) and
``<key>.right.png`` (a second image of the same size); a loader yields ``((left, right), label)``.
The ``toy-pair`` family (the toy family's stripes, the right image their negative) declares it as its
``sample_kind``. Registered through the ``fractalshards.families`` entry point, it must build, verify,
stream (every decode), preview, card and read through Ray Data without touching any library module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from toy_family import Toy

from fractalshards import png
from fractalshards.kinds import Decoding, SampleFormat
from fractalshards.kinds.base import check_png, decoded_png, pixel_differences
from fractalshards.kinds.image import ImageKind
from fractalshards.results import Rendered


class PairKind(ImageKind):
    """Two images of one size and a class."""

    name = "pair"
    members = ("cls", "json", "png", "right.png")
    yields = "((left, right), label)"
    noun = "image pair"
    member_doc = "`<key>.png` and `<key>.right.png` (the two images), `<key>.cls` (the category index as text)"

    def encode(self, rendered: Rendered, fmt: SampleFormat) -> dict[str, bytes]:
        out = super().encode(rendered, fmt)
        out["right.png"] = png.encode(rendered.parts["right"], fmt.compress_level, fmt.encoder)
        return out

    def check(self, sample: dict, fmt: SampleFormat, where: str) -> None:
        super().check(sample, fmt, where)
        check_png(sample.get("right.png", b""), fmt.shape[1], fmt.shape[0], png.GREY_FORMATS, where, "a right image")

    def arrays(self, sample: dict, fmt: SampleFormat, mode: str, where: str) -> dict[str, np.ndarray]:
        left = super().arrays(sample, fmt, mode, where)
        right = super().arrays({"png": sample["right.png"]}, fmt, mode, where)
        return {**left, **{f"right_{k}": v for k, v in right.items()}}

    def rendered_arrays(self, rendered: Rendered, fmt: SampleFormat, mode: str) -> dict[str, np.ndarray]:
        left = super().rendered_arrays(rendered, fmt, mode)
        right = super().rendered_arrays(Rendered(rendered.parts["right"], False), fmt, mode)
        return {**left, **{f"right_{k}": v for k, v in right.items()}}

    def output(self, arrays: dict[str, np.ndarray], label: int | None, decoding: Decoding) -> Any:
        left = self.image_of({k: v for k, v in arrays.items() if not k.startswith("right_")}, decoding)
        right = self.image_of({k[6:]: v for k, v in arrays.items() if k.startswith("right_")}, decoding)
        if decoding.transform is not None:
            left, right = decoding.transform(left), decoding.transform(right)
        return (left, right), label

    def compare(self, sample: dict, rendered: Rendered, fmt: SampleFormat, where: str) -> list[str]:
        stored = decoded_png(sample["right.png"], where, "a right image", fmt.shape)
        right = pixel_differences(where, "right image", stored, rendered.parts["right"])
        return super().compare(sample, rendered, fmt, where) + right

    def picture(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([arrays["image"], arrays["right_image"]], axis=1)

    def ray_row(self, sample: dict, fmt: SampleFormat, decode: bool, where: str) -> dict:
        row = super().ray_row(sample, fmt, decode, where)
        if decode:
            row["right"] = decoded_png(sample["right.png"], where, "a right image", fmt.shape)
        else:
            row["right_png"] = sample["right.png"]
        return row

    def hf_features(self) -> list[dict]:
        return [*super().hf_features(), {"name": "right.png", "dtype": "image"}]

    def croissant(self, file_set, field) -> tuple[list[dict], list[dict], str]:
        files, fields, _ = super().croissant(file_set, field)
        files.append(file_set("right-files", "the right images, one per sample", "image/png", "*.right.png"))
        fields.append(field("right", "sc:ImageObject", "the right image (PNG)", "content", files_id="right-files"))
        return files, fields, "one record per pair: the left image, the right image, the label and the key"


class ToyPair(Toy):
    name = "toy-pair"
    paper = "none: the test suite's own family, of its own sample kind"
    sample_kind = PairKind()

    def render(self, manifest, category, instance, settings):
        left = super().render(manifest, category, instance, settings).image
        return Rendered(left, False, parts={"right": 255 - left})


FAMILY = ToyPair()
