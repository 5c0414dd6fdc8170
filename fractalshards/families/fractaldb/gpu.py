"""FractalDB (and 1p-frac, OFDB) on the GPU: one CUDA thread per image, pixel for pixel the CPU's.

Each thread walks its image's chaos game twice and stores no point: the first walk finds the
axis bounds (the CPU's ``chaos_walk``), the second rescales every point (``scale_points``) and
draws it straight into the image in the ``packed`` layout (1-bit rows of two-level grey images,
RGB bytes of colour ones), in the flip's orientation, later patches over earlier ones, as
``draw_patch_bits`` / ``draw_patches`` + the flip do on the CPU. Every float operation is the
CPU's, in its order, through :mod:`fractalshards.gpu.ops` (round-to-nearest intrinsics: no fused
multiply-add); the uniforms are the official table (uploaded once) or the counter-based native
stream, the patch masks the same counter-based stream as on the CPU.

A walk that meets a NaN (a divergent system: rare, the official NaN rule then drops points
around it) is flagged by its thread and rendered by the CPU kernels, so its pixels are the CPU's too.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ...gpu import ops
from ...png import PackedLayout
from ...results import Rendered, from_packed
from ...seeds import stream_key
from .ifs import cumulative
from .render import GRAY_VALUE, RenderSettings, _palette, official_uniforms, weight_rows

__all__ = ["FractalGPU"]


@cuda.jit(device=True)
def _step(coef, cum, n, b, u, x, y):
    j = 0
    for t in range(n - 1):
        if u > cum[b, t]:
            j += 1
    nx = ops.add(ops.add(ops.mul(coef[b, j, 0], x), ops.mul(coef[b, j, 1], y)), coef[b, j, 4])
    ny = ops.add(ops.add(ops.mul(coef[b, j, 2], x), ops.mul(coef[b, j, 3], y)), coef[b, j, 5])
    return nx, ny


@cuda.jit(device=True)
def _uniform(table, official, key, k):
    if official:
        return table[k]
    return ops.uniform_at(key, k)


@cuda.jit(device=True)
def _set_bit(out, b, r, c, palette, k, on):
    # A pixel of a two-level image's 1-bit rows (leftmost pixel the most significant bit).
    byte = c >> 3
    bit = 7 - (c & 7)
    v = out[b, r, byte]
    if on:
        out[b, r, byte] = v | (1 << bit)
    else:
        out[b, r, byte] = v & (255 - (1 << bit))


@cuda.jit(device=True)
def _set_rgb(out, b, r, c, palette, k, on):
    # A pixel of a colour image: point k's palette colour, or black.
    for ch in range(3):
        out[b, r, c, ch] = palette[k, ch] if on else 0


def _kernel(plot):
    # One kernel per output layout (numba types every branch, so a 3-d and a 4-d image cannot share one).
    @cuda.jit
    def render(
        coef, cum, nmaps, table, official, point_keys, mask_keys, flips, points, size, span, pad, patch, palette, out, diverged
    ):
        _walk_and_draw(
            plot,
            coef,
            cum,
            nmaps,
            table,
            official,
            point_keys,
            mask_keys,
            flips,
            points,
            size,
            span,
            pad,
            patch,
            palette,
            out,
            diverged,
        )

    return render


@cuda.jit(device=True)
def _walk_and_draw(
    plot, coef, cum, nmaps, table, official, point_keys, mask_keys, flips, points, size, span, pad, patch, palette, out, diverged
):
    b = cuda.grid(1)
    if b >= coef.shape[0]:
        return
    n = nmaps[b]
    pkey = point_keys[b]
    # Walk 1: the bounds, as chaos_walk keeps them (from the first point, (0, 0)).
    x = 0.0
    y = 0.0
    mnx = 0.0
    mxx = 0.0
    mny = 0.0
    mxy = 0.0
    for k in range(points - 1):
        x, y = _step(coef, cum, n, b, _uniform(table, official, pkey, k), x, y)
        if x != x or y != y:
            diverged[b] = 1  # the NaN rule: the CPU renders this one
            return
        if x < mnx:
            mnx = x
        if x > mxx:
            mxx = x
        if y < mny:
            mny = y
        if y > mxy:
            mxy = y
    # axis_scale: shift by the minimum only when it is negative.
    sx = mnx if mnx < 0.0 else 0.0
    sy = mny if mny < 0.0 else 0.0
    rx = ops.sub(mxx, mnx)
    ry = ops.sub(mxy, mny)
    flip = flips[b]
    vflip = flip == 0 or flip == 2
    hflip = flip == 2 or flip == 3
    mkey = mask_keys[b]
    period = palette.shape[0]
    # Walk 2: every point rescaled and drawn, first to last.
    x = 0.0
    y = 0.0
    for i in range(points):
        if i > 0:
            x, y = _step(coef, cum, n, b, _uniform(table, official, pkey, i - 1), x, y)
        px = ops.pixel(x, sx, rx, span, pad)
        py = ops.pixel(y, sy, ry, span, pad)
        if patch:
            r0 = py + 1
            c0 = px + 1
            if r0 + 2 >= size or c0 + 2 >= size:
                continue
            m = ops.mask_at(mkey, i)
            for jr in range(3):
                row = r0 + jr
                rr = size - 1 - row if vflip else row
                for jc in range(3):
                    col = c0 + jc
                    cc = size - 1 - col if hflip else col
                    plot(out, b, rr, cc, palette, i % period, (m >> (8 - (3 * jr + jc))) & 1)
        else:
            if py >= size or px >= size:
                continue
            rr = size - 1 - py if vflip else py
            cc = size - 1 - px if hflip else px
            plot(out, b, rr, cc, palette, i % period, 1)


_render_bits = _kernel(_set_bit)
_render_rgb = _kernel(_set_rgb)

#: Threads per block of the render kernel (one under the simulator: its threads are Python threads
#: that contend for a lock at every device-function call, and a block of one runs them in turn).
THREADS = 1 if ops.SIMULATED else 128


class FractalGPU:
    """Renders batches of ``(category, instance)`` of a FractalDB-style manifest on the GPU (FractalDB,
    OFDB, 1p-frac: the family's ``instance_of(index)`` gives each instance's weight row, flip and patch
    variant; 1p-frac's is always its one drawing)."""

    def __init__(self, family, manifest, settings: RenderSettings) -> None:
        self.family, self.manifest, self.settings = family, manifest, settings
        self.renderer = family.renderer(manifest, settings)  # render_cpu's
        self.instance_of = family.instance_of
        colour = settings.color == "color"
        size = settings.size
        self.layout = PackedLayout("rgb", size, size) if colour else PackedLayout("bits", size, size, GRAY_VALUE)
        systems = [manifest.category(c).system for c in range(len(manifest))]
        self._nmax = max(s.num_maps for s in systems)
        count = len(systems)
        self._coef = np.zeros((count, self._nmax, 6), np.float64)
        self._cum = np.ones((count, self._nmax), np.float64)
        self._nmaps = np.empty(count, np.int32)
        for c, s in enumerate(systems):
            self._coef[c, : s.num_maps] = s.coefficients
            self._cum[c, : s.num_maps] = cumulative(s.probabilities)
            self._nmaps[c] = s.num_maps
        self._rows = np.asarray(weight_rows(settings.weight_delta))
        self._device_constants: dict = {}

    def _constants(self):
        # The official point table and the palette, uploaded once per renderer.
        if not self._device_constants:
            s = self.settings
            table = official_uniforms(s.points) if s.mode == "official" else np.zeros(1, np.float64)
            self._device_constants = {"table": cuda.to_device(np.ascontiguousarray(table)), "palette": cuda.to_device(_palette())}
        return self._device_constants

    def arrays(self, pairs) -> dict:
        """The per-image inputs of a batch (host arrays)."""
        s = self.settings
        cats = np.fromiter((c for c, _ in pairs), np.int64, len(pairs))
        insts = [self.instance_of(i) for _, i in pairs]
        weights = np.fromiter((inst.weight for inst in insts), np.int64, len(pairs))
        # The CPU's product, value for value: system.coefficients * rows[weight] (padding rows stay 0).
        coef = np.ascontiguousarray(self._coef[cats] * self._rows[weights][:, None, :])
        return {
            "coef": coef,
            "cum": np.ascontiguousarray(self._cum[cats]),
            "nmaps": np.ascontiguousarray(self._nmaps[cats]),
            "point_keys": np.array(
                [stream_key("points", s.seed, int(c), inst.weight) for c, inst in zip(cats, insts)], np.uint64
            ),
            "mask_keys": np.array(
                [stream_key("masks", s.seed, int(c), inst.weight, inst.patch) for c, inst in zip(cats, insts)], np.uint64
            ),
            "flips": np.array([inst.flip for inst in insts], np.int32),
        }

    #: What the canvas holds before any point: black.
    background = 0

    def render_into(self, pairs, out) -> tuple[np.ndarray, None]:
        """Render ``pairs`` into ``out`` (a zeroed device array ``(len(pairs), *layout.shape)``, uint8);
        returns the host mask of the images the CPU must render (divergent walks) and no info."""
        s = self.settings
        a = self.arrays(pairs)
        const = self._constants()
        diverged = cuda.to_device(np.zeros(len(pairs), np.int32))
        blocks = (len(pairs) + THREADS - 1) // THREADS
        kernel = _render_rgb if s.color == "color" else _render_bits
        kernel[blocks, THREADS](
            cuda.to_device(a["coef"]),
            cuda.to_device(a["cum"]),
            cuda.to_device(a["nmaps"]),
            const["table"],
            s.mode == "official",
            cuda.to_device(a["point_keys"]),
            cuda.to_device(a["mask_keys"]),
            cuda.to_device(a["flips"]),
            s.points,
            s.size,
            s.span,
            float(s.pad),
            s.draw == "patch",
            const["palette"],
            out,
            diverged,
        )
        return diverged.copy_to_host().astype(bool), None

    def to_rendered(self, packed: np.ndarray, info: dict | None = None) -> Rendered:
        """A (non-divergent) GPU render on the host as the CPU's :func:`render` gives it (grey patch
        images as 1-bit rows, grey points as pixels, colour as RGB): what the PNG encoder takes."""
        if self.settings.color == "gray" and self.settings.draw == "point":
            return Rendered(self.layout.unpack(packed), False)
        return from_packed(packed, self.layout, False)

    def render_cpu(self, category: int, instance: int) -> Rendered:
        """The CPU's render of one sample (for the walks the GPU hands back)."""
        return self.renderer.render(category, instance)
