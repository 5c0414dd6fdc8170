"""Render throughput on one core, against the official approach, in the same run.

    .venv/bin/python benchmarks/render.py [--images 400] [--baseline-images 2]

Reference settings: 362 px, 200,000 points, 3x3 grey patches, PNG encoded.
Ours: numba kernel + 1-bit palette PNG (``fractalshards.render``). Baseline: the
official approach, a Python chaos-game loop and a per-point PIL patch paste, then
an RGB PNG (run on a few images only: it takes seconds each). The process is
pinned to one CPU so that both numbers are per core.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import time

import numpy as np
from PIL import Image

from fractalshards.instances import instance_from_index
from fractalshards.presets import load_preset
from fractalshards.render import RenderSettings, render
from fractalshards.shards import encode_png


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
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--baseline-images", type=int, default=2)
    parser.add_argument("--preset", default="fractaldb-1k")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    manifest = load_preset(args.preset)
    settings = RenderSettings(mode="official")
    # Distinct (category, instance) pairs: no point cloud is reused between images.
    jobs = [(i % len(manifest), instance_from_index((i * 37) % 1000)) for i in range(args.images)]
    render(manifest.system(0), 0, jobs[0][1], settings)  # compile / load the numba cache

    t_render = t_png = 0.0
    total_bytes = 0
    for cat, inst in jobs:
        t0 = time.perf_counter()
        img = render(manifest.system(cat), cat, inst, settings).image
        t1 = time.perf_counter()
        total_bytes += len(encode_png(img))
        t2 = time.perf_counter()
        t_render += t1 - t0
        t_png += t2 - t1
    ours = args.images / (t_render + t_png)

    # PNG variants of the same image, to justify the chosen encoding.
    img = render(manifest.system(1), 1, jobs[1][1], settings).image
    variants = {}
    for name, fn in (
        ("1-bit palette, level 1 (ours)", lambda: encode_png(img)),
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
        official_style_render(manifest.system(cat).coefficients, manifest.system(cat).probabilities)
    baseline = args.baseline_images / (time.perf_counter() - t0)

    print(f"machine: {_cpu_model()}, {os.cpu_count()} cores, pinned to 1; numpy {np.__version__}")
    print(f"settings: {settings.size} px, {settings.points} points, 3x3 grey patch, mode {settings.mode}")
    print(f"fractalshards: {args.images} images in {t_render + t_png:.2f} s = {ours:.1f} images/s per core "
          f"(render {t_render / args.images * 1e3:.2f} ms + PNG {t_png / args.images * 1e3:.2f} ms per image, "
          f"{total_bytes / args.images / 1024:.1f} KiB per image)")
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
