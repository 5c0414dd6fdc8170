"""Two checkouts of fractalshards measured in one run, alternating: render, search and build.

    .venv/bin/python benchmarks/checkouts.py /path/to/old-checkout /path/to/new-checkout [--rounds 2]

Each measurement runs in a fresh process with ``PYTHONPATH`` at a checkout, through interfaces
both sides have (``presets.load_preset``, the family's ``renderer`` or ``render`` and ``search``, ``build``
inline), so a refactor can be checked for speed and bytes: render ms per image on one core
(best of 3), search seconds and trials on 2 threads, and an inline build of 3,000 FractalDB-1k
samples on one core (images/s and the shards' sha256, which must be equal), and reading it back:
the loader's time per sample with ``decode="raw"`` (the tar index and the checks, no PNG decode)
and a default ``verify`` (hashes and the checks, no re-rendering).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_RENDER = r"""
import os, time, json
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
from fractalshards.presets import load_preset
out = {}
for preset, opts, n in [("fractaldb-1k", {"mode": "official"}, 300), ("visualatom-1k", {"mode": "native"}, 120),
                        ("visualatom-1k", {"mode": "official"}, 120), ("rcdb-1k", {"mode": "native"}, 300), ("1p-frac", {}, 200)]:
    m = load_preset(preset, categories=50)
    fam = m.family
    s = fam.render_settings(m, opts)
    pairs = [(i % len(m), (i * 37) % fam.instances_per_category) for i in range(n)]
    # Each checkout renders many samples its own way: a bound renderer where it has them.
    render = fam.renderer(m, s).render if hasattr(fam, "renderer") else lambda c, i: fam.render(m, c, i, s)
    for c, i in pairs[:5]:
        render(c, i)
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        for c, i in pairs:
            render(c, i).encodable
        best = min(best, (time.perf_counter() - t) / n)
    out[f"render {preset} {opts.get('mode', '')}".strip()] = round(best * 1e3, 3)
print(json.dumps(out))
"""

_SEARCH = r"""
import time, json
from fractalshards.families import get_family
out = {}
for name, mode, n in (("fractaldb", "native", 150), ("fractaldb", "official", 150), ("rcdb", "official", 200)):
    fam = get_family(name)
    settings = fam.search_settings({})
    fam.search(2, mode=mode, seed=fam.default_seed(mode), settings=settings, workers=2)
    t = time.perf_counter()
    r = fam.search(n, mode=mode, seed=fam.default_seed(mode), settings=settings, workers=2)
    out[f"search {name} {mode} {n}"] = [round(time.perf_counter() - t, 2), r.trials]
print(json.dumps(out))
"""

_ONE_CORE_BUILD = r"""
import os, time, json, tempfile
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
from fractalshards.presets import load_preset
try:
    from fractalshards.builder import build
    from fractalshards.definition import DatasetDefinition
    from fractalshards.verifier import verify
except ImportError:  # checkouts before the module renames
    from fractalshards.build import build
    from fractalshards.plan import DatasetDefinition
    from fractalshards.verify import verify
m = load_preset("fractaldb-1k")
s = m.family.render_settings(m, {"mode": "official"})
"""

_BUILD = (
    _ONE_CORE_BUILD
    + r"""
with tempfile.TemporaryDirectory() as tmp:
    build(DatasetDefinition(categories=m.subset(1), instances=10, render=s, shard_size=10), tmp + "/warm", workers=0)
    t = time.perf_counter()
    build(DatasetDefinition(categories=m.subset(3), instances=1000, render=s, shard_size=1000), tmp + "/d", workers=0)
    rate = 3000 / (time.perf_counter() - t)
    shards = [x["sha256"] for x in json.load(open(tmp + "/d/manifest.json"))["shards"]]
print(json.dumps({"build images/s": round(rate), "build shards sha256": [h[:16] for h in shards]}))
"""
)


_READ = (
    _ONE_CORE_BUILD
    + r"""
from fractalshards.stream import FractalStream
with tempfile.TemporaryDirectory() as tmp:
    build(DatasetDefinition(categories=m.subset(4), instances=1000, render=s, shard_size=1000), tmp, workers=0)
    best_stream = best_verify = 1e9
    for _ in range(3):
        t = time.perf_counter()
        n = sum(1 for _ in FractalStream(tmp, shuffle=False, decode="raw"))
        best_stream = min(best_stream, (time.perf_counter() - t) / n)
        t = time.perf_counter()
        assert verify(tmp).ok
        best_verify = min(best_verify, time.perf_counter() - t)
print(json.dumps({"read us/sample (decode raw, 1 core)": round(best_stream * 1e6, 1),
                  "verify s (4,000 samples, no re-render)": round(best_verify, 3)}))
"""
)


def _run(code: str, script: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(code))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, dict[str, list]] = {"old": {}, "new": {}}
    for _ in range(args.rounds):
        for script in (_RENDER, _SEARCH, _BUILD, _READ):
            for side in ("old", "new"):
                for key, value in _run(getattr(args, side), script).items():
                    results[side].setdefault(key, []).append(value)
    print(f"old: {args.old}\nnew: {args.new}\n")
    print("| measure | old | new |\n|---|---|---|")
    for key in results["old"]:
        print(f"| {key} | {results['old'][key]} | {results['new'].get(key)} |")


if __name__ == "__main__":
    main()
