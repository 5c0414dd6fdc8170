"""Render throughput on one core, against the official approach, in the same run.

    .venv/bin/python benchmarks/render.py [--only fractaldb|contours|all] [--images 400] [--baseline-images 2]

FractalDB, reference settings: 362 px, 200,000 points, 3x3 grey patches, PNG encoded.
Ours: numba kernel + 1-bit palette PNG (``fractalshards.families.fractaldb.render``). Baseline: the
official approach, a Python chaos-game loop and a per-point PIL patch paste, then
an RGB PNG (run on a few images only: it takes seconds each).

VisualAtom and RCDB, official settings (512 px, the released distributions): ours in
native and official mode (``fractalshards.families``) against the official generators'
algorithm in plain Python with ``noise.pnoise1`` and Pillow (``tests/families/official_contours.py``,
the test oracle, which reproduces the official test vectors), on the same categories.
The process is pinned to one CPU so that every number is per core.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import time
from pathlib import Path

import numpy as np
from PIL import Image

from fractalshards import png
from fractalshards.families.fractaldb.instances import instance_from_index
from fractalshards.families.fractaldb.render import RenderSettings, render
from fractalshards.png import encode as encode_png
from fractalshards.presets import load_preset


def official_style_render(coef: np.ndarray, prob: np.ndarray, size: int = 362, points: int = 200_000) -> bytes:
    """The official renderer's approach: Python loop, per-point PIL paste, RGB PNG."""
    rand = np.random.RandomState(100).random(points)
    cum = np.cumsum(prob)
    xs, ys = [0.0], [0.0]
    x = y = 0.0
    for k in range(points - 1):
        a, b, c, d, e, f = coef[int(np.searchsorted(cum, rand[k]))]
        x, y = (a * x + b * y) + e, (c * x + d * y) + f
        xs.append(x)
        ys.append(y)
    px, py = np.array(xs), np.array(ys)
    for v in (px, py):
        if v.min() < 0:
            v -= v.min()
    span = size - 12
    px = (px / (px.max() - px.min()) * span + 6).astype(np.uint16)
    py = (py / (py.max() - py.min()) * span + 6).astype(np.uint16)
    canvas = Image.new("RGB", (size, size))
    for i in range(points):
        mask = random.randrange(1, 512)
        cells = np.array([(mask >> (8 - k)) & 1 for k in range(9)], np.uint8).reshape(3, 3) * 127
        patch = Image.fromarray(np.repeat(cells[:, :, None], 3, axis=2))
        canvas.paste(patch, (int(px[i]) + 1, int(py[i]) + 1))
    canvas = canvas.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("fractaldb", "contours", "all"), default="all")
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--baseline-images", type=int, default=2)
    parser.add_argument("--preset", default="fractaldb-1k")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"machine: {_cpu_model()}, {os.cpu_count()} cores, pinned to 1; numpy {np.__version__}")
    if args.only in ("fractaldb", "all"):
        fractaldb(args)
    if args.only in ("contours", "all"):
        contours(args)


