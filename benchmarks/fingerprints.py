"""Fingerprints and shard hashes of small datasets of every family: what must not change across a refactor.

    PYTHONPATH=/path/to/checkout .venv/bin/python benchmarks/fingerprints.py > a.json   # once per checkout
    cmp a.json b.json

Nine inline builds into a temporary folder (FractalDB official, FractalDB native colour points, 1p-frac,
VisualAtom official, RCDB native, SegRCDB official M2, MV-FractalDB official, ExFractalDB, PC-FractalDB);
for each: the definition's fingerprint, the categories' content hash, the manifest's fingerprint and
version, and every shard's sha256. Run with a fresh FRACTALSHARDS_CACHE to include the saved states.
"""

from __future__ import annotations

import json
import sys
import tempfile

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition

CASES = [
    ("fractaldb-1k", {"mode": "official", "size": 64}, 3, 6),
    ("fractaldb-100", {"mode": "native", "color": "color", "draw": "point", "size": 48}, 2, 5),
    ("1p-frac", {"size": 64}, 4, 1),
    ("visualatom-1k", {"mode": "official"}, 2, 3),
    ("rcdb-1k", {"mode": "native"}, 2, 3),
    ("segrcdb", {"mode": "official", "size": 96, "instances_per_image": 4, "mask_mode": "M2"}, None, 5),
    ("mv-fractaldb-1k", {"mode": "official", "size": 64}, 2, 4),
    ("exfractaldb-1k", {"size": 64}, 2, 4),
    ("pc-fractaldb-1k", {"main_points": 500, "other_points": 100}, 3, 2),
]
out = {}
with tempfile.TemporaryDirectory() as tmp:
    for i, (preset, render, cats, inst) in enumerate(CASES):
        kw = {"categories": cats} if cats else {}
        # The encoders pinned (the defaults when this was written), so that checkouts on either side of a
        # change of default compare the same definitions.
        kw["png_encoder"] = "portable" if preset == "segrcdb" else "direct"
        d = DatasetDefinition.from_preset(preset, instances=inst, render=render, shard_size=4, **kw)
        build(d, f"{tmp}/{i}", workers=0)
        m = json.load(open(f"{tmp}/{i}/manifest.json"))
        out[f"{preset} {render}"] = {
            "definition": d.fingerprint,
            "categories": d.categories.content_hash,
            "manifest": m.get("fingerprint"),
            "version": m.get("version"),
            "shards": [s["sha256"] for s in m["shards"]],
        }
json.dump(out, sys.stdout, indent=1, sort_keys=True)
