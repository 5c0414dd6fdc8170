"""A slow, plain-Python replay of the official ExFractalDB scripts (reference section 1), used only as
a test oracle and as the benchmarks' baseline.

It keeps the official scripts' data types, which set their speed: each map a dict of Python floats,
the running probabilities a list, the uniforms a numpy array read one element per step, the orbit
three lists, ``np.linalg.det`` per map, one numpy min/max, then Python's ``sum`` over each numpy row.
"""

from __future__ import annotations

import numpy as np

KEYS = "abcdefghijkl"


def orbit(maps: np.ndarray, probs: np.ndarray, rand: np.ndarray) -> np.ndarray:
    """``(3, len(rand) - 1)``: from (0, 0, 0) (not kept), step ``i`` takes the first map whose running
    probability is at least ``rand[i]``; none: the point repeats."""
    functions = [dict(zip(KEYS, (float(v) for v in row))) for row in maps]
    select, total = [], 0.0
    for p in probs:
        total += float(p)
        select.append(total)
    xs, ys, zs = [], [], []
    x = y = z = 0.0
    nx, ny, nz = x, y, z
    for i in range(len(rand) - 1):
        for j in range(len(select)):
            if rand[i] <= select[j]:
                f = functions[j]
                nx = x * f["a"] + y * f["b"] + z * f["c"] + f["j"]
                ny = x * f["d"] + y * f["e"] + z * f["f"] + f["k"]
                nz = x * f["g"] + y * f["h"] + z * f["i"] + f["l"]
                break
        xs.append(nx)
        ys.append(ny)
        zs.append(nz)
        x, y, z = nx, ny, nz
    return np.array((xs, ys, zs), dtype=float)


def normalise(points: np.ndarray, divisor: int = 10_000) -> np.ndarray:
    """One min/max to [-1, 1], then each row minus its Python ``sum`` over ``divisor``."""
    with np.errstate(all="ignore"):
        lo, hi = points.min(), points.max()
        scaled = ((points - lo) / (hi - lo)) * 2.0 - 1.0
        centres = [sum(row) / divisor for row in scaled]
        return np.array([(row - c).tolist() for row, c in zip(scaled, centres)])


def accepted(points: np.ndarray, variance: float) -> bool:
    """No NaN in the y row, and ``np.var`` of every row above ``variance``."""
    with np.errstate(all="ignore"):
        var = np.var(points, axis=1)
        return not np.isnan(points).any(axis=1)[1] and bool(var[0] > variance and var[1] > variance and var[2] > variance)


def trial(rs: np.random.RandomState, variance: float = 0.05, count: int = 10_000) -> tuple[bool, np.ndarray, np.ndarray]:
    """One search trial from ``rs`` (numpy's legacy stream): ``(accepted, maps, probabilities)``."""
    n = rs.randint(2, 8)
    maps, probs = np.zeros((n, 12)), np.zeros(n)
    for m in range(n):
        maps[m] = rs.uniform(-1.0, 1.0, 12)
        probs[m] = abs(np.linalg.det(maps[m, :9].reshape(3, 3)))
    with np.errstate(all="ignore"):
        probs = probs / probs.sum()
    points = normalise(orbit(maps, probs, rs.random_sample(count)), count)
    return accepted(points, variance), maps, probs


def search(seed: int, categories: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``category_search.py`` seeded: ``(trial, maps, probabilities)`` of the first accepted trials."""
    rs, found, t = np.random.RandomState(seed), [], 0
    while len(found) < categories:
        ok, maps, probs = trial(rs)
        if ok:
            found.append((t, maps, probs))
        t += 1
    return found


def instance(maps: np.ndarray, probs: np.ndarray, weight: np.ndarray, rand: np.ndarray) -> np.ndarray | None:
    """``instance.py``'s point cloud ``(3, N)`` of one weight row, or None where it writes none (NaN in y)."""
    points = normalise(orbit(maps * weight, probs, rand), len(rand))
    return None if np.isnan(points[1]).any() else points
