"""The jit options of every numba kernel in fractalshards, in one place.

- No ``fastmath``: no multiply-add is fused and no operation reordered, so float64
  results equal numpy's (and the official generators') bit for bit; that equality is
  what makes the official categories and renders reproducible.
- ``error_model="numpy"``: a division by zero gives ``inf``/``nan`` as numpy does, with
  no per-division check raising ``ZeroDivisionError`` (the kernels never rely on one).
- ``nogil=True``: thread pools run kernels in parallel (search, preview, rendering).
- ``cache=True`` stores only the machine code: the arithmetic, and so the bytes, do not
  depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit

__all__ = ["JIT_OPTIONS", "kernel"]

#: The options every kernel is compiled with (see the module docstring).
JIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "error_model": "numpy"}


def kernel(fn: Callable | None = None, **extra: Any) -> Any:
    """``numba.njit`` with :data:`JIT_OPTIONS`; ``@kernel`` or ``@kernel(inline="always")``.

    ``extra`` may add options (``inline``) but not change the shared ones.
    """
    clash = sorted(set(extra) & set(JIT_OPTIONS))
    if clash:
        raise TypeError(f"kernel: {clash} are set once for every kernel in fractalshards.jit")
    decorate = njit(**JIT_OPTIONS, **extra)
    return decorate if fn is None else decorate(fn)
