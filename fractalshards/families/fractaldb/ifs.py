"""Iterated Function Systems as plain arrays, and the two samplers that draw them.

A system is an ``(n, 6)`` float64 array of affine maps ``(a, b, c, d, e, f)``,
``(x, y) -> (a x + b y + e, c x + d y + f)``, plus ``n`` selection probabilities.
The arithmetic here follows the official FractalDB code exactly (see
``fractaldb-reference.md`` beside the project): products rounded one by one,
sums accumulated in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...limits import check

__all__ = [
    "IFS",
    "SAMPLERS",
    "NUM_WEIGHT_ROWS",
    "map_probabilities",
    "cumulative",
    "weight_multipliers",
    "sample_fractaldb",
    "sample_sigma",
]

#: Names of the category samplers.
SAMPLERS = ("fractaldb", "sigma")

#: Number of weight rows (coefficient variations) per category.
NUM_WEIGHT_ROWS = 25


def weight_multipliers(delta: float = 0.4) -> np.ndarray:
    """Return the ``(25, 6)`` multipliers of the weight rows for a step ``delta``.

    Row 00-04 scale ``a`` by ``1 - delta, ..., 1 + delta`` in five steps of
    ``delta / 2`` (row 02 is the identity); rows 05-08 scale ``b`` by the four
    non-identity factors, then ``c`` (09-12), ``d`` (13-16), ``e`` (17-20) and
    ``f`` (21-24). With the default ``delta = 0.4`` the factors are
    0.2, 0.6, (1.0), 1.4, 1.8 as in FractalDB.
    """
    half = delta / 2.0
    # Written as the official literals for the default, so that the products
    # below are bit-identical to the official renderer's.
    if delta == 0.4:
        factors = (0.2, 0.6, 1.0, 1.4, 1.8)
    else:
        factors = tuple(1.0 + k * half for k in (-2, -1, 0, 1, 2))
    rows = np.ones((NUM_WEIGHT_ROWS, 6), dtype=np.float64)
    for k, factor in enumerate(factors):
        rows[k, 0] = factor
    non_identity = (factors[0], factors[1], factors[3], factors[4])
    row = 5
    for coef in range(1, 6):
        for factor in non_identity:
            rows[row, coef] = factor
            row += 1
    return rows


def map_probabilities(coefficients: np.ndarray) -> np.ndarray:
    """Probabilities proportional to ``|a d - b c|``, normalised by an in-order sum.

    The sum is accumulated left to right from 0.0 (not numpy's pairwise sum), as the
    official code does, so the result is bit-identical to it.
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    dets = [abs(float(a) * float(d) - float(b) * float(c)) for a, b, c, d, _, _ in coefficients]
    total = 0.0
    for det in dets:
        total += det
    if not total > 0.0 or not math.isfinite(total):
        raise ValueError(
            "coefficients: every map has a zero determinant, so no probability can be assigned; use maps with a != 0 or d != 0"
        )
    return np.array([det / total for det in dets], dtype=np.float64)


def cumulative(probabilities: np.ndarray) -> np.ndarray:
    """Running sum from 0.0 in order: the table the chaos game searches a uniform in."""
    out = np.empty(len(probabilities), dtype=np.float64)
    acc = 0.0
    for i, p in enumerate(probabilities):
        acc += float(p)
        out[i] = acc
    return out


@dataclass(frozen=True)
class IFS:
    """An Iterated Function System: ``coefficients`` ``(n, 6)`` and ``probabilities`` ``(n,)``."""

    coefficients: np.ndarray
    probabilities: np.ndarray

    def __post_init__(self) -> None:
        coef = np.ascontiguousarray(self.coefficients, dtype=np.float64)
        prob = np.ascontiguousarray(self.probabilities, dtype=np.float64)
        if coef.ndim != 2 or coef.shape[1] != 6 or coef.shape[0] < 1:
            raise ValueError(
                f"coefficients: expected shape (n, 6) with n >= 1, got {coef.shape}; give one row (a, b, c, d, e, f) per map"
            )
        if prob.shape != (coef.shape[0],):
            raise ValueError(f"probabilities: expected {coef.shape[0]} values (one per map), got shape {prob.shape}")
        object.__setattr__(self, "coefficients", coef)
        object.__setattr__(self, "probabilities", prob)

    @classmethod
    def from_coefficients(cls, coefficients: np.ndarray) -> IFS:
        """Build a system whose probabilities follow the determinants (FractalDB's rule)."""
        coefficients = np.asarray(coefficients, dtype=np.float64)
        return cls(coefficients, map_probabilities(coefficients))

    @property
    def num_maps(self) -> int:
        """Number of affine maps."""
        return int(self.coefficients.shape[0])

    def to_rows(self) -> list[list[float]]:
        """Rows ``[a, b, c, d, e, f, p]`` as plain floats (for JSON manifests)."""
        return [[float(v) for v in coef] + [float(p)] for coef, p in zip(self.coefficients, self.probabilities)]

    @classmethod
    def from_rows(cls, rows: list[list[float]]) -> IFS:
        """Inverse of :meth:`to_rows`."""
        if not isinstance(rows, list):
            raise ValueError("maps: expected a list of rows")
        check("maps", len(rows), "maps")  # before numpy converts what may be a huge list
        arr = np.asarray(rows, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 7:
            raise ValueError(f"maps: expected rows of 7 numbers (a, b, c, d, e, f, p), got shape {arr.shape}")
        return cls(arr[:, :6], arr[:, 6])


def sample_fractaldb(rng: np.random.Generator | np.random.RandomState, min_maps: int = 2, max_maps: int = 7) -> IFS:
    """FractalDB's sampler: ``n`` in ``[min_maps, max_maps]``, coefficients uniform in [-1, 1].

    With a legacy ``RandomState`` the draws are exactly the official ones:
    ``randint(min, max + 1)``, then ``uniform(-1, 1, 6)`` per map.
    """
    if isinstance(rng, np.random.RandomState):
        n = int(rng.randint(min_maps, max_maps + 1))
    else:
        n = int(rng.integers(min_maps, max_maps + 1))
    coefficients = np.stack([rng.uniform(-1.0, 1.0, 6) for _ in range(n)])
    return IFS.from_coefficients(coefficients)


def _rotation(theta: float) -> np.ndarray:
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _singular_value_budgets(n: int, alpha: float, rng: np.random.Generator) -> list[float]:
    """Split ``alpha`` into ``n`` budgets ``sigma1 + 2 sigma2``, each in [0, 3]."""
    budgets = []
    remaining = alpha
    for k in range(n - 1):
        maps_left = n - k - 1
        lo = max(0.0, remaining - 3.0 * maps_left)
        hi = min(3.0, remaining)
        b = float(rng.uniform(lo, hi))
        budgets.append(b)
        remaining -= b
    budgets.append(min(3.0, max(0.0, remaining)))
    rng.shuffle(budgets)  # the last budget is constrained; spread that over the maps
    return budgets


def sample_sigma(
    rng: np.random.Generator, min_maps: int = 2, max_maps: int = 7, alpha_range: tuple[float, float] | None = None
) -> IFS:
    """Anderson & Farrell's sigma-factor sampler: contractive by construction.

    Each map's linear part is ``R(t1) S1 diag(s1, s2) R(t2) S2`` with rotations ``R``,
    random reflections ``S``, ``0 <= s2 <= s1 <= 1`` and ``sum(s1 + 2 s2) = alpha``,
    ``alpha`` uniform in ``((5 + n) / 2, (6 + n) / 2)`` (or in ``alpha_range``, as 1p-frac's
    ``[sigma - 0.1, sigma + 0.1]``). Translations are uniform in (-1, 1); probabilities follow ``|det|``.
    """
    n = int(rng.integers(min_maps, max_maps + 1))
    lo, hi = alpha_range if alpha_range is not None else ((5 + n) / 2.0, (6 + n) / 2.0)
    alpha = float(rng.uniform(lo, hi))
    rows = []
    for budget in _singular_value_budgets(n, alpha, rng):
        # s1 in [b/3, min(1, b)] keeps s2 = (b - s1) / 2 in [0, s1].
        s1 = float(rng.uniform(budget / 3.0, min(1.0, budget))) if budget > 0 else 0.0
        s2 = (budget - s1) / 2.0
        t1, t2 = rng.uniform(-math.pi, math.pi, 2)
        f1 = np.diag([1.0, float(rng.choice([-1.0, 1.0]))])
        f2 = np.diag([1.0, float(rng.choice([-1.0, 1.0]))])
        linear = _rotation(t1) @ f1 @ np.diag([s1, s2]) @ _rotation(t2) @ f2
        e, f = rng.uniform(-1.0, 1.0, 2)
        rows.append([linear[0, 0], linear[0, 1], linear[1, 0], linear[1, 1], e, f])
    coefficients = np.asarray(rows, dtype=np.float64)
    try:
        return IFS.from_coefficients(coefficients)
    except ValueError:
        # All determinants zero (vanishingly rare): fall back to uniform selection.
        return IFS(coefficients, np.full(n, 1.0 / n))
