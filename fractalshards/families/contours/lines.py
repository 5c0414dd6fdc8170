"""Polylines drawn exactly as Pillow's ``ImageDraw.line(xy, fill=g, width=1)`` draws them on a grey image.

The official VisualAtom and RCDB generators draw their contours with Pillow. For a
width of 1, Pillow converts each float coordinate to an integer with C's
truncation toward zero, then draws every segment with Bresenham's algorithm from
its first point up to, but not including, its last, then sets the polyline's last
point; pixels off the canvas are skipped; later segments overwrite earlier pixels. This kernel does exactly that
on a ``uint8`` array (tested pixel for pixel against Pillow on random polylines,
including segments that leave the canvas). Plain arrays in and out.
"""

from __future__ import annotations

from ...jit import kernel

__all__ = ["draw_polyline"]


@kernel(inline="always")
def _point(canvas, x, y, ink):
    if 0 <= x < canvas.shape[1] and 0 <= y < canvas.shape[0]:
        canvas[y, x] = ink


@kernel
def _segment(canvas, x0, y0, x1, y1, ink):
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
            _point(canvas, x0, y0, ink)
            y0 += ys
    elif dy == 0:
        for _ in range(dx):
            _point(canvas, x0, y0, ink)
            x0 += xs
    elif dx > dy:
        n = dx
        dy2 = dy + dy
        e = dy2 - dx
        dx2 = dx + dx
        for _ in range(n):
            _point(canvas, x0, y0, ink)
            if e >= 0:
                y0 += ys
                e -= dx2
            e += dy2
            x0 += xs
    else:
        n = dy
        dx2 = dx + dx
        e = dx2 - dy
        dy2 = dy + dy
        for _ in range(n):
            _point(canvas, x0, y0, ink)
            if e >= 0:
                x0 += xs
                e -= dy2
            e += dx2
            y0 += ys


@kernel
def draw_polyline(canvas, xs, ys, ink):
    """Draw the polyline through ``(xs[k], ys[k])`` (float64) onto ``canvas`` (uint8, H x W) with grey ``ink``."""
    n = xs.shape[0]
    for k in range(n - 1):
        # int() of a float64 truncates toward zero, as C's (int) cast does.
        _segment(canvas, int(xs[k]), int(ys[k]), int(xs[k + 1]), int(ys[k + 1]), ink)
    if n > 1:  # Pillow closes the polyline with its last point
        _point(canvas, int(xs[n - 1]), int(ys[n - 1]), ink)
