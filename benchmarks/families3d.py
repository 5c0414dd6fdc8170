"""ExFractalDB / MV-FractalDB and SegRCDB against the official algorithms, on one core, in the same run.

    .venv/bin/python benchmarks/families3d.py [--trials 2000] [--instances 145] [--images 40] [--baseline-images 3]

1. ExFractalDB search: the family's official-mode search (compiled trials: numpy's legacy draws,
   the orbit, the normalisation and the variance check) against the official ``category_search.py``
   as plain Python with its own data types (``tests/families/official_exfractaldb.py``, the test oracle:
   maps as dicts of floats, the uniforms a numpy array read per step, Python's ``sum`` over numpy
   rows), and against a leaner plain-Python orbit over floats and lists, per trial.
2. ExFractalDB instances: one category's weight-row point clouds (the official pass, in order, and
   one alone), against the same two plain-Python baselines.
3. MV-FractalDB renders (224 px, official mode, PNG included), images/s, and what that makes of a
   whole MV-FractalDB-1k (1,000 x 145 x 12 = 1.74M images) on this machine's cores.
4. SegRCDB (512 px, 32 instances, official mode), image and mask PNGs included, against the official
   ``SegRCDB_render.py`` as it runs (``tests/families/official_segrcdb.py`` with ``as_script``: RGB images, the
   image saved after each of its instances, as the script does) and against its algorithm alone
   (one image and one mask PNG).

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
from fractalshards.families.exfractaldb.family import WEIGHTS
from fractalshards.shards import sample_data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "families"))
import official_exfractaldb as oracle  # noqa: E402


def lean_orbit(maps: np.ndarray, probs: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The official orbit in leaner plain Python than the scripts: floats and lists (``tolist``), then
    the normalisation with numpy."""
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


def _lean_trial(rs) -> bool:
    n = int(rs.randint(2, 8))
    maps = np.array([rs.uniform(-1, 1, 12) for _ in range(n)])
    p = np.array([abs(np.linalg.det(m[:9].reshape(3, 3))) for m in maps])
    r = rs.random_sample(10_000)
    with np.errstate(all="ignore"):
        return oracle.accepted(lean_orbit(maps, p / p.sum(), r), 0.05)


