"""Numba kernels of ExFractalDB / MV-FractalDB (Kataoka et al., CVPR 2022; Yamada et al., IROS 2021):
3-D IFS orbits, their normalisation, and the official renderer's arithmetic without OpenGL.

Plain arrays in and out. The arithmetic follows the official scripts step for step (reference
section 1): maps ``x' = ((a x + b y) + c z) + j`` in float64 without FMA; map probabilities from
``|det|`` as ``np.linalg.det`` computes it (a left-looking LU with partial pivoting and reciprocal
multipliers, then ``exp`` of the summed logs); one min/max over the three axes, then each axis
centred on its left-to-right sum over 10,000; and the renderer's float32 ``glm`` rotations,
``lookAt`` and ``perspective``, the clip test and llvmpipe's pixel rule (the viewport's fused
multiply-add, a 1/512 bias, then floor). Tested against the official test vectors (categories,
point clouds and renders, bit for bit) and a plain-Python replay of the official scripts.

The official search and instance pass run whole in compiled code (:func:`official_trials`,
:func:`official_instances`): numpy's legacy draws (:mod:`fractalshards.mt19937`), the orbit with
its min/max, and a quick variance that decides all but the trials within a hair of the bound.
"""

from __future__ import annotations

import math

import numpy as np

from ...jit import kernel
from ...mt19937 import fill_random, np_randint, np_uniform
from ...seeds import uniform_at

__all__ = [
    "det_abs",
    "probabilities",
    "orbit",
    "scale",
    "weight_rows",
    "fma32",
    "view_matrix",
    "projection",
    "draw_points",
    "fill_uniforms",
    "fill_random",
    "ACCEPTED",
    "REJECTED",
    "CLOSE",
    "verdict",
    "quick_variances",
    "official_trials",
    "native_trials",
    "official_instances",
]


@kernel
def det_abs(m):
    """``|det(m)|`` of a 3 x 3 float64 matrix exactly as numpy 1.21 + OpenBLAS compute it."""
    a = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            a[i, j] = m[i, j]
    p = 0
    best = abs(a[0, 0])
    for r in range(1, 3):
        if abs(a[r, 0]) > best:  # the first largest, as idamax
            best = abs(a[r, 0])
            p = r
    if p != 0:
        for j in range(3):
            t = a[0, j]
            a[0, j] = a[p, j]
            a[p, j] = t
    u00 = a[0, 0]
    inv = 1.0 / u00
    a[1, 0] = a[1, 0] * inv
    a[2, 0] = a[2, 0] * inv
    a[1, 1] = a[1, 1] - a[1, 0] * a[0, 1]
    a[2, 1] = a[2, 1] - a[2, 0] * a[0, 1]
    if abs(a[2, 1]) > abs(a[1, 1]):
        for j in range(3):
            t = a[1, j]
            a[1, j] = a[2, j]
            a[2, j] = t
    u11 = a[1, 1]
    a[2, 1] = a[2, 1] * (1.0 / u11)
    u12 = a[1, 2] - a[1, 0] * a[0, 2]
    u22 = a[2, 2] - (a[2, 0] * a[0, 2] + a[2, 1] * u12)
    acc = 0.0
    acc += math.log(abs(u00))
    acc += math.log(abs(u11))
    acc += math.log(abs(u22))
    return math.exp(acc)


@kernel
def probabilities(coef, p, cum):
    """Each map's ``|det|`` of its linear part, normalised by their sum (from 0.0, in order) into ``p``;
    ``cum`` their running sums (from 0.0)."""
    n = coef.shape[0]
    m = np.empty((3, 3))
    total = 0.0
    for k in range(n):
        for i in range(3):
            for j in range(3):
                m[i, j] = coef[k, 3 * i + j]
        p[k] = det_abs(m)
    for k in range(n):
        total += p[k]
    acc = 0.0
    for k in range(n):
        p[k] = p[k] / total
        acc += p[k]
        cum[k] = acc


@kernel(inline="always")
def _pick(u, cum, n):
    # The first map j with u <= cum[j], as a count (cum never decreases; a NaN never matches), not
    # a search that branches on random data; n: none matches.
    j = 0
    for k in range(n):
        j += not (u <= cum[k])
    return j


