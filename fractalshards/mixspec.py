"""Mixture specs: ``mixture.json`` (format ``fractalshards.mixture``), a stream of several sources by weight.

A spec names every source by URL and pins it to its version (a dataset's or a recipe's 16 hex
digits); with the weights, the draws' seed, the epoch size, the label and batching modes and which
sources render fresh instances, it decides a :class:`fractalshards.mixture.MixedStream` completely.
Its own version is the hash of that body, so a spec is published, tagged and verified like a dataset
or a recipe. Everything here is validated as every stored file is (types, bounds, pinned versions);
the schema is in the docs (``docs/formats.md``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from . import __version__
from .errors import ConfigError, check_dataset_name, check_version, reads_stored_data
from .hashing import canonical_hash, version_id
from .limits import check, parse_json

__all__ = [
    "MIXTURE_FORMAT",
    "MIXTURE_NAME",
    "LABELS",
    "BATCHINGS",
    "MixtureSource",
    "MixtureSpec",
    "check_weights",
    "parse_weights",
]

MIXTURE_FORMAT = "fractalshards.mixture"
MIXTURE_VERSIONS = (1,)
MIXTURE_NAME = "mixture.json"
#: How labels of several sources combine: offset past each other, or kept as they are.
LABELS = ("disjoint", "shared")
#: How a mixture's batches are made: sources mixed within a batch, or one source per batch.
BATCHINGS = ("mixed", "per_source")
_SOURCE_KEYS = {"url", "version", "kind", "name", "weight", "fresh_instances"}
_BODY_KEYS = {"name", "seed", "epoch_size", "labels", "batching", "sources"}


def check_weights(weights: object, count: int, source: str = "weights") -> tuple[float, ...]:
    """Validated weights: ``count`` finite numbers >= 0 with a positive sum; one-line errors."""
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise ConfigError(f"{source}: give one weight per source, e.g. [3, 1]")
    if len(weights) != count:
        raise ConfigError(f"{source}: {len(weights)} weights for {count} sources; give one weight per source")
    out = []
    for k, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"{source}: weight {k} ({w!r}) is not valid; use a finite number >= 0")
        out.append(float(w))
    if sum(out) <= 0:
        raise ConfigError(f"{source}: the weights sum to 0; give at least one positive weight")
    return tuple(out)


def parse_weights(text: str, count: int) -> tuple[float, ...]:
    """``"3,1"`` -> ``(3.0, 1.0)``, checked as :func:`check_weights` does (the CLI's ``--weights``)."""
    values: list[object] = []
    for part in text.split(","):
        try:
            values.append(float(part))
        except ValueError:
            values.append(part.strip())
    return check_weights(values, count, "--weights")


@dataclass(frozen=True)
class MixtureSource:
    """One source of a spec: where it is, the version it is pinned to, its kind and weight."""

    url: str
    version: str
    kind: str
    name: str
    weight: float
    fresh_instances: bool = False

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return {
            "url": self.url,
            "version": self.version,
            "kind": self.kind,
            "name": self.name,
            "weight": self.weight,
            "fresh_instances": self.fresh_instances,
        }

    @classmethod
    def from_dict(cls, data: object, where: str) -> MixtureSource:
        """Validate one source entry (one-line errors naming the field)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a source must be an object with url, version, kind, name, weight")
        unknown = sorted(set(data) - _SOURCE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown fields {unknown}; this fractalshards writes {sorted(_SOURCE_KEYS)}")
        url = data.get("url")
        if not isinstance(url, str) or not url or len(url) > 4096 or any(c in url for c in "\n\r\0"):
            raise ConfigError(f"{where}: url {url!r} is not valid; use a dataset or recipe URL")
        if "version" not in data:
            raise ConfigError(f"{where}: {url} is not pinned (no version); write the spec with 'fractalshards mix'")
        version = check_version(data.get("version"), "version", where)
        kind = data.get("kind")
        if kind not in ("dataset", "recipe"):
            raise ConfigError(f"{where}: kind {kind!r} is not 'dataset' or 'recipe'")
        name = check_dataset_name(data.get("name"), "name", where)
        weight = data.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{where}: weight {weight!r} is not valid; use a finite number >= 0")
        fresh = data.get("fresh_instances", False)
        if not isinstance(fresh, bool):
            raise ConfigError(f"{where}: fresh_instances {fresh!r} is not valid; use true or false")
        return cls(url, version, kind, name, float(weight), fresh)


@dataclass(frozen=True)
class MixtureSpec:
    """A validated mixture spec (see the module doc)."""

    name: str
    sources: tuple[MixtureSource, ...]
    seed: int = 0
    epoch_size: int | None = None
    labels: str = "disjoint"
    batching: str = "mixed"

    def __post_init__(self) -> None:
        check_dataset_name(self.name, "name", "mixture")
        if not self.sources:
            raise ConfigError("sources: a mixture needs at least one source")
        check("sources", len(self.sources), "mixture_sources", "mixture")
        check_weights([s.weight for s in self.sources], len(self.sources))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed: {self.seed!r} is not valid; use a non-negative integer")
        if self.epoch_size is not None:
            if not isinstance(self.epoch_size, int) or isinstance(self.epoch_size, bool) or self.epoch_size < 1:
                raise ConfigError(f"epoch_size: {self.epoch_size!r} is not valid; use a positive integer or null")
            check("epoch_size", self.epoch_size, "samples", "mixture")
        if self.labels not in LABELS:
            raise ConfigError(f"labels: {self.labels!r} is not known; use one of {', '.join(LABELS)}")
        if self.batching not in BATCHINGS:
            raise ConfigError(f"batching: {self.batching!r} is not known; use one of {', '.join(BATCHINGS)}")

    def body(self) -> dict:
        """What the version hashes: every field that decides the stream."""
        return {
            "name": self.name,
            "seed": self.seed,
            "epoch_size": self.epoch_size,
            "labels": self.labels,
            "batching": self.batching,
            "sources": [s.to_dict() for s in self.sources],
        }

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of :meth:`body`."""
        return canonical_hash(self.body())

    @property
    def version(self) -> str:
        """16 hex digits of the fingerprint."""
        return version_id(self.fingerprint)

    def to_dict(self) -> dict:
        """The spec as JSON-able data."""
        return {
            "format": MIXTURE_FORMAT,
            "format_version": 1,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "generator": {"name": "fractalshards", "version": __version__},
            **self.body(),
        }

    def to_json(self) -> str:
        """Canonical text (sorted keys, indented)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    @reads_stored_data
    def from_json(cls, text: str | bytes, source: str = MIXTURE_NAME) -> MixtureSpec:
        """Parse (bounded, strict JSON) and validate."""
        return cls.from_dict(parse_json(text, source), source)

    @classmethod
    @reads_stored_data
    def from_dict(cls, data: object, source: str = MIXTURE_NAME) -> MixtureSpec:
        """Validate: the format, every field, and the version against the body's hash."""
        if not isinstance(data, dict) or data.get("format") != MIXTURE_FORMAT:
            raise ConfigError(f"{source}: not a fractalshards mixture spec (format must be {MIXTURE_FORMAT!r})")
        if data.get("format_version") not in MIXTURE_VERSIONS:
            raise ConfigError(
                f"{source}: format_version {data.get('format_version')!r} is not supported; "
                f"this fractalshards reads {list(MIXTURE_VERSIONS)}"
            )
        unknown = sorted(set(data) - _BODY_KEYS - {"format", "format_version", "version", "fingerprint", "generator"})
        if unknown:
            raise ConfigError(f"{source}: unknown fields {unknown}; the spec was not written by this fractalshards")
        raw = data.get("sources")
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{source}: sources must be a non-empty list")
        check("sources", len(raw), "mixture_sources", source)
        sources = tuple(MixtureSource.from_dict(s, f"{source}: sources[{k}]") for k, s in enumerate(raw))
        try:
            spec = cls(
                name=data.get("name"),  # type: ignore[arg-type]
                sources=sources,
                seed=data.get("seed", 0),  # type: ignore[arg-type]
                epoch_size=data.get("epoch_size"),
                labels=data.get("labels", "disjoint"),  # type: ignore[arg-type]
                batching=data.get("batching", "mixed"),  # type: ignore[arg-type]
            )
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        version = check_version(data.get("version"), "version", source)
        if spec.version != version or data.get("fingerprint") != spec.fingerprint:
            raise ConfigError(
                f"{source}: version {version} does not match its body (hash {spec.version}); "
                "the spec was edited, write it again with 'fractalshards mix'"
            )
        return spec