def search(trials: int) -> tuple[float, float, float]:
    """Per trial: the family's official search, the official script's way in plain Python, the lean loop."""
    fam = get_family("exfractaldb")
    settings = fam.search_settings({})
    fam.search(1, mode="official", seed=1, settings=settings)  # compile
    start = time.perf_counter()
    found = fam.search(max(1, trials // 84), mode="official", seed=1, settings=settings)  # about 84 trials a category
    ours = (time.perf_counter() - start) / found.trials
    few = 20
    rs = np.random.RandomState(1)
    start = time.perf_counter()
    for _ in range(few):
        oracle.trial(rs)
    script = (time.perf_counter() - start) / few
    rs = np.random.RandomState(1)
    start = time.perf_counter()
    for _ in range(few):
        _lean_trial(rs)
    return ours, script, (time.perf_counter() - start) / few


def instances(count: int) -> tuple[float, float, float, float]:
    """Per instance: the official pass (every weight row of a category in order, as instance.py makes
    them), a random access (a saved state, then up to 15 instances skipped), and the two plain-Python
    baselines."""
    fam = get_family("exfractaldb")
    d = DatasetDefinition.from_preset("mv-fractaldb-1k", categories=8)
    search = fam.search_settings_from_dict(d.categories.search)
    fam.extend_pass(d.categories, d.render, search, None, 1)  # compile
    start = time.perf_counter()
    fam.extend_pass(d.categories, d.render, search, None, 8)
    sequential = (time.perf_counter() - start) / (8 * 145)
    d.renderer.axes(7, 0)  # the pass, cached
    start = time.perf_counter()
    for t in range(count):  # as a render asks for it: (3, N), no transposed copy
        d.renderer.axes(t % 8, (37 * t) % 145)
    random_access = (time.perf_counter() - start) / count
    cat = d.categories.category(0)
    few = 10
    rs = np.random.RandomState(2)
    start = time.perf_counter()
    for t in range(few):
        oracle.instance(cat.maps, cat.probabilities, WEIGHTS[t], rs.random_sample(10_000))
    script = (time.perf_counter() - start) / few
    rs = np.random.RandomState(2)
    start = time.perf_counter()
    for t in range(few):
        with np.errstate(all="ignore"):
            lean_orbit(cat.maps * WEIGHTS[t], cat.probabilities, rs.random_sample(10_000))
    return sequential, random_access, script, (time.perf_counter() - start) / few


def mv_renders(images: int) -> float:
    d = DatasetDefinition.from_preset("mv-fractaldb-1k", categories=2)
    d.renderer.render(1, 0)
    start = time.perf_counter()
    for i in range(images):
        out = d.renderer.render(i % 2, (i * 7) % d.instances)
        png.encode(out.image)
    return images / (time.perf_counter() - start)


def segrcdb(images: int, baseline: int) -> tuple[float, float, float]:
    """Per image and mask, PNGs included: ours, the official script as it runs, its algorithm alone."""
    import official_segrcdb as seg

    d = DatasetDefinition.from_preset("segrcdb", instances=20_000)
    sample_data(d, d.renderer.render(0, 0))  # compile
    start = time.perf_counter()
    for k in range(1, images + 1):
        sample_data(d, d.renderer.render(0, k))  # the shard members: image and mask PNGs
    ours = (time.perf_counter() - start) / images
    params = seg.classes()
    start = time.perf_counter()
    seg.images(params, 0, baseline, as_script=True)
    script = (time.perf_counter() - start) / baseline
    start = time.perf_counter()
    for image, mask in seg.images(params, 0, baseline):
        for pixels, mode in ((np.repeat(image[..., None], 3, axis=2), "RGB"), (mask, "L")):
            Image.fromarray(pixels, mode=mode).save(io.BytesIO(), format="PNG")
    return ours, script, (time.perf_counter() - start) / baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=145)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--baseline-images", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores (pinned to one); {time.strftime('%Y-%m-%d')}")
    ours, script, lean = search(args.trials)
    print(
        f"exfractaldb search: {ours * 1e3:.3f} ms/trial vs {script * 1e3:.1f} ms the official script's Python "
        f"({script / ours:.0f}x), {lean * 1e3:.1f} ms a lean Python orbit ({lean / ours:.0f}x)"
    )
    sequential, random_access, script, lean = instances(args.instances)
    print(
        f"exfractaldb instances: {sequential * 1e3:.3f} ms in order ({script / sequential:.0f}x, lean {lean / sequential:.0f}x), "
        f"{random_access * 1e3:.3f} ms alone ({script / random_access:.0f}x) vs {script * 1e3:.1f} ms the official "
        f"script's Python, {lean * 1e3:.1f} ms a lean Python orbit"
    )
    rate = mv_renders(args.images * 10)
    cores = os.cpu_count() or 1
    print(
        f"mv-fractaldb renders (224 px, official, PNG): {rate:,.0f} images/s per core; 1.74M images on {cores} cores: "
        f"about {1_740_000 / (rate * cores) / 60:.0f} min (renders alone)"
    )
    ours, script, algorithm = segrcdb(args.images, args.baseline_images)
    print(
        f"segrcdb (512 px, official, 2 PNGs): {ours * 1e3:.1f} ms/image vs {script * 1e3:.0f} ms the official script as it "
        f"runs ({script / ours:.0f}x), {algorithm * 1e3:.0f} ms its algorithm with one image and one mask PNG "
        f"({algorithm / ours:.0f}x)"
    )


if __name__ == "__main__":
    main()
