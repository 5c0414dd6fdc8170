"""Saved generator states: the one on-disk cache (``$FRACTALSHARDS_CACHE/streams/``) of every family whose
renders replay a long random stream (the official contour threads, ExFractalDB's official instance pass).

A cache file holds named arrays (``.npz``, stored, never pickled) that the family can always compute
again. What is read is untrusted: the cache folder may be shared, a file truncated, planted or written by
another version. So a read is bounded before it happens (the file's size, and every member's, against the
largest layout the family allows), never goes through a symbolic link, and its arrays must have exactly
the shapes and dtypes of the family's :class:`StateLayout`, then pass the family's spot-check; a file that
fails any of these is computed again, never used. One process per machine computes a file (an ``flock``
beside it); the others wait and read it.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ShardIntegrityError
from .hashing import canonical_hash, version_id
from .storage import atomic_write, cache_root, locked, read_regular

__all__ = ["StateLayout", "saved_states", "states_path"]

#: Room for the ``.npz`` container around the arrays (zip headers, ``.npy`` headers).
_SLACK = 64 * 1024


@dataclass(frozen=True)
class StateLayout:
    """The arrays of a cache file: ``rows`` (name -> (shape after the leading count, dtype)) grow with the
    count of saved items, at most ``most``; ``fixed`` (name -> (shape, dtype)) do not."""

    rows: dict
    fixed: dict
    most: int

    def expected(self, count: int) -> dict:
        """Name -> (shape, dtype) of a file of ``count`` items."""
        out = {name: ((count, *shape), np.dtype(dtype)) for name, (shape, dtype) in self.rows.items()}
        out.update({name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in self.fixed.items()})
        return out

    def max_bytes(self) -> int:
        """The largest file this layout allows."""
        return _SLACK + sum(math.prod(shape) * dtype.itemsize for shape, dtype in self.expected(self.most).values())

    def count(self, saved: dict) -> int:
        """How many items ``saved`` holds."""
        return len(saved[next(iter(self.rows))])


def states_path(family: str, key: dict) -> Path:
    """The cache file of ``family``'s stream ``key`` (96 bits of its canonical hash)."""
    return cache_root() / "streams" / f"{family}-{version_id(canonical_hash({'family': family, **key}), 24)}.npz"


def saved_states(
    family: str,
    key: dict,
    layout: StateLayout,
    *,
    enough: Callable[[dict], bool],
    extend: Callable[[dict | None], dict],
    check: Callable[[dict], bool] = lambda saved: True,
) -> dict:
    """The saved states of ``family``'s stream ``key``: read from the cache when the file there is sound
    (``layout``) and passes ``check`` (a spot-check against a fresh replay), else ``extend(None)``;
    ``extend(saved)`` when what is there is not ``enough``; a new or extended set is written back whole."""
    path = states_path(family, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.parent / f".{path.name}.lock"):
        saved = _read(path, layout)
        if saved is not None and not check(saved):
            saved = None  # a shared folder's states that do not replay are replayed again
        if saved is None or not enough(saved):
            saved = extend(saved)
            atomic_write(path, lambda fh: np.savez(fh, **saved))
    return saved


def _read(path: Path, layout: StateLayout) -> dict | None:
    limit = layout.max_bytes()
    try:  # storage's one bounded read: no symlink, no FIFO, the size checked first
        data = read_regular(path, limit, why="the states' layout allows")
    except (FileNotFoundError, ShardIntegrityError):  # missing, a link, a device or too big: computed again
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            # np.savez stores: a deflated member could expand past what the file's size bounds.
            if any(m.compress_type != zipfile.ZIP_STORED or m.file_size > limit for m in members):
                return None
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            if set(arrays.files) != set(layout.rows) | set(layout.fixed):
                return None
            saved = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    first = saved[next(iter(layout.rows))]
    count = len(first) if first.ndim else -1
    if not 0 < count <= layout.most:
        return None
    for name, (shape, dtype) in layout.expected(count).items():
        if saved[name].shape != shape or saved[name].dtype != dtype:
            return None
    return saved
