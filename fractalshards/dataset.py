"""The dataset manifest, ``manifest.json`` beside the shards: written last, so a
folder without it is not a dataset.

The schema is described once, in the docs (``docs/formats.md``).

Everything read back is validated (:meth:`DatasetManifest.from_dict`) before any shard
byte is fetched or written: a manifest is untrusted input. ``build --like URL`` rebuilds
a dataset from its manifest alone.
"""

from __future__ import annotations

import json
import posixpath
import re
import warnings
from dataclasses import dataclass, field

from . import __version__, png
from .catalog import resolve_pinned
from .definition import DatasetDefinition
from .errors import (
    DEFAULT_LICENSE,
    ConfigError,
    StoredDataError,
    check_dataset_name,
    check_file_name,
    check_license,
    check_version,
    reads_stored_data,
)
from .hashing import canonical_hash, version_id
from .limits import accepts_limits, parse_json
from .mixspec import MIXTURE_FORMAT, MIXTURE_NAME, MixtureSpec
from .recipe import RECIPE_NAME, Recipe, definition_from_data, definition_id
from .storage import Store, open_store, redact

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "WIDS_INDEX_NAME",
    "ManifestShard",
    "DatasetManifest",
    "open_manifest",
    "load_dataset",
    "check_file_name",
    "open_definition",
    "open_document",
]

FORMAT = "fractalshards.dataset"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MANIFEST_NAME = "manifest.json"
#: webdataset's random-access reader's shard index, beside the manifest: ``wids.ShardListDataset(URL/wids-index.json)``.
WIDS_INDEX_NAME = "wids-index.json"


def _int(data: dict, key: str, field: str, source: str, minimum: int = 0) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{source}: {field} {value!r} is not valid; it must be an integer >= {minimum}")
    return value


