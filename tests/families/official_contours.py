"""A slow, plain-Python replay of the official VisualAtom / RCDB generators (reference section 1-4),
used only as a test oracle: Python's ``random``, ``noise.pnoise1`` and Pillow, as the official scripts use them."""

from __future__ import annotations

import hashlib
import math
import random

import noise
import numpy as np
from PIL import Image, ImageDraw


def visualatom_category(rng: random.Random) -> dict:
    vertices = rng.randint(200, 1000)
    lines = rng.randint(1, 200)
    perlin = rng.uniform(0, 4)
    width = rng.uniform(0.0, 0.1)
    radius = rng.randint(10, 60)
    n1 = rng.randint(0, 20)
    n2 = rng.randint(0, 20)
    while n1 != 0 and n2 == n1:
        n2 = rng.randint(0, 20)
    ox, oy = rng.uniform(1, 2), rng.uniform(1, 2)
    cy = (512 + rng.randint(-512, 512)) / 2
    cx = (512 + rng.randint(-512, 512)) / 2
    return dict(
        vertices=vertices,
        lines=lines,
        perlin=perlin,
        line_width=width,
        radius=radius,
        freq1=n1,
        freq2=n2,
        oval_x=ox,
        oval_y=oy,
        center_y=cy,
        center_x=cx,
    )


def visualatom_instance(rng: random.Random, p: dict, cx: float, cy: float) -> np.ndarray:
    V, c, w = p["vertices"], p["perlin"], p["line_width"]
    theta = 2 * math.pi / V
    xs = [math.cos(theta * j) * p["radius"] * p["oval_x"] + cx for j in range(V)]
    ys = [math.sin(theta * j) * p["radius"] * p["oval_y"] + cy for j in range(V)]
    im = Image.new("RGB", (512, 512), (0, 0, 0))
    draw = ImageDraw.Draw(im)
    for _ in range(p["lines"]):
        g = rng.randint(0, 255)
        ux = [rng.uniform(0, 10000) for _ in range(V)]
        uy = [rng.uniform(0, 10000) for _ in range(V)]
        for j in range(V):
            nx = noise.pnoise1(ux[j]) * c - c - 0.5 * math.sin(theta * j * p["freq1"]) - 0.5 * math.sin(theta * j * p["freq2"])
            ny = noise.pnoise1(uy[j]) * c - c - 0.5 * math.sin(theta * j * p["freq1"]) - 0.5 * math.sin(theta * j * p["freq2"])
            xs[j] -= math.cos(theta * j) * (nx - w)
            ys[j] -= math.sin(theta * j) * (ny - w)
        pts = list(zip(xs, ys)) + [(xs[0], ys[0])]
        draw.line(pts, fill=(g, g, g), width=1)
    return np.asarray(im)[:, :, 0].copy()


def visualatom_thread(thread: int, categories: int, instances: int):
    """Yield (category params, [grey images]) of the first categories of an official thread."""
    rng = random.Random(thread + 1)
    for _ in range(categories):
        p = visualatom_category(rng)
        cx, cy = p["center_x"], p["center_y"]
        images = []
        for _k in range(instances):
            images.append(visualatom_instance(rng, p, cx, cy))
            cy = (512 + rng.randint(-512, 512)) / 2
            cx = (512 + rng.randint(-512, 512)) / 2
        yield p, images


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image, np.uint8).tobytes()).hexdigest()


def rcdb_category(rng: random.Random) -> dict:
    vertices = int(rng.expovariate(1 / 100))
    while not 2 < vertices <= 200:
        vertices = int(rng.expovariate(1 / 100))
    lines = rng.randint(1, 200)
    perlin = rng.uniform(0, 4)
    width = rng.uniform(0.0, 0.1)
    radius = rng.randint(0, 100)
    ox, oy = rng.uniform(1, 2), rng.uniform(1, 2)
    cy = (512 + rng.randint(-400, 400)) / 2
    cx = (512 + rng.randint(-400, 400)) / 2
    return dict(
        vertices=vertices,
        lines=lines,
        perlin=perlin,
        line_width=width,
        radius=radius,
        oval_x=ox,
        oval_y=oy,
        center_y=cy,
        center_x=cx,
    )


def rcdb_instance(rng: random.Random, p: dict, radius: int, ox: float, oy: float, cx: float, cy: float) -> np.ndarray:
    V, c, w = p["vertices"], p["perlin"], p["line_width"]
    theta = 2 * math.pi / V
    xs = [math.cos(theta * j) * radius * ox for j in range(V)]
    ys = [math.sin(theta * j) * radius * oy for j in range(V)]
    im = Image.new("RGB", (512, 512), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for _ in range(p["lines"]):
        g = rng.randint(0, 256)
        ux = [rng.uniform(0, 10000) for _ in range(V)]
        uy = [rng.uniform(0, 10000) for _ in range(V)]
        for j in range(V):
            xs[j] -= math.cos(theta * j) * (noise.pnoise1(ux[j]) * 2 * c - c - w)
            ys[j] -= math.sin(theta * j) * (noise.pnoise1(uy[j]) * 2 * c - c - w)
        pts = [(x + cx, y + cy) for x, y in zip(xs, ys)] + [(xs[0] + cx, ys[0] + cy)]
        draw.line(pts, fill=(g, g, g), width=1)
    return np.asarray(im)[:, :, 0].copy()


def rcdb_thread(thread: int, categories: int, instances: int):
    """Yield (category params, [grey images]) of the first categories of an official RCDB thread."""
    rng = random.Random(thread + 1)
    for _ in range(categories):
        p = rcdb_category(rng)
        radius, ox, oy, cx, cy = p["radius"], p["oval_x"], p["oval_y"], p["center_x"], p["center_y"]
        images = []
        for _k in range(instances):
            images.append(rcdb_instance(rng, p, radius, ox, oy, cx, cy))
            ox, oy = rng.uniform(1, 2), rng.uniform(1, 2)
            radius = rng.randint(0, 100)
            cy = (512 + rng.randint(-400, 400)) / 2
            cx = (512 + rng.randint(-400, 400)) / 2
        yield p, images
