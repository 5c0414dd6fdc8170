"""A dataset definition and its shard plan.

A dataset is ``(category manifest, instances per category K, render settings,
seed)``, cut into shards of ``shard_size`` samples. Sample ``(category c,
instance i)`` has the pair index ``c * K + i``; a seeded permutation of all pair
indices (Fisher-Yates on a SplitMix64 stream, :func:`fractalshards.kernel.hash_permutation`)
gives the global sample order, and shard ``s`` holds positions
``s * shard_size .. (s + 1) * shard_size - 1`` of it, so every shard mixes categories.
The plan depends on nothing but the definition: any number of workers, any
machine, the same shards.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import kernel
from .errors import ConfigError, check_choice
from .families import DEFAULT_FAMILY, Family
from .manifest import CategoryManifest, canonical_hash
from .png import DEFAULT_ENCODER, ENCODERS, LEGACY_ENCODER
from .render import stream_key

__all__ = ["ORDER", "KEY_FORMAT", "SHARD_FORMAT", "DatasetDefinition", "ShardSpec", "sample_key", "seeded_permutation"]

#: Name of the sample-order algorithm, recorded in manifests.
ORDER = "splitmix64-fisher-yates-v1"
#: webdataset key of a sample (no dots: webdataset splits the extension at the first dot).
KEY_FORMAT = "{category:06d}-{instance:04d}"
#: Shard file names.
SHARD_FORMAT = "shard-{index:06d}.tar"


def sample_key(category: int, instance: int) -> str:
    """The webdataset key of a sample, e.g. ``000007-0063``."""
    return KEY_FORMAT.format(category=category, instance=instance)


@dataclass(frozen=True)
class ShardSpec:
    """What one task builds: the shard's index, name and (category, instance) pairs in order."""

    index: int
    name: str
    pairs: tuple[tuple[int, int], ...]

    @property
    def samples(self) -> int:
        """Number of samples in the shard."""
        return len(self.pairs)


@dataclass(frozen=True)
class DatasetDefinition:
    """Everything that decides a dataset's bytes: the categories (and so the family), K instances
    per category, the family's render settings, the shard size and the PNG level and encoder
    (:mod:`fractalshards.png`; definitions stored before encoders were named are ``pillow``)."""

    categories: CategoryManifest = field(repr=False)
    instances: int
    render: Any
    shard_size: int = 1000
    name: str = ""
    png_compress_level: int = 1
    png_encoder: str = DEFAULT_ENCODER

    def __post_init__(self) -> None:
        top = self.family.instances_per_category
        if not isinstance(self.instances, int) or not 1 <= self.instances <= top:
            raise ConfigError(f"instances: {self.instances!r} is out of range for the {self.family.name} family; "
                              f"use an integer in 1..{top}")
        if not isinstance(self.render, self.family.Settings):
            raise ConfigError(f"render: {type(self.render).__name__} are not render settings of the {self.family.name} family")
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise ConfigError(f"shard_size: {self.shard_size!r} is not valid; use a positive integer (default 1000)")
        if not 0 <= self.png_compress_level <= 9:
            raise ConfigError(f"png_compress_level: {self.png_compress_level!r} is out of range; use 0..9")
        check_choice("png_encoder", self.png_encoder, ENCODERS)
        if not self.name:
            object.__setattr__(self, "name", self.categories.name)

    @property
    def family(self) -> Family:
        """The family of the categories."""
        return self.categories.family

    @property
    def seed(self) -> int:
        """The dataset seed: sample order, patch masks and native streams."""
        return self.render.seed

    @property
    def num_categories(self) -> int:
        """Number of categories."""
        return len(self.categories)

    @property
    def num_samples(self) -> int:
        """Categories x instances."""
        return self.num_categories * self.instances

    @property
    def num_shards(self) -> int:
        """Shards of ``shard_size`` samples (the last may be smaller)."""
        return math.ceil(self.num_samples / self.shard_size)

    def estimated_bytes(self) -> int:
        """Rough size of all shards (scales with image area)."""
        return int(self.family.bytes_per_sample(self.render) * self.num_samples)

    def to_dict(self) -> dict:
        """The definition as JSON-able data (the categories by content hash)."""
        data = {
            "name": self.name,
            "categories": {"name": self.categories.name, "content_hash": self.categories.content_hash, "count": self.num_categories},
            "instances_per_category": self.instances,
            "seed": self.seed,
            "render": self.render.to_dict(),
            "shard_size": self.shard_size,
            "png": {"compress_level": self.png_compress_level, "grey": "1-bit palette when two-valued, else 8-bit"},
            "order": ORDER,
            "key_format": KEY_FORMAT,
            "shard_format": SHARD_FORMAT,
            "sample": {"png": "image", "cls": "category index as decimal text", "json": "sample parameters"},
        }
        if self.family.name != DEFAULT_FAMILY:  # fractaldb definitions keep their fingerprints
            data["family"] = self.family.name
        if self.png_encoder != LEGACY_ENCODER:  # so do definitions stored before encoders were named
            data["png"]["encoder"] = self.png_encoder
        return data

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the canonical definition."""
        return canonical_hash(self.to_dict())

    def order(self) -> np.ndarray:
        """Pair indices (``category * K + instance``) in sample order."""
        return _order(self.num_samples, self.seed)

    def shard_specs(self) -> list[ShardSpec]:
        """The shards, in index order."""
        return [self.shard_spec(index) for index in range(self.num_shards)]

    def shard_spec(self, index: int) -> ShardSpec:
        """Shard ``index`` alone (cheap: the order is computed once and cached)."""
        chunk = self.order()[index * self.shard_size : (index + 1) * self.shard_size]
        k = self.instances
        return ShardSpec(index, SHARD_FORMAT.format(index=index), tuple((int(p) // k, int(p) % k) for p in chunk))

    def shard_sizes(self) -> list[tuple[str, int]]:
        """``(name, samples)`` of every shard, without building their sample lists."""
        n, size = self.num_samples, self.shard_size
        return [(SHARD_FORMAT.format(index=i), min(size, n - i * size)) for i in range(self.num_shards)]


def seeded_permutation(n: int, *key_parts: object) -> np.ndarray:
    """A permutation of ``0 .. n-1`` from the counter stream keyed by ``key_parts``
    (the same on any machine and numpy version)."""
    out = np.empty(n, np.int64)
    kernel.hash_permutation(stream_key(*key_parts), out)
    return out


@functools.lru_cache(maxsize=4)
def _order(n: int, seed: int) -> np.ndarray:
    out = seeded_permutation(n, "order", seed)
    out.setflags(write=False)
    return out
