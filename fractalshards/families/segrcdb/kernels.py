"""Numba kernels of SegRCDB (Shinoda et al., ICCV 2023): class parameters, images and their class masks.

Plain arrays in and out. A class is a row of :data:`CLASS_FIELDS`; an image is ``instances``
radial contours of random classes on black, each drawn line after line as RCDB draws its
contours (Perlin-noised vertices, Pillow's width-1 lines), the image getting each line's grey
level and the mask its class id (M1: where a line is drawn; later instances over earlier ones).

The official streams are Python's ``random`` (:mod:`fractalshards.mt19937`):
``random.seed(0)`` for the classes, ``random.seed(t + 1)`` for the images of official process
``t``, drawn in the official script's order; native streams are counter-based
(:mod:`fractalshards.seeds`). The arithmetic is the official script's, operation for operation in
float64 (the noise in float32, as the ``noise`` package), so official images and masks are
reproduced pixel for pixel (tested against the official test vectors and a plain-Python replay).
"""

from __future__ import annotations

import math

import numpy as np

from ...jit import kernel
from ...mt19937 import expovariate as _expovariate
from ...mt19937 import fill_random
from ...mt19937 import randint as _randint
from ...mt19937 import skip_randoms as _skip
from ...mt19937 import uniform as _uniform
from ...seeds import integer_at, uniform_at
from ..contours.lines import draw_polyline
from ..contours.perlin import pnoise1

__all__ = [
    "CLASS_FIELDS",
    "SPEC_FIELDS",
    "official_classes",
    "native_class",
    "skip_images",
    "official_image",
    "native_image",
]

#: Columns of a class row.
CLASS_FIELDS = ("vertices", "lines", "perlin", "line_width", "radius", "oval_x", "oval_y")
#: The distribution bounds of a class, as the kernels' ``spec`` array (official values as defaults).
SPEC_FIELDS = (
    "vertex_mean",
    "min_vertices",
    "max_vertices",
    "min_lines",
    "max_lines",
    "max_perlin",
    "max_line_width",
    "min_radius",
    "max_radius",
    "max_oval",
)


@kernel
def official_classes(state, count, spec, out):
    """``count`` classes from the official stream ``state`` (``random.seed(0)``), into ``out[g]``.

    Vertices ``int(expovariate(1 / mean))`` drawn again until ``min <= V <= max``; then lines,
    Perlin coefficient, line width, radius and the two oval rates, in the official order."""
    lo, hi = np.int64(spec[1]), np.int64(spec[2])
    for g in range(count):
        v = np.int64(_expovariate(state, 1.0 / spec[0]))
        while not (lo <= v <= hi):
            v = np.int64(_expovariate(state, 1.0 / spec[0]))
        row = out[g]
        row[0] = v
        row[1] = _randint(state, np.int64(spec[3]), np.int64(spec[4]))
        row[2] = _uniform(state, 0.0, spec[5])
        row[3] = _uniform(state, 0.0, spec[6])
        row[4] = _randint(state, np.int64(spec[7]), np.int64(spec[8]))
        row[5] = _uniform(state, 1.0, spec[9])
        row[6] = _uniform(state, 1.0, spec[9])


@kernel
def native_class(key, spec, row):
    """A class from counter stream ``key`` with the official distributions bounded by ``spec``."""
    i = 0
    v = np.int64(-math.log(1.0 - uniform_at(key, i)) * spec[0])
    while not (spec[1] <= v <= spec[2]):
        i += 1
        v = np.int64(-math.log(1.0 - uniform_at(key, i)) * spec[0])
    row[0] = v
    row[1] = integer_at(key, 1000, spec[3], spec[4])
    row[2] = spec[5] * uniform_at(key, 1001)
    row[3] = spec[6] * uniform_at(key, 1002)
    row[4] = integer_at(key, 1003, spec[7], spec[8])
    row[5] = 1.0 + (spec[9] - 1.0) * uniform_at(key, 1004)
    row[6] = 1.0 + (spec[9] - 1.0) * uniform_at(key, 1005)


# -- one instance: shared by both streams ---------------------------------------------------------------
@kernel
def _start(row, cx, cy, xs, ys, cos_t, sin_t):
    # The contour's first vertices (vertex V closes it), and the angles' cosines and sines.
    v = xs.shape[0] - 1
    theta = 2 * math.pi / v
    r0 = row[4]
    for j in range(v):
        cos_t[j] = math.cos(theta * j)
        sin_t[j] = math.sin(theta * j)
        xs[j] = cos_t[j] * r0 * row[5] + cx
        ys[j] = sin_t[j] * r0 * row[6] + cy
    xs[v] = xs[0]
    ys[v] = ys[0]


@kernel
def _move(pos, trig, noise, j, row):
    # n = ((pnoise1(u) c) 2) - c; the vertex moves by its angle's cos (sin) times (n - w).
    c = row[2]
    n = noise * c * 2 - c
    pos[j] -= trig[j] * (n - row[3])


