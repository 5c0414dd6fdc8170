"""Rendering: determinism across processes and numba caches, golden bytes, divergence."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fractalshards.errors import ConfigError
from fractalshards.families.fractaldb.instances import Instance, instance_from_index
from fractalshards.families.fractaldb.render import RenderSettings, _draw, _flip, point_cloud, render, render_flips
from fractalshards.png import decode as decode_png
from fractalshards.png import encode as encode_png
from fractalshards.presets import load_preset

# sha256 of the raw pixels of a few renders, recorded when the renderer was written.
# They change only if the rendered pixels change: a break of reproducibility.
GOLDEN = {
    ("official", "patch", "gray", 0, 0): "05ceb93470c893fe29d7d08e9c334d15ed3111e439f5ff81112f0e37f8d48efb",
    ("official", "patch", "gray", 7, 613): "daae9f51e8a15458fa7d8fe5b5f0e30a32e56c05c62e59dd73e0a8ba24315f53",
    ("native", "patch", "gray", 3, 42): "f3d4156f90d8e0a38f3a995382c3a1fc9da3a42c457ad0d6d9d3d0216bd97d4b",
    ("native", "point", "color", 5, 977): "4fba53871198318512b76c1e304a284fcc552e794fe68557aabf808117a40dd0",
}

_SCRIPT = r"""
import hashlib, json, sys
from fractalshards.presets import load_preset
from fractalshards.families.fractaldb.instances import instance_from_index
from fractalshards.families.fractaldb.render import RenderSettings, render
from fractalshards.png import encode as encode_png
m = load_preset("fractaldb-100")
out = {}
for mode, draw, color, cat, inst in json.loads(sys.argv[1]):
    img = render(m.category(cat).system, cat, instance_from_index(inst), RenderSettings(mode=mode, draw=draw, color=color)).image
    key = "/".join(map(str, (mode, draw, color, cat, inst)))
    out[key] = [hashlib.sha256(img.tobytes()).hexdigest(), hashlib.sha256(encode_png(img)).hexdigest()]
