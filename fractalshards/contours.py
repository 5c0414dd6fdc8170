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

__all__ = ["visualatom_image", "rcdb_image", "PERM"]


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
