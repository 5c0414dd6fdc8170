"""FractalDB's numba kernels (the chaos game, the rescale, the drawing): plain arrays in, plain arrays out.

Compiled with :mod:`fractalshards.jit`'s options (no ``fastmath``, so float64 results equal
numpy's bit for bit: what makes the official categories and point renders reproducible).
Patch masks (:func:`hash_masks`) come from :mod:`fractalshards.seeds`' counter-based streams.
"""

from __future__ import annotations

import numpy as np

from ...jit import kernel
from ...seeds import splitmix64

__all__ = [
    "hash_masks",
    "chaos_game",
    "drop_divergent",
    "to_pixels",
    "fill_count",
    "draw_points",
    "draw_patches",
    "patch_table",
    "draw_points_color",
    "draw_patches_color",
    "map_choices",
    "chaos_walk",
    "axis_bounds",
    "axis_scale",
    "pixel",
    "scale_points",
    "last_at_each_pixel",
    "draw_patch_bits",
    "NAN_WINDOW",
]


#: Points dropped before the first NaN of an axis (the official rescale rule).
NAN_WINDOW = 100

_S32 = np.uint64(32)
_ONE = np.uint64(1)
_MASK_RANGE = np.uint64(511)


@kernel
def hash_masks(key, out):
    """Fill ``out`` (uint16) with 3x3 patch masks in 1..511 of stream ``key`` (uint64)."""
    for i in range(out.shape[0]):
        out[i] = _mask_at(key, i)


@kernel
def _mask_at(key, i):
    # Multiply-high maps the top 32 bits onto 0..510 (Lemire), cheaper than %.
    return np.uint16((((splitmix64(key, i) >> _S32) * _MASK_RANGE) >> _S32) + _ONE)


@kernel
def chaos_game(coef, cum, uniforms, npoints, xs, ys):
    """Run the chaos game from (0, 0) for ``npoints`` points (``npoints - 1`` steps).

    ``coef`` is ``(n, 6)``, ``cum`` the running sum of the map probabilities.
    Step ``k`` takes the first map ``j`` with ``uniforms[k] <= cum[j]`` (the last map
    when rounding leaves the uniform above every entry) and computes
    ``x' = (a x + b y) + e``, ``y' = (c x + d y) + f``.
    """
    choices = np.empty(max(npoints - 1, 0), np.uint8)
    map_choices(cum, uniforms, npoints, choices)
    chaos_walk(coef, choices, npoints, xs, ys, np.empty(4, np.float64))


@kernel
def map_choices(cum, uniforms, npoints, out):
    """The map of each step of :func:`chaos_game`: ``out[k]`` = how many of ``cum[:-1]`` are below ``uniforms[k]``.

    The first ``j`` with ``uniforms[k] <= cum[j]`` (the last map when rounding leaves the
    uniform above every entry). Apart from the walk, whose steps depend on each other,
    this vectorises: one compare-and-add pass per map boundary.
    """
    n = cum.shape[0]
    for k in range(npoints - 1):
        out[k] = 0
    for t in range(n - 1):
        c = cum[t]
        for k in range(npoints - 1):
            out[k] += uniforms[k] > c


@kernel
def chaos_walk(coef, choices, npoints, xs, ys, bounds):
    """The points of :func:`chaos_game` from its map choices (:func:`map_choices`), and their bounds.

    Stores ``(min x, max x, min y, max y)`` in ``bounds`` and returns True when no
    coordinate is NaN: then ``bounds`` are what :func:`to_pixels` would find, and the
    rescale needs no second pass over the points. The comparisons are off the
    dependency chain of the points, so they cost almost nothing.
    """
    x = 0.0
    y = 0.0
    xs[0] = x
    ys[0] = y
    mnx = mxx = mny = mxy = 0.0
    finite = True
    for k in range(npoints - 1):
        j = choices[k]
        nx = (coef[j, 0] * x + coef[j, 1] * y) + coef[j, 4]
        ny = (coef[j, 2] * x + coef[j, 3] * y) + coef[j, 5]
        x = nx
        y = ny
        xs[k + 1] = x
        ys[k + 1] = y
        # The same comparisons as to_pixels (first value kept on ties), as selects.
        mnx = x if x < mnx else mnx
        mxx = x if x > mxx else mxx
        mny = y if y < mny else mny
        mxy = y if y > mxy else mxy
        finite = finite & (x == x) & (y == y)
    bounds[0] = mnx
    bounds[1] = mxx
    bounds[2] = mny
    bounds[3] = mxy
    return finite


