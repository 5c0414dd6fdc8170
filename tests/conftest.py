"""Shared fixtures: test vectors and small checkable systems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fractalshards.ifs import IFS

VECTORS = Path(__file__).parent / "vectors"


def read_vectors(name: str) -> list[list[str]]:
    """Rows of a whitespace-separated test-vector file."""
    return [line.split() for line in (VECTORS / name).read_text().splitlines() if line.strip()]


@pytest.fixture
def sierpinski() -> IFS:
    """A contractive 3-map system with a known, well-filled attractor."""
    coef = np.array(
        [
            [0.5, 0.0, 0.0, 0.5, 0.0, 0.0],
            [0.5, 0.0, 0.0, 0.5, 0.5, 0.0],
            [0.5, 0.0, 0.0, 0.5, 0.25, 0.5],
        ]
    )
    return IFS.from_coefficients(coef)


@pytest.fixture
def divergent() -> IFS:
    """An expanding system: its orbit overflows to inf and then NaN."""
    coef = np.array(
        [
            [1.9, 0.8, -0.7, 1.7, 0.3, 0.1],
            [-1.8, 0.9, 0.9, 1.9, -0.2, 0.4],
        ]
    )
    return IFS.from_coefficients(coef)
