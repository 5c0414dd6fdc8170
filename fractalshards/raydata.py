"""A built or published dataset as a Ray Dataset of decoded images and int labels (for Ray Train users).

    import fractalshards.raydata
    ds = fractalshards.raydata.read_dataset("s3://bucket/datasets/fractaldb-1k@v1")
    ds.take(1)   # [{"image": uint8 (H, W) or (H, W, 3), "label": 7, "key": "000007-0063"}]

The shard list and their sha256 come from the validated manifest: one read task per shard
reads it through fsspec (so ``s3://``, MinIO and every fsspec URL work, which
``ray.data.read_webdataset``'s pyarrow filesystems need configuring for), checks its bytes
against the manifest and the definition's plan, and makes one row per sample with the sample kind's
:meth:`~fractalshards.kinds.SampleKind.ray_row` (PNGs through :func:`fractalshards.png.decode`, which
applies the palette of our 1-bit grey PNGs: ``read_webdataset``'s default decoder returns their
palette indices, 0 and 1, instead of the grey levels).
"""

from __future__ import annotations

import hashlib
from typing import Any

from .dataset import open_manifest
from .errors import ShardIntegrityError
from .limits import accepts_limits
from .shardplan import ShardPlan, read_planned
from .storage import open_store

__all__ = ["read_dataset"]


@accepts_limits
def read_dataset(
    url: str,
    *,
    storage_options: dict | None = None,
    verify: bool = True,
    decode: bool = True,
    shards: list[str] | None = None,
    ray_remote_args: dict | None = None,
) -> Any:
    """A :class:`ray.data.Dataset` of the samples of the dataset at ``url`` (folder, URL or ``PREFIX@tag``).

    Rows are the sample kind's (:meth:`fractalshards.kinds.SampleKind.ray_row`): for images
    ``{"image": uint8 array, "label": int, "key": str}`` (with ``decode=False``: ``{"png": bytes,
    "label", "key"}``); for segmentation datasets ``{"image", "mask", "key"}`` (``{"png", "mask_png",
    "key"}``), for point clouds ``{"points": float32 (N, 3), "label", "key"}`` (``{"npy", "label",
    "key"}``); in shard order and stored order within a shard;
    shuffle with Ray Data (``ds.random_shuffle()``) or per epoch in Ray Train.

    Args:
        url: the dataset.
        storage_options: fsspec options (credentials come from the environment when omitted;
            they are sent to the read tasks).
        verify: check each shard's sha256 against the manifest before reading it (default).
        decode: decode the PNGs (default) or keep their bytes.
        shards: read only these shards of the manifest (default: all).
        ray_remote_args: passed to the read tasks (e.g. ``{"num_cpus": 0.5}``).
    """
    import ray.data

    manifest, store = open_manifest(url, storage_options)
    listed = {s.name: s for s in manifest.shards}
    names = list(listed) if shards is None else list(shards)
    unknown = [n for n in names if n not in listed]
    if unknown:
        from .errors import ConfigError

        raise ConfigError(
            f"shards: {unknown[0]!r} is not a shard of {manifest.name} {manifest.version}; use names from its manifest"
        )
    base, options = store.url, dict(storage_options or {})
    definition = manifest.definition()
    kind, fmt = definition.kind, definition.sample_format
    items = [
        {
            "shard": n,
            "sha256": listed[n].sha256,
            "bytes": listed[n].bytes,
            "samples": listed[n].samples,
            "plan": definition.shard_index(n),
        }  # fmt: skip
        for n in names
    ]

    def read(row: dict) -> list[dict]:
        data = open_store(base, options).read_bytes(row["shard"], row["bytes"], exact=True, why="the manifest states")
        if verify and hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise ShardIntegrityError(
                f"{row['shard']}: sha256 does not match the manifest; the shard is damaged or was replaced, verify the dataset"
            )
        out = [
            kind.ray_row(sample, fmt, decode, f"{row['shard']}: sample {sample['__key__']!r}")
            for sample in read_planned(data, ShardPlan.of(definition, row["plan"]))
        ]
        if len(out) != row["samples"]:
            raise ShardIntegrityError(f"{row['shard']}: {len(out)} samples; the manifest says {row['samples']}")
        return out

    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    return ds.flat_map(read, **(ray_remote_args or {}))
