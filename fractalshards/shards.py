"""A shard's samples rendered: their records, members and tar bytes (:func:`render_shard`).

A sample is its kind's members (:mod:`fractalshards.kinds`), in the kind's order: for an image,
``<key>.cls`` (category index as text), ``<key>.json`` (its parameters) and ``<key>.png``; the
data members are the kind's encoding of the render, the tar is :func:`fractalshards.tarformat.tar_bytes`'s.
The rendered stream (:mod:`fractalshards.sources`) makes its samples with the same functions, so
both give the same labels, records and bytes.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from .definition import DatasetDefinition, ShardSpec, sample_key
from .parallel import resolve_workers
from .results import Rendered
from .tarformat import tar_bytes

__all__ = ["ShardEntry", "sample_record", "render_sample", "sample_of", "sample_data", "render_shard"]


@dataclass
class ShardEntry:
    """A shard as the dataset manifest lists it, plus build statistics."""

    name: str
    samples: int
    bytes: int
    sha256: str
    diverged: int = 0
    skipped: bool = False
    seconds: float = 0.0

    def manifest_entry(self) -> dict:
        """The fields that go into the manifest (no timings: manifests are deterministic)."""
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256, "diverged": self.diverged}

    def to_dict(self) -> dict:
        """All fields, JSON-able."""
        return asdict(self)


def sample_record(definition: DatasetDefinition, category: int, instance: int, rendered: Rendered) -> dict:
    """The ``.json`` member of a sample: its key, category, instance, the family's parameters
    (everything needed to re-render it), whether it diverged and its fill rate."""
    fields = definition.renderer.record(category, instance, rendered)
    return {
        **fields,
        "key": sample_key(category, instance),
        "category": category,
        "instance": instance,
        "diverged": bool(rendered.diverged),
        "fill": rendered.fill,
    }


def render_sample(definition: DatasetDefinition, category: int, instance: int, record: bool = True) -> tuple[dict, Rendered]:
    """One sample as a shard stores it, less the PNG: ``({"__key__", "cls", "json"}, rendered)``.

    Shards (:func:`render_shard`) and the rendered stream share it, so both give the same
    labels and records; the data members are :func:`sample_data` of ``rendered``. With
    ``record=False`` the ``.json`` member is left out (a decoding loader has no use for it).
    """
    out = definition.renderer.render(category, instance)
    return sample_of(definition, category, instance, out, record), out


def sample_of(definition: DatasetDefinition, category: int, instance: int, out: Rendered, record: bool = True) -> dict:
    """The members of a rendered sample but its data (:func:`render_sample`, for a render made elsewhere: a GPU's)."""
    sample = {"__key__": sample_key(category, instance)}
    if definition.kind.labelled:
        sample["cls"] = str(category).encode()
    if record:
        fields = sample_record(definition, category, instance, out)
        sample["json"] = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return sample


def sample_data(definition: DatasetDefinition, rendered: Rendered) -> dict[str, bytes]:
    """The data members of a rendered sample: its kind's encoding (:meth:`fractalshards.kinds.SampleKind.encode`)."""
    return definition.kind.encode(rendered, definition.sample_format)


def render_shard(definition: DatasetDefinition, spec: ShardSpec, renderer=None) -> tuple[bytes, int]:
    """Render every sample of ``spec``; returns the tar bytes and how many samples diverged.

    ``renderer`` (a :class:`fractalshards.gpu_renderer.GPURenderer`) renders the shard's images on a GPU in
    one batch; the records, PNGs (on every host core) and tar are made here, the same bytes as the CPU's."""
    members = []
    diverged = 0
    renders = datas = None
    if renderer is not None:
        renders = renderer.rendered(spec.pairs)
        # What is left to the host in a GPU build is the PNGs: on every core (zlib releases the GIL).
        with ThreadPoolExecutor(max_workers=resolve_workers(None)) as pool:
            datas = list(pool.map(lambda r: sample_data(definition, r), renders))
    order = definition.kind.members
    for k, (category, instance) in enumerate(spec.pairs):
        if renders is None:
            sample, rendered = render_sample(definition, category, instance)
        else:
            rendered = renders[k]
            sample = sample_of(definition, category, instance, rendered)
        diverged += rendered.diverged
        sample.update(sample_data(definition, rendered) if datas is None else datas[k])
        key = sample["__key__"]
        members.extend((f"{key}.{ext}", sample[ext]) for ext in order)
    return tar_bytes(members), diverged
