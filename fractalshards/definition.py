"""A dataset definition and its shard plan.

A dataset is ``(category manifest, instances per category K, render settings,
seed)``, cut into shards of ``shard_size`` samples. Sample ``(category c,
instance i)`` has the pair index ``c * K + i``; a seeded permutation of all pair
indices (Fisher-Yates on a SplitMix64 stream, :func:`fractalshards.seeds.seeded_permutation`)
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

from .categories import CategoryManifest
from .errors import ConfigError, check_choice, check_dataset_name, is_int
from .families import DEFAULT_FAMILY, Family, Renderer
from .hashing import canonical_hash, version_id
from .kinds import SampleFormat, SampleKind, get_kind
from .limits import accepts_limits, check
from .png import DEFAULT_ENCODER, ENCODERS, LEGACY_ENCODER, PackedLayout
from .seeds import seeded_permutation

__all__ = [
    "ORDER",
    "KEY_FORMAT",
    "SHARD_FORMAT",
    "DEFINITION_FORMAT",
    "DEFINITION_FORMATS",
    "DEFAULT_INSTANCES",
    "DatasetDefinition",
    "ShardSpec",
    "sample_key",
]

#: Name of the sample-order algorithm, recorded in manifests.
ORDER = "splitmix64-fisher-yates-v1"
#: webdataset key of a sample (no dots: webdataset splits the extension at the first dot).
KEY_FORMAT = "{category:06d}-{instance:04d}"
#: Shard file names.
SHARD_FORMAT = "shard-{index:06d}.tar"
#: The wire format new definitions are written in, and every format this version reads.
DEFINITION_FORMAT = 2
DEFINITION_FORMATS = (1, 2)
#: Instances per category when neither the user nor a preset says (capped by the family's instance space).
DEFAULT_INSTANCES = 1000


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
    #: The wire format of :meth:`to_dict` (:data:`DEFINITION_FORMATS`); stored definitions keep theirs.
    definition_format: int = DEFINITION_FORMAT

    def __post_init__(self) -> None:
        check_choice("definition_format", self.definition_format, DEFINITION_FORMATS)
        top = self.family.instances_per_category
        if not is_int(self.instances) or not 1 <= self.instances <= top:
            raise ConfigError(
                f"instances: {self.instances!r} is out of range for the {self.family.name} family; use an integer in 1..{top}"
            )
        if not isinstance(self.render, self.family.Settings):
            raise ConfigError(f"render: {type(self.render).__name__} are not render settings of the {self.family.name} family")
        if not is_int(self.shard_size) or self.shard_size < 1:
            raise ConfigError(f"shard_size: {self.shard_size!r} is not valid; use a positive integer (default 1000)")
        if not is_int(self.png_compress_level) or not 0 <= self.png_compress_level <= 9:
            raise ConfigError(f"png_compress_level: {self.png_compress_level!r} is not valid; use an integer in 0..9")
        check_choice("png_encoder", self.png_encoder, ENCODERS)
        # Bounds before anything is allocated (the sample order holds 8 bytes per sample).
        check("instances", self.instances, "instances")
        check("shard_size", self.shard_size, "shard_size")
        check("samples", self.num_samples, "samples")
        check("shards", self.num_shards, "shards")  # every shard is planned when the definition is opened
        self.family.check_limits(self.categories, self.render)
        if not self.name:
            object.__setattr__(self, "name", self.categories.name)
        check_dataset_name(self.name, "name", "definition")  # what every reader of its manifest checks

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
        """Groups (categories, unless the family plans otherwise) x instances."""
        return self.num_groups * self.instances

    @property
    def num_groups(self) -> int:
        """How many groups samples are planned in (:meth:`fractalshards.families.Family.sample_groups`)."""
        return self.family.sample_groups(self.categories)

    @property
    def kind(self) -> SampleKind:
        """What a sample is (:mod:`fractalshards.kinds`)."""
        return get_kind(self.family.sample_kind)

    @property
    def num_shards(self) -> int:
        """Shards of ``shard_size`` samples (the last may be smaller)."""
        return math.ceil(self.num_samples / self.shard_size)

    def estimated_bytes(self) -> int:
        """Rough size of all shards (scales with image area)."""
        return int(self.family.bytes_per_sample(self.render) * self.num_samples)

    def to_dict(self) -> dict:
        """The hashed definition: what decides the bytes of every shard, and nothing else.

        ``definition_format`` 2 (written since 0.2) holds only byte-deciding fields: the family,
        the categories by content hash, K, the render settings (the seed among them), the shard
        size, the PNG level and encoder, and the names of the sample-order, key and shard-name
        algorithms. A definition read from storage keeps the format it was written in, so format
        1 definitions (with the dataset name and descriptive texts) keep their fingerprints.
        """
        if self.definition_format == 1:
            return self._to_dict_v1()
        return {
            "definition_format": self.definition_format,
            "family": self.family.name,
            "categories": {"content_hash": self.categories.content_hash, "count": self.num_categories},
            "instances_per_category": self.instances,
            "render": self.render.to_dict(),
            "shard_size": self.shard_size,
            "png": {"compress_level": self.png_compress_level, "encoder": self.png_encoder},
            "order": ORDER,
            "key_format": KEY_FORMAT,
            "shard_format": SHARD_FORMAT,
        }

    def _to_dict_v1(self) -> dict:
        # Format 1, byte for byte as written before format 2: its prose and the dataset name are
        # part of every fingerprint of that time, so they are reproduced here and nowhere else.
        data = {
            "name": self.name,
            "categories": {
                "name": self.categories.name,
                "content_hash": self.categories.content_hash,
                "count": self.num_categories,
            },
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
        if self.family.name != DEFAULT_FAMILY:  # format 1 named only families other than the first
            data["family"] = self.family.name
        if self.png_encoder != LEGACY_ENCODER:  # and only encoders other than the first
            data["png"]["encoder"] = self.png_encoder
        return data

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the canonical definition."""
        return canonical_hash(self.to_dict())

    @functools.cached_property
    def renderer(self) -> Renderer:
        """The family's bound :class:`~fractalshards.families.Renderer` of these categories and render
        settings, made once per process on first use (it is not pickled with the definition)."""
        return self.family.renderer(self.categories, self.render)

    def __getstate__(self) -> dict:
        # The renderer (saved states, locks) is made again where the definition is unpickled.
        return {k: v for k, v in self.__dict__.items() if k != "renderer"}

    @property
    def sample_format(self) -> SampleFormat:
        """What every sample's data is written, checked and read against (:class:`fractalshards.kinds.SampleFormat`)."""
        return SampleFormat(
            self.renderer.image_shape,
            self.family.grey_level(self.render),
            self.png_compress_level,
            self.png_encoder,
        )

    @property
    def packed_layout(self) -> PackedLayout | None:
        """What a sample's image is in ``decode="packed"`` (its kind's :meth:`~fractalshards.kinds.SampleKind.layout`):
        packed 1-bit rows of two-level images, grey or RGB bytes; None for a kind without images (points)."""
        return self.kind.layout(self.sample_format)

    @property
    def version(self) -> str:
        """The definition's version id (:func:`fractalshards.hashing.version_id` of the fingerprint)."""
        return version_id(self.fingerprint)

    @classmethod
    @accepts_limits
    def from_manifest(
        cls,
        categories: CategoryManifest,
        *,
        instances: int | None = None,
        render: dict | None = None,
        max_instances: int | None = None,
        **options: Any,
    ) -> DatasetDefinition:
        """A definition of ``categories`` from user options (``None`` values mean "default").

        ``render`` holds render options (a key the family's settings have not is a one-line
        error); ``instances`` defaults to ``max_instances`` (a preset's), else to
        :data:`DEFAULT_INSTANCES` or the family's whole instance space if smaller;
        ``options`` are the other fields (``shard_size``, ``name``, ``png_compress_level``,
        ``png_encoder``), their defaults declared once, on this class (``png_encoder``: the
        family's :attr:`~fractalshards.families.Family.png_encoder` where it names one).
        """
        family = categories.family
        settings = family.render_settings(categories, dict(render or {}))
        top = max_instances if max_instances is not None else min(DEFAULT_INSTANCES, family.instances_per_category)
        if instances is None:
            instances = top
        elif max_instances is not None and isinstance(instances, int) and instances > max_instances:
            raise ConfigError(
                f"instances: {categories.name} has {max_instances} image(s) per category; use --instances 1..{max_instances} "
                "(or build its categories with --manifest for more)"
            )
        given = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(given) - {"shard_size", "name", "png_compress_level", "png_encoder"})
        if unknown:
            raise ConfigError(
                f"{unknown[0]}: not a dataset definition option; use shard_size, name, png_compress_level or png_encoder"
            )
        if "png_encoder" not in given and family.png_encoder is not None:
            given["png_encoder"] = family.png_encoder
        return cls(categories=categories, instances=instances, render=settings, **given)

    @classmethod
    @accepts_limits
    def from_preset(
        cls,
        preset: str,
        *,
        categories: int | None = None,
        search: dict | None = None,
        progress: bool = False,
        **options: Any,
    ) -> DatasetDefinition:
        """A definition of preset ``preset`` (``fractalshards presets`` lists them).

        ``categories`` keeps the first N, ``search`` overrides a generated preset's search
        settings (``{"sigma": 4.0}``); the other options are :meth:`from_manifest`'s, with the
        preset's instances per category as the default and the most.
        """
        from .presets import get_preset, load_preset  # presets sit above definitions

        manifest = load_preset(preset, categories=categories, search=search, progress=progress)
        return cls.from_manifest(manifest, max_instances=get_preset(preset).instances, **options)

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

    def shard_index(self, name: str) -> int:
        """The index in the plan of the shard called ``name`` (a ``KeyError`` for a name not in it)."""
        return _shard_indices(self.num_shards)[name]

    def shard_sizes(self) -> list[tuple[str, int]]:
        """``(name, samples)`` of every shard, without building their sample lists."""
        n, size = self.num_samples, self.shard_size
        return [(SHARD_FORMAT.format(index=i), min(size, n - i * size)) for i in range(self.num_shards)]


@functools.lru_cache(maxsize=4)
def _order(n: int, seed: int) -> np.ndarray:
    out = seeded_permutation(n, "order", seed)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=16)
def _shard_indices(num_shards: int) -> dict[str, int]:
    return {SHARD_FORMAT.format(index=i): i for i in range(num_shards)}
