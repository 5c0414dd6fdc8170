"""Worker counts and thread pools: how fractalshards spreads work over the cores of one machine.

The numba kernels release the GIL (:mod:`fractalshards.jit`), so threads run them in
parallel; :func:`thread_map` is the one pool with a progress bar that searches and
previews use, and :func:`available_cpus` the one portable count of usable cores
(``os.sched_getaffinity`` where the platform has it, e.g. Linux; ``os.cpu_count``
elsewhere, e.g. macOS).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .progress import bar as progress_bar

__all__ = ["available_cpus", "resolve_workers", "thread_map"]

T = TypeVar("T")


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None) -> int:
    """``workers`` if given (a positive integer), else :func:`available_cpus`."""
    return workers if workers else available_cpus()


def thread_map(
    fn: Callable[[Any], T],
    items: Iterable,
    *,
    workers: int | None = None,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    progress: bool = False,
) -> list[T]:
    """``[fn(x) for x in items]`` on ``workers`` threads (default: all usable cores), in order,
    with a progress bar when ``progress``; the first exception propagates."""
    items = list(items)
    out: list[T] = []
    with progress_bar(total=total if total is not None else len(items), desc=desc, unit=unit, enabled=progress) as bar:
        with ThreadPoolExecutor(max_workers=resolve_workers(workers)) as pool:
            for value in pool.map(fn, items):
                out.append(value)
                bar.update(1)
    return out
