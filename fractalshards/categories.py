"""Category manifests: the parameters of a searched category set, as JSON.

The schema is described once, in the docs (``docs/formats.md``).

``content_hash`` is the sha256 of the canonical JSON (sorted keys, no spaces) of
everything else, so a manifest can be checked and referred to by hash. Floats are
written with Python's shortest round-trip repr: loading gives the exact float64s.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from types import MappingProxyType
from typing import Any

from . import __version__
from .errors import ConfigError, LimitError, check_dataset_name
from .families import DEFAULT_FAMILY, Family, get_family
from .hashing import canonical_hash
from .limits import check, current, parse_json
from .results import SearchResult
from .storage import atomic_write

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CategoryManifest",
]

FORMAT = "fractalshards.categories"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


@dataclass(frozen=True)
class CategoryManifest:
    """A set of categories of one family with the settings and seed that produced them.

    ``categories`` holds the family's category objects (each with an ``index``); the family
    reads and writes them (:meth:`~fractalshards.families.Family.category_to_dict`).

    Frozen: ``categories`` is a tuple, ``search`` and ``generator`` are read-only mappings, and
    :meth:`with_names` (or :func:`dataclasses.replace`) makes a changed copy. What is derived from a
    manifest (its hash, a family's :class:`~fractalshards.families.Renderer`) never goes stale.
    """

    name: str
    mode: str
    seed: int
    search: Any
    categories: Any
    trials: int
    render_mode: str = "native"
    generator: Any = field(default_factory=lambda: {"name": "fractalshards", "version": __version__})
    family_name: str = DEFAULT_FAMILY

    def __post_init__(self) -> None:
        check_dataset_name(self.name, "name", "category manifest")
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "search", MappingProxyType(dict(self.search)))
        object.__setattr__(self, "generator", MappingProxyType(dict(self.generator)))

    def __getstate__(self) -> dict:
        # Read-only mappings do not pickle: plain dicts travel (Ray tasks take definitions), re-frozen on load.
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**state, "search": dict(self.search), "generator": dict(self.generator)}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    def with_names(self, *, name: str | None = None, render_mode: str | None = None) -> CategoryManifest:
        """A copy with another name and/or render mode (the categories' content and hash stay the same)."""
        return replace(self, name=self.name if name is None else name, render_mode=render_mode or self.render_mode)

    @classmethod
    def from_search(
        cls,
        name: str,
        mode: str,
        seed: int,
        settings: object,
        result: SearchResult,
        render_mode: str | None = None,
        family: str = DEFAULT_FAMILY,
    ) -> CategoryManifest:
        """Wrap the result of a family's search (``settings`` is its search-settings dataclass)."""
        return cls(
            name, mode, seed, settings.to_dict(), tuple(result.categories), result.trials, render_mode or mode, family_name=family
        )

    @property
    def family(self) -> Family:
        """The family of these categories."""
        return get_family(self.family_name)

    def __len__(self) -> int:
        return len(self.categories)

    def category(self, category: int):
        """Category ``category``; a clear error when out of range."""
        if not isinstance(category, int) or isinstance(category, bool) or not 0 <= category < len(self.categories):
            raise ConfigError(
                f"category: {category!r} is out of range for {self.name!r}; use an integer in 0..{len(self.categories) - 1}"
            )
        return self.categories[category]

    def body(self) -> dict:
        """The manifest as a JSON-able dict, without ``content_hash``."""
        family = self.family
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "generator": dict(self.generator),
            "mode": self.mode,
            "seed": self.seed,
            "search": dict(self.search),
            "render_mode": self.render_mode,
            "num_categories": len(self.categories),
            "trials": self.trials,
            "categories": [family.category_to_dict(c) for c in self.categories],
        }
        if self.family_name != DEFAULT_FAMILY:  # fractaldb manifests keep their bytes and hashes
            body["family"] = self.family_name
        return body

    @cached_property
    def content_hash(self) -> str:
        """``sha256:<hex>`` of the canonical body (computed once: the manifest is frozen)."""
        return canonical_hash(self.body())

    def to_json(self) -> str:
        """The manifest text: one category per line, so diffs stay readable."""
        body = self.body()
        cats = body.pop("categories")
        body["content_hash"] = canonical_hash({**body, "categories": cats})
        head = json.dumps(body, indent=2, sort_keys=True, allow_nan=False)
        lines = ",\n    ".join(json.dumps(c, sort_keys=True, allow_nan=False) for c in cats)
        # Splice the categories back in as the last key of the object.
        return head[:-2] + ',\n  "categories": [\n    ' + lines + "\n  ]\n}\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temporary file, then rename)."""
        atomic_write(path, self.to_json().encode())

    def subset(self, count: int, name: str | None = None) -> CategoryManifest:
        """The first ``count`` categories as a manifest of their own."""
        if not isinstance(count, int) or not 1 <= count <= len(self.categories):
            raise ConfigError(f"categories: {count!r} is out of range; use an integer in 1..{len(self.categories)}")
        cats = self.categories[:count]
        trials = self.family.subset_trials(self, cats)
        return CategoryManifest(
            name or f"{self.name}[:{count}]",
            self.mode,
            self.seed,
            dict(self.search),
            cats,
            trials,
            self.render_mode,
            dict(self.generator),
            self.family_name,
        )

    @classmethod
    def from_dict(cls, data: dict, source: str = "manifest") -> CategoryManifest:
        """Validate and load a parsed manifest; errors name the field and the fix.

        A dataset manifest (``manifest.json`` of a built dataset) is accepted too: its
        embedded categories are loaded.
        """
        if isinstance(data, dict) and data.get("format") == "fractalshards.dataset" and isinstance(data.get("categories"), dict):
            data = data["categories"]
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a category manifest (format must be {FORMAT!r})")
        version = data.get("format_version")
        if version not in SUPPORTED_VERSIONS:
            raise ConfigError(
                f"{source}: format_version {version!r} is not supported; this fractalshards reads {list(SUPPORTED_VERSIONS)}"
            )
        family = get_family(data.get("family", DEFAULT_FAMILY))
        if not isinstance(data.get("categories"), list):
            raise ConfigError(f"{source}: categories must be a list; regenerate it with 'fractalshards search'")
        check("categories", len(data["categories"]), "categories", source)
        try:
            cats = [family.category_from_dict(c) for c in data["categories"]]
            manifest = cls(
                name=str(data["name"]),
                mode=str(data["mode"]),
                seed=int(data["seed"]),
                search=dict(data["search"]),
                categories=cats,
                trials=int(data["trials"]),
                render_mode=str(data.get("render_mode", data["mode"])),
                generator=dict(data.get("generator", {})),
                family_name=family.name,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                f"{source}: malformed category manifest ({exc}); regenerate it with 'fractalshards search'"
            ) from exc
        if [c.index for c in cats] != list(range(len(cats))):
            raise ConfigError(f"{source}: category indices must be 0..n-1 in order")
        stated = data.get("content_hash")
        if stated is not None and stated != manifest.content_hash:
            raise ConfigError(f"{source}: content_hash does not match the content (edited or corrupt); regenerate it")
        family.check_manifest(manifest, source)
        return manifest

    @classmethod
    def load(cls, path: str | os.PathLike) -> CategoryManifest:
        """Read a manifest file."""
        limit = current().json_bytes
        try:
            with open(path, "rb") as fh:  # a file the user names: a link to it is followed, its size is bounded
                size = os.fstat(fh.fileno()).st_size
                if size > limit:
                    raise LimitError(
                        f"manifest: {str(path)!r} holds {size:,} bytes, above the limit of {limit:,} (json_bytes); "
                        "raise it with --allow-large if you mean it"
                    )
                text = fh.read(limit + 1)
        except OSError as exc:
            raise ConfigError(f"manifest: cannot read {str(path)!r} ({exc.strerror}); give an existing manifest file") from exc
        data = parse_json(text, f"manifest: {str(path)!r}")
        return cls.from_dict(data, source=f"manifest {str(path)!r}")
