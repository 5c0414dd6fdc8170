"""A slow, plain-Python replay of the official SegRCDB generator (reference section 2), used only as a
test oracle: Python's ``random``, ``noise.pnoise1`` and Pillow's ``ImageDraw``, as the official scripts
use them (per-segment ``line`` calls on the image and the mask; M2/M3 polygons on the last line)."""

from __future__ import annotations

import io
import math
import random

import numpy as np
from noise import pnoise1
from PIL import Image, ImageDraw

FIELDS = (
    "Category_num",
    "Vertex",
    "Perlin_noise",
    "line_width",
    "Center_rad",
    "Line_num",
    "Oval_rate_x",
    "Oval_rate_y",
    "Color_Gray",
)


def classes(count: int = 254, seed: int = 0) -> list[dict]:
    """``SegRCDB_params.py`` at the official settings."""
    rng = random.Random(seed)
    out = []
    for g in range(1, count + 1):
        while True:
            v = int(rng.expovariate(1 / 100))
            if 2 < v <= 500:
                break
        lines, c, w = rng.randint(1, 50), rng.uniform(0, 4), rng.uniform(0.0, 0.1)
        r0, ox, oy = rng.randint(0, 50), rng.uniform(1, 2), rng.uniform(1, 2)
        out.append(dict(zip(FIELDS, (g, v, c, w, r0, lines, ox, oy, g))))
    return out


def csv_bytes(p: dict) -> bytes:
    """A ``param/%05d.csv`` file: ``key,value`` lines, CRLF, floats as Python repr."""
    return "".join(f"{k},{v!r}\r\n" if isinstance(v, float) else f"{k},{v}\r\n" for k, v in p.items()).encode()


def images(
    params: list[dict], process: int, count: int, size: int = 512, instances: int = 32, mode: str = "M1", as_script: bool = False
) -> list:
    """The first ``count`` images of official process ``process``: ``(image, mask)`` uint8 arrays.

    ``as_script`` also does the script's work that does not change the pixels (the benchmarks'
    baseline): RGB images, the image saved as PNG after each of its instances (Pillow's default
    level) and the mask converted to ``L`` and saved once."""
    rng = random.Random(process + 1)
    out = []
    for _ in range(count):
        kind = "RGB" if as_script else "L"
        img, mask = Image.new(kind, (size, size)), Image.new(kind, (size, size))
        di, dm = ImageDraw.Draw(img), ImageDraw.Draw(mask)
        for _ in range(instances):
            cls = rng.randint(1, len(params))
            cy = (size + rng.randint(-size, size)) / 2
            cx = (size + rng.randint(-size, size)) / 2
            p = params[cls - 1]
            v, lines, c, w = p["Vertex"], p["Line_num"], p["Perlin_noise"], p["line_width"]
            r0, ox, oy = float(p["Center_rad"]), p["Oval_rate_x"], p["Oval_rate_y"]
            th = 2 * math.pi / v
            xs = [math.cos(th * j) * r0 * ox + cx for j in range(v)] + [0.0]
            ys = [math.sin(th * j) * r0 * oy + cy for j in range(v)] + [0.0]
            xs[v], ys[v] = xs[0], ys[0]
            first = None
            for line in range(lines):
                grey = rng.randint(0, 255)
                nx = [pnoise1(rng.uniform(0, 10000)) * c * 2 - c for _ in range(v)]
                ny = [pnoise1(rng.uniform(0, 10000)) * c * 2 - c for _ in range(v)]
                for j in range(v):
                    xs[j] -= math.cos(th * j) * (nx[j] - w)
                    ys[j] -= math.sin(th * j) * (ny[j] - w)
                xs[v], ys[v] = xs[0], ys[0]
                ends = []
                ink, label = ((grey,) * 3, (cls,) * 3) if as_script else (grey, cls)
                for j in range(v):
                    seg = (xs[j], ys[j], xs[j + 1], ys[j + 1])
                    ends += [(xs[j], ys[j]), (xs[j + 1], ys[j + 1])]
                    di.line(seg, fill=ink, width=1)
                    if mode == "M1":
                        dm.line(seg, fill=label, width=1)
                if line == 0:
                    first = ends
                if line == lines - 1 and mode == "M3":
                    dm.polygon(ends, fill=cls)
                if line == lines - 1 and mode == "M2" and lines > 1:
                    dm.polygon(ends, fill=cls)
                    dm.polygon(first, fill=0)
                    dm.polygon(ends, outline=cls)
                    dm.polygon(first, outline=cls)
            if as_script:
                img.save(io.BytesIO(), format="PNG")
        if as_script:
            mask = mask.convert("L")
            mask.save(io.BytesIO(), format="PNG")
            img = img.convert("L")
        out.append((np.asarray(img).copy(), np.asarray(mask).copy()))
    return out