print(json.dumps(out, sort_keys=True))
"""


def _pixels_sha(mode, draw, color, cat, inst) -> str:
    manifest = load_preset("fractaldb-100")
    img = render(
        manifest.category(cat).system, cat, instance_from_index(inst), RenderSettings(mode=mode, draw=draw, color=color)
    ).image
    return hashlib.sha256(img.tobytes()).hexdigest()


@pytest.mark.parametrize("case", sorted(GOLDEN), ids=lambda c: "-".join(map(str, c)))
def test_golden_pixels(case):
    assert _pixels_sha(*case) == GOLDEN[case]


def _golden_renders() -> list[dict]:
    with open(os.path.join(os.path.dirname(__file__), "vectors", "fractaldb-render-golden.json")) as fh:
        return json.load(fh)["renders"]


def test_renders_equal_the_vectors_recorded_before_the_packed_kernel():
    # 104 renders of fractaldb-1k (both modes, every flip, 28 divergent clouds, sizes 33-512,
    # pads 4-10, 300-300,000 points, point and colour modes) recorded with the byte-canvas
    # renderer (commit b9aef76): the 1-bit kernel must give the same pixels and flags.
    m = load_preset("fractaldb-1k")
    cases = _golden_renders()
    assert sum(c["diverged"] for c in cases) >= 20 and {c["flip"] for c in cases} == {0, 1, 2, 3}
    wrong = []
    for case in cases:
        settings = RenderSettings(mode=case["mode"], **case["settings"])
        with np.errstate(all="ignore"):
            out = render(
                m.category(case["category"]).system,
                case["category"],
                Instance(case["weight"], case["flip"], case["patch"]),
                settings,
            )
        img = out.image
        fill = np.count_nonzero(img if img.ndim == 2 else img.max(axis=2)) / (img.shape[0] * img.shape[1])
        if (
            hashlib.sha256(img.tobytes()).hexdigest() != case["sha256"]
            or list(img.shape) != case["shape"]
            or out.diverged != case["diverged"]
            or out.fill != fill
        ):
            wrong.append(case)
    assert not wrong, wrong[:3]


@pytest.mark.parametrize("seed", range(4))
def test_packed_kernel_equals_the_byte_canvas_kernels(seed):
    # Random categories, instances and settings: the fused 1-bit path of render() against
    # the byte-canvas kernels (to_pixels, hash_masks, draw_patches, then the flip) it replaced.
    rng = np.random.default_rng(seed)
    m = load_preset("fractaldb-1k")
    for _ in range(25):
        size = int(rng.integers(20, 400))
        pad = int(rng.integers(4, min(12, (size - 8) // 2) + 1))
        settings = RenderSettings(
            mode=str(rng.choice(["official", "native"])),
            size=size,
            pad=pad,
            points=int(rng.integers(200, 60_000)),
            seed=int(rng.integers(0, 5)),
            weight_delta=float(rng.choice([0.2, 0.4, 0.5])),
        )
        cat, inst = int(rng.integers(0, 1000)), instance_from_index(int(rng.integers(0, 1000)))
        with np.errstate(all="ignore"):
            packed = render(m.category(cat).system, cat, inst, settings)
            cloud = point_cloud(m.category(cat).system, cat, inst.weight, settings)
            reference = _flip(_draw(cloud, cat, inst.weight, inst.patch, settings), inst.flip)
        assert packed.bits is not None
        np.testing.assert_array_equal(packed.image, reference, err_msg=f"{settings} {cat} {inst}")
        assert packed.diverged == cloud.diverged
        assert packed.fill == np.count_nonzero(reference) / reference.size


def _run_in_subprocess(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(sorted(GOLDEN))], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_same_bytes_in_other_processes_with_cold_and_warm_numba_cache(tmp_path):
    cold = _run_in_subprocess(str(tmp_path / "cache"))  # empty cache: compiles
    warm = _run_in_subprocess(str(tmp_path / "cache"))  # loads what the first run stored
    assert any((tmp_path / "cache").rglob("*.nbi")), "the first run should have written the numba cache"
    assert cold == warm
    here = {"/".join(map(str, c)): _pixels_sha(*c) for c in GOLDEN}
    assert {k: v[0] for k, v in cold.items()} == here


def test_flips_are_mirror_images_of_one_drawing():
    m = load_preset("fractaldb-100")
    flips, _ = render_flips(m.category(2).system, 2, 4, 3, RenderSettings(mode="official"))
    np.testing.assert_array_equal(flips[1], flips[0][::-1])
    np.testing.assert_array_equal(flips[2], flips[0][:, ::-1])
    np.testing.assert_array_equal(flips[3], flips[0][::-1, ::-1])
    single = render(m.category(2).system, 2, Instance(weight=4, flip=2, patch=3), RenderSettings(mode="official")).image
    np.testing.assert_array_equal(single, flips[2])


def test_instances_differ_and_streams_depend_on_seed():
    m = load_preset("fractaldb-100")
    s0, s1 = RenderSettings(mode="native", seed=0), RenderSettings(mode="native", seed=1)
    a = render(m.category(1).system, 1, instance_from_index(0), s0).image
    b = render(m.category(1).system, 1, instance_from_index(100), s0).image  # another patch variant
    c = render(m.category(1).system, 1, instance_from_index(0), s1).image
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(a, render(m.category(1).system, 1, instance_from_index(0), s0).image)


def test_official_patch_mode_keeps_the_official_point_cloud():
    m = load_preset("fractaldb-100")
    point = render(m.category(0).system, 0, Instance(2, 0, 0), RenderSettings(mode="official", draw="point")).image
    patch = render(m.category(0).system, 0, Instance(2, 0, 0), RenderSettings(mode="official", draw="patch")).image
    # Every patch sits at (+1..+3, +1..+3) of its point (before the top-bottom flip):
    # so every point pixel has a patch pixel within the 4x4 window below-right of it.
    raw_point, raw_patch = point[::-1], patch[::-1]
    ys, xs = np.nonzero(raw_point)
    near = np.zeros(len(ys), bool)
    for dy in range(1, 4):
        for dx in range(1, 4):
            near |= raw_patch[ys + dy, xs + dx] > 0
    assert near.mean() > 0.95


def test_divergent_weightings_are_flagged_not_fatal(divergent):
    with np.errstate(all="ignore"):
        out = render(divergent, 0, Instance(2, 0, 0), RenderSettings(mode="native"))
    assert out.diverged
    assert out.image.shape == (362, 362)
    assert out.image.dtype == np.uint8


def test_some_official_weightings_diverge_and_are_counted():
    m = load_preset("fractaldb-1k")
    settings = RenderSettings(mode="official", draw="point", points=20_000)
    diverged = 0
    for cat in range(40):
        with np.errstate(all="ignore"):
            diverged += render(m.category(cat).system, cat, Instance(4, 0, 0), settings).diverged  # a x 1.8
    assert diverged > 0


@pytest.mark.parametrize("color", ["gray", "color"])
def test_png_round_trip_is_lossless_and_grey_is_one_channel(color):
    m = load_preset("fractaldb-100")
    img = render(m.category(3).system, 3, Instance(2, 0, 1), RenderSettings(mode="native", color=color)).image
    data = encode_png(img)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = decode_png(data)
    np.testing.assert_array_equal(back, img)
    if color == "gray":
        assert data[25] == 3 and data[24] == 1  # IHDR: colour type 3 (palette), 1 bit
    # Non-binary grey falls back to an 8-bit grey PNG, still lossless.
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(decode_png(encode_png(ramp)), ramp)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"mode": "fancy"}, "mode"),
        ({"draw": "line"}, "draw"),
        ({"points": 10}, "points"),
        ({"size": 8}, "size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        RenderSettings(**kwargs)
