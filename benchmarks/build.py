"""Build throughput: where a build worker's time goes, then whole builds (inline, 1 and 2 Ray workers).

    .venv/bin/python benchmarks/build.py [--profile-images 1000] [--shards 24] [--out /tmp/fractalshards-bench]
    .venv/bin/python benchmarks/build.py --profile-only [--families visualatom-1k,rcdb-1k]

Everything runs the fractaldb-1k definition that `fractalshards build --preset
fractaldb-1k --instances 1000` builds (362 px, 200,000 points, 3x3 grey patch,
official mode, shards of 1,000 samples spread over every weight row, flip and patch).

1. **Profile** (one core, pinned): the first ``--profile-images`` samples of its
   first shard go through a build worker's stages one at a time, timed per stage,
   for the pipeline of this version and for the one before it (the map search
   inside the walk, byte-canvas kernels, a flip copy, Pillow's PNG, the tarfile
   module), in the same run. Each pipeline's
   shard bytes are checked against the library's (``render_shard`` with the
   ``direct`` and ``pillow`` encoders), so the stages time what a build does.
   The contour families (``--families``) get the same profile, their render in one
   stage (native mode; ``benchmarks/render.py`` breaks it down).
2. **Builds**: the first ``--shards`` shards of that definition, inline and on an
   embedded Ray with 1 and 2 workers, to a local folder (written and hashed). Ray's
   start is reported apart; worker start-up and numba cache loading count. Ray's
   share = (workers x wall time - time inside the tasks) / images.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import tarfile
import tempfile
import time

import numpy as np
from numba import njit

from fractalshards import png
from fractalshards.builder import _run_ray, build_shard, ray_init_local  # _run_ray: build()'s dispatch, on a prefix of the shards
from fractalshards.definition import DatasetDefinition
from fractalshards.families.fractaldb import kernels as kernel
from fractalshards.families.fractaldb.instances import instance_from_index
from fractalshards.families.fractaldb.render import (
    GRAY_VALUE,
    RenderSettings,
    _draw_bits,
    _flip,
    _rescale,
    _uniforms,
    _walk,
    _workspace,
)
from fractalshards.presets import load_preset
from fractalshards.results import Rendered
from fractalshards.seeds import stream_key
from fractalshards.shards import ShardEntry, render_shard, sample_record
from fractalshards.storage import open_store, sha256_bytes
from fractalshards.tarformat import tar_bytes

OFFICIAL_BYTES_PER_IMAGE = 13e9 / 1e6  # the official FractalDB-1k release: 13 GB of RGB PNG
STAGES = ("render", "chaos game", "rescale", "drawing", "flip", "PNG", "JSON record", "tar", "sha256", "write")


def reference_definition(encoder: str = png.DEFAULT_ENCODER) -> DatasetDefinition:
    """What `build --preset fractaldb-1k --instances 1000` builds (with ``encoder``)."""
    return DatasetDefinition(
        categories=load_preset("fractaldb-1k"),
        instances=1000,
        render=RenderSettings(mode="official"),
        shard_size=1000,
        png_encoder=encoder,
    )


class _Clock:
    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self.t
        self.t = now


def _render_now(definition, c, i, ws, clock) -> Rendered:
    # The library's own stages (render._render_patch_bits), a lap after each.
    inst = instance_from_index(i)
    s = definition.render
    diverged = _walk(definition.categories.category(c).system, c, inst.weight, s, ws)  # set-up timed with the chaos game
    clock.lap("chaos game")
    length = _rescale(diverged, s, ws)
    clock.lap("rescale")
    image, count = _draw_bits(length, c, inst, s, ws)
    clock.lap("drawing")
    return Rendered(None, diverged, bits=image, count=count)


@njit(cache=True, nogil=True, error_model="numpy")
def _chaos_game_before(coef, cum, uniforms, npoints, xs, ys):
    # kernel.chaos_game as it was before this version (commit b9aef76): the map search inside the walk.
    n = coef.shape[0]
    x = 0.0
    y = 0.0
    xs[0] = x
    ys[0] = y
    for k in range(npoints - 1):
        r = uniforms[k]
        j = 0
        for t in range(n - 1):
            j += r > cum[t]
        nx = (coef[j, 0] * x + coef[j, 1] * y) + coef[j, 4]
        ny = (coef[j, 2] * x + coef[j, 3] * y) + coef[j, 5]
        x = nx
        y = ny
        xs[k + 1] = x
        ys[k + 1] = y


def _render_before(definition, c, i, ws, clock) -> Rendered:
    inst = instance_from_index(i)
    s = definition.render
    n = s.points
    coef, cum, uniforms = _uniforms(definition.categories.category(c).system, c, inst.weight, s, ws)
    _chaos_game_before(coef, cum, uniforms, n, ws.xs, ws.ys)
    clock.lap("chaos game")
    length, diverged = kernel.drop_divergent(ws.xs, ws.ys, n, ws.drop)
    kernel.to_pixels(ws.xs, length, s.span, float(s.pad), ws.px)
    kernel.to_pixels(ws.ys, length, s.span, float(s.pad), ws.py)
    clock.lap("rescale")
    masks = ws.masks[:length]
    kernel.hash_masks(stream_key("masks", s.seed, c, inst.weight, inst.patch), masks)
    canvas = np.zeros((s.size, s.size), np.uint8)
    kernel.draw_patches(ws.px[:length], ws.py[:length], length, masks, kernel.patch_table(GRAY_VALUE), canvas)
    clock.lap("drawing")
    image = _flip(canvas, inst.flip)
    clock.lap("flip")
    return Rendered(image, bool(diverged))


def _render_family(definition, c, i, ws, clock) -> Rendered:
    out = definition.renderer.render(c, i)
    clock.lap("render")
    return out


def _tarfile_bytes(members) -> bytes:
    # The tar writer of the version before (tarfile), for the "before" column.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                len(data),
                946684800,
                0o444,
                0,
                0,
                "",
                "",
            )
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def profile_pipeline(definition: DatasetDefinition, pairs, render_fn, tar_fn, folder: str) -> tuple[dict, bytes]:
    """Per-stage seconds of building one shard of ``pairs`` the way ``render_fn`` / ``tar_fn`` do."""
    import json

    ws = _workspace(getattr(definition.render, "points", 1))
    store = open_store(folder)
    clock = _Clock()
    members = []
    for c, i in pairs:
        clock.t = time.perf_counter()
        rendered = render_fn(definition, c, i, ws, clock)
        data = png.encode(rendered.encodable, definition.png_compress_level, definition.png_encoder)
        clock.lap("PNG")
        record = json.dumps(sample_record(definition, c, i, rendered), sort_keys=True, separators=(",", ":")).encode()
        key = f"{c:06d}-{i:04d}"
        members += [(f"{key}.cls", str(c).encode()), (f"{key}.json", record), (f"{key}.png", data)]
        clock.lap("JSON record")
    clock.t = time.perf_counter()
    shard = tar_fn(members)
    clock.lap("tar")
    sha256_bytes(shard)
    clock.lap("sha256")
    store.write_bytes("shard.tar", shard)
    clock.lap("write")
    return clock.seconds, shard


def _print_profile(title: str, runs: dict, n: int) -> float:
    print(f"\n{title}, ms per image")
    print("| stage | before | now | speed-up |\n|---|---|---|---|")
    for stage in STAGES:
        b, a = runs["before"][stage] / n * 1e3, runs["now"][stage] / n * 1e3
        if b or a:
            print(f"| {stage} | {b:.3f} | {a:.3f} | {f'{b / a:.1f}x' if a > 0.0005 else '-'} |")
    tb, ta = sum(runs["before"].values()) / n * 1e3, sum(runs["now"].values()) / n * 1e3
    print(f"| **total** | **{tb:.3f}** ({1e3 / tb:.0f} images/s) | **{ta:.3f}** ({1e3 / ta:.0f} images/s) | **{tb / ta:.2f}x** |")
    render_encode = sum(runs["now"][k] for k in ("render", "chaos game", "rescale", "drawing", "flip", "PNG")) / n * 1e3
    print(f"render + encode now: {render_encode:.3f} ms = {1e3 / render_encode:.0f} images/s on one core")
    return render_encode


def _profile_runs(now: DatasetDefinition, before: DatasetDefinition, pairs, render_now, render_before) -> dict:
    from fractalshards.definition import ShardSpec

    with tempfile.TemporaryDirectory() as folder:
        # Warm-up (numba cache, lru caches), then check that the timed stages are what a build does.
        for definition, render_fn, tar_fn in ((now, render_now, tar_bytes), (before, render_before, _tarfile_bytes)):
            _, shard = profile_pipeline(definition, pairs[:20], render_fn, tar_fn, folder)
            assert shard == render_shard(definition, ShardSpec(0, "s", pairs[:20]))[0], "profile stages differ from the library"
        return {
            label: profile_pipeline(definition, pairs, render_fn, tar_fn, folder)[0]
            for label, definition, render_fn, tar_fn in (
                ("before", before, render_before, _tarfile_bytes),
                ("now", now, render_now, tar_bytes),
            )
        }


def profile(images: int) -> None:
    """The FractalDB-1k worker profile (see the module doc)."""
    from fractalshards.definition import ShardSpec

    now, before = reference_definition(), reference_definition(png.LEGACY_ENCODER)
    spec = now.shard_spec(0)
    pairs = spec.pairs[:images]
    runs = _profile_runs(now, before, pairs, _render_now, _render_before)
    with tempfile.TemporaryDirectory() as folder:  # the library's own worker function on the same samples
        t0 = time.perf_counter()
        build_shard(open_store(folder), now, ShardSpec(0, spec.name, pairs))
        library = time.perf_counter() - t0
    n = len(pairs)
    _print_profile(
        f"profile: one build worker (1 core, pinned), {n} samples of fractaldb-1k shard 0 (362 px, 200k points, official)",
        runs,
        n,
    )
    print(
        f"build_shard (the library's worker function) on the same samples: {library / n * 1e3:.3f} ms/image "
        f"= {n / library:.0f} images/s"
    )


def profile_family(preset: str, images: int) -> None:
    """The same profile for a contour family's preset (native mode: official mode adds the saved-state replay)."""
    manifest = load_preset(preset)
    family = manifest.family
    settings = family.render_settings(manifest, {"mode": "native"})

    def definition(encoder: str) -> DatasetDefinition:
        return DatasetDefinition(
            categories=manifest, instances=family.instances_per_category, render=settings, png_encoder=encoder
        )

    now = definition(png.DEFAULT_ENCODER)
    pairs = now.shard_spec(0).pairs[:images]
    runs = _profile_runs(now, definition(png.LEGACY_ENCODER), pairs, _render_family, _render_family)
    sizes = {
        label: sum(len(png.encode(now.renderer.render(c, i).image, 1, enc)) for c, i in pairs[:50]) / 50
        for label, enc in (("before", png.LEGACY_ENCODER), ("now", png.DEFAULT_ENCODER))
    }
    _print_profile(
        f"profile: {preset} (native, {family.image_size} px), {len(pairs)} samples of shard 0, one core", runs, len(pairs)
    )
    print(f"PNG bytes per image: before {sizes['before']:.0f} B, now {sizes['now']:.0f} B")


