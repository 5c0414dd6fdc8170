"""On-the-fly rendering vs reading shards: samples/s per core, and CPU cores per GPU.

    .venv/bin/python benchmarks/render_stream.py [--instances 4]

Pinned to one CPU, in one run, for fractaldb-100 x K at 362 px and at 224 px
(200,000 points, 3x3 grey patches):

- the renderer alone, as ``benchmarks/render.py`` measures it (render + PNG encode),
  and render without PNG;
- ``FractalStream(recipe)`` (``source="render"``): every sample rendered in the loader,
  decoded to uint8 CHW tensors, with labels (no PNG at all);
- ``FractalStream(dataset)`` reading the same samples from local shards (decode included).

Anderson & Farrell's on-the-fly generator is not on the package index, so it is
not run here; docs/streaming.md compares with their published settings instead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.families.fractaldb.instances import instance_from_index
from fractalshards.families.fractaldb.render import RenderSettings, render
from fractalshards.png import encode
from fractalshards.presets import load_preset
from fractalshards.recipe import Recipe
from fractalshards.stream import FractalStream

#: Published single-GPU training throughputs (images/s), for the cores-per-GPU estimate.
GPU_THROUGHPUT = {
    "ResNet-50, A100 80GB, AMP (NVIDIA DeepLearningExamples, PyTorch ResNet50 v1.5 README)": 2470,
    "ViT-Tiny/16, RTX 3090, AMP (timm results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv)": 2294,
}


def best_rate(fn, count: int, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = max(best, count / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=4, help="instances per category (100 categories)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cpu = sorted(os.sched_getaffinity(0))[-1]
    os.sched_setaffinity(0, {cpu})
    tmp = tempfile.mkdtemp(prefix="fractalshards-render-stream-")
    rows = []
    try:
        for size in (362, 224):
            definition = DatasetDefinition(
                categories=load_preset("fractaldb-100"),
                instances=args.instances,
                render=RenderSettings(mode="official", size=size),
                shard_size=100,
            )
            n = definition.num_samples
            recipe = os.path.join(tmp, f"recipe-{size}.json")
            with open(recipe, "w") as fh:
                fh.write(Recipe(definition).to_json())
            folder = os.path.join(tmp, f"ds-{size}")
            build(definition, folder, workers=0, log_fn=lambda s: None)
            pairs = [(c, i) for c in range(definition.num_categories) for i in range(args.instances)]
            settings, cats = definition.render, definition.categories

            def renderer(with_png: bool) -> None:
                for c, i in pairs:
                    out = render(cats.category(c).system, c, instance_from_index(i), settings)
                    if with_png:
                        encode(out.encodable, 1)  # a build's path: the kernel's 1-bit rows
                    else:
                        out.image  # the pixels a loader decodes to

            def stream(url: str) -> None:
                got = sum(1 for _ in FractalStream(url, seed=0))
                if got != n:
                    raise RuntimeError(f"{got} samples, expected {n}")

            renderer(False)  # numba compile and caches
            stream(recipe)
            rows.append(
                (
                    size,
                    {
                        "render + PNG (benchmarks/render.py)": best_rate(lambda: renderer(True), n, args.repeats),
                        "render only": best_rate(lambda: renderer(False), n, args.repeats),
                        "FractalStream(recipe): rendered on the fly": best_rate(lambda: stream(recipe), n, args.repeats),
                        "FractalStream(dataset): local shards": best_rate(lambda: stream(folder), n, args.repeats),
                    },
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"fractaldb-100 x {args.instances}, 200,000 points, 3x3 grey patches; one core (CPU {cpu}); samples/s per core")
    print("| | " + " | ".join(f"{size} px" for size, _ in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for name in rows[0][1]:
        print(f"| {name} | " + " | ".join(f"{r[name]:,.0f}" for _, r in rows) + " |")
    for size, r in rows:
        fly, ref = r["FractalStream(recipe): rendered on the fly"], r["render + PNG (benchmarks/render.py)"]
        print(f"{size} px: on the fly / renderer (render + PNG) = {fly / ref:.2f}x")
        for gpu, rate in GPU_THROUGHPUT.items():
            print(f"  cores to feed {gpu} at {rate} img/s: {rate / fly:.1f}")


if __name__ == "__main__":
    main()