@dataclass(frozen=True)
class ManifestShard:
    """One shard as a dataset manifest lists it."""

    name: str
    samples: int
    bytes: int
    sha256: str
    diverged: int = 0

    @classmethod
    def from_dict(cls, data: object, field: str = "shard", source: str = MANIFEST_NAME) -> ManifestShard:
        """Validate every field (the data comes from storage)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: {field} must be an object with name, samples, bytes, sha256")
        name = check_file_name(data.get("name"), f"{field}.name", source)
        sha = data.get("sha256")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise ConfigError(f"{source}: {field}.sha256 {sha!r} is not 64 lowercase hex digits")
        samples = _int(data, "samples", f"{field}.samples", source)
        diverged = _int(data, "diverged", f"{field}.diverged", source) if "diverged" in data else 0
        if diverged > samples:
            raise ConfigError(f"{source}: {field}.diverged {diverged} is more than its {samples} samples")
        return cls(name, samples, _int(data, "bytes", f"{field}.bytes", source), sha, diverged)

    def to_dict(self) -> dict:
        """JSON-able fields."""
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256, "diverged": self.diverged}


@dataclass(frozen=True)
class DatasetManifest:
    """A built dataset: its definition, its category parameters and its shards (validated)."""

    name: str
    version: str
    fingerprint: str
    generator: dict
    definition_data: dict
    categories_data: dict
    shards: tuple[ManifestShard, ...]
    totals: dict
    #: SPDX id of the dataset's license (metadata: not part of the fingerprint).
    license: str = DEFAULT_LICENSE
    #: The definition object, built once (validating it parses every category).
    _definition: DatasetDefinition | None = field(default=None, compare=False, repr=False)

    @classmethod
    def create(cls, definition: DatasetDefinition, shards: list[dict], license: str = DEFAULT_LICENSE) -> DatasetManifest:
        """Assemble the manifest of a finished build (deterministic: no clock, no host)."""
        defn = definition.to_dict()
        fingerprint = canonical_hash({"definition": defn, "shards": [s["sha256"] for s in shards]})
        categories = definition.categories.body()
        categories["content_hash"] = definition.categories.content_hash
        entries = tuple(ManifestShard.from_dict(s, f"shards[{i}]", "build") for i, s in enumerate(shards))
        return cls(
            name=definition.name,
            version=version_id(fingerprint),
            fingerprint=fingerprint,
            generator={"name": "fractalshards", "version": __version__, "png_libraries": png.library_versions()},
            definition_data=defn,
            categories_data=categories,
            shards=entries,
            totals={
                "shards": len(entries),
                "samples": sum(s.samples for s in entries),
                "bytes": sum(s.bytes for s in entries),
                "categories": definition.num_categories,
                "instances_per_category": definition.instances,
                "diverged": sum(s.diverged for s in entries),
            },
            license=check_license(license),
            _definition=definition,
        )

    # -- reading -------------------------------------------------------------------------
    @classmethod
    @reads_stored_data
    def from_json(cls, text: str | bytes, source: str = MANIFEST_NAME) -> DatasetManifest:
        """Parse and validate."""
        return cls.from_dict(parse_json(text, source), source)

    @classmethod
    @reads_stored_data
    def from_dict(cls, data: object, source: str = MANIFEST_NAME) -> DatasetManifest:
        """Validate every field read from storage; a violation is a one-line :class:`ConfigError` naming it.

        Shard names must be plain file names, the version 16 hex digits of a fingerprint
        that matches the definition and the shard hashes, counts and sizes non-negative
        integers adding up to the totals, and the categories a valid category manifest.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a fractalshards dataset manifest (format must be {FORMAT!r})")
        if data.get("format_version") not in SUPPORTED_VERSIONS:
            raise ConfigError(
                f"{source}: format_version {data.get('format_version')!r} is not supported; "
                f"this fractalshards reads {list(SUPPORTED_VERSIONS)}"
            )
        for key in ("name", "version", "fingerprint", "definition", "categories", "shards", "totals"):
            if key not in data:
                raise ConfigError(f"{source}: field {key!r} is missing; the manifest is damaged, rebuild or re-publish it")
        name = check_dataset_name(data["name"], "name", source)
        version = check_version(data["version"], "version", source)
        fingerprint = data["fingerprint"]
        if not isinstance(fingerprint, str) or not fingerprint.startswith("sha256:") or not _SHA256.match(fingerprint[7:]):
            raise ConfigError(f"{source}: fingerprint {fingerprint!r} is not 'sha256:' and 64 hex digits")
        if version_id(fingerprint) != version:
            raise ConfigError(f"{source}: version {version} is not the start of the fingerprint; the manifest was edited")
        raw_shards = data["shards"]
        if not isinstance(raw_shards, list) or not raw_shards:
            raise ConfigError(f"{source}: shards must be a non-empty list")
        shards = tuple(ManifestShard.from_dict(s, f"shards[{i}]", source) for i, s in enumerate(raw_shards))
        if len({s.name for s in shards}) != len(shards):
            raise ConfigError(f"{source}: shards lists a name twice")
        definition = data["definition"]
        if not isinstance(definition, dict):
            raise ConfigError(f"{source}: definition must be an object")
        if canonical_hash({"definition": definition, "shards": [s.sha256 for s in shards]}) != fingerprint:
            raise ConfigError(
                f"{source}: fingerprint does not match the definition and shard hashes; "
                "the manifest was edited or is damaged, rebuild or re-publish it"
            )
        if not isinstance(data["categories"], dict):
            raise ConfigError(f"{source}: categories must be a category manifest object")
        generator = data.get("generator", {})
        license = check_license(data.get("license", DEFAULT_LICENSE), "license", source)
        manifest = cls(
            name,
            version,
            fingerprint,
            generator if isinstance(generator, dict) else {},
            definition,
            data["categories"],
            shards,
            data["totals"] if isinstance(data["totals"], dict) else {},
            license,
        )
        defn = manifest.definition(source)  # validates the render settings, counts and the categories
        if definition.get("categories", {}).get("content_hash") != defn.categories.content_hash:
            raise ConfigError(f"{source}: definition.categories.content_hash does not match the embedded categories")
        totals = manifest.totals
        expected = {
            "shards": len(shards),
            "samples": sum(s.samples for s in shards),
            "bytes": sum(s.bytes for s in shards),
            "categories": defn.num_categories,
            "instances_per_category": defn.instances,
            "diverged": sum(s.diverged for s in shards),
        }
        for key, value in expected.items():
            if totals.get(key) != value:
                raise ConfigError(f"{source}: totals.{key} is {totals.get(key)!r} but the shards and definition give {value}")
        if [(s.name, s.samples) for s in shards] != defn.shard_sizes():
            raise ConfigError(
                f"{source}: the shards listed are not the definition's plan ({defn.num_shards} shards of "
                f"{defn.shard_size} samples named as {defn.shard_spec(0).name}); the manifest was edited or crafted"
            )
        if expected["samples"] != defn.num_samples:
            raise ConfigError(
                f"{source}: the shards hold {expected['samples']} samples but the definition has {defn.num_samples}"
            )
        return manifest

    @property
    def data(self) -> dict:
        """The manifest as JSON-able data."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "generator": self.generator,
            "license": self.license,
            "definition": self.definition_data,
            "categories": self.categories_data,
            "shards": [s.to_dict() for s in self.shards],
            "totals": self.totals,
        }

    def wids_index(self) -> bytes:
        """The dataset as a wids shard index (``__kind__: wids-shard-index-v1``): every shard's name
        (relative: wids resolves it against the index's own URL), sample count, size and sha256."""
        index = {
            "__kind__": "wids-shard-index-v1",
            "wids_version": 1,
            "name": self.name,
            "shardlist": [{"url": s.name, "nsamples": s.samples, "filesize": s.bytes, "sha256": s.sha256} for s in self.shards],
        }
        return (json.dumps(index, indent=1, sort_keys=True) + "\n").encode()

    def to_json(self) -> str:
        """Canonical text (sorted keys, indented)."""
        return json.dumps(self.data, indent=1, sort_keys=True) + "\n"

    def definition(self, source: str | None = None) -> DatasetDefinition:
        """The definition (for verify, rebuilds and ``build --like``), rebuilt and validated once;
        ``source`` names the file in errors."""
        if self._definition is None:
            built = definition_from_data(self.definition_data, self.categories_data, self.name, source or MANIFEST_NAME)
            object.__setattr__(self, "_definition", built)  # frozen: a cache, not state
        return self._definition

    @property
    def definition_id(self) -> str:
        """16 hex digits of the definition's hash: the version of the recipe it was built from."""
        return definition_id(self.definition_data)


@accepts_limits
def open_manifest(url: str, storage_options: dict | None = None) -> tuple[DatasetManifest, Store]:
    """The manifest of a built dataset (folder, URL, published ``PREFIX@ref`` or its ``manifest.json``),
    read and validated, and the :class:`~fractalshards.storage.Store` its shards are in; a recipe is
    refused with a one-line error. (Samples come from :class:`fractalshards.stream.FractalStream`.)"""
    kind, document, store = open_definition(url, storage_options)
    if kind != "dataset":
        raise ConfigError(
            f"url: {url!r} is a recipe, not a built dataset; build it with "
            f"'fractalshards build --like {url} --out ...' or stream it with FractalStream"
        )
    return document, store


_WARNED: set[str] = set()


def load_dataset(url: str, storage_options: dict | None = None) -> tuple[DatasetManifest, Store]:
    """Deprecated name of :func:`open_manifest` (it shares Hugging Face's name but returns a manifest and
    a store, not samples); it warns once a process."""
    if "load_dataset" not in _WARNED:
        _WARNED.add("load_dataset")
        warnings.warn(
            "fractalshards.load_dataset is renamed open_manifest (it returns the manifest and the store, not "
            "samples; FractalStream gives samples); the old name will go",
            FutureWarning,
            stacklevel=2,
        )
    return open_manifest(url, storage_options)


def _read_optional(store: Store, name: str, url: str) -> bytes | None:
    try:
        return store.read_document(name)
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - backends raise many types
        if not store.is_local:  # say which: an unreachable endpoint, a missing bucket or refused credentials
            store.check_reachable()
        raise ConfigError(
            f"url: cannot read {url!r} ({redact(str(exc), store.storage_options).splitlines()[0]}); check the URL and credentials"
        ) from exc


@reads_stored_data
def _parse_json(text: bytes, url: str) -> object:
    return parse_json(text, url)


@accepts_limits
def open_definition(url: str, storage_options: dict | None = None) -> tuple[str, DatasetManifest | Recipe, Store]:
    """What ``url`` holds: ``("dataset", DatasetManifest, store)`` or ``("recipe", Recipe, store)``.

    ``url`` is a dataset folder or URL, a published ``PREFIX@ref`` (a dataset or a recipe
    version), or the URL of a JSON file: a recipe, or a dataset's ``manifest.json`` (whose
    shards are beside it). Everything read is validated. A mixture spec is refused in one line
    (it names several definitions: :func:`open_document`).
    """
    kind, document, store = open_document(url, storage_options)
    if kind == "mixture":
        raise ConfigError(
            f"url: {url!r} is a mixture spec, not a dataset or recipe; stream it with MixedStream.from_spec "
            "or give one of its sources"
        )
    return kind, document, store  # type: ignore[return-value]


@accepts_limits
def open_document(url: str, storage_options: dict | None = None) -> tuple[str, DatasetManifest | Recipe | MixtureSpec, Store]:
    """What ``url`` holds, as :func:`open_definition` reads it, or ``("mixture", MixtureSpec, store)``
    for a mixture spec (a ``mixture.json`` file, a folder holding one, or a published ``PREFIX@ref``)."""
    asked = url
    url, pinned = resolve_pinned(url, storage_options)
    kind, document, store = _open_resolved(url, storage_options)
    if pinned is not None and document.version != pinned:
        raise StoredDataError(
            f"url: {asked!r} pins version {pinned} but {url} holds version {document.version}; "
            "the publication was altered, do not use it"
        )
    return kind, document, store


def _open_resolved(url: str, storage_options: dict | None) -> tuple[str, DatasetManifest | Recipe | MixtureSpec, Store]:
    if url.rstrip("/").endswith(".json"):
        folder, name = posixpath.split(url.rstrip("/"))
        store = open_store(folder or ".", storage_options)
        text = _read_optional(store, name, url)
        if text is None:
            if not store.is_local:
                store.check_reachable()  # a missing bucket is not a missing file
            raise ConfigError(f"url: {url!r} does not exist; check the path")
        data = _parse_json(text, url)
        if isinstance(data, dict) and data.get("format") == FORMAT:
            return "dataset", DatasetManifest.from_dict(data, url), store
        if isinstance(data, dict) and data.get("format") == MIXTURE_FORMAT:
            return "mixture", MixtureSpec.from_dict(data, url), store
        return "recipe", Recipe.from_dict(data, url), store
    store = open_store(url, storage_options)
    text = _read_optional(store, MANIFEST_NAME, url)
    if text is not None:
        return "dataset", DatasetManifest.from_json(text, source=f"{url}/{MANIFEST_NAME}"), store
    text = _read_optional(store, RECIPE_NAME, url)
    if text is not None:
        return "recipe", Recipe.from_json(text, source=f"{url}/{RECIPE_NAME}"), store
    text = _read_optional(store, MIXTURE_NAME, url)
    if text is not None:
        return "mixture", MixtureSpec.from_json(text, source=f"{url}/{MIXTURE_NAME}"), store
    if not store.is_local:
        store.check_reachable()  # a missing bucket is not an empty prefix
    raise ConfigError(f"url: {url!r} has neither {MANIFEST_NAME} nor {RECIPE_NAME}; it is not a (finished) dataset or recipe")
