"""GPU rendering: every kernel in numba's CUDA simulator against the CPU kernels, and the PTX the
real compiler makes (no fused multiply-add in the walks). Tests marked ``gpu`` need a real device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import VECTORS

from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError
from fractalshards.gpu_renderer import GPURenderer, check_device, simulated
from fractalshards.results import pack_rendered

# A few thousand points and tiny images: the simulator runs every thread as Python.
SMALL = {"size": 36, "points": 1200}


def _cpu_packed(definition, pairs):
    return [pack_rendered(definition.renderer.render(c, i), definition.packed_layout) for c, i in pairs]


def _assert_same(definition, pairs):
    images, diverged = GPURenderer(definition, "cuda").render(pairs)
    assert images.dtype == torch.uint8 and tuple(images.shape) == (len(pairs), *definition.packed_layout.shape)
    for b, expected in enumerate(_cpu_packed(definition, pairs)):
        assert np.array_equal(images[b].numpy(), expected), (pairs[b], definition.render)
    return images, diverged


def test_the_suite_runs_the_kernels_in_the_simulator():
    assert simulated()  # conftest sets NUMBA_ENABLE_CUDASIM=1 (make test-gpu does not)


@pytest.mark.parametrize(
    "render",
    [
        {"mode": "official"},
        {"mode": "native"},
        {"mode": "official", "draw": "point"},
        {"mode": "native", "draw": "point"},
        {"mode": "official", "color": "color"},
        {"mode": "native", "color": "color", "draw": "point"},
        {"mode": "native", "seed": 7, "pad": 5},
    ],
)
def test_fractaldb_kernels_equal_the_cpu_pixel_for_pixel(render):
    d = DatasetDefinition.from_preset("fractaldb-100", categories=4, instances=1000, render={**SMALL, **render})
    # Every flip, several weight rows and patch variants.
    pairs = [(0, 0), (1, 25), (2, 50), (3, 75), (1, 999), (2, 313), (0, 642)]
    _, diverged = _assert_same(d, pairs)
    assert not diverged.any()


def test_ofdb_and_1p_frac_equal_the_cpu():
    ofdb = DatasetDefinition.from_preset("ofdb-1k", categories=3, instances=1, render=SMALL)
    _assert_same(ofdb, [(0, 0), (1, 0), (2, 0)])
    one = DatasetDefinition.from_preset("1p-frac", categories=3, render={"size": 40, "points": 1500})
    _assert_same(one, [(0, 0), (2, 0), (1, 0)])


def test_divergent_walks_get_the_cpu_pixels_and_are_flagged():
    # Weight row 4 of fractaldb-1k's categories 2 and 14 diverges (recorded vectors; within 6,000
    # points here): the kernel hands those walks to the CPU's NaN rule, the others stay on the device.
    with open(VECTORS / "fractaldb-render-golden.json") as fh:
        cases = [c for c in json.load(fh)["renders"] if c["diverged"] and c["category"] in (2, 14) and c["weight"] == 4]
    d = DatasetDefinition.from_preset(
        "fractaldb-1k", categories=15, instances=1000, render={"mode": "official", "size": 36, "points": 6000}
    )
    pairs = [(c["category"], c["weight"] + 25 * (c["flip"] + 4 * c["patch"])) for c in cases[:2]] + [(0, 2)]
    with np.errstate(all="ignore"):
        _, diverged = _assert_same(d, pairs)
        expected = [d.renderer.render(c, i).diverged for c, i in pairs]
    assert diverged.tolist() == expected == [True, True, False]


# Contours with few vertices and lines (the simulator runs every draw as Python); the official
# replay over threads of 2 categories and 60 instances, so saved states (every 25) are crossed.
SMALL_CONTOURS = {
    "min_vertices": 3,
    "max_vertices": 9,
    "min_lines": 1,
    "max_lines": 3,
    "categories_per_thread": 2,
    "instances_per_category": 60,
}


def _contours(family, mode, categories=3, instances=60, **options):
    from fractalshards.categories import CategoryManifest
    from fractalshards.families import get_family

    fam = get_family(family)
    small = {**SMALL_CONTOURS, **({"vertex_mean": 6.0} if family == "rcdb" else {})}
    settings = fam.search_settings(small)
    seed = fam.default_seed(mode)
    result = fam.search(categories, mode=mode, seed=seed, settings=settings)
    manifest = CategoryManifest.from_search(f"{family}-small", mode, seed, settings, result, mode, family=family)
    return DatasetDefinition.from_manifest(manifest, instances=instances, render={"mode": mode}, **options)


@pytest.mark.parametrize("family", ["visualatom", "rcdb"])
@pytest.mark.parametrize("mode", ["official", "native"])
def test_contour_kernels_equal_the_cpu_pixel_for_pixel(family, mode):
    d = _contours(family, mode)
    # Instance 0 (the category's own shape), both sides of saved states 25 and 50, every category.
    pairs = [(0, 0), (1, 1), (2, 24), (0, 25), (1, 37), (2, 59), (2, 0)]
    images, diverged = _assert_same(d, pairs)
    assert not diverged.any()
    background = 255 if family == "rcdb" else 0
    assert all(int((images[b] != background).sum()) > 0 for b in range(len(pairs)))  # every image has lines


def test_contour_renders_for_the_encoder_carry_the_cpu_s_shapes():
    from fractalshards.shards import render_sample, sample_data

    for family in ("visualatom", "rcdb"):
        d = _contours(family, "official", categories=2)
        pairs = [(1, 3), (0, 27)]
        for (c, i), rendered in zip(pairs, GPURenderer(d, "cuda").rendered(pairs)):
            _, cpu = render_sample(d, c, i, record=False)
            assert sample_data(d, rendered) == sample_data(d, cpu) and rendered.info == cpu.info


def test_rendered_for_the_encoder_gives_the_cpu_png_bytes():
    from fractalshards.shards import render_sample, sample_data

    for render in ({"mode": "official"}, {"mode": "native", "draw": "point"}, {"mode": "native", "color": "color"}):
        d = DatasetDefinition.from_preset("fractaldb-100", categories=2, instances=8, render={**SMALL, **render})
        pairs = [(0, 1), (1, 6)]
        for (c, i), rendered in zip(pairs, GPURenderer(d, "cuda").rendered(pairs)):
            _, cpu = render_sample(d, c, i, record=False)
            assert sample_data(d, rendered) == sample_data(d, cpu) and rendered.fill == cpu.fill


def test_bad_devices_and_families_are_one_line_errors(tmp_path):
    for bad, match in (("cpu", "not a GPU"), ("tpu", "not a device"), ("cuda:x", "not a device")):
        with pytest.raises(ConfigError, match=match):
            check_device(bad)
    # (A family without GPU kernels: tests/test_plugin_family.py, through the CLI.)


_PTX_CHECK = textwrap.dedent(
    """
    import json, re, sys
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda
    from fractalshards.families.fractaldb import gpu

    # No driver here: device functions ask the current device for its compute capability, so
    # this machine is told the one being compiled for (the compiler itself is the real NVVM).
    class Device:
        compute_capability = (8, 0)

    dispatcher.get_current_device = lambda: Device
    sig = ("float64[:, :, ::1], float64[:, ::1], int32[::1], float64[::1], boolean, uint64[::1], uint64[::1], "
           "int32[::1], int64, int64, float64, float64, boolean, uint8[:, ::1], {out}, int32[::1]")
    out = {}
    for cc in ((8, 0), (9, 0)):
        Device.compute_capability = cc
        for kernel, layout in ((gpu._render_bits, "uint8[:, :, ::1]"), (gpu._render_rgb, "uint8[:, :, :, ::1]")):
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig.format(out=layout), cc=cc)
            out[f"sm_{cc[0]}{cc[1]} {layout}"] = {
                "fma": len(re.findall(r"\\bfma\\.", ptx)),
                "mul": len(re.findall(r"\\bmul\\.rn\\.f64", ptx)),
                "entry": ".entry" in ptx,
            }
    from fractalshards.families.contours import gpu as contours

    sig = ("boolean, boolean, int64[::1], int64[::1], float64[::1], float64[::1], int64[::1], int64[::1], int64[::1], "
           "float64[::1], float64[:, ::1], uint64[::1], int64[::1], uint32[:, ::1], float64[::1], int64, float32[::1], "
           "float64[:, ::1], float64[:, ::1], uint8[:, :, ::1]")
    for cc in ((8, 0), (9, 0)):
        Device.compute_capability = cc
        ptx, _ = cuda.compile_ptx(contours._render.py_func, sig, cc=cc)
        out[f"sm_{cc[0]}{cc[1]} contours"] = {
            "fma": len(re.findall(r"\\bfma\\.", ptx)),
            "mul": len(re.findall(r"\\bmul\\.rn\\.f64", ptx)) and len(re.findall(r"\\bmul\\.rn\\.f32", ptx)),
            "entry": ".entry" in ptx,
        }
    print(json.dumps(out))
    """
)


def test_the_kernels_compile_to_ptx_for_sm80_and_sm90_without_fused_multiply_adds():
    # The real compiler (NVVM from the gpu extra), not the simulator: a separate interpreter.
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    done = subprocess.run([sys.executable, "-c", _PTX_CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result) == 6  # FractalDB's two layouts and the contours' kernel, for each target
    for name, counts in result.items():
        assert counts["entry"] and counts["mul"] > 0, name  # the products are there, as mul.rn (f64; f32 in the noise)
        assert counts["fma"] == 0, name


@pytest.mark.gpu
def test_on_a_real_gpu_every_mode_equals_the_cpu():  # pragma: no cover - make test-gpu, on a GPU machine
    assert not simulated() and torch.cuda.is_available()
    for render in ({"mode": "official"}, {"mode": "native"}, {"mode": "native", "color": "color", "draw": "point"}):
        d = DatasetDefinition.from_preset("fractaldb-1k", categories=20, instances=1000, render=render)
        pairs = [(c, (37 * c + 11) % 1000) for c in range(20)]
        images, _ = GPURenderer(d, "cuda").render(pairs)
        assert images.is_cuda
        for b, expected in enumerate(_cpu_packed(d, pairs)):
            assert np.array_equal(images[b].cpu().numpy(), expected)


@pytest.mark.gpu
@pytest.mark.parametrize("preset", ["visualatom-1k", "rcdb-1k", "visualatom-21k", "rcdb-21k"])
def test_on_a_real_gpu_contours_equal_the_cpu(preset):  # pragma: no cover - make test-gpu, on a GPU machine
    assert not simulated() and torch.cuda.is_available()
    d = DatasetDefinition.from_preset(preset, categories=60, instances=1000)
    pairs = [(c, (37 * c + 11) % 1000) for c in range(0, 60, 3)]
    images, _ = GPURenderer(d, "cuda").render(pairs)
    assert images.is_cuda
    for b, expected in enumerate(_cpu_packed(d, pairs)):
        assert np.array_equal(images[b].cpu().numpy(), expected)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from fractalshards.builder import build

    out = tmp_path_factory.mktemp("gpu") / "ds"
    d = DatasetDefinition.from_preset(
        "fractaldb-100", categories=3, instances=5, shard_size=4, render={"size": 32, "points": 400}
    )
    build(d, str(out), workers=0)
    return str(out)


def _cpu_loader(url, batch_size, **kw):
    from fractalshards.loader import FractalLoader
    from fractalshards.stream import FractalStream

    drop_last = kw.pop("drop_last", False)
    stream = FractalStream(url, source="render", decode="packed", shuffle_buffer=6, **kw)
    return FractalLoader(stream, batch_size=batch_size, drop_last=drop_last)


def _same_batches(ours, theirs):
    a, b = list(ours), list(theirs)
    assert len(a) == len(b) > 0
    for (x, y), (u, v) in zip(a, b):
        assert torch.equal(x, u) and torch.equal(y, v)
    return a


@pytest.mark.parametrize("drop_last", [False, True])
def test_render_loader_equals_the_fractal_loader_batch_for_batch(small_dataset, drop_last):
    from fractalshards.loader import RenderLoader

    ours = RenderLoader(small_dataset, 4, device="cuda", seed=3, shuffle_buffer=6, drop_last=drop_last)
    theirs = _cpu_loader(small_dataset, 4, seed=3, drop_last=drop_last)
    batches = _same_batches(ours, theirs)
    assert len(batches) == len(ours) == (3 if drop_last else 4)  # 15 samples in batches of 4
    assert ours.epoch == theirs.epoch == 1 and ours.state_dict() == theirs.state_dict()
    # The next epoch is another order, on both.
    _same_batches(ours, theirs)


def test_render_loader_splits_ranks_pads_and_resumes_as_the_fractal_loader(small_dataset):
    from fractalshards.loader import RenderLoader

    for rank in (0, 1):  # 15 samples over 2 ranks: padded to 8 each
        ours = RenderLoader(small_dataset, 3, seed=1, shuffle_buffer=6, rank=rank, world_size=2)
        theirs = _cpu_loader(small_dataset, 3, seed=1, rank=rank, world_size=2)
        assert len(ours.stream) == 8
        _same_batches(ours, theirs)
    # A state saved by the GPU loader mid-epoch resumes a CPU loader exactly, and back.
    first = RenderLoader(small_dataset, 4, seed=5, shuffle_buffer=6)
    it = iter(first)
    next(it)
    state = first.state_dict()
    rest = list(it)
    cpu = _cpu_loader(small_dataset, 4, seed=5)
    cpu.load_state_dict(state)
    for (x, y), (u, v) in zip(rest, list(cpu), strict=True):
        assert torch.equal(x, u) and torch.equal(y, v)
    back = RenderLoader(small_dataset, 4, seed=5, shuffle_buffer=6)
    back.load_state_dict(state)
    assert torch.equal(next(iter(back))[0], rest[0][0])
    with pytest.raises(ConfigError, match="decode"):
        RenderLoader(small_dataset, 4, decode="tensor")


@pytest.mark.slow
def test_pretraining_with_render_on_gpu_gives_the_losses_of_the_shards(small_dataset, tmp_path):
    from fractalshards.train.pretrain import PretrainConfig, pretrain

    def run(render_on):
        config = PretrainConfig(
            data=small_dataset,
            arch="test_resnet",
            epochs=3,
            batch_size=4,
            lr=0.05,
            crop=24,
            workers=0,
            log_every=1,
            eval_shards=0,
            shuffle_buffer=6,
            hflip=True,
            max_steps=4,
            resume=False,
            checkpoint_dir=str(tmp_path / render_on),
            render_on=render_on,
        )
        return pretrain(config, on_log=lambda r: None)["losses"]

    gpu = run("gpu")
    assert len(gpu) == 4 and gpu == run("cpu")
    with pytest.raises(ConfigError, match="render_on: gpu renders packed images"):
        PretrainConfig(data=small_dataset, render_on="gpu", decode="tensor")


@pytest.mark.parametrize(
    "render", [{"mode": "official"}, {"mode": "native", "draw": "point"}, {"mode": "native", "color": "color"}]
)
def test_build_on_the_gpu_writes_the_cpu_build_s_bytes(tmp_path, render):
    from fractalshards.builder import build

    d = DatasetDefinition.from_preset(
        "fractaldb-100", categories=2, instances=3, shard_size=4, render={"size": 32, "points": 400, **render}
    )
    cpu = build(d, str(tmp_path / "cpu"), workers=0, log_fn=lambda s: None)
    gpu = build(d, str(tmp_path / "gpu"), device="cuda", log_fn=lambda s: None)
    assert [e.to_dict() for e in gpu.manifest.shards] == [e.to_dict() for e in cpu.manifest.shards]
    for name in (e.name for e in cpu.manifest.shards):
        assert (tmp_path / "gpu" / name).read_bytes() == (tmp_path / "cpu" / name).read_bytes()


def test_contour_builds_on_the_gpu_write_the_cpu_build_s_bytes(tmp_path):
    from fractalshards.builder import build

    for family, mode in (("visualatom", "native"), ("rcdb", "official")):
        d = _contours(family, mode, categories=2, instances=6, shard_size=5)
        cpu = build(d, str(tmp_path / family / "cpu"), workers=0, log_fn=lambda s: None)
        gpu = build(d, str(tmp_path / family / "gpu"), device="cuda", log_fn=lambda s: None)
        assert [e.to_dict() for e in gpu.manifest.shards] == [e.to_dict() for e in cpu.manifest.shards]
        for name in (e.name for e in cpu.manifest.shards):
            assert (tmp_path / family / "gpu" / name).read_bytes() == (tmp_path / family / "cpu" / name).read_bytes()


def test_build_device_flag_of_the_cli(tmp_path):
    exe = str(Path(sys.executable).parent / "fractalshards")
    common = ["build", "--preset", "fractaldb-100", "--categories", "2", "--instances", "2", "--size", "32", "--points", "400"]
    done = subprocess.run(
        [exe, *common, "--device", "cuda", "--out", str(tmp_path / "g")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-1500:]
    subprocess.run([exe, *common, "--workers", "0", "--out", str(tmp_path / "c")], check=True, capture_output=True, timeout=300)
    assert (tmp_path / "g" / "manifest.json").read_text() == (tmp_path / "c" / "manifest.json").read_text()
    bad = subprocess.run(
        [exe, *common, "--device", "cuda", "--workers", "2", "--out", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "device: --device cuda renders on this machine's GPU, inline" in bad.stderr
    assert not (tmp_path / "x").exists()
