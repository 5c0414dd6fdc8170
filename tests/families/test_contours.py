"""Contour families' kernels: pnoise1 and Pillow-line oracles, and the official test vectors."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from helpers import VECTORS
from official_contours import digest, rcdb_category, rcdb_thread, visualatom_category, visualatom_thread
from PIL import Image, ImageDraw

from fractalshards.families.contours.kernels import rcdb_image, visualatom_image
from fractalshards.families.contours.lines import draw_polyline
from fractalshards.families.contours.perlin import GRAD, pnoise1_array

SAMPLE = VECTORS / "official-contours-sample.txt"  # copied from shared/


def _vectors() -> tuple[dict, dict]:
    pixels, params = {}, {}
    for line in SAMPLE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if parts[0] == "params":
            fields = dict(p.split("=") for p in parts[2:])
            params[(parts[1], int(fields.pop("thread")), int(fields.pop("category")))] = fields
        else:
            pixels[(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))] = parts[4]
    return pixels, params


def test_pnoise1_equals_the_noise_package_bit_for_bit():
    import noise  # the dev extra installs it (it builds from source)

    rng = np.random.default_rng(0)
    u = np.concatenate(
        [
            rng.uniform(0, 10000, 200_000),
            rng.uniform(-3000, 3000, 50_000),
            np.arange(-300, 300, 0.125),
            rng.uniform(0, 1e6, 2_000),
            np.array([0.0, -0.0, 1.0, -1.0, 1023.999, 1024.0, 255.5, 256.0]),
        ]
    )
    out = np.empty_like(u)
    pnoise1_array(u, GRAD, out)
    reference = np.array([noise.pnoise1(float(x)) for x in u])
    assert np.array_equal(out, reference)


def test_polylines_equal_pillow_pixel_for_pixel():
    rng = np.random.default_rng(1)
    for case in range(600):
        n = int(rng.integers(2, 50))
        lo, hi = (-60.0, 120.0) if case % 2 else (0.0, 48.0)  # odd cases leave the canvas
        xs, ys = rng.uniform(lo, hi, n), rng.uniform(lo, hi, n)
        if case % 5 == 0:
            xs, ys = np.round(xs), np.round(ys)  # exact integers: horizontal, vertical, diagonal runs
        if case % 7 == 0:
            xs, ys = rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)  # truncation toward zero near the origin
        grey = int(rng.integers(1, 256))
        im = Image.new("L", (48, 40))
        ImageDraw.Draw(im).line(list(zip(xs.tolist(), ys.tolist())), fill=grey, width=1)
        out = np.zeros((40, 48), np.uint8)
        draw_polyline(out, xs, ys, np.uint8(grey))
        assert np.array_equal(out, np.asarray(im)), case


def test_the_python_replay_reproduces_the_official_vectors():
    """The oracle itself: official parameters and pixels of each family's first category."""
    pixels, params = _vectors()
    for family, replay in (("visualatom", visualatom_thread), ("rcdb", rcdb_thread)):
        ((p, images),) = list(replay(0, 1, 3))
        for key, value in params[(family, 0, 0)].items():
            assert math.isclose(float(p[key]), float(value), rel_tol=0, abs_tol=0), (family, key)
        assert [digest(im) for im in images] == [pixels[(family, 0, 0, k)] for k in range(3)]


def _visualatom_draws(rng: random.Random, p: dict) -> tuple:
    V, L = p["vertices"], p["lines"]
    greys = np.empty(L, np.int64)
    ux, uy = np.empty((L, V)), np.empty((L, V))
    for line in range(L):
        greys[line] = rng.randint(0, 255)
        ux[line] = [rng.uniform(0, 10000) for _ in range(V)]
        uy[line] = [rng.uniform(0, 10000) for _ in range(V)]
    return greys, ux, uy


def test_kernels_draw_the_official_instances():
    pixels, _ = _vectors()
    rng = random.Random(1)
    p = visualatom_category(rng)
    cx, cy = p["center_x"], p["center_y"]
    for k in range(3):
        greys, ux, uy = _visualatom_draws(rng, p)
        image = visualatom_image(
            512,
            p["vertices"],
            p["radius"],
            p["oval_x"],
            p["oval_y"],
            p["perlin"],
            p["line_width"],
            p["freq1"],
            p["freq2"],
            cx,
            cy,
            greys,
            ux,
            uy,
            GRAD,
        )
        assert digest(image) == pixels[("visualatom", 0, 0, k)]
        cy = (512 + rng.randint(-512, 512)) / 2
        cx = (512 + rng.randint(-512, 512)) / 2
    rng = random.Random(1)
    p = rcdb_category(rng)
    radius, ox, oy, cx, cy = p["radius"], p["oval_x"], p["oval_y"], p["center_x"], p["center_y"]
    for k in range(3):
        V, L = p["vertices"], p["lines"]
        greys = np.empty(L, np.int64)
        ux, uy = np.empty((L, V)), np.empty((L, V))
        for line in range(L):
            greys[line] = rng.randint(0, 256)
            ux[line] = [rng.uniform(0, 10000) for _ in range(V)]
            uy[line] = [rng.uniform(0, 10000) for _ in range(V)]
        image = rcdb_image(512, V, radius, ox, oy, p["perlin"], p["line_width"], cx, cy, greys, ux, uy, GRAD)
        assert digest(image) == pixels[("rcdb", 0, 0, k)]
        ox, oy = rng.uniform(1, 2), rng.uniform(1, 2)
        radius = rng.randint(0, 100)
        cy = (512 + rng.randint(-400, 400)) / 2
        cx = (512 + rng.randint(-400, 400)) / 2


