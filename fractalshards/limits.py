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
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import numpy as np

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
    #: Ranks a loader state's levels add up to: resuming replays every rank of every level (a product
    #: the two bounds above allow up to 67 million times, 37 minutes of work).
    replay_ranks: int = 131_072
    #: Shards of a dataset or recipe: opening one plans them all (samples / shard_size, a quotient the
    #: bounds on samples and shard size allow up to 100 million).
    shards: int = 262_144
    #: Sources of one mixture (each is opened, and read by every worker).
    mixture_sources: int = 256
    #: Bytes of one JSON document read from storage.
    json_bytes: int = 512 * 2**20
    #: Bytes of one training checkpoint (read whole by ``torch.load``).
    checkpoint_bytes: int = 32 * 2**30
    #: Nesting of one JSON document.
    json_depth: int = 32
    #: Values (numbers, strings, lists, objects) of one JSON document: what its parsed form costs in
    #: memory (about 50 bytes each), which its size alone does not bound (``[[],[],...]``).
    json_elements: int = 20_000_000

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
    var = _CURRENT  # held here: a generator closed at interpreter exit runs this after the module's globals are gone
    token = var.set(limits)
    try:
        yield limits
    finally:
        try:  # builtins only: at interpreter exit this module's globals (contextlib too) may be gone
            var.reset(token)
        except ValueError:  # a generator closed from another context than it started in
            pass


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


def _unique(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"key {twice[:40]!r} appears twice in one object")
    return out


#: A JSON string, escapes included: brackets and commas inside one are not structure.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_CHUNK = 1 << 22


def _structure(raw: bytes) -> tuple[int, int]:
    """The deepest nesting and (an upper estimate of) the values of a JSON text, from its structural
    characters alone, in vectorised passes: the document is bounded before it is parsed, and a
    document nested 100,000 deep costs no recursion (the walk of the parsed tree this replaced took
    38.8 s on a 50 MB document that parsed in 1.4 s)."""
    if b"\\" in raw:  # escapes: a quote may be escaped, so strings are found by their grammar
        bare = _STRING.sub(b'""', raw)
        quoted = False
    else:  # no escapes (what fractalshards writes): a quote always opens or closes a string
        bare, quoted = raw, True
    deepest = level = values = inside = 0
    for at in range(0, len(bare), _CHUNK):
        chunk = np.frombuffer(bare, np.uint8, count=min(_CHUNK, len(bare) - at), offset=at)
        if quoted:  # outside strings: an even number of quotes so far (a closing quote counts as outside)
            parity = (np.cumsum(chunk == 0x22, dtype=np.int32) + inside) & 1
            inside = int(parity[-1])
            chunk = np.where(parity == 0, chunk, 0)
        opens = (chunk == 0x5B) | (chunk == 0x7B)
        step = opens.astype(np.int32) - ((chunk == 0x5D) | (chunk == 0x7D))
        depth = np.cumsum(step, dtype=np.int64) + level
        deepest, level = max(deepest, int(depth.max())), int(depth[-1])
        values += int(np.count_nonzero(opens)) + int(np.count_nonzero(chunk == 0x2C))
    return deepest, values + 1


def parse_json(text: str | bytes, source: str) -> object:
    """JSON read from storage, by one strict parser: its size, nesting and number of values bounded
    before it is parsed; no NaN or infinity, integers of at most 30 digits, no key twice in an object;
    anything else is a one-line :class:`ConfigError` naming ``source``."""
    limits = current()
    if len(text) > limits.json_bytes:
        raise LimitError(f"{source}: {len(text):,} bytes is above the limit of {limits.json_bytes:,} (json_bytes)")
    try:
        raw = text.encode() if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError as exc:
        raise ConfigError(f"{source}: not valid JSON (not UTF-8 text)") from exc
    depth, values = _structure(raw)
    if depth > limits.json_depth:
        raise ConfigError(f"{source}: nested {depth} deep, above the limit of {limits.json_depth} (json_depth)")
    if values > limits.json_elements:
        raise LimitError(f"{source}: {values:,} values is above the limit of {limits.json_elements:,} (json_elements)")
    try:
        return json.loads(raw, parse_constant=_constant, parse_int=_integer, parse_float=_finite, object_pairs_hook=_unique)
    except RecursionError as exc:
        raise ConfigError(f"{source}: nested too deeply to be a fractalshards document") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{source}: not valid JSON ({' '.join(str(exc).split())[:160]})") from exc
