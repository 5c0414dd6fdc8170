"""Numba renderers of Perlin-noised radial contours: VisualAtom and RCDB instances.

Plain arrays in, a ``uint8`` image out. The random draws of an instance (each line's
grey level and its ``V`` x- then ``V`` y-positions on the noise axis) are inputs, so
the same kernels serve the official streams (Python's ``random``, replayed) and
native counter-based streams. The arithmetic follows the official generators
operation for operation in float64, the noise is :func:`fractalshards.families.contours.perlin.pnoise1`
and the drawing :func:`fractalshards.families.contours.lines.draw_polyline` (Pillow's algorithm), so
official instances are reproduced pixel for pixel (tested against the official
test vectors and a plain-Python replay of the official scripts).
"""

from __future__ import annotations

import math

import numpy as np

from ...jit import kernel
from ...mt19937 import expovariate as _expovariate
from ...mt19937 import randint as _randint
from ...mt19937 import skip_randoms as _skip
from ...mt19937 import uniform as _uniform
from ...seeds import integer_at, uniform_at
from .lines import draw_polyline
from .perlin import GRAD, PERM, pnoise1

__all__ = [
    "IMAGE_SIZE",
    "visualatom_image",
    "rcdb_image",
    "PERM",
    "GRAD",
    "PARAM_FIELDS",
    "SHAPE_FIELDS",
    "VISUALATOM_SPEC",
    "RCDB_SPEC",
    "visualatom_official_categories",
    "rcdb_official_categories",
    "official_instance_draws",
    "visualatom_native_category",
    "rcdb_native_category",
    "native_instance_draws",
    "native_shape",
    "angle_table",
    "wave_table",
]

#: The side of every VisualAtom and RCDB image (the official 512 px canvas).
IMAGE_SIZE = 512


@kernel
def _angles(vertices):
    # cos and sin of each vertex angle, computed once per image (the same expressions as the
    # official per-line ones, so the values are identical; they were 4 of 6 transcendentals per vertex-line).
    theta = 2 * math.pi / vertices
    cos_t = np.empty(vertices)
    sin_t = np.empty(vertices)
    for j in range(vertices):
        cos_t[j] = math.cos(theta * j)
        sin_t[j] = math.sin(theta * j)
    return theta, cos_t, sin_t


@kernel
def _wave(theta, j, freq):
    # A vertex's sinusoid term (VisualAtom's waves): one expression for the image kernel and the GPU's table.
    return 0.5 * math.sin(theta * j * freq)


def angle_table(vertices: int) -> np.ndarray:
    """``(2, vertices)`` float64: the cosine and sine of each vertex angle, the image kernels' values."""
    _theta, cos_t, sin_t = _angles(vertices)
    return np.stack([cos_t, sin_t])


@kernel
def _wave_table(vertices, freq, out):
    theta, _cos, _sin = _angles(vertices)
    for j in range(vertices):
        out[j] = _wave(theta, j, freq)


def wave_table(vertices: int, freq: float) -> np.ndarray:
    """``(vertices,)`` float64: VisualAtom's sinusoid term of each vertex for frequency ``freq``."""
    out = np.empty(vertices)
    _wave_table(vertices, float(freq), out)
    return out


@kernel
def visualatom_image(size, vertices, radius, oval_x, oval_y, perlin, width, freq1, freq2, cx, cy, greys, ux, uy, grad):
    """A VisualAtom instance on a black ``size`` x ``size`` canvas.

    ``greys[l]`` is line ``l``'s grey level, ``ux[l, j]`` / ``uy[l, j]`` its noise positions;
    ``grad`` is :data:`fractalshards.families.contours.perlin.GRAD`.
    Each line displaces the previous one (the vertices accumulate) and is drawn closed.
    """
    canvas = np.zeros((size, size), np.uint8)
    theta, cos_t, sin_t = _angles(vertices)
    waves = np.empty(vertices)
    waves2 = np.empty(vertices)
    xs = np.empty(vertices + 1)
    ys = np.empty(vertices + 1)
    for j in range(vertices):
        xs[j] = cos_t[j] * radius * oval_x + cx
        ys[j] = sin_t[j] * radius * oval_y + cy
        waves[j] = _wave(theta, j, freq1)
        waves2[j] = _wave(theta, j, freq2)
    for line in range(greys.shape[0]):
        for j in range(vertices):
            nx = pnoise1(ux[line, j], grad) * perlin - perlin - waves[j] - waves2[j]
            ny = pnoise1(uy[line, j], grad) * perlin - perlin - waves[j] - waves2[j]
            xs[j] -= cos_t[j] * (nx - width)
            ys[j] -= sin_t[j] * (ny - width)
        xs[vertices] = xs[0]
        ys[vertices] = ys[0]
        draw_polyline(canvas, xs, ys, np.uint8(min(greys[line], 255)))
    return canvas