@pytest.mark.parametrize("family", ["visualatom", "rcdb"])
def test_official_category_replay_matches_the_scripts(family):
    from fractalshards.families import get_family
    from fractalshards.families.contours.kernels import PARAM_FIELDS, rcdb_official_categories, visualatom_official_categories
    from fractalshards.mt19937 import new_state

    replay = {"visualatom": (visualatom_official_categories, visualatom_thread), "rcdb": (rcdb_official_categories, rcdb_thread)}[
        family
    ]
    fam = get_family(family)
    spec = fam.spec(fam.search_settings({}))
    _, params = _vectors()
    none = np.zeros((0, 0, 0), np.uint32)
    for thread in (0, 1):
        out = np.zeros((4, len(PARAM_FIELDS)))
        replay[0](new_state(thread + 1), 4, 2, spec, out, 0, none, none.astype(float))  # 2 instances keep the oracle quick
        expected = [p for p, _ in replay[1](thread, 4, 2)]
        for row, p in zip(out, expected):
            assert {k: float(p.get(k, 0)) for k in PARAM_FIELDS} == dict(zip(PARAM_FIELDS, row.tolist()))
        first = params[(family, thread, thread * (50 if family == "visualatom" else 100))]
        assert all(float(v) == out[0][PARAM_FIELDS.index(k)] for k, v in first.items())


def test_native_streams_are_deterministic_in_range_and_render():
    from fractalshards.families import get_family
    from fractalshards.families.contours.kernels import (
        PARAM_FIELDS,
        native_instance_draws,
        native_shape,
        rcdb_native_category,
        visualatom_native_category,
    )
    from fractalshards.seeds import stream_key

    va, rc = get_family("visualatom"), get_family("rcdb")
    va_spec, rc_spec = va.spec(va.search_settings({})), rc.spec(rc.search_settings({}))
    rows = np.zeros((200, len(PARAM_FIELDS)))
    for c in range(200):
        visualatom_native_category(stream_key("visualatom-category", 0, c), va_spec, rows[c])
    again = np.zeros(len(PARAM_FIELDS))
    visualatom_native_category(stream_key("visualatom-category", 0, 17), va_spec, again)
    assert np.array_equal(again, rows[17])
    v = dict(zip(PARAM_FIELDS, rows.T))
    assert v["vertices"].min() >= 200 and v["vertices"].max() <= 1000 and v["lines"].min() >= 1 and v["lines"].max() <= 200
    assert ((v["freq1"] == 0) | (v["freq1"] != v["freq2"])).all() and len(np.unique(v["vertices"])) > 150
    assert (v["center_x"] >= 0).all() and (v["center_x"] <= 512).all()
    rcdb = np.zeros((200, len(PARAM_FIELDS)))
    for c in range(200):
        rcdb_native_category(stream_key("rcdb-category", 0, c), rc_spec, rcdb[c])
    assert rcdb[:, 0].min() >= 3 and rcdb[:, 0].max() <= 200 and 60 < rcdb[:, 0].mean() < 110

    p = dict(zip(PARAM_FIELDS, rows[3]))
    V, L = int(p["vertices"]), int(p["lines"])
    images = []
    for k in (0, 1, 0):
        key = stream_key("visualatom-instance", 0, 3, k)
        greys, ux, uy = np.empty(L, np.int64), np.empty((L, V)), np.empty((L, V))
        native_instance_draws(key, 256, greys, ux, uy)
        shape = np.zeros(5)
        native_shape(key, False, va_spec, shape)
        images.append(
            visualatom_image(
                512,
                V,
                p["radius"],
                p["oval_x"],
                p["oval_y"],
                p["perlin"],
                p["line_width"],
                p["freq1"],
                p["freq2"],
                shape[0],
                shape[1],
                greys,
                ux,
                uy,
                GRAD,
            )
        )
        assert greys.min() >= 0 and greys.max() <= 255 and ux.min() >= 0 and ux.max() < 10000
    assert np.array_equal(images[0], images[2]) and not np.array_equal(images[0], images[1])
    assert np.count_nonzero(images[0]) > 500
