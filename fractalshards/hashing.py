"""Canonical JSON hashes (fingerprints, content hashes) and the version ids cut from them.

A fingerprint is ``sha256:<64 hex>`` of the canonical JSON of a value (sorted keys,
compact separators, no NaN); a version id is the first :data:`VERSION_LENGTH` hex digits
of a fingerprint. Category manifests, definitions, recipes, datasets and build journals
all use these two functions, so an id means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import json

__all__ = ["VERSION_LENGTH", "canonical_hash", "version_id"]

#: Hex digits of a version id (64 bits: collisions are not a practical concern).
VERSION_LENGTH = 16
_PREFIX = "sha256:"


def canonical_hash(obj: object) -> str:
    """``sha256:<hex>`` of ``obj`` as canonical JSON (sorted keys, compact separators)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return _PREFIX + hashlib.sha256(text.encode()).hexdigest()


def version_id(fingerprint: str, length: int = VERSION_LENGTH) -> str:
    """The version id of a ``sha256:<hex>`` fingerprint: its first ``length`` hex digits."""
    if not isinstance(fingerprint, str) or not fingerprint.startswith(_PREFIX):
        raise ValueError(f"fingerprint {fingerprint!r} is not 'sha256:<hex>'")
    return fingerprint[len(_PREFIX) : len(_PREFIX) + length]
