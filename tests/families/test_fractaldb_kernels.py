"""Kernels against slow NumPy/Python references (numba-stats style)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from fractalshards import seeds
from fractalshards.families.fractaldb import kernels as kernel
from fractalshards.families.fractaldb.ifs import IFS, cumulative, map_probabilities, sample_fractaldb


def _reference_points(coef: np.ndarray, prob: np.ndarray, uniforms: np.ndarray, npoints: int):
    """The official chaos game, written plainly: searchsorted on the running sum."""
    cum = np.array(cumulative(prob))
    xs, ys = [0.0], [0.0]
    x = y = 0.0
    for k in range(npoints - 1):
        j = min(int(np.searchsorted(cum, uniforms[k], side="left")), len(cum) - 1)
        a, b, c, d, e, f = (float(v) for v in coef[j])
        x, y = (a * x + b * y) + e, (c * x + d * y) + f
        xs.append(x)
        ys.append(y)
    return np.array(xs), np.array(ys)


def _reference_rescale(xs: np.ndarray, ys: np.ndarray, span: float, pad: float):
    """The official rescale: np.delete around the first NaN of x, then of y; shift; scale."""
    with np.errstate(invalid="ignore", over="ignore"):
        for axis in (0, 1):
            v = xs if axis == 0 else ys
            nan = np.flatnonzero(np.isnan(v))
            if nan.size:
                k = int(nan[0])
                idx = np.concatenate([np.arange(k - kernel.NAN_WINDOW, k), nan])
                xs, ys = np.delete(xs, idx), np.delete(ys, idx)
        out = []
        for v in (xs.copy(), ys.copy()):
            if v.min() < 0:
                v -= v.min()
            out.append((v / (v.max() - v.min()) * span + pad).astype(np.uint16).astype(np.int32))
    return out[0], out[1]


def _random_system(seed: int) -> IFS:
    return sample_fractaldb(np.random.default_rng(seed))


@pytest.mark.parametrize("seed", range(6))
def test_chaos_game_matches_reference_bit_for_bit(seed):
    system = _random_system(seed)
    rng = np.random.default_rng(100 + seed)
    n = 3000
    uniforms = rng.random(n)
    xs, ys = np.empty(n), np.empty(n)
    kernel.chaos_game(system.coefficients, cumulative(system.probabilities), uniforms, n, xs, ys)
    rx, ry = _reference_points(system.coefficients, system.probabilities, uniforms, n)
    np.testing.assert_array_equal(xs, rx)
    np.testing.assert_array_equal(ys, ry)


def test_probabilities_use_an_in_order_sum():
    coef = np.random.default_rng(3).uniform(-1, 1, (7, 6))
    dets = np.abs(coef[:, 0] * coef[:, 3] - coef[:, 1] * coef[:, 2])
    total = 0.0
    for d in dets:
        total += d
    np.testing.assert_array_equal(map_probabilities(coef), dets / total)


@pytest.mark.parametrize("seed", range(6))
def test_rescale_matches_reference(seed):
    system = _random_system(seed)
    n = 5000
    uniforms = np.random.default_rng(seed).random(n)
    xs, ys = np.empty(n), np.empty(n)
    kernel.chaos_game(system.coefficients, cumulative(system.probabilities), uniforms, n, xs, ys)
    rx, ry = _reference_rescale(xs.copy(), ys.copy(), 350.0, 6.0)
    drop = np.empty(n, np.bool_)
    length, _ = kernel.drop_divergent(xs, ys, n, drop)
    px, py = np.empty(n, np.int32), np.empty(n, np.int32)
    kernel.to_pixels(xs, length, 350.0, 6.0, px)
    kernel.to_pixels(ys, length, 350.0, 6.0, py)
    np.testing.assert_array_equal(px[:length], rx)
    np.testing.assert_array_equal(py[:length], ry)
    assert px[:length].min() >= 6 and px[:length].max() <= 356


def test_nan_rule_drops_window_before_first_nan_and_every_nan(divergent):
    n = 2000
    uniforms = np.random.default_rng(0).random(n)
    xs, ys = np.empty(n), np.empty(n)
    with np.errstate(all="ignore"):
        kernel.chaos_game(divergent.coefficients, cumulative(divergent.probabilities), uniforms, n, xs, ys)
    assert np.isnan(xs).any(), "the fixture must diverge"
    first = int(np.flatnonzero(np.isnan(xs) | np.isnan(ys))[0])
    drop = np.empty(n, np.bool_)
    length, diverged = kernel.drop_divergent(xs, ys, n, drop)
    assert diverged
    assert not np.isnan(xs[:length]).any() and not np.isnan(ys[:length]).any()
    assert length <= first - kernel.NAN_WINDOW + 1


def test_hash_streams_are_in_range_and_keyed():
    u = np.empty(100_000)
    seeds.hash_uniforms(np.uint64(12345), u)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    m = np.empty(100_000, np.uint16)
    kernel.hash_masks(np.uint64(12345), m)
    assert m.min() == 1 and m.max() == 511
    counts = np.bincount(m, minlength=512)[1:]
    assert counts.min() > 100  # every mask value occurs
    other = np.empty(100_000)
    seeds.hash_uniforms(np.uint64(12346), other)
    assert not np.array_equal(u, other)
    # Value i depends only on (key, i): a prefix is the same stream.
    short = np.empty(10)
    seeds.hash_uniforms(np.uint64(12345), short)
    np.testing.assert_array_equal(short, u[:10])


def test_patch_drawing_matches_reference():
    rng = np.random.default_rng(5)
    n, size = 500, 40
    px = rng.integers(6, size - 6, n).astype(np.int32)
    py = rng.integers(6, size - 6, n).astype(np.int32)
    masks = rng.integers(1, 512, n).astype(np.uint16)
    canvas = np.zeros((size, size), np.uint8)
    kernel.draw_patches(px, py, n, masks, kernel.patch_table(127), canvas)
    ref = np.zeros((size, size), np.uint8)
    for x, y, m in zip(px, py, masks):
        bits = [(int(m) >> (8 - k)) & 1 for k in range(9)]
        ref[y + 1 : y + 4, x + 1 : x + 4] = np.array(bits, np.uint8).reshape(3, 3) * 127
    np.testing.assert_array_equal(canvas, ref)


def test_kernels_run_inside_user_njit():
    @njit
    def user(coef, cum, uniforms, n, xs, ys):
        kernel.chaos_game(coef, cum, uniforms, n, xs, ys)
        return xs[n - 1]

    system = _random_system(1)
    u = np.random.default_rng(1).random(100)
    xs, ys = np.empty(100), np.empty(100)
    last = user(system.coefficients, cumulative(system.probabilities), u, 100, xs, ys)
    rx, _ = _reference_points(system.coefficients, system.probabilities, u, 100)
    assert last == rx[-1]
