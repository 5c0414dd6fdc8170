"""Look inside a built dataset: its shards, a shard's samples and members, one sample's record,
label and picture (``fractalshards inspect``).

Everything goes through the readers' own checks: the manifest is validated, a shard is read to
exactly its stated size and checked against its sha256 and the definition's plan (keys, order,
members, labels, headers), a record is parsed by the one strict JSON parser, and labels come from
the plan.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .dataset import DatasetManifest, open_manifest
from .errors import ConfigError, ShardIntegrityError
from .shardplan import ShardPlan
from .storage import Store

__all__ = ["ShardView", "SampleView", "inspect_dataset"]


@dataclass
class SampleView:
    """One sample: its key, position, label (from the plan), members and their sizes, and record."""

    shard: str
    position: int
    key: str
    label: int | None
    members: dict[str, int]
    record: dict | None = None
    picture: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-able fields (the picture left out)."""
        return {
            "shard": self.shard,
            "position": self.position,
            "key": self.key,
            "label": self.label,
            "members": self.members,
            "record": self.record,
        }


@dataclass
class ShardView:
    """One shard: its manifest entry and its samples (keys, members and sizes)."""

    name: str
    bytes: int
    sha256: str
    samples: list[SampleView]

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "samples": [s.to_dict() for s in self.samples]}


def _shard_index(manifest: DatasetManifest, shard: int | str) -> int:
    names = [s.name for s in manifest.shards]
    if isinstance(shard, int) or (isinstance(shard, str) and shard.isdigit()):
        index = int(shard)
        if not 0 <= index < len(names):
            raise ConfigError(f"shard: {index} is out of range; the dataset has shards 0..{len(names) - 1}")
        return index
    if shard not in names:
        raise ConfigError(f"shard: {shard!r} is not in the manifest; use an index or a name such as {names[0]!r}")
    return names.index(shard)


def _find(manifest: DatasetManifest, key: str) -> int:
    definition = manifest.definition()
    for index in range(len(manifest.shards)):
        if key in ShardPlan.of(definition, index).keys:
            return index
    raise ConfigError(f"sample: {key!r} is not a key of this dataset; keys look like 000007-0063 (category-instance)")


def read_shard(manifest: DatasetManifest, store: Store, index: int) -> tuple[bytes, ShardPlan]:
    """Shard ``index``'s bytes, read to exactly its stated size and checked against its sha256, and its plan."""
    entry = manifest.shards[index]
    data = store.read_bytes(entry.name, entry.bytes, exact=True, why="its manifest entry states")
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise ShardIntegrityError(
            f"{entry.name}: sha256 {digest[:16]}... does not match the manifest's {entry.sha256[:16]}...; "
            "the shard is truncated or altered (fractalshards verify says more)"
        )
    return data, ShardPlan.of(manifest.definition(), index)


def inspect_dataset(
    url: str, *, shard: int | str | None = None, sample: str | None = None, storage_options: dict | None = None
) -> tuple[DatasetManifest, ShardView | None, SampleView | None]:
    """What ``fractalshards inspect`` shows: the manifest; with ``shard`` (an index or a name) that shard's
    samples and members; with ``sample`` (a key; its shard is found from the plan when ``shard`` is not
    given) that sample's record, label and picture (a uint8 array: the kind's preview tile)."""
    manifest, store = open_manifest(url, storage_options)
    if shard is None and sample is None:
        return manifest, None, None
    index = _shard_index(manifest, shard) if shard is not None else _find(manifest, sample)  # type: ignore[arg-type]
    data, plan = read_shard(manifest, store, index)
    samples = plan.index(data)
    views = []
    for position, s in enumerate(samples):
        label = int(plan.labels[position]) if plan.labels else None
        views.append(SampleView(plan.name, position, s.key, label, {ext: size for ext, (_, size) in s.members.items()}))
    entry = manifest.shards[index]
    shard_view = ShardView(entry.name, entry.bytes, entry.sha256, views)
    if sample is None:
        return manifest, shard_view, None
    if sample not in plan.keys:
        raise ConfigError(f"sample: {sample!r} is not in {plan.name}; give a key the shard holds, or leave out --shard")
    position = plan.keys.index(sample)
    members = samples[position].read(data, store.url_of(plan.name))
    plan.check_sample(position, members)
    view = views[position]
    view.record = plan.record(position, members) if "json" in members else None
    where = f"{plan.name}: sample {sample!r}"
    view.picture = plan.kind.picture(plan.kind.arrays(members, plan.format, "numpy", where))
    return manifest, shard_view, view