@kernel(inline="always")
def _step(coef, j, n, x, y, z):
    # Map j of (x, y, z) as the official code computes it; j == n keeps the point.
    c = coef[min(j, n - 1)]
    nx = ((c[0] * x + c[1] * y) + c[2] * z) + c[9]
    ny = ((c[3] * x + c[4] * y) + c[5] * z) + c[10]
    nz = ((c[6] * x + c[7] * y) + c[8] * z) + c[11]
    if j < n:
        return nx, ny, nz
    return x, y, z


@kernel(inline="always")
def _low(v, lo):
    return v if v < lo else lo


@kernel(inline="always")
def _high(v, hi):
    return v if v > hi else hi


@kernel
def orbit(coef, cum, r, out):
    """The orbit from (0, 0, 0) (not kept): step ``s`` takes the first map ``j`` with ``r[s] <= cum[j]``
    (none: the point repeats); ``out`` is ``(3, steps)``. Returns the least and greatest value of
    ``out`` (what :func:`scale` takes)."""
    n = coef.shape[0]
    x = 0.0
    y = 0.0
    z = 0.0
    x, y, z = _step(coef, _pick(r[0], cum, n), n, x, y, z)
    lo = hi = x
    for s in range(out.shape[1]):
        if s:
            x, y, z = _step(coef, _pick(r[s], cum, n), n, x, y, z)
        out[0, s] = x
        out[1, s] = y
        out[2, s] = z
        lo = _low(z, _low(y, _low(x, lo)))
        hi = _high(z, _high(y, _high(x, hi)))
    return lo, hi


@kernel
def scale(pts, mn, mx, divisor):
    """The official normalisation in place, given the least and greatest value ``mn``, ``mx`` of
    ``pts`` (as :func:`orbit` returns them): ``((v - mn) / (mx - mn)) * 2 - 1``, then each axis minus
    its left-to-right sum over ``divisor`` (the official 10,000, one more than the points)."""
    n = pts.shape[1]
    flat = pts.reshape(3 * n)
    span = mx - mn
    for s in range(flat.shape[0]):
        flat[s] = ((flat[s] - mn) / span) * 2.0 - 1.0
    # The official sums run left to right: the three axes' chains side by side.
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    for s in range(n):
        t0 += flat[s]
        t1 += flat[n + s]
        t2 += flat[2 * n + s]
    m0 = t0 / divisor
    m1 = t1 / divisor
    m2 = t2 / divisor
    for s in range(n):
        flat[s] = flat[s] - m0
    for s in range(n, 2 * n):
        flat[s] = flat[s] - m1
    for s in range(2 * n, 3 * n):
        flat[s] = flat[s] - m2


def weight_rows() -> np.ndarray:
    """The official ``weights_ins145.csv``: 145 rows of 12 multipliers of a..l (row 6 the identity;
    row 108, the last for i, is 0.6 where the pattern says 1.6, as in the official file)."""
    rows = []
    for param in range(12):
        scales = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]
        if param:
            scales.remove(1.0)
        for s in scales:
            w = np.ones(12)
            w[param] = s
            rows.append(w)
    out = np.array(rows)
    out[108, 8] = 0.6
    out.setflags(write=False)
    return out


#: :func:`verdict`'s answers.
ACCEPTED, REJECTED, CLOSE = 1, 0, 2


@kernel
def verdict(quick, variance):
    """The official acceptance from :func:`quick_variances`: every axis above ``variance`` (a NaN never
    is), or :data:`CLOSE` where an axis is within a hair of the bound and none is clearly below it
    (numpy's ``np.var`` then decides)."""
    close = False
    for a in range(3):
        v = quick[a]
        if v != v:
            return REJECTED
        if not abs(v - variance) > 1e-9 * max(1.0, variance):
            close = True
        elif not v > variance:
            return REJECTED
    return CLOSE if close else ACCEPTED


@kernel
def _draw_trial(state, min_maps, max_maps, maps, p, cum, r):
    # One trial's draws in category_search.py's order: the map count, each map's 12 uniforms, then
    # len(r) uniforms; the maps' probabilities. Returns the map count.
    n = np_randint(state, min_maps, max_maps + 1)
    for m in range(n):
        for q in range(12):
            maps[m, q] = np_uniform(state, -1.0, 1.0)
    fill_random(state, r)
    probabilities(maps[:n], p[:n], cum[:n])
    return n