@kernel
def rcdb_image(size, vertices, radius, oval_x, oval_y, perlin, width, cx, cy, greys, ux, uy, grad):
    """An RCDB instance on a white ``size`` x ``size`` canvas (grey levels of 256 draw as 255, as Pillow clips)."""
    canvas = np.full((size, size), 255, np.uint8)
    _theta, cos_t, sin_t = _angles(vertices)
    xs = np.empty(vertices)
    ys = np.empty(vertices)
    px = np.empty(vertices + 1)
    py = np.empty(vertices + 1)
    for j in range(vertices):
        xs[j] = cos_t[j] * radius * oval_x
        ys[j] = sin_t[j] * radius * oval_y
    for line in range(greys.shape[0]):
        for j in range(vertices):
            xs[j] -= cos_t[j] * (pnoise1(ux[line, j], grad) * 2 * perlin - perlin - width)
            ys[j] -= sin_t[j] * (pnoise1(uy[line, j], grad) * 2 * perlin - perlin - width)
        for j in range(vertices):
            px[j] = xs[j] + cx
            py[j] = ys[j] + cy
        px[vertices] = xs[0] + cx
        py[vertices] = ys[0] + cy
        draw_polyline(canvas, px, py, np.uint8(min(greys[line], 255)))
    return canvas


# -- the official streams ---------------------------------------------------------------------
#: Columns of a category parameter row (both families; RCDB leaves the frequencies at 0).
PARAM_FIELDS = (
    "vertices",
    "lines",
    "perlin",
    "line_width",
    "radius",
    "freq1",
    "freq2",
    "oval_x",
    "oval_y",
    "center_y",
    "center_x",
)
#: What changes from one instance to the next: VisualAtom redraws the centre, RCDB also radius and ovals.
SHAPE_FIELDS = ("center_x", "center_y", "radius", "oval_x", "oval_y")

#: Distribution bounds of a category, as the ``spec`` array of the kernels (the official values as defaults):
#: VisualAtom: min/max vertices, min/max lines, max perlin, max line width, min/max radius, max frequency.
VISUALATOM_SPEC = (
    "min_vertices",
    "max_vertices",
    "min_lines",
    "max_lines",
    "max_perlin",
    "max_line_width",
    "min_radius",
    "max_radius",
    "max_freq",
)
#: RCDB: vertex mean, min/max vertices, min/max lines, max perlin, max line width, min/max radius.
RCDB_SPEC = (
    "vertex_mean",
    "min_vertices",
    "max_vertices",
    "min_lines",
    "max_lines",
    "max_perlin",
    "max_line_width",
    "min_radius",
    "max_radius",
)


@kernel
def _visualatom_params(state, spec, row):
    vertices = _randint(state, np.int64(spec[0]), np.int64(spec[1]))
    lines = _randint(state, np.int64(spec[2]), np.int64(spec[3]))
    perlin = _uniform(state, 0.0, spec[4])
    width = _uniform(state, 0.0, spec[5])
    radius = _randint(state, np.int64(spec[6]), np.int64(spec[7]))
    top = np.int64(spec[8])
    n1 = _randint(state, 0, top)
    n2 = _randint(state, 0, top)
    while n1 != 0 and n2 == n1:
        n2 = _randint(state, 0, top)
    ox = _uniform(state, 1.0, 2.0)
    oy = _uniform(state, 1.0, 2.0)
    cy = (512 + _randint(state, -512, 512)) / 2
    cx = (512 + _randint(state, -512, 512)) / 2
    row[0], row[1], row[2], row[3], row[4], row[5] = vertices, lines, perlin, width, radius, n1
    row[6], row[7], row[8], row[9], row[10] = n2, ox, oy, cy, cx


