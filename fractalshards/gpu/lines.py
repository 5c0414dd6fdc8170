"""Pillow's width-1 line on the device (``ImageDraw.line``'s integer Bresenham), pixel for pixel the
host's :mod:`fractalshards.families.contours.lines`: :func:`segment` draws from ``(x0, y0)`` up to but
not including ``(x1, y1)``, :func:`point` sets one pixel inside the canvas. The canvas is image ``b``
of a device array ``out`` of shape ``(batch, height, width)``. Any family's kernels may use them.
"""

from __future__ import annotations

from numba import cuda

__all__ = ["point", "segment"]


@cuda.jit(device=True)
def point(out, b, x, y, ink):
    """Set pixel ``(x, y)`` of image ``b`` to ``ink`` when it lies on the canvas."""
    if 0 <= x < out.shape[2] and 0 <= y < out.shape[1]:
        out[b, y, x] = ink


@cuda.jit(device=True)
def segment(out, b, x0, y0, x1, y1, ink):
    """Pillow's line from ``(x0, y0)`` to ``(x1, y1)``, the end point excluded."""
    dx = x1 - x0
    xs = 1
    if dx < 0:
        dx = -dx
        xs = -1
    dy = y1 - y0
    ys = 1
    if dy < 0:
        dy = -dy
        ys = -1
    if dx == 0:
        for _ in range(dy):
            point(out, b, x0, y0, ink)
            y0 += ys
    elif dy == 0:
        for _ in range(dx):
            point(out, b, x0, y0, ink)
            x0 += xs
    elif dx > dy:
        dy2 = dy + dy
        e = dy2 - dx
        dx2 = dx + dx
        for _ in range(dx):
            point(out, b, x0, y0, ink)
            if e >= 0:
                y0 += ys
                e -= dx2
            e += dy2
            x0 += xs
    else:
        dx2 = dx + dx
        e = dx2 - dy
        dy2 = dy + dy
        for _ in range(dy):
            point(out, b, x0, y0, ink)
            if e >= 0:
                x0 += xs
                e -= dy2
            e += dx2
            y0 += ys
