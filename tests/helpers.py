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