@kernel
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


@kernel
def drop_divergent(xs, ys, length, drop):
    """Apply the official NaN rule to x, then to y; returns ``(new_length, diverged)``.

    For an axis with a NaN at first index ``k``, indices ``k-100 .. k-1`` and every
    NaN index are removed from both arrays (in place, order kept).
    """
    n1 = _drop_nan_run(xs, ys, length, drop)
    n2 = _drop_nan_run(ys, xs, n1, drop)
    return n2, n2 != length


@kernel
def axis_bounds(v, length):
    """``(min, max)`` of ``v[:length]`` as :func:`to_pixels` finds them (first value kept on ties)."""
    mn = v[0]
    mx = v[0]
    for i in range(1, length):
        val = v[i]
        if val < mn:
            mn = val
        if val > mx:
            mx = val
    return mn, mx


@kernel
def axis_scale(mn, mx):
    """``(shift, range)`` of the official rescale of an axis with bounds ``(mn, mx)``.

    The axis is shifted by its minimum only when that minimum is negative, as in the
    official code; subtracting a shift of 0.0 changes no value (not even -0.0).
    """
    if mn < 0.0:
        return mn, mx - mn
    return 0.0, mx - mn


@kernel
def pixel(v, shift, rng, span, pad):
    """Official pixel of one coordinate, ``uint16((v - shift) / rng * span + pad)``.

    Values that are not finite map to pixel 0 (numpy's cast of such values is
    platform-defined; they only occur in divergent systems).
    """
    p = (v - shift) / rng * span + pad
    if p >= 0.0 and p < 65536.0:
        return np.int32(np.uint16(p))
    return np.int32(0)


@kernel
def to_pixels(v, length, span, pad, out):
    """Official rescale of one axis to integer pixels ``uint16(v / (max - min) * span + pad)``
    (see :func:`axis_scale` and :func:`pixel`)."""
    if length == 0:
        return
    mn, mx = axis_bounds(v, length)
    shift, rng = axis_scale(mn, mx)
    for i in range(length):
        out[i] = pixel(v[i], shift, rng, span, pad)


@kernel
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


@kernel
def draw_points(px, py, length, value, canvas):
    """Grey point mode: ``canvas[y, x] = value`` for every point."""
    h = canvas.shape[0]
    w = canvas.shape[1]
    for i in range(length):
        r = py[i]
        c = px[i]
        if r < h and c < w:
            canvas[r, c] = value


@kernel
def patch_table(value):
    """``(512, 9)`` uint8 table: cell ``3 r + c`` of mask ``m`` is ``value`` if its bit is set.

    Bit ``8 - (3 r + c)`` of the mask (most significant first) is cell ``(r, c)``.
    """
    table = np.zeros((512, 9), np.uint8)
    for m in range(512):
        for cell in range(9):
            table[m, cell] = ((m >> (8 - cell)) & 1) * value
    return table


@kernel
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


@kernel
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


@kernel
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


#: 3-bit reversal: a patch row seen in a left-right mirror.
_REV3 = np.array([0, 4, 2, 6, 1, 5, 3, 7], np.int64)


@kernel
def scale_points(xs, ys, length, scale, span, pad, px, py):
    """Both axes of :func:`to_pixels` in one pass, given ``scale = (x shift, x range, y shift, y range)``
    (:func:`axis_scale` of the bounds); ``xs`` and ``ys`` are left as they are."""
    sx, rx, sy, ry = scale[0], scale[1], scale[2], scale[3]
    for i in range(length):
        px[i] = pixel(xs[i], sx, rx, span, pad)
        py[i] = pixel(ys[i], sy, ry, span, pad)