@kernel
def _ends(xs, ys, ends, line_index):
    # The vertices of a line, kept for the M2/M3 masks (drawn by the caller).
    v = xs.shape[0]
    for j in range(v):
        ends[line_index, 0, j] = xs[j]
        ends[line_index, 1, j] = ys[j]


@kernel
def _paint(owner, greys, ids, image, mask):
    # Each pixel takes the grey level and the class of the last line drawn over it (0: none).
    h, w = owner.shape
    for y in range(h):
        for x in range(w):
            o = owner[y, x]
            if o:
                image[y, x] = greys[o]
                mask[y, x] = ids[o]


# -- official images -------------------------------------------------------------------------------------
@kernel
def skip_images(state, count, classes, instances, size):
    """Consume ``count`` official images' draws from ``state`` without drawing them."""
    n = classes.shape[0]
    for _ in range(count):
        for _i in range(instances):
            cls = _randint(state, 1, n)
            _randint(state, -size, size)
            _randint(state, -size, size)
            v = np.int64(classes[cls - 1, 0])
            for _line in range(np.int64(classes[cls - 1, 1])):
                _randint(state, 0, 255)
                _skip(state, 2 * v)


@kernel
def _draw(official, state, keys, classes, instances, image, mask, labels, ends, grad):
    # One image, official (``state``: CPython's MT19937) or native (``keys[i]``: instance i's stream):
    # each instance's class and centre, then line after line its grey level and 2V noise draws
    # (taken as a block, in the official order: V for x, then V for y), the vertices moved, the line
    # drawn once as its number into ``owner``; the image and mask are painted from it at the end.
    n = classes.shape[0]
    size = image.shape[0]
    vmax = np.int64(classes[:, 0].max())
    xs = np.empty(vmax + 1)
    ys = np.empty(vmax + 1)
    cos_t = np.empty(vmax)
    sin_t = np.empty(vmax)
    draws = np.empty(2 * vmax)
    keep = ends.shape[3] > 0
    owner = np.zeros(image.shape, np.uint16)
    most = instances * np.int64(classes[:, 1].max()) + 1
    greys = np.zeros(most, np.uint8)
    ids = np.zeros(most, np.uint8)
    drawn = 0
    for i in range(instances):
        key = keys[i] if not official else keys[0]
        if official:
            cls = _randint(state, 1, n)
            cy = (size + _randint(state, -size, size)) / 2
            cx = (size + _randint(state, -size, size)) / 2
        else:
            cls = integer_at(key, 0, 1, n)
            cy = (size + integer_at(key, 1, -size, size)) / 2
            cx = (size + integer_at(key, 2, -size, size)) / 2
        labels[i] = cls
        row = classes[cls - 1]
        v = np.int64(row[0])
        lines = np.int64(row[1])
        px, py = xs[: v + 1], ys[: v + 1]
        _start(row, cx, cy, px, py, cos_t, sin_t)
        at = 8
        for line in range(lines):
            block = draws[: 2 * v]
            if official:
                grey = _randint(state, 0, 255)
                fill_random(state, block)
            else:
                grey = integer_at(key, at, 0, 255)
                for j in range(2 * v):
                    block[j] = uniform_at(key, at + 1 + j)
                at += 1 + 2 * v
            # uniform(0, 10000) is 0.0 + 10000.0 * random(); the native 10000.0 * u is the same value (u >= 0).
            for j in range(v):
                _move(px, cos_t, pnoise1(0.0 + 10000.0 * block[j], grad), j, row)
            for j in range(v):
                _move(py, sin_t, pnoise1(0.0 + 10000.0 * block[v + j], grad), j, row)
            px[v] = px[0]
            py[v] = py[0]
            drawn += 1
            greys[drawn] = grey
            ids[drawn] = cls
            draw_polyline(owner, px, py, np.uint16(drawn))
            if keep and (line == 0 or line == lines - 1):
                _ends(px, py, ends[i], 0 if line == 0 else 1)
    _paint(owner, greys, ids, image, mask)


@kernel
def official_image(state, classes, instances, image, mask, labels, ends, grad):
    """The next official image of ``state``'s process into ``image`` and ``mask`` (black ``size`` x
    ``size`` uint8, ``size`` also the centres' range, as ``--start_pos``). ``labels[i]`` gets
    instance ``i``'s class id; ``ends[i]`` (``(instances, 2 lines, 2, max V + 1)``, when its last
    axis is not empty) the first and last lines' vertices (for M2/M3)."""
    _draw(True, state, np.zeros(1, np.uint64), classes, instances, image, mask, labels, ends, grad)


@kernel
def native_image(keys, classes, image, mask, labels, ends, grad):
    """An image from counter streams: instance ``i`` from ``keys[i]`` (its class, centre and
    lines' draws); the same drawing as :func:`official_image`."""
    _draw(False, np.zeros(625, np.uint32), keys, classes, keys.shape[0], image, mask, labels, ends, grad)
