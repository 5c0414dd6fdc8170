"""Numba renderers of Perlin-noised radial contours: VisualAtom and RCDB instances.

Plain arrays in, a ``uint8`` image out. The random draws of an instance (each line's
grey level and its ``V`` x- then ``V`` y-positions on the noise axis) are inputs, so
the same kernels serve the official streams (Python's ``random``, replayed) and
native counter-based streams. The arithmetic follows the official generators
operation for operation in float64, the noise is :func:`fractalshards.perlin.pnoise1`
and the drawing :func:`fractalshards.lines.draw_polyline` (Pillow's algorithm), so
official instances are reproduced pixel for pixel (tested against the official
test vectors and a plain-Python replay of the official scripts).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .kernel import _splitmix
from .lines import draw_polyline
from .perlin import PERM, pnoise1
from .pyrandom import expovariate as _expovariate
from .pyrandom import randint as _randint
from .pyrandom import skip_randoms as _skip
from .pyrandom import uniform as _uniform

__all__ = ["visualatom_image", "rcdb_image", "PERM", "PARAM_FIELDS", "visualatom_official_categories",
           "rcdb_official_categories", "visualatom_native_category", "rcdb_native_category", "native_instance_draws",
           "native_shape"]


@njit(cache=True, nogil=True)
def visualatom_image(size, vertices, radius, oval_x, oval_y, perlin, width, freq1, freq2, cx, cy, greys, ux, uy, perm):
    """A VisualAtom instance on a black ``size`` x ``size`` canvas.

    ``greys[l]`` is line ``l``'s grey level, ``ux[l, j]`` / ``uy[l, j]`` its noise positions.
    Each line displaces the previous one (the vertices accumulate) and is drawn closed.
    """
    canvas = np.zeros((size, size), np.uint8)
    theta = 2 * math.pi / vertices
    xs = np.empty(vertices + 1)
    ys = np.empty(vertices + 1)
    for j in range(vertices):
        xs[j] = math.cos(theta * j) * radius * oval_x + cx
        ys[j] = math.sin(theta * j) * radius * oval_y + cy
    for line in range(greys.shape[0]):
        for j in range(vertices):
            wave = 0.5 * math.sin(theta * j * freq1)
            wave2 = 0.5 * math.sin(theta * j * freq2)
            nx = pnoise1(ux[line, j], perm) * perlin - perlin - wave - wave2
            ny = pnoise1(uy[line, j], perm) * perlin - perlin - wave - wave2
            xs[j] -= math.cos(theta * j) * (nx - width)
            ys[j] -= math.sin(theta * j) * (ny - width)
        xs[vertices] = xs[0]
        ys[vertices] = ys[0]
        draw_polyline(canvas, xs, ys, np.uint8(min(greys[line], 255)))
    return canvas


@njit(cache=True, nogil=True)
def rcdb_image(size, vertices, radius, oval_x, oval_y, perlin, width, cx, cy, greys, ux, uy, perm):
    """An RCDB instance on a white ``size`` x ``size`` canvas (grey levels of 256 draw as 255, as Pillow clips)."""
    canvas = np.full((size, size), 255, np.uint8)
    theta = 2 * math.pi / vertices
    xs = np.empty(vertices)
    ys = np.empty(vertices)
    px = np.empty(vertices + 1)
    py = np.empty(vertices + 1)
    for j in range(vertices):
        xs[j] = math.cos(theta * j) * radius * oval_x
        ys[j] = math.sin(theta * j) * radius * oval_y
    for line in range(greys.shape[0]):
        for j in range(vertices):
            xs[j] -= math.cos(theta * j) * (pnoise1(ux[line, j], perm) * 2 * perlin - perlin - width)
            ys[j] -= math.sin(theta * j) * (pnoise1(uy[line, j], perm) * 2 * perlin - perlin - width)
        for j in range(vertices):
            px[j] = xs[j] + cx
            py[j] = ys[j] + cy
        px[vertices] = xs[0] + cx
        py[vertices] = ys[0] + cy
        draw_polyline(canvas, px, py, np.uint8(min(greys[line], 255)))
    return canvas


# -- the official streams ---------------------------------------------------------------------
#: Columns of a category parameter row (both families; RCDB leaves the frequencies at 0).
PARAM_FIELDS = ("vertices", "lines", "perlin", "line_width", "radius", "freq1", "freq2", "oval_x", "oval_y",
                "center_y", "center_x")




@njit(cache=True, nogil=True)
def visualatom_official_categories(state, count, instances, out):
    """Replay ``count`` categories of an official VisualAtom thread from ``state`` (seeded ``thread + 1``).

    Writes each category's parameters (:data:`PARAM_FIELDS`) to ``out[c]`` and consumes every
    draw of its ``instances`` instances (grey levels by rejection sampling, noise positions
    skipped, next centres), leaving ``state`` at the next category.
    """
    for c in range(count):
        vertices = _randint(state, 200, 1000)
        lines = _randint(state, 1, 200)
        perlin = _uniform(state, 0.0, 4.0)
        width = _uniform(state, 0.0, 0.1)
        radius = _randint(state, 10, 60)
        n1 = _randint(state, 0, 20)
        n2 = _randint(state, 0, 20)
        while n1 != 0 and n2 == n1:
            n2 = _randint(state, 0, 20)
        ox = _uniform(state, 1.0, 2.0)
        oy = _uniform(state, 1.0, 2.0)
        cy = (512 + _randint(state, -512, 512)) / 2
        cx = (512 + _randint(state, -512, 512)) / 2
        row = out[c]
        row[0], row[1], row[2], row[3], row[4], row[5] = vertices, lines, perlin, width, radius, n1
        row[6], row[7], row[8], row[9], row[10] = n2, ox, oy, cy, cx
        for _k in range(instances):
            for _line in range(lines):
                _randint(state, 0, 255)
                _skip(state, 2 * vertices)
            _randint(state, -512, 512)
            _randint(state, -512, 512)


@njit(cache=True, nogil=True)
def rcdb_official_categories(state, count, instances, out):
    """The same replay for an official RCDB thread (expovariate vertices; radius, ovals and centre redrawn per instance)."""
    for c in range(count):
        vertices = np.int64(_expovariate(state, 1.0 / 100.0))
        while not (2 < vertices <= 200):
            vertices = np.int64(_expovariate(state, 1.0 / 100.0))
        lines = _randint(state, 1, 200)
        perlin = _uniform(state, 0.0, 4.0)
        width = _uniform(state, 0.0, 0.1)
        radius = _randint(state, 0, 100)
        ox = _uniform(state, 1.0, 2.0)
        oy = _uniform(state, 1.0, 2.0)
        cy = (512 + _randint(state, -400, 400)) / 2
        cx = (512 + _randint(state, -400, 400)) / 2
        row = out[c]
        row[0], row[1], row[2], row[3], row[4], row[5] = vertices, lines, perlin, width, radius, 0
        row[6], row[7], row[8], row[9], row[10] = 0, ox, oy, cy, cx
        for _k in range(instances):
            for _line in range(lines):
                _randint(state, 0, 256)
                _skip(state, 2 * vertices)
            _skip(state, 2)  # next ovals
            _randint(state, 0, 100)
            _randint(state, -400, 400)
            _randint(state, -400, 400)


# -- native streams ------------------------------------------------------------------------------
# Every draw comes from a counter-based stream of (seed, category) or (seed, category, instance)
# (SplitMix64, fractalshards.kernel): any instance is computed alone, on any worker, in any order.


@njit(cache=True, nogil=True)
def _u(key, i):
    return np.float64(_splitmix(key, i) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def _below(key, i, n):
    return np.int64(_u(key, i) * n)


@njit(cache=True, nogil=True)
def visualatom_native_category(key, row):
    """Category parameters (:data:`PARAM_FIELDS`) from stream ``key``, with the official distributions.

    The centre columns hold instance 0's centre; :func:`native_centre` gives the others.
    """
    row[0] = 200 + _below(key, 0, 801)
    row[1] = 1 + _below(key, 1, 200)
    row[2] = 4.0 * _u(key, 2)
    row[3] = 0.1 * _u(key, 3)
    row[4] = 10 + _below(key, 4, 51)
    n1 = _below(key, 5, 21)
    i = 6
    n2 = _below(key, i, 21)
    while n1 != 0 and n2 == n1:  # as the official rule: the second frequency differs unless the first is 0
        i += 1
        n2 = _below(key, i, 21)
    row[5], row[6] = n1, n2
    row[7] = 1.0 + _u(key, 100)
    row[8] = 1.0 + _u(key, 101)
    row[9] = (512 + (_below(key, 102, 1025) - 512)) / 2
    row[10] = (512 + (_below(key, 103, 1025) - 512)) / 2


@njit(cache=True, nogil=True)
def rcdb_native_category(key, row):
    """RCDB category parameters from stream ``key`` (vertices exponential with mean 100, kept in 3..200)."""
    i = 0
    vertices = np.int64(-math.log(1.0 - _u(key, i)) * 100.0)
    while not (2 < vertices <= 200):
        i += 1
        vertices = np.int64(-math.log(1.0 - _u(key, i)) * 100.0)
    row[0] = vertices
    row[1] = 1 + _below(key, 1000, 200)
    row[2] = 4.0 * _u(key, 1001)
    row[3] = 0.1 * _u(key, 1002)
    row[4] = _below(key, 1003, 101)
    row[5], row[6] = 0, 0
    row[7] = 1.0 + _u(key, 1004)
    row[8] = 1.0 + _u(key, 1005)
    row[9] = (512 + (_below(key, 1006, 801) - 400)) / 2
    row[10] = (512 + (_below(key, 1007, 801) - 400)) / 2


@njit(cache=True, nogil=True)
def native_instance_draws(key, grey_levels, greys, ux, uy):
    """An instance's line draws from stream ``key``: ``greys[l]`` in ``0 .. grey_levels - 1`` and
    noise positions ``ux[l, j]``, ``uy[l, j]`` in [0, 10000); the stream's first 8 values are
    left for the instance's centre and shape (:func:`native_shape`)."""
    lines, vertices = ux.shape
    at = 8
    for line in range(lines):
        greys[line] = _below(key, at, grey_levels)
        at += 1
        for j in range(vertices):
            ux[line, j] = 10000.0 * _u(key, at + j)
        at += vertices
        for j in range(vertices):
            uy[line, j] = 10000.0 * _u(key, at + j)
        at += vertices


@njit(cache=True, nogil=True)
def native_shape(key, family_rcdb, out):
    """An instance's own centre (and, for RCDB, radius and ovals): ``out = [cx, cy, radius, oval_x, oval_y]``."""
    if family_rcdb:
        out[0] = (512 + (_below(key, 0, 801) - 400)) / 2
        out[1] = (512 + (_below(key, 1, 801) - 400)) / 2
        out[2] = _below(key, 2, 101)
        out[3] = 1.0 + _u(key, 3)
        out[4] = 1.0 + _u(key, 4)
    else:
        out[0] = (512 + (_below(key, 0, 1025) - 512)) / 2
        out[1] = (512 + (_below(key, 1, 1025) - 512)) / 2