@kernel
def _rcdb_params(state, spec, row):
    lo, hi = np.int64(spec[1]), np.int64(spec[2])
    vertices = np.int64(_expovariate(state, 1.0 / spec[0]))
    while not (lo <= vertices <= hi):
        vertices = np.int64(_expovariate(state, 1.0 / spec[0]))
    lines = _randint(state, np.int64(spec[3]), np.int64(spec[4]))
    perlin = _uniform(state, 0.0, spec[5])
    width = _uniform(state, 0.0, spec[6])
    radius = _randint(state, np.int64(spec[7]), np.int64(spec[8]))
    ox = _uniform(state, 1.0, 2.0)
    oy = _uniform(state, 1.0, 2.0)
    cy = (512 + _randint(state, -400, 400)) / 2
    cx = (512 + _randint(state, -400, 400)) / 2
    row[0], row[1], row[2], row[3], row[4], row[5] = vertices, lines, perlin, width, radius, 0
    row[6], row[7], row[8], row[9], row[10] = 0, ox, oy, cy, cx


@kernel
def _skip_instance(state, rcdb, lines, vertices, spec, shape):
    """Consume one official instance's draws and draw the next instance's shape into ``shape``."""
    top = 256 if rcdb else 255
    for _line in range(lines):
        _randint(state, 0, top)
        _skip(state, 2 * vertices)
    if rcdb:
        shape[3] = _uniform(state, 1.0, 2.0)
        shape[4] = _uniform(state, 1.0, 2.0)
        shape[2] = _randint(state, np.int64(spec[7]), np.int64(spec[8]))
        shape[1] = (512 + _randint(state, -400, 400)) / 2
        shape[0] = (512 + _randint(state, -400, 400)) / 2
    else:
        shape[1] = (512 + _randint(state, -512, 512)) / 2
        shape[0] = (512 + _randint(state, -512, 512)) / 2


