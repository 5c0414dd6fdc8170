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

from .lines import draw_polyline
from .perlin import PERM, pnoise1
from .pyrandom import expovariate as _expovariate
from .pyrandom import randint as _randint
from .pyrandom import skip_randoms as _skip
from .pyrandom import uniform as _uniform

__all__ = ["visualatom_image", "rcdb_image", "PERM", "PARAM_FIELDS", "visualatom_official_categories",
           "rcdb_official_categories"]


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