@kernel
def last_at_each_pixel(px, py, length, size, seen, order):
    """The points whose patch is not wholly redrawn later: the last point at each top-left pixel.

    A later point at the same pixel covers all 9 cells of an earlier one's patch, so
    only the last point at each pixel can show (at 200,000 points about one in six).
    Their indices go to ``order`` in descending order; returns how many. ``seen`` is a
    zeroed uint8 buffer of ``size * size + 1``. Branch-free: the write is unconditional
    and the count advances by the test, since the test is unpredictable.
    """
    usize = np.uint64(size)
    outside = np.uint64(size * size)
    k = 0
    for i in range(length - 1, -1, -1):
        c0 = px[i] + 1
        r0 = py[i] + 1
        inside = (r0 + 2 < size) & (c0 + 2 < size)
        at = np.uint64(r0) * usize + np.uint64(c0) if inside else outside
        first = (seen[at] == 0) & inside
        seen[at] = 1
        order[k] = i
        k += first
    return k


@kernel
def draw_patch_bits(px, py, length, key, flip, size, stride, bits, seen, order):
    """Grey patch mode straight into 1-bit PNG scanlines; returns the number of set pixels.

    The pixels of :func:`hash_masks` + :func:`draw_patches` + a flip (0 top-bottom,
    1 none, 2 both, 3 left-right), without a mask array or a byte canvas: point
    ``i``'s 3x3 patch has its top-left cell at ``(py[i] + 1, px[i] + 1)`` before the
    flip and its mask is value ``i`` of stream ``key``. Only the points of
    :func:`last_at_each_pixel` are drawn (first to last, later patches overwriting
    earlier ones), so the others cost no mask and no store.

    ``bits`` is a zeroed ``uint8`` buffer of ``size * stride + 1`` bytes; row ``r`` of
    the image is ``bits[r * stride : (r + 1) * stride]``, a PNG filter byte (0) then one
    bit per pixel, most significant first (``stride = 1 + ceil(size / 8)``). ``seen``
    and ``order`` are scratch: a zeroed uint8 buffer of ``size * size + 1`` and an
    int32 buffer of at least ``length``.
    """
    k = last_at_each_pixel(px, py, length, size, seen, order)
    vflip = flip == 0 or flip == 2
    hflip = flip == 2 or flip == 3
    ustride = np.uint64(stride)
    one = np.uint64(1)
    for t in range(k - 1, -1, -1):
        i = order[t]
        c0 = px[i] + 1
        r0 = py[i] + 1
        if hflip:
            c0 = size - 3 - c0
        # A patch row's 3 cells lie in the big-endian 16-bit window of bytes b, b + 1 of its image row;
        # patch row j lands on image row r0 + j, or on size - 1 - (r0 + j) under a top-bottom flip.
        shift = 13 - (c0 & 7)
        clear = ~(7 << shift)
        b0 = np.uint64(size - 1 - r0 if vflip else r0) * ustride + np.uint64(1 + (c0 >> 3))  # unsigned: no wraparound checks
        if vflip:
            b1 = b0 - ustride
            b2 = b1 - ustride
        else:
            b1 = b0 + ustride
            b2 = b1 + ustride
        m = np.int64(_mask_at(key, i))
        p0 = (m >> 6) & 7  # bit 8 - (3 j + c) of the mask is cell (j, c): row j's cells, the first most significant
        p1 = (m >> 3) & 7
        p2 = m & 7
        if hflip:
            p0 = _REV3[p0]
            p1 = _REV3[p1]
            p2 = _REV3[p2]
        w = (((np.int64(bits[b0]) << 8) | np.int64(bits[b0 + one])) & clear) | (p0 << shift)
        bits[b0] = np.uint8(w >> 8)
        bits[b0 + one] = np.uint8(w & 255)
        w = (((np.int64(bits[b1]) << 8) | np.int64(bits[b1 + one])) & clear) | (p1 << shift)
        bits[b1] = np.uint8(w >> 8)
        bits[b1 + one] = np.uint8(w & 255)
        w = (((np.int64(bits[b2]) << 8) | np.int64(bits[b2 + one])) & clear) | (p2 << shift)
        bits[b2] = np.uint8(w >> 8)
        bits[b2 + one] = np.uint8(w & 255)
    count = 0
    for b in bits:
        count += _POP8[b]
    return count


#: Set bits of each byte value.
_POP8 = np.array([bin(v).count("1") for v in range(256)], np.int64)
