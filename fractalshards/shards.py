"""Shard writing: render a shard's samples into a byte-reproducible WebDataset tar.

Each sample is three members, in this order: ``<key>.cls`` (category index as
text), ``<key>.json`` (its parameters) and ``<key>.png``. Members are plain
USTAR entries with a fixed mtime, uid/gid 0, empty owner names and mode 0444, so
the same samples give the same bytes anywhere; ``tar tf`` and
``webdataset.WebDataset`` read them with no fractalshards code.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import time
from dataclasses import asdict, dataclass
from typing import Iterable

from .faults import fault_point
from .instances import instance_from_index
from .plan import DatasetDefinition, ShardSpec, sample_key
from .render import encode_png, render, weight_rows
from .storage import Store, sha256_bytes

__all__ = ["TAR_MTIME", "ShardEntry", "sample_record", "tar_bytes", "render_shard", "build_shard", "journal_dir", "journal_name"]

log = logging.getLogger(__name__)

#: mtime of every member: 2000-01-01T00:00:00Z, fixed so that bytes never depend on the clock.
TAR_MTIME = 946684800


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


def sample_record(definition: DatasetDefinition, category: int, instance: int, diverged: bool, fill: float) -> dict:
    """The ``.json`` member of a sample: everything needed to re-render it."""
    inst = instance_from_index(instance)
    system = definition.categories.system(category)
    row = weight_rows(definition.render.weight_delta)[inst.weight]
    return {
        "key": sample_key(category, instance),
        "category": category,
        "instance": instance,
        "weight": inst.weight,
        "flip": inst.flip,
        "patch": inst.patch,
        "maps": (system.coefficients * row).tolist(),
        "probabilities": system.probabilities.tolist(),
        "render": definition.render.to_dict(),
        "diverged": bool(diverged),
        "fill": fill,
    }


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A deterministic USTAR archive of ``(name, data)`` members, in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = TAR_MTIME
            info.mode = 0o444
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def render_shard(definition: DatasetDefinition, spec: ShardSpec) -> tuple[bytes, int]:
    """Render every sample of ``spec``; returns the tar bytes and how many samples diverged."""
    categories = definition.categories
    settings = definition.render
    members = []
    diverged = 0
    for category, instance in spec.pairs:
        out = render(categories.system(category), category, instance_from_index(instance), settings)
        diverged += out.diverged
        key = sample_key(category, instance)
        record = sample_record(definition, category, instance, out.diverged, out.fill)
        members.append((f"{key}.cls", str(category).encode()))
        members.append((f"{key}.json", json.dumps(record, sort_keys=True, separators=(",", ":")).encode()))
        members.append((f"{key}.png", encode_png(out.image, definition.png_compress_level)))
    return tar_bytes(members), diverged


def journal_dir(definition: DatasetDefinition) -> str:
    """The folder where a build of ``definition`` records its finished shards (for resuming)."""
    return f"_build/{definition.fingerprint.split(':', 1)[1][:16]}"


def journal_name(definition: DatasetDefinition, shard: str) -> str:
    """Where a finished shard's entry is recorded during a build."""
    return f"{journal_dir(definition)}/{shard}.json"


def build_shard(store: Store, definition: DatasetDefinition, spec: ShardSpec, expected: dict | None = None) -> ShardEntry:
    """Build one shard straight into ``store`` and return its entry.

    ``expected`` is the shard's entry from an earlier run of the same definition
    (manifest or build journal): when the stored shard has its size and sha256,
    nothing is rendered (resume). Otherwise the shard is rendered, written whole,
    and its entry recorded in the build journal.
    """
    start = time.perf_counter()
    if expected is not None and store.size(spec.name) == expected["bytes"] and store.sha256(spec.name) == expected["sha256"]:
        return ShardEntry(spec.name, spec.samples, int(expected["bytes"]), str(expected["sha256"]), int(expected.get("diverged", 0)),
                          skipped=True, seconds=time.perf_counter() - start)
    fault_point(f"build:{spec.index}")
    data, diverged = render_shard(definition, spec)
    entry = ShardEntry(spec.name, spec.samples, len(data), sha256_bytes(data), diverged)
    store.write_bytes(spec.name, data)
    store.write_bytes(journal_name(definition, spec.name), json.dumps(entry.manifest_entry(), sort_keys=True).encode())
    entry.seconds = time.perf_counter() - start
    return entry
