"""Upper bounds on what a definition, recipe, category manifest, loader state or JSON document may ask for.

Everything read from storage is untrusted: a 5 KB recipe can ask for 20,000-pixel images or 10^12
points, a loader state for a world of 10^9 ranks. Each such request is checked against
:class:`Limits` before anything is allocated or created, and going past a bound is a one-line
:class:`~fractalshards.errors.ConfigError` naming the field, the bound and how to raise it. The
defaults are far above every published dataset (FractalDB-21k, VisualAtom-21k, ExFractalDB-21k).

A user who means it raises them explicitly: ``limits=Limits(image_size=8192)`` where the API takes
it, :func:`raised` for a block of code, or ``--allow-large`` on the command line (:meth:`Limits.large`).
JSON read from storage goes through :func:`parse_json`: bounded size and nesting, no NaN or
infinities, no integer of more than 30 digits.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from .errors import ConfigError, LimitError

__all__ = ["Limits", "DEFAULT_LIMITS", "current", "raised", "accepts_limits", "check", "parse_json"]


@dataclass(frozen=True)
class Limits:
    """The bounds (each a maximum; see the module docstring and ``docs/trust.md``)."""

    #: Pixels per image side.
    image_size: int = 4096
    #: Chaos-game points of one render or quality check.
    points: int = 10_000_000
    #: Instances per category.
    instances: int = 100_000
    #: Categories of a set.
    categories: int = 1_000_000
    #: Samples of a dataset (its sample order holds 8 bytes per sample).
    samples: int = 100_000_000
    #: Samples per shard.
    shard_size: int = 100_000
    #: Maps of one IFS.
    maps: int = 64
    #: Vertices of one contour.
    vertices: int = 20_000
    #: Lines (orbits) of one contour category.
    lines: int = 5_000
    #: Ranks of a training world in a loader state.
    world_size: int = 65_536
    #: Resumed worlds (levels) in a loader state's history.
    levels: int = 1_024
    #: Bytes of one JSON document read from storage.
    json_bytes: int = 512 * 2**20
    #: Nesting of one JSON document.
    json_depth: int = 32

    @classmethod
    def large(cls) -> Limits:
        """No practical bound on sizes and counts (``--allow-large``); JSON nesting stays bounded."""
        big = 2**62
        return cls(**{f.name: big for f in fields(cls) if f.name != "json_depth"})

    def with_(self, **bounds: int) -> Limits:
        """These limits with some bounds changed."""
        return replace(self, **bounds)


DEFAULT_LIMITS = Limits()
_CURRENT: contextvars.ContextVar[Limits] = contextvars.ContextVar("fractalshards_limits", default=DEFAULT_LIMITS)


def current() -> Limits:
    """The limits in force here (the defaults unless :func:`raised` says otherwise)."""
    return _CURRENT.get()


@contextlib.contextmanager
def raised(limits: Limits | None) -> Iterator[Limits]:
    """Use ``limits`` within the block (``None``: keep the ones in force)."""
    if limits is None:
        yield current()
        return
    if not isinstance(limits, Limits):
        raise ConfigError(f"limits: {type(limits).__name__} is not a fractalshards.limits.Limits")
    token = _CURRENT.set(limits)
    try:
        yield limits
    finally:
        _CURRENT.reset(token)


F = TypeVar("F", bound=Callable[..., Any])


def accepts_limits(fn: F) -> F:
    """Give ``fn`` a keyword argument ``limits`` (a :class:`Limits`, default: the ones in force) that is in
    force while it runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, limits: Limits | None = None, **kwargs: Any) -> Any:
        with raised(limits):
            return fn(*args, **kwargs)

    wrapper.__doc__ = (fn.__doc__ or "") + "\n\n    ``limits``: bounds on what it reads (:class:`fractalshards.limits.Limits`).\n"
    return wrapper  # type: ignore[return-value]


def check(field: str, value: int, bound: str, source: str = "") -> None:
    """A one-line error when ``value`` is above the bound called ``bound`` of the limits in force."""
    limit = getattr(current(), bound)
    if value > limit:
        where = f"{source}: " if source else ""
        raise LimitError(
            f"{where}{field} {value:,} is above the limit of {limit:,} ({bound}); if you mean it, raise it with "
            f"limits=Limits({bound}=...) or --allow-large"
        )


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON may hold here")


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > 30:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} overflows a float")
    return value


def parse_json(text: str | bytes, source: str) -> object:
    """JSON read from storage, bounded: size, nesting, no NaN or infinity, integers of at most 30 digits;
    anything else is a one-line :class:`ConfigError` naming ``source``."""
    limits = current()
    if len(text) > limits.json_bytes:
        raise LimitError(f"{source}: {len(text):,} bytes is above the limit of {limits.json_bytes:,} (json_bytes)")
    try:
        data = json.loads(text, parse_constant=_constant, parse_int=_integer, parse_float=_finite)
    except RecursionError as exc:
        raise ConfigError(f"{source}: nested too deeply to be a fractalshards document") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{source}: not valid JSON ({' '.join(str(exc).split())[:160]})") from exc
    depth = _depth(data, limits.json_depth)
    if depth > limits.json_depth:
        raise ConfigError(f"{source}: nested {depth} deep, above the limit of {limits.json_depth} (json_depth)")
    return data


def _depth(value: object, bound: int) -> int:
    # Iterative: a hostile document must not exhaust the stack here either.
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if deepest > bound:
                return deepest
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
