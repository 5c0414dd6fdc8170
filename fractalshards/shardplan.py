"""The plan every stored shard is checked against: :class:`ShardPlan`, and :func:`read_planned`.

A definition decides each shard's samples (keys in order, labels) and what each sample's members
are (its kind's, with the headers its :class:`~fractalshards.kinds.SampleFormat` makes). Every read
path (build resume, verify, preview, cards, the stream, Ray Data) reads shards through a plan, so a
shard whose hash was re-signed still cannot mislabel, reorder or swap samples, nor smuggle in a huge
image or another array.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .definition import DatasetDefinition, sample_key
from .errors import ConfigError, ShardIntegrityError
from .kinds import SampleFormat, SampleKind
from .limits import parse_json
from .tarformat import TarSample, index_tar

__all__ = ["ShardPlan", "read_planned"]


@dataclass(frozen=True)
class ShardPlan:
    """What one shard of a definition must hold: its samples' keys in order, their labels (labelled
    kinds), and the kind and format every sample's members are checked against."""

    name: str
    keys: tuple[str, ...]
    labels: tuple[bytes, ...]
    kind: SampleKind
    format: SampleFormat
    #: ``(category, instance)`` of each sample, in order.
    pairs: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, definition: DatasetDefinition, index: int) -> ShardPlan:
        """The plan of shard ``index`` of ``definition``."""
        spec = definition.shard_spec(index)
        kind = definition.kind
        return cls(
            spec.name,
            tuple(sample_key(c, i) for c, i in spec.pairs),
            tuple(str(c).encode() for c, _ in spec.pairs) if kind.labelled else (),
            kind,
            definition.sample_format,
            tuple(spec.pairs),
        )

    def index(self, data: bytes | memoryview) -> list[TarSample]:
        """The shard's samples (:func:`fractalshards.tarformat.index_tar`, its kind's members kept),
        checked against the plan (:meth:`check_index`)."""
        samples = index_tar(data, self.name, self.kind.members, only=True)
        self.check_index(samples)
        return samples

    def check_index(self, samples: list[TarSample]) -> None:
        """The shard's samples are the plan's, in its order, each with exactly its kind's members."""
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
        needed = list(self.kind.members)
        for s in samples:
            missing = [m for m in needed if m not in s.members]
            if missing:
                raise ShardIntegrityError(
                    f"{self.name}: sample {s.key!r} has no {' or '.join(missing)} member; the shard is not this dataset's"
                )

    def check_sample(self, position: int, sample: dict) -> None:
        """Sample ``position`` (as read) has the plan's label and its kind's headers (before any decoding)."""
        key = self.keys[position]
        if self.labels:
            cls = sample.get("cls", b"")
            if cls.strip() != self.labels[position]:
                raise ShardIntegrityError(
                    f"{self.name}: sample {key!r} has label {cls[:20]!r} but its category is "
                    f"{self.labels[position].decode()}; the shard was altered or crafted"
                )
        self.kind.check(sample, self.format, f"{self.name}: sample {key!r}")

    def record(self, position: int, sample: dict) -> dict:
        """Sample ``position``'s ``.json`` record, read by the one strict JSON parser
        (:func:`fractalshards.limits.parse_json`): an object whose ``key``, ``category`` and ``instance``
        are the plan's and whose ``diverged`` is a bool, else a :class:`ShardIntegrityError` naming the
        sample. Readers take keys and labels from the plan; the record adds only what a family wrote."""
        key = self.keys[position]
        where = f"{self.name}: sample {key!r}"
        try:
            meta = parse_json(sample.get("json", b""), f"{where}: its record")
        except ConfigError as exc:
            raise ShardIntegrityError(str(exc)) from exc
        if not isinstance(meta, dict):
            raise ShardIntegrityError(f"{where}: its record is a {type(meta).__name__}, not an object; the shard was altered")
        category, instance = self.pairs[position]
        named = (meta.get("key"), meta.get("category"), meta.get("instance"))
        if named != (key, category, instance) or any(type(v) is bool for v in named[1:]):
            raise ShardIntegrityError(
                f"{where}: its record names key/category/instance {named!r}, not the plan's {(key, category, instance)!r}; "
                "the shard was altered or crafted"
            )
        if not isinstance(meta.get("diverged", False), bool):
            raise ShardIntegrityError(f"{where}: its record's 'diverged' is {meta.get('diverged')!r}, not a bool")
        return meta


def read_planned(data: bytes | memoryview, plan: ShardPlan, url: str = "") -> Iterator[dict]:
    """The samples of a shard held in memory, in stored order, each checked against ``plan`` (keys,
    order, labels, its kind's headers): ``{"__key__", "__url__", member: bytes, ...}``."""
    samples = plan.index(data)
    for position, sample in enumerate(samples):
        out = sample.read(data, url or plan.name)
        plan.check_sample(position, out)
        yield out