def timed_build(definition: DatasetDefinition, out: str, workers: int, shards: int) -> dict:
    """Build the first ``shards`` shards of ``definition`` into ``out`` as build() does (inline or Ray)."""
    import ray

    shutil.rmtree(out, ignore_errors=True)
    store = open_store(out)
    specs = definition.shard_specs()[:shards]
    entries: list[ShardEntry] = []
    ray_start = 0.0
    ray_dir = tempfile.mkdtemp(prefix="fsray-bench-")  # Ray's session files go here, removed after, not to /tmp/ray
    if workers:
        t0 = time.perf_counter()
        ray_init_local(workers, _temp_dir=ray_dir)
        ray_start = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        if workers:
            _run_ray(store, definition, specs, {}, entries.append, None, 0)
        else:
            for spec in specs:
                entries.append(build_shard(store, definition, spec))
        seconds = time.perf_counter() - t0
    finally:
        if workers:
            ray.shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)
    images = sum(e.samples for e in entries)
    task_total = sum(e.seconds for e in entries)
    lanes = max(1, workers)
    return {
        "workers": workers,
        "images": images,
        "seconds": seconds,
        "rate": images / seconds,
        "ray_start": ray_start,
        "task_per_image": task_total / images,
        "ray_share": max(0.0, lanes * seconds - task_total) / images,
        "bytes_per_image": sum(e.bytes for e in entries) / images,
    }


