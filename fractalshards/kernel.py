"""Numba kernels of the chaos game: plain arrays in, plain arrays out.

Every kernel is compiled without ``fastmath`` so that no multiply-add is fused and
float64 results equal numpy's bit for bit; that equality is what makes the
official FractalDB categories and point renders reproducible. ``cache=True`` only
stores the machine code: the arithmetic, and so the bytes, do not depend on it.

The counter-based stream (:func:`hash_uniforms`, :func:`hash_masks`) is
SplitMix64 of ``key + (i + 1) * golden``: value ``i`` depends only on ``(key, i)``,
so any slice of a stream can be made in any process without carrying state.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "hash_uniforms",
    "hash_masks",
    "hash_permutation",
    "chaos_game",
    "drop_divergent",
    "to_pixels",
    "fill_count",
    "draw_points",
    "draw_patches",
    "patch_table",
    "draw_points_color",
    "draw_patches_color",
    "NAN_WINDOW",
]

# One place for the jit options (numba-stats style). No fastmath: see the module doc.
_jit = njit(cache=True, nogil=True, error_model="numpy")

#: Points dropped before the first NaN of an axis (the official rescale rule).
NAN_WINDOW = 100

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_ONE = np.uint64(1)
_MASK_RANGE = np.uint64(511)
_INV_2_53 = 1.0 / 9007199254740992.0


@_jit
def _splitmix(key, i):
    z = key + (np.uint64(i) + _ONE) * _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@_jit
def hash_uniforms(key, out):
    """Fill ``out`` (float64) with uniforms in [0, 1) of stream ``key`` (uint64)."""
    for i in range(out.shape[0]):
        out[i] = np.float64(_splitmix(key, i) >> _S11) * _INV_2_53


@_jit
def hash_masks(key, out):
    """Fill ``out`` (uint16) with 3x3 patch masks in 1..511 of stream ``key`` (uint64)."""
    for i in range(out.shape[0]):
        # Multiply-high maps the top 32 bits onto 0..510 (Lemire), cheaper than %.
        out[i] = np.uint16((((_splitmix(key, i) >> _S32) * _MASK_RANGE) >> _S32) + _ONE)


@_jit
def hash_permutation(key, out):
    """Fill ``out`` (int64) with a permutation of ``0 .. len(out) - 1`` drawn from stream ``key``.

    Fisher-Yates from the last position down; position ``i`` swaps with
    ``j = floor(u * (i + 1))``, ``u`` the ``i``-th value of the stream (53-bit
    uniforms: the bias is below 2**-30 for any realistic length). The same key
    gives the same permutation on any machine and numpy version.
    """
    n = out.shape[0]
    for i in range(n):
        out[i] = i
    for i in range(n - 1, 0, -1):
        u = np.float64(_splitmix(key, i) >> _S11) * _INV_2_53
        j = np.int64(u * (i + 1))
        tmp = out[i]
        out[i] = out[j]
        out[j] = tmp


@_jit
def chaos_game(coef, cum, uniforms, npoints, xs, ys):
    """Run the chaos game from (0, 0) for ``npoints`` points (``npoints - 1`` steps).

    ``coef`` is ``(n, 6)``, ``cum`` the running sum of the map probabilities.
    Step ``k`` takes the first map ``j`` with ``uniforms[k] <= cum[j]`` (the last map
    when rounding leaves the uniform above every entry) and computes
    ``x' = (a x + b y) + e``, ``y' = (c x + d y) + f``.
    """
    n = coef.shape[0]
    x = 0.0
    y = 0.0
    xs[0] = x
    ys[0] = y
    for k in range(npoints - 1):
        r = uniforms[k]
        # Branch-free count of entries below r: the first j with r <= cum[j]
        # (cum is non-decreasing). Unpredictable branches cost 4x here.
        j = 0
        for t in range(n - 1):
            j += r > cum[t]
        nx = (coef[j, 0] * x + coef[j, 1] * y) + coef[j, 4]
        ny = (coef[j, 2] * x + coef[j, 3] * y) + coef[j, 5]
        x = nx
        y = ny
        xs[k + 1] = x
        ys[k + 1] = y


@_jit
def _drop_nan_run(v, w, length, drop):
    """Official NaN rule on axis ``v``: returns the new length after compacting ``v`` and ``w``."""
    first = -1
    for i in range(length):
        if np.isnan(v[i]):
            first = i
            break
    if first < 0:
        return length
    drop[:length] = False
    for j in range(first - NAN_WINDOW, first):
        # np.delete wraps negative indices from the end.
        idx = j + length if j < 0 else j
        if 0 <= idx < length:
            drop[idx] = True
    for i in range(first, length):
        if np.isnan(v[i]):
            drop[i] = True
    out = 0
    for i in range(length):
        if not drop[i]:
            v[out] = v[i]
            w[out] = w[i]
            out += 1
    return out


@_jit
def drop_divergent(xs, ys, length, drop):
    """Apply the official NaN rule to x, then to y; returns ``(new_length, diverged)``.

    For an axis with a NaN at first index ``k``, indices ``k-100 .. k-1`` and every
    NaN index are removed from both arrays (in place, order kept).
    """
    n1 = _drop_nan_run(xs, ys, length, drop)
    n2 = _drop_nan_run(ys, xs, n1, drop)
    return n2, n2 != length


@_jit
def to_pixels(v, length, span, pad, out):
    """Official rescale of one axis to integer pixels ``uint16(v / (max - min) * span + pad)``.

    The axis is shifted by its minimum only when that minimum is negative, as in
    the official code. Values that are not finite map to pixel 0 (numpy's cast of
    such values is platform-defined; they only occur in divergent systems).
    """
    if length == 0:
        return
    mn = v[0]
    mx = v[0]
    for i in range(1, length):
        val = v[i]
        if val < mn:
            mn = val
        if val > mx:
            mx = val
    if mn < 0.0:
        for i in range(length):
            v[i] = v[i] - mn
        mx = mx - mn
        mn = 0.0
    rng = mx - mn
    for i in range(length):
        p = v[i] / rng * span + pad
        if p >= 0.0 and p < 65536.0:
            out[i] = np.int32(np.uint16(p))
        else:
            out[i] = 0


@_jit
def fill_count(px, py, length, canvas):
    """Mark one pixel per point on a zeroed ``canvas`` and return the count of marked pixels."""
    canvas[:, :] = 0
    h = canvas.shape[0]
    w = canvas.shape[1]
    count = 0
    for i in range(length):
        r = py[i]
        c = px[i]
        if r < h and c < w and canvas[r, c] == 0:
            canvas[r, c] = 127
            count += 1
    return count


@_jit
def draw_points(px, py, length, value, canvas):
    """Grey point mode: ``canvas[y, x] = value`` for every point."""
    h = canvas.shape[0]
    w = canvas.shape[1]
    for i in range(length):
        r = py[i]
        c = px[i]
        if r < h and c < w:
            canvas[r, c] = value


@_jit
def patch_table(value):
    """``(512, 9)`` uint8 table: cell ``3 r + c`` of mask ``m`` is ``value`` if its bit is set.

    Bit ``8 - (3 r + c)`` of the mask (most significant first) is cell ``(r, c)``.
    """
    table = np.zeros((512, 9), np.uint8)
    for m in range(512):
        for cell in range(9):
            table[m, cell] = ((m >> (8 - cell)) & 1) * value
    return table


@_jit
def draw_patches(px, py, length, masks, table, canvas):
    """Grey patch mode: a 3x3 patch with top-left at (row y+1, col x+1) per point.

    Cells come from ``table[mask]`` (see :func:`patch_table`), zeros included:
    later points overwrite earlier ones. ``canvas`` must be C-contiguous.
    """
    h = canvas.shape[0]
    w = canvas.shape[1]
    flat = canvas.reshape(-1)
    # Unsigned offsets skip numba's negative-index wraparound: 40% faster here.
    uw = np.uint64(w)
    one = np.uint64(1)
    two = np.uint64(2)
    for i in range(length):
        r0 = py[i] + 1
        c0 = px[i] + 1
        if r0 + 2 >= h or c0 + 2 >= w:
            continue
        m = masks[i]
        base = np.uint64(r0) * uw + np.uint64(c0)
        flat[base] = table[m, 0]
        flat[base + one] = table[m, 1]
        flat[base + two] = table[m, 2]
        base += uw
        flat[base] = table[m, 3]
        flat[base + one] = table[m, 4]
        flat[base + two] = table[m, 5]
        base += uw
        flat[base] = table[m, 6]
        flat[base + one] = table[m, 7]
        flat[base + two] = table[m, 8]


@_jit
def draw_points_color(px, py, length, palette, canvas):
    """Colour point mode: point ``i`` gets ``palette[i % len(palette)]``."""
    h = canvas.shape[0]
    w = canvas.shape[1]
    period = palette.shape[0]
    for i in range(length):
        r = py[i]
        c = px[i]
        if r < h and c < w:
            k = i % period
            canvas[r, c, 0] = palette[k, 0]
            canvas[r, c, 1] = palette[k, 1]
            canvas[r, c, 2] = palette[k, 2]


@_jit
def draw_patches_color(px, py, length, masks, palette, canvas):
    """Colour patch mode: as :func:`draw_patches` with point ``i``'s palette colour."""
    h = canvas.shape[0]
    w = canvas.shape[1]
    period = palette.shape[0]
    for i in range(length):
        r0 = py[i] + 1
        c0 = px[i] + 1
        if r0 + 2 >= h or c0 + 2 >= w:
            continue
        m = np.int32(masks[i])
        k = i % period
        for r in range(3):
            for c in range(3):
                bit = np.uint8((m >> (8 - (3 * r + c))) & 1)
                canvas[r0 + r, c0 + c, 0] = bit * palette[k, 0]
                canvas[r0 + r, c0 + c, 1] = bit * palette[k, 1]
                canvas[r0 + r, c0 + c, 2] = bit * palette[k, 2]