@kernel
def quick_variances(pts, mn, mx, out):
    """Each axis's variance after :func:`scale`, from the raw orbit and its least and greatest
    value: a decision aid (:func:`verdict` leaves values near the bound to ``np.var``), so the scaling
    is a product by ``2 / (mx - mn)`` and the sums run in eight parts (centring and these roundings
    move a variance by about 1e-15, the bound's margin is 1e-9)."""
    n = pts.shape[1]
    factor = 2.0 / (mx - mn)
    buf = np.empty(n)
    m = n - n % 8
    span = mx - mn
    tiny = span > 0.0 and factor == np.inf  # a span whose reciprocal overflows: divide instead
    for a in range(3):
        row = pts[a]
        if tiny:
            for t in range(n):
                buf[t] = ((row[t] - mn) / span) * 2.0 - 1.0
        else:
            for t in range(n):
                buf[t] = (row[t] - mn) * factor - 1.0
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        q0 = q1 = q2 = q3 = q4 = q5 = q6 = q7 = 0.0
        for t in range(0, m, 8):
            v0, v1, v2, v3 = buf[t], buf[t + 1], buf[t + 2], buf[t + 3]
            v4, v5, v6, v7 = buf[t + 4], buf[t + 5], buf[t + 6], buf[t + 7]
            s0, s1, s2, s3, s4, s5, s6, s7 = s0 + v0, s1 + v1, s2 + v2, s3 + v3, s4 + v4, s5 + v5, s6 + v6, s7 + v7
            q0, q1, q2, q3 = q0 + v0 * v0, q1 + v1 * v1, q2 + v2 * v2, q3 + v3 * v3
            q4, q5, q6, q7 = q4 + v4 * v4, q5 + v5 * v5, q6 + v6 * v6, q7 + v7 * v7
        total = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        squares = ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7))
        for t in range(m, n):
            v = buf[t]
            total += v
            squares += v * v
        mean = total / n
        out[a] = squares / n - mean * mean


@kernel
def _judge(maps, cum, r, pts, variance):
    # A trial's orbit and quick verdict; where it answers, ``pts`` gets the official normalisation
    # (np.var decides where close).
    quick = np.empty(3)
    lo, hi = orbit(maps, cum, r, pts)
    quick_variances(pts, lo, hi, quick)
    answer = verdict(quick, variance)
    if answer != REJECTED:
        scale(pts, lo, hi, np.float64(r.shape[0]))
    return answer


@kernel
def official_trials(state, min_maps, max_maps, variance, limit, maps, p, cum, r, pts):
    """Official search trials from numpy's legacy stream ``state`` until one is accepted or close to
    the bound, or ``limit`` trials. Returns ``(trials, verdict, n)``: the last trial's maps are
    ``maps[:n]``, its probabilities ``p[:n]``; where it answers, ``pts`` is its normalised orbit."""
    done = 0
    n = 0
    while done < limit:
        n = _draw_trial(state, min_maps, max_maps, maps, p, cum, r)
        done += 1
        answer = _judge(maps[:n], cum[:n], r, pts, variance)
        if answer != REJECTED:
            return done, answer, n
    return done, REJECTED, n


@kernel
def native_trials(keys, min_maps, max_maps, variance, draws, maps, p, cum, pts):
    """Native search trials, trial ``k`` from counter stream ``keys[k]`` (the map count, 12 uniforms
    for each of ``max_maps`` maps, then the orbit's uniforms), until one is accepted or close to the
    bound. Returns ``(k, verdict, n)`` as :func:`official_trials` (``k == len(keys)``: none); a trial
    whose probabilities are not all finite is rejected."""
    span = max_maps - min_maps + 1
    r = draws[1 + 12 * max_maps :]
    for k in range(keys.shape[0]):
        fill_uniforms(keys[k], draws)
        n = min_maps + np.int64(draws[0] * span)
        for m in range(n):
            for q in range(12):
                maps[m, q] = draws[1 + 12 * m + q] * 2.0 - 1.0
        probabilities(maps[:n], p[:n], cum[:n])
        finite = True
        for m in range(n):
            finite = finite and np.isfinite(p[m])
        if finite:
            answer = _judge(maps[:n], cum[:n], r, pts, variance)
            if answer != REJECTED:
                return k, answer, n
    return keys.shape[0], REJECTED, 0


