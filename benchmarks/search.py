"""Category search time: FractalDB-1k's official search and a native search, on all cores.

    .venv/bin/python benchmarks/search.py [--categories 1000] [--baseline-trials 60]

The baseline, in the same run, is the official approach for the fill check of one
trial (Python chaos-game loop, numpy rescale), timed on the first trials of the
seed-1 stream and projected to the 42,655 trials of FractalDB-1k.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fractalshards.families.fractaldb.ifs import sample_fractaldb
from fractalshards.families.fractaldb.search import SearchSettings, search_native, search_official


def python_fill_rate(coef: np.ndarray, prob: np.ndarray, rand: np.ndarray) -> float:
    """Fill check as the official code does it: a Python loop, then numpy."""
    cum = np.cumsum(prob)
    xs, ys = [0.0], [0.0]
    x = y = 0.0
    with np.errstate(all="ignore"):  # divergent trials overflow, as in the official code
        for k in range(len(rand) - 1):
            a, b, c, d, e, f = coef[min(int(np.searchsorted(cum, rand[k])), len(cum) - 1)]
            x, y = (a * x + b * y) + e, (c * x + d * y) + f
            xs.append(x)
            ys.append(y)
    with np.errstate(all="ignore"):
        px, py = np.array(xs), np.array(ys)
        keep = np.isfinite(px) & np.isfinite(py)
        px, py = px[keep], py[keep]
        if px.size == 0:
            return 0.0
        for v in (px, py):
            if v.min() < 0:
                v -= v.min()
        px = np.nan_to_num(px / (px.max() - px.min()) * 500 + 6).astype(np.uint16)
        py = np.nan_to_num(py / (py.max() - py.min()) * 500 + 6).astype(np.uint16)
    canvas = np.zeros((512, 512), np.uint8)
    ok = (px < 512) & (py < 512)
    canvas[py[ok], px[ok]] = 127
    return np.count_nonzero(canvas) / 262144.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--categories", type=int, default=1000)
    parser.add_argument("--baseline-trials", type=int, default=60)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    search_official(1, workers=1)  # compile / load the numba cache
    t0 = time.perf_counter()
    official = search_official(args.categories, workers=cores)
    t_official = time.perf_counter() - t0

    t0 = time.perf_counter()
    native = search_native(args.categories, seed=0, settings=SearchSettings(), workers=cores)
    t_native = time.perf_counter() - t0
    t0 = time.perf_counter()
    search_native(args.categories // 4, seed=0, settings=SearchSettings(), workers=1)
    t_native_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    search_native(args.categories // 4, seed=0, settings=SearchSettings(), workers=cores)
    t_native_all = time.perf_counter() - t0

    rs = np.random.RandomState(1)
    t0 = time.perf_counter()
    for _ in range(args.baseline_trials):
        system = sample_fractaldb(rs)
        python_fill_rate(system.coefficients, system.probabilities, rs.random(100_000))
    per_trial = (time.perf_counter() - t0) / args.baseline_trials

    print(f"cores: {cores}")
    print(
        f"official search: {args.categories} categories, {official.trials} trials in {t_official:.1f} s "
        f"({t_official / official.trials * 1e3:.2f} ms per trial)"
    )
    print(
        f"native search:   {args.categories} categories, {native.trials} trials in {t_native:.1f} s "
        f"({t_native / native.trials * 1e3:.2f} ms per trial)"
    )
    print(
        f"native search threads 1 -> {cores} ({args.categories // 4} categories): {t_native_one:.1f} s -> "
        f"{t_native_all:.1f} s = {t_native_one / t_native_all:.2f}x"
    )
    projected = per_trial * official.trials
    print(
        f"baseline (official approach, 1 core): {per_trial * 1e3:.1f} ms per trial, "
        f"{projected / 60:.1f} min projected for {official.trials} trials"
    )
    print(f"ratio (official search, ours on {cores} cores vs baseline on 1): {projected / t_official:.0f}x")


if __name__ == "__main__":
    main()
