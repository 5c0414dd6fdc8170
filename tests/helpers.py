"""Test helpers shared by several test modules."""

from __future__ import annotations

from fractalshards.hashing import canonical_hash


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

    from fractalshards.shards import tar_bytes

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
