"""The ``points`` kind: a point cloud and a class (``<key>.cls``, ``<key>.json``, ``<key>.npy``).

The ``.npy`` member is float32 ``(N, 3)`` in NumPy's format 1.0, C order, written byte for byte the
same everywhere; reading accepts exactly the header written for the definition's point count (parsed
here: never ``np.load``, never a pickle), so a re-signed shard cannot smuggle in another shape or
dtype. A loader yields ``(points, label)``: a float32 tensor (an array in ``numpy`` mode).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from ..errors import ShardIntegrityError
from ..results import Rendered
from .base import Decoding, Field, FileSet, SampleFormat, SampleKind

__all__ = ["PointsKind", "POINTS", "npy_header", "npy_bytes", "decode_npy"]

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


class PointsKind(SampleKind):
    """A point cloud and a class (see the module doc); the format's shape is ``(N, 3)``."""

    name = "points"
    members = ("cls", "json", "npy")
    labelled = True
    hf_task = "other"
    hf_task_id = "point-cloud-classification"
    tag = "point-cloud"
    task_words = "point-cloud classification"
    yields = "(points, label)"
    noun = "point cloud"
    member_doc = "`<key>.npy` (the points: float32 (N, 3), NumPy's .npy format), `<key>.cls` (the category index as text)"

    def encode(self, rendered: Rendered, fmt: SampleFormat) -> dict[str, bytes]:
        """``{"npy": ...}``: the points as float32."""
        return {"npy": npy_bytes(rendered.points)}

    def check(self, sample: dict, fmt: SampleFormat, where: str) -> None:
        """The ``.npy`` member is exactly the header and size of the definition's point count."""
        count = int(fmt.shape[0])
        data = sample.get("npy", b"")
        header = npy_header(count)
        if data[: len(header)] != header or len(data) != len(header) + 12 * count:
            raise ShardIntegrityError(
                f"{where} is not a float32 ({count}, 3) point cloud as the definition makes; the shard was altered or crafted"
            )

    def _points(self, sample: dict, fmt: SampleFormat, where: str) -> np.ndarray:
        try:
            return decode_npy(sample.get("npy", b""), int(fmt.shape[0]))
        except ValueError as exc:
            raise ShardIntegrityError(f"{where}: its npy member {exc}") from exc

    def arrays(self, sample: dict, fmt: SampleFormat, mode: str, where: str) -> dict[str, np.ndarray]:
        """``{"points": float32 (N, 3)}`` (every mode)."""
        return {"points": self._points(sample, fmt, where)}

    def rendered_arrays(self, rendered: Rendered, fmt: SampleFormat, mode: str) -> dict[str, np.ndarray]:
        """The render's points as float32 (what the stored ``.npy`` holds)."""
        return {"points": np.asarray(rendered.points, np.float32)}

    def output(self, arrays: dict[str, np.ndarray], label: int | None, decoding: Decoding) -> Any:
        """``(points, label)``: a float32 ``(N, 3)`` tensor, or the array in ``numpy`` mode."""
        points = arrays["points"]
        if decoding.mode != "numpy":
            import torch

            points = torch.from_numpy(np.array(points, np.float32))
        return (decoding.transform(points) if decoding.transform is not None else points), label

    def compare(self, sample: dict, rendered: Rendered, fmt: SampleFormat, where: str) -> list[str]:
        """The stored points against the render's, as float32."""
        try:
            stored = decode_npy(sample.get("npy", b""), len(rendered.points))
        except ValueError as exc:
            return [f"{where}: points do not decode ({exc})"]
        if not np.array_equal(stored, np.asarray(rendered.points, np.float32)):
            return [f"{where}: points differ from a fresh render"]
        return []

    def picture(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """The cloud's x-y projection, 128 px."""
        pts = np.asarray(arrays["points"], np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        span = float(max(hi[0] - lo[0], hi[1] - lo[1])) or 1.0
        side = 128
        cols = ((pts[:, 0] - lo[0]) / span * (side - 1)).astype(np.int64)
        rows = (side - 1 - (pts[:, 1] - lo[1]) / span * (side - 1)).astype(np.int64)
        out = np.zeros((side, side), np.uint8)
        out[rows, cols] = 255
        return out

    def ray_row(self, sample: dict, fmt: SampleFormat, decode: bool, where: str) -> dict:
        """``{"points": float32 (N, 3), "label", "key"}``, or ``{"npy": bytes, "label", "key"}`` undecoded."""
        row: dict = {"key": sample["__key__"], "label": self.label(sample, where)}
        row.update({"points": self._points(sample, fmt, where)} if decode else {"npy": sample["npy"]})
        return row

    def hf_features(self) -> list[dict]:
        """``npy`` (binary), ``cls`` (int64), ``json`` (string)."""
        return [{"name": "npy", "dtype": "binary"}, {"name": "cls", "dtype": "int64"}, {"name": "json", "dtype": "string"}]

    def croissant(self, file_set: FileSet, field: Field) -> tuple[list[dict], list[dict], str]:
        """The clouds and labels as FileSets; points (an array field), label and key fields."""
        files = [
            file_set(
                "npy-files",
                "the point clouds, one per sample: float32 (N, 3) arrays in NumPy's .npy format 1.0",
                "application/x-npy",
                "*.npy",
            ),
            file_set("cls-files", "the labels, one per sample: the category index as decimal text", "text/plain", "*.cls"),
        ]
        points = field("points", "sc:Float", "the point cloud, float32 (N, 3) (.npy)", "content", files_id="npy-files")
        points.update({"isArray": True, "arrayShape": "-1,3"})
        label_doc = "the category index (also the .cls member)"
        label = field("label", "sc:Integer", label_doc, "filename", "^([0-9]+)-[0-9]+\\.npy$", "npy-files")
        key = field("key", "sc:Text", "the webdataset key, <category>-<instance>", "filename", "^(.*)\\.npy$", "npy-files")
        return (
            files,
            [points, label, key],
            "one record per point cloud: the points, its label (category index) and its webdataset key",
        )


#: The shipped instance.
POINTS = PointsKind()