@kernel
def _official_categories(rcdb, state, count, instances, spec, out, stride, states, shapes):
    for c in range(count):
        row = out[c]
        if rcdb:
            _rcdb_params(state, spec, row)
        else:
            _visualatom_params(state, spec, row)
        vertices, lines = np.int64(row[0]), np.int64(row[1])
        shape = np.empty(5)
        shape[0], shape[1], shape[2], shape[3], shape[4] = row[10], row[9], row[4], row[7], row[8]
        for k in range(instances):
            if stride > 0 and k % stride == 0:
                states[c, k // stride, :] = state
                shapes[c, k // stride, :] = shape
            _skip_instance(state, rcdb, lines, vertices, spec, shape)


@kernel
def visualatom_official_categories(state, count, instances, spec, out, stride, states, shapes):
    """Replay ``count`` categories of an official VisualAtom thread from ``state`` (seeded ``thread + 1``).

    Writes each category's parameters (:data:`PARAM_FIELDS`) to ``out[c]`` and consumes every
    draw of its ``instances`` instances (grey levels by rejection sampling, noise positions
    skipped, next centres), leaving ``state`` at the next category. With ``stride > 0`` the
    generator state and the shape (:data:`SHAPE_FIELDS`) at the start of every ``stride``-th
    instance are saved to ``states[c, k // stride]`` and ``shapes[c, k // stride]``.
    """
    _official_categories(False, state, count, instances, spec, out, stride, states, shapes)


@kernel
def rcdb_official_categories(state, count, instances, spec, out, stride, states, shapes):
    """The same replay for an official RCDB thread (exponential vertices; radius, ovals and centre redrawn per instance)."""
    _official_categories(True, state, count, instances, spec, out, stride, states, shapes)


@kernel
def official_instance_draws(rcdb, state, shape, skip, spec, greys, ux, uy):
    """From a saved ``state`` and ``shape``, skip ``skip`` instances, then draw one instance's
    grey levels and noise positions as the official script does (``state``/``shape`` are advanced)."""
    lines, vertices = ux.shape
    for _ in range(skip):
        _skip_instance(state, rcdb, lines, vertices, spec, shape)
    top = 256 if rcdb else 255
    for line in range(lines):
        greys[line] = _randint(state, 0, top)
        for j in range(vertices):
            ux[line, j] = _uniform(state, 0.0, 10000.0)
        for j in range(vertices):
            uy[line, j] = _uniform(state, 0.0, 10000.0)


# -- native streams ------------------------------------------------------------------------------
# Every draw comes from a counter-based stream of (seed, category) or (seed, category, instance)
# (SplitMix64, fractalshards.seeds): any instance is computed alone, on any worker, in any order.


_u = uniform_at


@kernel
def visualatom_native_category(key, spec, row):
    """Category parameters (:data:`PARAM_FIELDS`) from stream ``key``, with the official distributions
    bounded by ``spec`` (:data:`VISUALATOM_SPEC`); the centre is instance 0's."""
    row[0] = integer_at(key, 0, spec[0], spec[1])
    row[1] = integer_at(key, 1, spec[2], spec[3])
    row[2] = spec[4] * _u(key, 2)
    row[3] = spec[5] * _u(key, 3)
    row[4] = integer_at(key, 4, spec[6], spec[7])
    n1 = integer_at(key, 5, 0, spec[8])
    i = 6
    n2 = integer_at(key, i, 0, spec[8])
    while n1 != 0 and n2 == n1:  # as the official rule: the second frequency differs unless the first is 0
        i += 1
        n2 = integer_at(key, i, 0, spec[8])
    row[5], row[6] = n1, n2
    row[7] = 1.0 + _u(key, 100)
    row[8] = 1.0 + _u(key, 101)
    row[9] = (512 + integer_at(key, 102, -512, 512)) / 2
    row[10] = (512 + integer_at(key, 103, -512, 512)) / 2


@kernel
def rcdb_native_category(key, spec, row):
    """RCDB category parameters from stream ``key`` (vertices exponential with mean ``spec[0]``, kept in
    ``spec[1] .. spec[2]``); radius, ovals and centre are instance 0's."""
    i = 0
    vertices = np.int64(-math.log(1.0 - _u(key, i)) * spec[0])
    while not (spec[1] <= vertices <= spec[2]):
        i += 1
        vertices = np.int64(-math.log(1.0 - _u(key, i)) * spec[0])
    row[0] = vertices
    row[1] = integer_at(key, 1000, spec[3], spec[4])
    row[2] = spec[5] * _u(key, 1001)
    row[3] = spec[6] * _u(key, 1002)
    row[4] = integer_at(key, 1003, spec[7], spec[8])
    row[5], row[6] = 0, 0
    row[7] = 1.0 + _u(key, 1004)
    row[8] = 1.0 + _u(key, 1005)
    row[9] = (512 + integer_at(key, 1006, -400, 400)) / 2
    row[10] = (512 + integer_at(key, 1007, -400, 400)) / 2


@kernel
def native_instance_draws(key, grey_levels, greys, ux, uy):
    """An instance's line draws from stream ``key``: ``greys[l]`` in ``0 .. grey_levels - 1`` and
    noise positions ``ux[l, j]``, ``uy[l, j]`` in [0, 10000); the stream's first 8 values are
    left for the instance's shape (:func:`native_shape`)."""
    lines, vertices = ux.shape
    at = 8
    for line in range(lines):
        greys[line] = integer_at(key, at, 0, grey_levels - 1)
        at += 1
        for j in range(vertices):
            ux[line, j] = 10000.0 * _u(key, at + j)
        at += vertices
        for j in range(vertices):
            uy[line, j] = 10000.0 * _u(key, at + j)
        at += vertices


@kernel
def native_shape(key, rcdb, spec, out):
    """An instance's own shape (:data:`SHAPE_FIELDS`) from stream ``key``: the centre, and for RCDB the
    radius and ovals too (VisualAtom keeps its category's: ``out[2:]`` is left alone)."""
    if rcdb:
        out[0] = (512 + integer_at(key, 0, -400, 400)) / 2
        out[1] = (512 + integer_at(key, 1, -400, 400)) / 2
        out[2] = integer_at(key, 2, spec[7], spec[8])
        out[3] = 1.0 + _u(key, 3)
        out[4] = 1.0 + _u(key, 4)
    else:
        out[0] = (512 + integer_at(key, 0, -512, 512)) / 2
        out[1] = (512 + integer_at(key, 1, -512, 512)) / 2