@kernel
def official_instances(state, maps, probs, weights, stride, r, pts, states, valid):
    """One category's official instances (instance.py): for each weight row ``t`` in order, the maps
    times the row, ``len(r)`` fresh uniforms from ``state`` and the orbit; ``valid[t]`` whether its
    normalised y row has no NaN (the official code writes only those; centring adds none), and
    ``states[t // stride]`` the generator before every ``stride``-th row."""
    n = maps.shape[0]
    cum = np.empty(n)
    acc = 0.0
    for k in range(n):
        acc += probs[k]
        cum[k] = acc
    coef = np.empty((n, 12))
    for t in range(weights.shape[0]):
        if t % stride == 0:
            states[t // stride] = state
        fill_random(state, r)
        for k in range(n):
            for q in range(12):
                coef[k, q] = maps[k, q] * weights[t, q]
        lo, hi = orbit(coef, cum, r, pts)
        span = hi - lo
        bad = False
        for s in range(pts.shape[1]):
            v = ((pts[1, s] - lo) / span) * 2.0 - 1.0
            bad |= v != v
        valid[t] = not bad


@kernel
def fill_uniforms(key, out):
    """Native stream ``key``'s uniforms into ``out``."""
    for i in range(out.shape[0]):
        out[i] = uniform_at(key, i)


# -- the renderer: float32 glm and llvmpipe ----------------------------------------------------------
@kernel
def fma32(a, b, c):
    """``fma(a, b, c)`` of float32s, rounded once: the product is exact in float64, and a float64 sum
    that lands exactly between two float32 values is settled by the sum's rounding error."""
    p = np.float64(a) * np.float64(b)
    cc = np.float64(c)
    t = p + cc
    bp = t - cc
    err = (p - bp) + (cc - (t - bp))
    r = np.float32(t)
    back = np.float64(r)
    if back != t and err != 0.0:
        other = np.float32(t + (t - back))
        if (np.float64(r) + np.float64(other)) * 0.5 == t and (err > 0.0) == (np.float64(other) > back):
            r = other
    return r


@kernel
def _rot_y(m, angle):
    # glm::rotate(m, angle, (0, 1, 0)) in float32 (m[column, row]): cosf/sinf of the float32 angle.
    a = np.float32(angle)
    c = np.float32(math.cos(a))
    s = np.float32(math.sin(a))
    r11 = np.float32(c + np.float32(np.float32(1.0) - c))
    out = np.empty((4, 4), np.float32)
    for i in range(4):
        out[0, i] = np.float32(np.float32(m[0, i] * c) - np.float32(m[2, i] * s))
        out[1, i] = np.float32(m[1, i] * r11)
        out[2, i] = np.float32(np.float32(m[0, i] * s) + np.float32(m[2, i] * c))
        out[3, i] = m[3, i]
    return out


@kernel
def _dot3(a0, a1, a2, b0, b1, b2):
    return np.float32(np.float32(np.float32(a0 * b0) + np.float32(a1 * b1)) + np.float32(a2 * b2))


@kernel
def _normalize3(x, y, z):
    inv = np.float32(np.float32(1.0) / np.float32(math.sqrt(_dot3(x, y, z, x, y, z))))
    return np.float32(x * inv), np.float32(y * inv), np.float32(z * inv)


@kernel
def _cross(x0, x1, x2, y0, y1, y2):
    return (
        np.float32(np.float32(x1 * y2) - np.float32(y1 * x2)),
        np.float32(np.float32(x2 * y0) - np.float32(y2 * x0)),
        np.float32(np.float32(x0 * y1) - np.float32(y0 * x1)),
    )


@kernel
def view_matrix(theta, tilt, delta, distance):
    """The rows of the official view matrix: ``R = rotate(rotate(rotate(I, theta), tilt), delta)``
    about y, ``lookAt(-distance col0(R), 0, col1(R))`` (right-handed), all float32."""
    m = np.zeros((4, 4), np.float32)
    for i in range(4):
        m[i, i] = 1.0
    m = _rot_y(_rot_y(_rot_y(m, theta), tilt), delta)
    scale = np.float32(-distance)
    ex, ey, ez = np.float32(m[0, 0] * scale), np.float32(m[0, 1] * scale), np.float32(m[0, 2] * scale)
    fx, fy, fz = _normalize3(np.float32(-ex), np.float32(-ey), np.float32(-ez))
    sx, sy, sz = _cross(fx, fy, fz, m[1, 0], m[1, 1], m[1, 2])
    sx, sy, sz = _normalize3(sx, sy, sz)
    ux, uy, uz = _cross(sx, sy, sz, fx, fy, fz)
    v = np.zeros((4, 4), np.float32)
    v[0, 0], v[0, 1], v[0, 2], v[0, 3] = sx, sy, sz, np.float32(-_dot3(sx, sy, sz, ex, ey, ez))
    v[1, 0], v[1, 1], v[1, 2], v[1, 3] = ux, uy, uz, np.float32(-_dot3(ux, uy, uz, ex, ey, ez))
    v[2, 0], v[2, 1], v[2, 2], v[2, 3] = np.float32(-fx), np.float32(-fy), np.float32(-fz), _dot3(fx, fy, fz, ex, ey, ez)
    v[3, 3] = 1.0
    return v


@kernel
def projection(fovy):
    """The rows of ``perspective(fovy, 1, 1, 100)`` (NDC z in [-1, 1]) in float32."""
    t = np.float32(math.tan(np.float32(np.float32(fovy) / np.float32(2.0))))
    near, far = np.float32(1.0), np.float32(100.0)
    p = np.zeros((4, 4), np.float32)
    p[0, 0] = np.float32(np.float32(1.0) / np.float32(np.float32(1.0) * t))
    p[1, 1] = np.float32(np.float32(1.0) / t)
    p[2, 2] = np.float32(-np.float32(far + near) / np.float32(far - near))
    p[2, 3] = np.float32(-np.float32(np.float32(np.float32(2.0) * far) * near) / np.float32(far - near))
    p[3, 2] = -1.0
    return p


@kernel
def _row(m, r, v0, v1, v2, v3):
    return np.float32(
        np.float32(np.float32(np.float32(m[r, 0] * v0) + np.float32(m[r, 1] * v1)) + np.float32(m[r, 2] * v2))
        + np.float32(m[r, 3] * v3)
    )


@kernel
def draw_points(points, view, proj, image):
    """Draw ``points`` (``(N, 3)``, rounded to float32) as white 1-pixel points into ``image`` (uint8
    square, black), as llvmpipe rasterises GL_POINTS: points outside the clip volume dropped, the
    viewport as a float32 fused multiply-add, pixel ``floor(x + 1/512)``; row 0 is GL's bottom row."""
    size = image.shape[0]
    half = np.float32(size / 2)
    bias = np.float32(1.0 / 512.0)
    one = np.float32(1.0)
    for k in range(points.shape[0]):
        x = np.float32(points[k, 0])
        y = np.float32(points[k, 1])
        z = np.float32(points[k, 2])
        e0 = _row(view, 0, x, y, z, one)
        e1 = _row(view, 1, x, y, z, one)
        e2 = _row(view, 2, x, y, z, one)
        e3 = _row(view, 3, x, y, z, one)
        c0 = _row(proj, 0, e0, e1, e2, e3)
        c1 = _row(proj, 1, e0, e1, e2, e3)
        c2 = _row(proj, 2, e0, e1, e2, e3)
        c3 = _row(proj, 3, e0, e1, e2, e3)
        if not (abs(c0) <= c3 and abs(c1) <= c3 and abs(c2) <= c3):
            continue
        q = np.float32(one / c3)
        col = int(math.floor(np.float32(fma32(np.float32(c0 * q), half, half) + bias)))
        row = int(math.floor(np.float32(fma32(np.float32(c1 * q), half, half) + bias)))
        if 0 <= col < size and 0 <= row < size:
            image[row, col] = 255
