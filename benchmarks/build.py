"""Build throughput: inline, embedded Ray with 1 and 2 workers, and a FractalDB-1k projection.

    .venv/bin/python benchmarks/build.py [--out /tmp/fractalshards-bench] [--big-instances 24]

All runs use the fractaldb-1k categories at the reference settings (362 px,
200,000 points, 3x3 grey patch, official mode) and shards of 1,000 samples.
Ray is started before each timed build (its start is reported apart); worker
start-up and numba cache loading count in the build time.

- scaling efficiency = (images/s with 2 workers) / (2 x images/s with 1 worker)
- Ray overhead per shard = (workers x build wall time - sum of in-task times) / shards,
  compared with the mean in-task time of a shard
- projection: 1,000,000 images at the 2-worker rate of the big run (>= 20,000 images)
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time

from fractalshards.build import build, ray_init_local
from fractalshards.plan import DatasetDefinition
from fractalshards.presets import load_preset
from fractalshards.render import RenderSettings

OFFICIAL_BYTES_PER_IMAGE = 13e9 / 1e6  # the official FractalDB-1k release: 13 GB of RGB PNG


def timed_build(definition: DatasetDefinition, out: str, workers: int) -> dict:
    import ray

    shutil.rmtree(out, ignore_errors=True)
    ray_start = 0.0
    if workers:
        t0 = time.perf_counter()
        ray_init_local(workers)
        ray_start = time.perf_counter() - t0
    try:
        result = build(definition, out, workers=workers if workers else 0, log_fn=lambda s: None)
    finally:
        if workers:
            ray.shutdown()
    shards = len(result.entries)
    task_total = sum(e.seconds for e in result.entries)
    lanes = max(1, workers)
    return {
        "workers": workers,
        "images": result.images_built,
        "seconds": result.seconds,
        "rate": result.images_per_second,
        "ray_start": ray_start,
        "task_mean": task_total / shards,
        "overhead_per_shard": max(0.0, (lanes * result.seconds - task_total) / shards),
        "bytes_per_image": result.manifest.totals["bytes"] / result.manifest.totals["samples"],
    }


def mask_information_bytes(categories, settings: RenderSettings, samples: int = 200) -> tuple[float, float]:
    """Mean bytes of random patch-mask bits an image holds, and its mean PNG size.

    Every pixel a patch touches ends up with one random mask bit (the last patch to
    touch it wins), so no lossless encoding of the pixels can go below
    (touched pixels) / 8 bytes.
    """
    import numpy as np

    from fractalshards import kernel
    from fractalshards.instances import instance_from_index
    from fractalshards.render import point_cloud, render
    from fractalshards.shards import encode_png

    ones = kernel.patch_table(1)
    touched, png = [], []
    for i in range(samples):
        cat, inst = (i * 7) % len(categories), instance_from_index((i * 37) % 1000)
        cloud = point_cloud(categories.system(cat), cat, inst.weight, settings)
        canvas = np.zeros((settings.size, settings.size), np.uint8)
        kernel.draw_patches(cloud.px, cloud.py, len(cloud.px), np.full(len(cloud.px), 511, np.uint16), ones, canvas)
        touched.append(int(canvas.sum()))
        png.append(len(encode_png(render(categories.system(cat), cat, inst, settings).image)))
    return sum(touched) / len(touched) / 8, sum(png) / len(png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="/tmp/fractalshards-bench")
    parser.add_argument("--small-instances", type=int, default=6, help="instances per category of the 0/1/2-worker runs")
    parser.add_argument("--big-instances", type=int, default=24, help="instances per category of the projection run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    categories = load_preset("fractaldb-1k")
    settings = RenderSettings(mode="official")

    def definition(k: int) -> DatasetDefinition:
        return DatasetDefinition(categories=categories, instances=k, render=settings, shard_size=1000)

    small = definition(args.small_instances)
    runs = [timed_build(small, os.path.join(args.out, f"w{w}"), w) for w in (0, 1, 2)]
    big = timed_build(definition(args.big_instances), os.path.join(args.out, "big"), 2)
    shutil.rmtree(args.out, ignore_errors=True)

    print(f"cores: {os.cpu_count()}; fractaldb-1k categories, 362 px, 200k points, 3x3 grey patch, shards of 1000")
    for r in runs + [big]:
        label = "inline (no Ray)" if r["workers"] == 0 else f"Ray, {r['workers']} worker(s)"
        print(f"{label:18s} {r['images']:6d} images in {r['seconds']:6.1f} s = {r['rate']:6.1f} images/s"
              f"  (Ray start {r['ray_start']:.1f} s; task {r['task_mean']:.2f} s/shard, overhead {r['overhead_per_shard']:.3f} s/shard"
              f" = {100 * r['overhead_per_shard'] / r['task_mean']:.1f}%)")
    one, two = runs[1], runs[2]
    print(f"scaling efficiency 1 -> 2 workers: {two['rate'] / (2 * one['rate']) * 100:.0f}%")
    print(f"Ray 1 worker vs inline: {one['rate'] / runs[0]['rate'] * 100:.0f}%")
    hours = 1e6 / big["rate"] / 3600
    print(f"FractalDB-1k projection (1,000,000 images at {big['rate']:.0f} images/s, from {big['images']} images): {hours * 60:.0f} min")
    print(f"bytes per image: {big['bytes_per_image']:.0f} B (official RGB PNG: {OFFICIAL_BYTES_PER_IMAGE:.0f} B; "
          f"ratio {big['bytes_per_image'] / OFFICIAL_BYTES_PER_IMAGE:.2f}); 1M images ~ {big['bytes_per_image'] * 1e6 / 1e9:.1f} GB")
    bound, png = mask_information_bytes(categories, settings)
    print(f"of which PNG {png:.0f} B ({png / OFFICIAL_BYTES_PER_IMAGE:.2f} of official); random mask bits alone "
          f"(lossless lower bound) {bound:.0f} B ({bound / OFFICIAL_BYTES_PER_IMAGE:.2f} of official)")


if __name__ == "__main__":
    main()