def mask_information_bytes(definition: DatasetDefinition, samples: int = 200) -> tuple[float, float]:
    """Mean bytes of random patch-mask bits an image holds, and its mean PNG size.

    Every pixel a patch touches ends up with one random mask bit (the last patch to
    touch it wins), so no lossless encoding of the pixels can go below
    (touched pixels) / 8 bytes.
    """
    from fractalshards.families.fractaldb.render import point_cloud, render

    categories, settings = definition.categories, definition.render
    ones = kernel.patch_table(1)
    touched, sizes = [], []
    for i in range(samples):
        cat, inst = (i * 7) % len(categories), instance_from_index((i * 37) % 1000)
        cloud = point_cloud(categories.category(cat).system, cat, inst.weight, settings)
        canvas = np.zeros((settings.size, settings.size), np.uint8)
        kernel.draw_patches(cloud.px, cloud.py, len(cloud.px), np.full(len(cloud.px), 511, np.uint16), ones, canvas)
        touched.append(int(canvas.sum()))
        rendered = render(categories.category(cat).system, cat, inst, settings)
        sizes.append(len(png.encode(rendered.encodable, definition.png_compress_level, definition.png_encoder)))
    return sum(touched) / len(touched) / 8, sum(sizes) / len(sizes)


def compare_encoders(encoders: list[str], shards: int, rounds: int, out: str) -> None:
    """Inline builds (one core) of the same shards of the fractaldb-1k reference with each encoder,
    alternating: images/s per round and bytes per image."""
    build_shard(open_store(os.path.join(out, "warm")), reference_definition(encoders[0]), reference_definition().shard_spec(0))
    results: dict[str, list] = {e: [] for e in encoders}
    for _ in range(rounds):
        for encoder in encoders:
            r = timed_build(reference_definition(encoder), os.path.join(out, encoder), 0, shards)
            results[encoder].append(r)
    shutil.rmtree(out, ignore_errors=True)
    print(f"\ninline builds, one core: the first {shards} shards of fractaldb-1k x 1000 (362 px, official), {rounds} rounds")
    print("| encoder | images/s per round | bytes per image |\n|---|---|---|")
    for encoder, runs in results.items():
        rates = ", ".join(f"{r['rate']:.0f}" for r in runs)
        print(f"| `{encoder}` | {rates} | {runs[0]['bytes_per_image']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "fractalshards-bench"))
    parser.add_argument("--profile-images", type=int, default=1000, help="samples of the profile (default: one shard)")
    parser.add_argument(
        "--shards", type=int, default=24, help="shards of the 2-worker build (the 0/1-worker builds take a quarter)"
    )
    parser.add_argument("--profile-only", action="store_true")
    parser.add_argument("--families", default="visualatom-1k,rcdb-1k", help="contour presets to profile too ('' for none)")
    parser.add_argument("--family-images", type=int, default=300)
    parser.add_argument(
        "--encoders",
        default="",
        help="only time inline one-core builds of the first --shards shards with each of these encoders "
        "(e.g. direct,portable), alternating, --rounds times",
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"cores: {os.cpu_count()}; numpy {np.__version__}; png libraries {png.library_versions()}")
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if affinity:
        os.sched_setaffinity(0, {sorted(affinity)[0]})
    if args.encoders:
        compare_encoders(args.encoders.split(","), args.shards, args.rounds, args.out)
        return
    profile(args.profile_images)
    for preset in [p for p in args.families.split(",") if p]:
        profile_family(preset, args.family_images)
    if affinity:
        os.sched_setaffinity(0, affinity)
    if args.profile_only:
        return
    definition = reference_definition()
    small = max(2, args.shards // 4)
    runs = [timed_build(definition, os.path.join(args.out, f"w{w}"), w, small) for w in (0, 1, 2)]
    big = timed_build(definition, os.path.join(args.out, "big"), 2, args.shards)
    shutil.rmtree(args.out, ignore_errors=True)
    print(
        "\nbuilds: first shards of fractaldb-1k x 1000 (362 px, 200k points, 3x3 grey patch, official, "
        f"{definition.png_encoder} PNG), to local disk"
    )
    print("| build | images | time | images/s | Ray's share per image |\n|---|---|---|---|---|")
    for r in runs + [big]:
        label = "inline, no Ray (1 core)" if r["workers"] == 0 else f"embedded Ray, {r['workers']} worker(s)"
        share = (
            "-"
            if r["workers"] == 0
            else f"{r['ray_share'] * 1e3:.3f} ms ({100 * r['ray_share'] / r['task_per_image']:.1f}% of the work)"
        )
        print(f"| {label} | {r['images']:,} | {r['seconds']:.1f} s | {r['rate']:.0f} | {share} |")
    one, two = runs[1], runs[2]
    print(
        f"scaling 1 -> 2 workers: {two['rate'] / (2 * one['rate']) * 100:.0f}%; "
        f"Ray start {big['ray_start']:.1f} s (outside the times)"
    )
    print(f"FractalDB-1k (1,000,000 images) projected at {big['rate']:.0f} images/s: {1e6 / big['rate'] / 60:.1f} min")
    print(
        f"bytes per image: {big['bytes_per_image']:.0f} B ({big['bytes_per_image'] / 1024:.2f} KiB; official RGB PNG "
        f"{OFFICIAL_BYTES_PER_IMAGE:.0f} B, ratio {big['bytes_per_image'] / OFFICIAL_BYTES_PER_IMAGE:.2f}); "
        f"1M images ~ {big['bytes_per_image'] * 1e6 / 1e9:.1f} GB"
    )
    bound, png_bytes = mask_information_bytes(definition)
    print(f"of which PNG {png_bytes:.0f} B; random mask bits alone (lossless lower bound) {bound:.0f} B")


if __name__ == "__main__":
    main()
