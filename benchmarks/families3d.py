"""ExFractalDB / MV-FractalDB and SegRCDB against the official algorithms, on one core, in the same run.

    .venv/bin/python benchmarks/families3d.py [--trials 300] [--instances 145] [--images 40] [--baseline-images 3]

1. ExFractalDB search: official-mode trials (numpy's legacy generator, our numba orbit, numpy's
   variance) against the official ``category_search.py`` approach (the same draws, a pure-Python
   orbit over 9,999 steps and the same normalisation in Python), per trial.
2. ExFractalDB instances: one category's weight-row point clouds, ours against the same pure-Python orbit.
3. MV-FractalDB renders (224 px, official mode, PNG included), images/s, and what that makes of a
   whole MV-FractalDB-1k (1,000 x 145 x 12 = 1.74M images) on this machine's cores.
4. SegRCDB (512 px, 32 instances, official mode), image and mask PNGs included, against the official
   script's algorithm in plain Python with ``noise.pnoise1`` and Pillow (``tests/official_segrcdb.py``,
   the test oracle that reproduces the official vectors), Pillow PNGs included.

The process is pinned to one CPU so that every number is per core.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fractalshards import png
from fractalshards.definition import DatasetDefinition
from fractalshards.families import get_family
from fractalshards.families.exfractaldb.family import WEIGHTS, _accept, _points
from fractalshards.families.exfractaldb.kernels import probabilities

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def python_orbit(maps: np.ndarray, probs: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The official scripts' orbit in plain Python: a loop over 9,999 steps, then the normalisation."""
    cum, acc = [], 0.0
    for p in probs.tolist():
        acc += p
        cum.append(acc)
    rows = maps.tolist()
    x = y = z = 0.0
    xs, ys, zs = [], [], []
    for u in r[:-1].tolist():
        for j, c in enumerate(cum):
            if u <= c:
                a = rows[j]
                x, y, z = (
                    (a[0] * x + a[1] * y) + a[2] * z + a[9],
                    (a[3] * x + a[4] * y) + a[5] * z + a[10],
                    (a[6] * x + a[7] * y) + a[8] * z + a[11],
                )
                break
        xs.append(x)
        ys.append(y)
        zs.append(z)
    pts = np.array([xs, ys, zs])
    mn, mx = pts.min(), pts.max()
    pts = ((pts - mn) / (mx - mn)) * 2.0 - 1.0
    return pts - np.array([[sum(row) / 10000] for row in pts.tolist()])


def _trial(rs, python: bool) -> bool:
    n = int(rs.randint(2, 8))
    maps = np.array([rs.uniform(-1, 1, 12) for _ in range(n)])
    r = rs.random_sample(10_000)
    p, cum = np.empty(n), np.empty(n)
    with np.errstate(all="ignore"):
        probabilities(maps, p, cum)
        pts = python_orbit(maps, p, r) if python else _points(maps, p, r, 10_000.0)
    return _accept(pts, 0.05)


def search(trials: int) -> tuple[float, float]:
    _trial(np.random.RandomState(9), False)  # compile
    start = time.perf_counter()
    rs = np.random.RandomState(1)
    for _ in range(trials):
        _trial(rs, False)
    ours = (time.perf_counter() - start) / trials
    few = max(3, trials // 20)
    start = time.perf_counter()
    rs = np.random.RandomState(1)
    for _ in range(few):
        _trial(rs, True)
    return ours, (time.perf_counter() - start) / few


def instances(count: int) -> tuple[float, float, float]:
    """Per instance: the official pass (every weight row of a category in order, as instance.py makes
    them), a random access (a saved state, then up to 15 instances skipped), and the pure-Python orbit."""
    fam = get_family("exfractaldb")
    d = DatasetDefinition.from_preset("mv-fractaldb-1k", categories=8)
    search = fam.search_settings_from_dict(d.categories.search)
    fam._extend_pass(d.categories, d.render, search, None, 1)  # compile
    start = time.perf_counter()
    fam._extend_pass(d.categories, d.render, search, None, 8)
    sequential = (time.perf_counter() - start) / (8 * 145)
    fam.point_cloud(d.categories, 7, 0, d.render)  # the pass, cached
    start = time.perf_counter()
    for t in range(count):
        fam.point_cloud(d.categories, t % 8, (37 * t) % 145, d.render)
    random_access = (time.perf_counter() - start) / count
    cat = d.categories.category(0)
    rs = np.random.RandomState(2)
    few = 5
    start = time.perf_counter()
    for t in range(few):
        with np.errstate(all="ignore"):
            python_orbit(cat.maps * WEIGHTS[t], cat.probabilities, rs.random_sample(10_000))
    return sequential, random_access, (time.perf_counter() - start) / few


def mv_renders(images: int) -> float:
    fam = get_family("exfractaldb")
    d = DatasetDefinition.from_preset("mv-fractaldb-1k", categories=2)
    fam.render(d.categories, 1, 0, d.render)
    start = time.perf_counter()
    for i in range(images):
        out = fam.render(d.categories, i % 2, (i * 7) % d.instances, d.render)
        png.encode(out.image)
    return images / (time.perf_counter() - start)


def segrcdb(images: int, baseline: int) -> tuple[float, float]:
    import official_segrcdb as oracle

    fam = get_family("segrcdb")
    d = DatasetDefinition.from_preset("segrcdb", instances=20_000)
    fam.render(d.categories, 0, 0, d.render)
    start = time.perf_counter()
    for k in range(1, images + 1):
        out = fam.render(d.categories, 0, k, d.render)
        png.encode(out.image)
        png.encode_grey8(out.mask)
    ours = (time.perf_counter() - start) / images
    params = oracle.classes()
    start = time.perf_counter()
    for image, mask in oracle.images(params, 0, baseline):
        for pixels, mode in ((np.repeat(image[..., None], 3, axis=2), "RGB"), (mask, "L")):
            Image.fromarray(pixels, mode=mode).save(io.BytesIO(), format="PNG")
    return ours, (time.perf_counter() - start) / baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--instances", type=int, default=145)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--baseline-images", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores (pinned to one); {time.strftime('%Y-%m-%d')}")
    ours, python = search(args.trials)
    print(f"exfractaldb search: {ours * 1e3:.3f} ms/trial vs {python * 1e3:.1f} ms/trial pure-Python orbit: {python / ours:.0f}x")
    sequential, random_access, python = instances(args.instances)
    print(
        f"exfractaldb instances: {sequential * 1e3:.3f} ms in order ({python / sequential:.0f}x), {random_access * 1e3:.3f} ms "
        f"alone ({python / random_access:.0f}x) vs {python * 1e3:.1f} ms pure-Python orbit"
    )
    rate = mv_renders(args.images * 10)
    cores = os.cpu_count() or 1
    print(
        f"mv-fractaldb renders (224 px, official, PNG): {rate:,.0f} images/s per core; 1.74M images on {cores} cores: "
        f"about {1_740_000 / (rate * cores) / 60:.0f} min (renders alone)"
    )
    ours, python = segrcdb(args.images, args.baseline_images)
    ratio = python / ours
    print(
        f"segrcdb (512 px, official, 2 PNGs): {ours * 1e3:.1f} ms/image vs {python * 1e3:.0f} ms official algorithm: {ratio:.0f}x"
    )


if __name__ == "__main__":
    main()
