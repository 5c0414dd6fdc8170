"""Test helpers shared by several test modules (``pythonpath`` holds ``tests/``: ``from helpers import ...``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fractalshards.definition import DatasetDefinition
from fractalshards.families.fractaldb.render import RenderSettings
from fractalshards.hashing import canonical_hash
from fractalshards.presets import load_preset

#: The official and recorded vectors (a copy of ../shared's, so that a clean clone has them).
VECTORS = Path(__file__).parent / "vectors"
#: Every request the test S3 server (conftest's ``s3_endpoint``) answered: (method, path, query), in order.
S3_REQUESTS: list[tuple[str, str, str]] = []


def read_vectors(name: str) -> list[list[str]]:
    """Rows of a whitespace-separated test-vector file."""
    return [line.split() for line in (VECTORS / name).read_text().splitlines() if line.strip()]


def shard_gets(bucket: str, since: int = 0) -> Counter:
    """GET requests for shard objects of ``bucket`` since request number ``since``, per shard path."""
    return Counter(
        path
        for method, path, query in S3_REQUESTS[since:]
        if method == "GET" and path.startswith(f"/{bucket}/") and path.endswith(".tar")
    )


def tiny_definition(
    categories: int = 4,
    instances: int = 5,
    shard_size: int = 10,
    *,
    size: int = 32,
    points: int = 3_000,
    seed: int = 1,
    name: str | None = None,
    **options,
) -> DatasetDefinition:
    """The suite's small dataset: the first ``categories`` of fractaldb-100, ``instances`` each, official
    renders of ``size`` px from ``points`` points (seconds to build); ``options`` are the definition's
    other fields (``png_encoder``...)."""
    return DatasetDefinition(
        categories=load_preset("fractaldb-100").subset(categories, name=name or f"tiny{categories}"),
        instances=instances,
        render=RenderSettings(mode="official", size=size, points=points, seed=seed),
        shard_size=shard_size,
        **options,
    )


def reseal(manifest: dict) -> dict:
    """Make an edited dataset manifest self-consistent again, as a thorough forger would:
    totals, fingerprint and version recomputed from the (edited) shard entries."""
    shards = manifest["shards"]
    manifest["totals"]["bytes"] = sum(s["bytes"] for s in shards)
    manifest["totals"]["samples"] = sum(s["samples"] for s in shards)
    fingerprint = canonical_hash({"definition": manifest["definition"], "shards": [s["sha256"] for s in shards]})
    manifest["fingerprint"] = fingerprint
    manifest["version"] = fingerprint.split(":", 1)[1][:16]
    return manifest


def forge_shard(folder, shard: str, mutate) -> None:
    """Rewrite ``shard`` of the dataset in ``folder`` as a bucket owner could: ``mutate`` takes and returns
    the list of ``(member name, bytes)``; the shard is re-packed and the manifest re-signed (shard size and
    sha256, totals, fingerprint and version recomputed), so only the library's own checks remain."""
    import hashlib
    import io
    import json
    import tarfile
    from pathlib import Path

    from fractalshards.tarformat import tar_bytes

    folder = Path(folder)
    with tarfile.open(fileobj=io.BytesIO((folder / shard).read_bytes())) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]
    data = tar_bytes(mutate(members))
    (folder / shard).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["shards"]:
        if entry["name"] == shard:
            entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(reseal(manifest)))


def reseal_recipe(recipe: dict) -> dict:
    """Make an edited recipe self-consistent again (fingerprint and version of its edited definition)."""
    fingerprint = canonical_hash(recipe["definition"])
    recipe["fingerprint"], recipe["version"] = fingerprint, fingerprint.split(":", 1)[1][:16]
    return recipe