def contours(args: argparse.Namespace) -> None:
    """VisualAtom and RCDB: ours (native, official) vs the official algorithm in Python, same categories."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "families"))  # the plain-Python oracle
    import official_contours as oc

    from fractalshards.families.contours.kernels import PARAM_FIELDS

    for family in ("visualatom", "rcdb"):
        manifest = load_preset(f"{family}-1k")
        fam = manifest.family
        sizes = np.array([c.value("vertices") * c.value("lines") for c in manifest.categories])
        cats = [c for c in range(len(manifest)) if abs(sizes[c] - np.median(sizes)) < 0.15 * np.median(sizes)][
            : args.baseline_images
        ]
        # The official algorithm: one instance of each category (its draws from a fresh stream: the cost is the same).
        t_py = t_py_png = 0.0
        for c in cats:
            p = {
                k: (int(v) if k in ("vertices", "lines", "radius", "freq1", "freq2") else v)
                for k, v in zip(PARAM_FIELDS, manifest.category(c).params)
            }
            rng = random.Random(c)
            t0 = time.perf_counter()
            if family == "visualatom":
                grey = oc.visualatom_instance(rng, p, p["center_x"], p["center_y"])
            else:
                grey = oc.rcdb_instance(rng, p, p["radius"], p["oval_x"], p["oval_y"], p["center_x"], p["center_y"])
            t1 = time.perf_counter()
            _pil_png(Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2), "RGB"), 6)  # the scripts save RGB PNGs
            t_py += t1 - t0
            t_py_png += time.perf_counter() - t0
        py_rate, py_png_rate = len(cats) / t_py, len(cats) / t_py_png
        print(
            f"{family}: official algorithm in Python + Pillow, {len(cats)} images of median-size categories "
            f"(vertices x lines ~{np.median(sizes):.0f}): {py_rate:.2f} images/s render, {py_png_rate:.2f} with PNG"
        )
        for mode in ("native", "official"):
            renderer = fam.renderer(manifest, fam.render_settings(manifest, {"mode": mode}))
            wide_jobs = [(i % 200, (i * 37) % 1000) for i in range(args.images // 2)]
            t0 = time.perf_counter()
            for c in sorted({c for c, _ in wide_jobs} | set(cats)):
                renderer.render(c, 999)  # compile; official: replay (and save) the threads' states
            warm = time.perf_counter() - t0
            same = _rate(renderer, [(c, k) for c in cats for k in range(0, 1000, 50)])
            wide = _rate(renderer, wide_jobs)
            print(
                f"  fractalshards {mode:8s}: same categories {same[0]:7.1f} images/s render, {same[1]:6.1f} with PNG "
                f"({same[1] / py_png_rate:.0f}x, render alone {same[0] / py_rate:.0f}x); 200 categories "
                f"{wide[0]:6.1f} / {wide[1]:6.1f} images/s; their first renders {warm:.1f} s"
            )
        t0 = time.perf_counter()
        fam._extend(
            manifest.seed,
            fam.search_settings(manifest.search),
            5,
            None,
            fam.search_settings(manifest.search).categories_per_thread - 1,
        )
        print(
            f"  official states of one thread ({fam.search_settings(manifest.search).categories_per_thread} categories x "
            f"1000 instances, replayed once per machine): {time.perf_counter() - t0:.1f} s"
        )


def _rate(renderer, jobs) -> tuple[float, float]:
    t_render = t_png = 0.0
    for c, k in jobs:
        t0 = time.perf_counter()
        image = renderer.render(c, k).image
        t1 = time.perf_counter()
        encode_png(image)
        t_render += t1 - t0
        t_png += time.perf_counter() - t1
    return len(jobs) / t_render, len(jobs) / (t_render + t_png)


def fractaldb(args: argparse.Namespace) -> None:
    """FractalDB at the reference settings: ours vs the official approach."""
    manifest = load_preset(args.preset)
    settings = RenderSettings(mode="official")
    # Distinct (category, instance) pairs: no point cloud is reused between images.
    jobs = [(i % len(manifest), instance_from_index((i * 37) % 1000)) for i in range(args.images)]
    render(manifest.category(0).system, 0, jobs[0][1], settings)  # compile / load the numba cache

    t_render = t_png = 0.0
    total_bytes = 0
    for cat, inst in jobs:
        t0 = time.perf_counter()
        out = render(manifest.category(cat).system, cat, inst, settings)
        t1 = time.perf_counter()
        total_bytes += len(png.encode(out.encodable))  # the build's path: the kernel's 1-bit rows, direct
        t2 = time.perf_counter()
        t_render += t1 - t0
        t_png += t2 - t1
    ours = args.images / (t_render + t_png)

    # PNG variants of the same image, to justify the chosen encoding.
    out = render(manifest.category(1).system, 1, jobs[1][1], settings)
    img = out.image
    variants = {}
    for name, fn in (
        ("1-bit palette, direct (ours)", lambda: png.encode(out.encodable, 1, "direct")),
        ("1-bit palette, Pillow (before)", lambda: png.encode(img, 1, "pillow")),
        ("8-bit grey, level 1", lambda: _pil_png(Image.fromarray(img, "L"), 1)),
        ("8-bit grey, level 6", lambda: _pil_png(Image.fromarray(img, "L"), 6)),
        ("RGB, level 1", lambda: _pil_png(Image.fromarray(np.repeat(img[:, :, None], 3, 2), "RGB"), 1)),
        ("RGB, level 6 (PIL default)", lambda: _pil_png(Image.fromarray(np.repeat(img[:, :, None], 3, 2), "RGB"), 6)),
    ):
        t0 = time.perf_counter()
        for _ in range(20):
            data = fn()
        variants[name] = ((time.perf_counter() - t0) / 20 * 1e3, len(data))

    t0 = time.perf_counter()
    for i in range(args.baseline_images):
        cat = i % len(manifest)
        official_style_render(manifest.category(cat).system.coefficients, manifest.category(cat).system.probabilities)
    baseline = args.baseline_images / (time.perf_counter() - t0)

    print(f"settings: {settings.size} px, {settings.points} points, 3x3 grey patch, mode {settings.mode}")
    print(
        f"fractalshards: {args.images} images in {t_render + t_png:.2f} s = {ours:.1f} images/s per core "
        f"(render {t_render / args.images * 1e3:.2f} ms + PNG {t_png / args.images * 1e3:.2f} ms per image, "
        f"{total_bytes / args.images / 1024:.1f} KiB per image)"
    )
    print(f"official approach: {args.baseline_images} images = {baseline:.3f} images/s per core")
    print(f"ratio: {ours / baseline:.0f}x")
    print("PNG encodings of one image (ms, bytes):")
    for name, (ms, size) in variants.items():
        print(f"  {name:32s} {ms:6.2f} ms {size:8d} B")


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _pil_png(im: Image.Image, level: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


if __name__ == "__main__":
    main()
