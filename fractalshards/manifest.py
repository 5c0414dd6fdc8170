"""Category manifests: the parameters of a searched category set, as JSON.

Schema (``format_version`` 1, documented in the README)::

    {
      "format": "fractalshards.categories",
      "format_version": 1,
      "name": "fractaldb-1k",
      "family": "visualatom",                  # absent: "fractaldb" (manifests before families)
      "generator": {"name": "fractalshards", "version": "0.1.0"},
      "mode": "official" | "native",
      "seed": 1,
      "search": {sampler, min_maps, max_maps, canvas, pad, points, fill_threshold, ...},
      "render_mode": "official" | "native",     # default render mode of this set
      "num_categories": 1000,
      "trials": 42655,
      "categories": [{"index": 0, ...}, ...],   # as the family writes them; fractaldb:
                                                # {"index", "trial", "fill", "maps": [[a, b, c, d, e, f, p], ...]}
      "content_hash": "sha256:<hex>"
    }

``content_hash`` is the sha256 of the canonical JSON (sorted keys, no spaces) of
everything else, so a manifest can be checked and referred to by hash. Floats are
written with Python's shortest round-trip repr: loading gives the exact float64s.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .errors import ConfigError
from .families import DEFAULT_FAMILY, Family, get_family
from .ifs import IFS
from .search import SearchResult

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CategoryManifest",
    "canonical_hash",
    "official_csv",
    "write_official_csv",
    "atomic_write_bytes",
]

FORMAT = "fractalshards.categories"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


def canonical_hash(obj: object) -> str:
    """``sha256:<hex>`` of ``obj`` as canonical JSON (sorted keys, compact separators)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp makes 0600 files; give the usual permissions under the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class CategoryManifest:
    """A set of categories of one family with the settings and seed that produced them.

    ``categories`` holds the family's category objects (for ``fractaldb``,
    :class:`~fractalshards.search.Category`); the family reads and writes them.
    """

    name: str
    mode: str
    seed: int
    search: dict
    categories: list
    trials: int
    render_mode: str = "native"
    generator: dict = field(default_factory=lambda: {"name": "fractalshards", "version": __version__})
    family_name: str = DEFAULT_FAMILY

    @classmethod
    def from_search(cls, name: str, mode: str, seed: int, settings: object, result: SearchResult,
                    render_mode: str | None = None, family: str = DEFAULT_FAMILY) -> "CategoryManifest":
        """Wrap the result of a family's search (``settings`` is its search-settings dataclass)."""
        return cls(name, mode, seed, settings.to_dict(), list(result.categories), result.trials, render_mode or mode,
                   family_name=family)

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

    def system(self, category: int) -> IFS:
        """The IFS of category ``category`` (IFS families only)."""
        system = getattr(self.category(category), "system", None)
        if system is None:
            raise ConfigError(f"category: the {self.family_name} family has no IFS; {self.name!r} has no system to give")
        return system

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

    @property
    def content_hash(self) -> str:
        """``sha256:<hex>`` of the canonical body."""
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
        atomic_write_bytes(path, self.to_json().encode())

    def subset(self, count: int, name: str | None = None) -> "CategoryManifest":
        """The first ``count`` categories as a manifest of their own."""
        if not isinstance(count, int) or not 1 <= count <= len(self.categories):
            raise ConfigError(f"categories: {count!r} is out of range; use an integer in 1..{len(self.categories)}")
        cats = self.categories[:count]
        trials = self.family.subset_trials(self, cats)
        return CategoryManifest(name or f"{self.name}[:{count}]", self.mode, self.seed, dict(self.search), cats, trials,
                                self.render_mode, dict(self.generator), self.family_name)

    @classmethod
    def from_dict(cls, data: dict, source: str = "manifest") -> "CategoryManifest":
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
            raise ConfigError(f"{source}: malformed category manifest ({exc}); regenerate it with 'fractalshards search'") from exc
        if [c.index for c in cats] != list(range(len(cats))):
            raise ConfigError(f"{source}: category indices must be 0..n-1 in order")
        stated = data.get("content_hash")
        if stated is not None and stated != manifest.content_hash:
            raise ConfigError(f"{source}: content_hash does not match the content (edited or corrupt); regenerate it")
        family.check_manifest(manifest, source)
        return manifest

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CategoryManifest":
        """Read a manifest file."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"manifest: cannot read {str(path)!r} ({exc.strerror}); give an existing manifest file") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"manifest: {str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
        return cls.from_dict(data, source=f"manifest {str(path)!r}")


def official_csv(system: IFS) -> str:
    """A category in the official CSV format: rows ``a,b,c,d,e,f,p`` as ``%.18e``."""
    return "".join(",".join("%.18e" % v for v in row) + "\n" for row in system.to_rows())


def write_official_csv(manifest: CategoryManifest, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``out_dir/00000.csv ...`` as in the official release; all files or none.

    The files are written into a temporary folder beside ``out_dir`` and moved in
    at the end, so an interrupted run leaves nothing half-written.
    """
    systems = [manifest.system(c.index) for c in manifest.categories]  # IFS families only: errors before any write
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    written = []
    try:
        for cat, system in zip(manifest.categories, systems):
            (tmp / f"{cat.index:05d}.csv").write_text(official_csv(system))
        for cat in manifest.categories:
            name = f"{cat.index:05d}.csv"
            os.replace(tmp / name, out / name)
            written.append(out / name)
    finally:
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    return written
