"""VisualAtom and RCDB on the GPU: one CUDA thread per image, pixel for pixel the CPU's.

Each thread draws its instance's lines in order, as :func:`fractalshards.families.contours.kernels.visualatom_image`
/ :func:`~fractalshards.families.contours.kernels.rcdb_image` do: every line's vertex displacements
(1-D Perlin noise in float32, :func:`_noise`, the ``noise`` package's operations in its order),
then the closed polyline with Pillow's integer Bresenham (later lines over earlier ones). The
draws are made on the device as the CPU makes them, and consumed in the same order, so none is
stored: native instances from their counter-based stream, official ones from CPython's MT19937
replayed from the saved generator state nearest the instance (uploaded; the instances between
are skipped on the device, as the CPU's ``official_instance_draws`` skips them). The device
generator and Pillow's line are :mod:`fractalshards.gpu.mt19937` and :mod:`fractalshards.gpu.lines`.

Every float operation is the CPU's, in its order, through :mod:`fractalshards.gpu.ops`
(round-to-nearest intrinsics: no fused multiply-add, float64 and float32 alike); the cosines,
sines and sinusoid waves of the vertex angles come from the host (device ``sin``/``cos`` round
differently), one table per vertex count and frequency, uploaded once per renderer.

Images are ``uint8 (512, 512)`` grey (the ``grey`` packed layout); the GPU renderer hands in an
array already holding the background (black for VisualAtom, white for RCDB).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ...gpu import lines, ops
from ...gpu import mt19937 as mt
from ...png import PackedLayout
from ...results import Rendered
from ...seeds import stream_key
from .kernels import GRAD, IMAGE_SIZE, PARAM_FIELDS, SHAPE_FIELDS, angle_table, native_shape, wave_table

__all__ = ["ContourGPU", "THREADS"]

_F6, _F15, _F10, _F1, _F04 = (np.float32(v) for v in (6.0, 15.0, 10.0, 1.0, 0.4))


# -- 1-D Perlin noise (noise.pnoise1, float32), as perlin.pnoise1 -------------------------------------
@cuda.jit(device=True)
def _noise(u, grad):
    # Inputs are draws in [0, 10000): the float32 floor is truncation corrected down by one.
    x = np.float32(u)
    t = np.int32(x)
    if np.float32(t) > x:
        t -= 1
    fl = np.float32(t)
    i = t & 255
    ii = (t + 1) & 255
    x = ops.fsub(x, fl)
    fx = ops.fmul(ops.fmul(ops.fmul(x, x), x), ops.fadd(ops.fmul(x, ops.fsub(ops.fmul(x, _F6), _F15)), _F10))
    a = ops.fmul(grad[i], x)
    b = ops.fmul(grad[ii], ops.fsub(x, _F1))
    return np.float64(ops.fmul(ops.fadd(a, ops.fmul(fx, ops.fsub(b, a))), _F04))


@cuda.jit(device=True)
def _centre(st, b, reach):
    return ops.div(np.float64(512 + mt.randint(st, b, -reach, reach)), 2.0)


@cuda.jit(device=True)
def _skip_instance(rcdb, st, b, lines, vertices, spec, shapes):
    # kernels._skip_instance: consume one instance's draws, draw the next one's shape.
    top = 256 if rcdb else 255
    for _line in range(lines):
        mt.randint(st, b, 0, top)
        mt.skip_randoms(st, b, 2 * vertices)
    if rcdb:
        shapes[b, 3] = mt.uniform(st, b, 1.0, 2.0)
        shapes[b, 4] = mt.uniform(st, b, 1.0, 2.0)
        shapes[b, 2] = np.float64(mt.randint(st, b, np.int64(spec[7]), np.int64(spec[8])))
        shapes[b, 1] = _centre(st, b, 400)
        shapes[b, 0] = _centre(st, b, 400)
    else:
        shapes[b, 1] = _centre(st, b, 512)
        shapes[b, 0] = _centre(st, b, 512)


@cuda.jit(device=True)
def _coord(pos, j, b, rcdb, centre):
    # float -> int truncates toward zero, as C's cast (and the CPU kernel's int()) does; RCDB's
    # vertices are relative to the centre, VisualAtom's absolute.
    v = pos[j, b]
    if rcdb:
        v = ops.add(v, centre)
    return np.int64(v)


@cuda.jit(device=True)
def _polyline(out, b, xs, ys, vertices, rcdb, cx, cy, ink):
    # The closed polyline through the vertices: segments 0-1, ..., (V-1)-0, then the last point.
    fx = _coord(xs, 0, b, rcdb, cx)
    fy = _coord(ys, 0, b, rcdb, cy)
    x0, y0 = fx, fy
    for k in range(vertices):
        if k + 1 < vertices:
            x1 = _coord(xs, k + 1, b, rcdb, cx)
            y1 = _coord(ys, k + 1, b, rcdb, cy)
        else:
            x1, y1 = fx, fy
        lines.segment(out, b, x0, y0, x1, y1, ink)
        x0, y0 = x1, y1
    lines.point(out, b, fx, fy, ink)


# -- the render kernel --------------------------------------------------------------------------------------
@cuda.jit(device=True)
def _shift(rcdb, n, perlin, width, w1, w2):
    # What a vertex moves along its angle, as the CPU kernels compute it.
    if rcdb:
        return ops.sub(ops.sub(ops.mul(ops.mul(n, 2.0), perlin), perlin), width)
    return ops.sub(ops.sub(ops.sub(ops.sub(ops.mul(n, perlin), perlin), w1), w2), width)


@cuda.jit
def _render(
    rcdb, official, verts, nlines, perlin, width, angles, waves1, waves2, table, shapes, keys, skips, states, spec,
    grey_levels, grad, xs, ys, out,
):  # fmt: skip
    b = cuda.grid(1)
    if b >= verts.shape[0]:
        return
    v = verts[b]
    lines = nlines[b]
    per = perlin[b]
    wid = width[b]
    oa, o1, o2 = angles[b], waves1[b], waves2[b]
    if official:
        for _ in range(skips[b]):
            _skip_instance(rcdb, states, b, lines, v, spec, shapes)
    cx, cy, radius, ox, oy = shapes[b, 0], shapes[b, 1], shapes[b, 2], shapes[b, 3], shapes[b, 4]
    for j in range(v):
        x = ops.mul(ops.mul(table[oa + j], radius), ox)
        y = ops.mul(ops.mul(table[oa + v + j], radius), oy)
        if rcdb:
            xs[j, b], ys[j, b] = x, y
        else:
            xs[j, b], ys[j, b] = ops.add(x, cx), ops.add(y, cy)
    key = keys[b]
    at = 8  # the native stream's first values are the shape's (native_instance_draws)
    top = 256 if rcdb else 255
    for _line in range(lines):
        if official:
            grey = mt.randint(states, b, 0, top)
        else:
            grey = np.int64(ops.mul(ops.uniform_at(key, at), np.float64(grey_levels)))
            at += 1
        for axis in range(2):
            pos = xs if axis == 0 else ys
            trig = oa if axis == 0 else oa + v
            for j in range(v):
                if official:
                    u = mt.uniform(states, b, 0.0, 10000.0)
                else:
                    u = ops.mul(10000.0, ops.uniform_at(key, at + j))
                w1 = 0.0 if rcdb else table[o1 + j]
                w2 = 0.0 if rcdb else table[o2 + j]
                step = _shift(rcdb, _noise(u, grad), per, wid, w1, w2)
                pos[j, b] = ops.sub(pos[j, b], ops.mul(table[trig + j], step))
            if not official:
                at += v
        _polyline(out, b, xs, ys, v, rcdb, cx, cy, np.uint8(min(grey, 255)))


#: Threads per block (one under the simulator, whose threads contend for a lock at every device call).
THREADS = 1 if ops.SIMULATED else 128


class ContourGPU:
    """Renders batches of ``(category, instance)`` of a VisualAtom or RCDB manifest on the GPU."""

    def __init__(self, family, manifest, settings) -> None:
        self.family, self.manifest, self.settings = family, manifest, settings
        #: The CPU renderer: saved states for official starts, and render_cpu (it checks the mode).
        self.renderer = family.renderer(manifest, settings)
        self.rcdb = bool(family.rcdb)
        self.layout = PackedLayout("grey", IMAGE_SIZE, IMAGE_SIZE)
        #: What the canvas holds before any line: black (VisualAtom) or white (RCDB).
        self.background = 255 if self.rcdb else 0
        self._spec = self.renderer.spec
        rows = np.array([manifest.category(c).params for c in range(len(manifest))], np.float64).reshape(-1, len(PARAM_FIELDS))
        self._rows = rows
        field = PARAM_FIELDS.index
        self._verts = rows[:, field("vertices")].astype(np.int64)
        self._lines = rows[:, field("lines")].astype(np.int64)
        self._table, self._angles, self._waves1, self._waves2 = self._tables(rows)
        self._device: dict = {}

    def _tables(self, rows):
        # One cos/sin table per vertex count and one wave table per (vertex count, frequency),
        # shared by the categories that have them: the host's libm values, computed once.
        parts: list[np.ndarray] = []
        where: dict = {}
        size = 0

        def offset(key, make):
            nonlocal size
            if key not in where:
                part = make()
                where[key] = size
                parts.append(part)
                size += part.shape[0]
            return where[key]

        field = PARAM_FIELDS.index
        count = rows.shape[0]
        angles, w1, w2 = (np.zeros(count, np.int64) for _ in range(3))
        for c in range(count):
            v = int(self._verts[c])
            angles[c] = offset(("angles", v), lambda v=v: angle_table(v).ravel())
            if not self.rcdb:
                f1, f2 = float(rows[c, field("freq1")]), float(rows[c, field("freq2")])
                w1[c] = offset(("wave", v, f1), lambda v=v, f=f1: wave_table(v, f))
                w2[c] = offset(("wave", v, f2), lambda v=v, f=f2: wave_table(v, f))
        table = np.concatenate(parts) if parts else np.zeros(1)
        return np.ascontiguousarray(table, np.float64), angles, w1, w2

    def _constants(self):
        # The tables, the noise gradients and the bounds, uploaded once per renderer.
        if not self._device:
            self._device = {
                "table": cuda.to_device(self._table),
                "grad": cuda.to_device(np.ascontiguousarray(GRAD)),
                "spec": cuda.to_device(np.ascontiguousarray(self._spec, np.float64)),
            }
        return self._device

    def arrays(self, pairs) -> dict:
        """The per-image inputs of a batch (host arrays)."""
        fam, s = self.family, self.settings
        cats = np.fromiter((c for c, _ in pairs), np.int64, len(pairs))
        insts = [fam.check_instance(i) for _, i in pairs]
        field = PARAM_FIELDS.index
        rows = self._rows[cats]
        shapes = np.ascontiguousarray(rows[:, [field(n) for n in SHAPE_FIELDS]])
        batch = len(pairs)
        keys = np.zeros(batch, np.uint64)
        if s.mode == "official":
            starts, shapes, skips = self.renderer.official_starts(pairs)
            states = np.ascontiguousarray(starts.T)  # one generator per column: a warp reads a row at once
        else:
            skips = np.zeros(batch, np.int64)
            states = np.zeros((mt.N + 1, 1), np.uint32)
            for b, (c, k) in enumerate(zip(cats.tolist(), insts)):
                keys[b] = stream_key(fam.name, "instance", s.seed, c, k)
                if k > 0:  # instance 0 is drawn with its category
                    native_shape(keys[b], self.rcdb, self._spec, shapes[b])
        return {
            "verts": np.ascontiguousarray(self._verts[cats]),
            "lines": np.ascontiguousarray(self._lines[cats]),
            "perlin": np.ascontiguousarray(rows[:, field("perlin")]),
            "width": np.ascontiguousarray(rows[:, field("line_width")]),
            "angles": np.ascontiguousarray(self._angles[cats]),
            "waves1": np.ascontiguousarray(self._waves1[cats]),
            "waves2": np.ascontiguousarray(self._waves2[cats]),
            "shapes": shapes,
            "keys": keys,
            "skips": skips,
            "states": states,
        }

    def render_into(self, pairs, out) -> tuple[np.ndarray, list[dict]]:
        """Render ``pairs`` into ``out`` (a device array ``(len(pairs), 512, 512)`` uint8 holding
        :attr:`background`); returns no divergent sample (contours never diverge) and each sample's
        info (its shape, as the CPU's render reports it)."""
        a = self.arrays(pairs)
        const = self._constants()
        batch = len(pairs)
        vmax = int(a["verts"].max())
        shapes = cuda.to_device(a["shapes"])
        xs = cuda.device_array((vmax, batch), np.float64)
        ys = cuda.device_array((vmax, batch), np.float64)
        official = self.settings.mode == "official"
        blocks = (batch + THREADS - 1) // THREADS
        _render[blocks, THREADS](
            self.rcdb,
            official,
            *(cuda.to_device(a[k]) for k in ("verts", "lines", "perlin", "width", "angles", "waves1", "waves2")),
            const["table"],
            shapes,
            cuda.to_device(a["keys"]),
            cuda.to_device(a["skips"]),
            cuda.to_device(a["states"]),
            const["spec"],
            self.family.grey_levels,
            const["grad"],
            xs,
            ys,
            out,
        )
        infos = [{"shape": dict(zip(SHAPE_FIELDS, row))} for row in shapes.copy_to_host().tolist()]
        return np.zeros(batch, bool), infos

    def to_rendered(self, packed: np.ndarray, info: dict | None = None) -> Rendered:
        """A GPU render on the host as the CPU's render gives it (grey pixels and the instance's shape)."""
        return Rendered(packed, False, info=info)

    def render_cpu(self, category: int, instance: int) -> Rendered:
        """The CPU's render of one sample."""
        return self.renderer.render(category, instance)
