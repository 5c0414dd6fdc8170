"""The dataset manifest, ``manifest.json`` beside the shards: written last, so a
folder without it is not a dataset.

Schema (``format_version`` 1; see the README)::

    {
      "format": "fractalshards.dataset", "format_version": 1,
      "name": "fractaldb-100",
      "version": "<16 hex>",                 # id: hash of the definition and the shard hashes
      "fingerprint": "sha256:<hex>",         # the full hash behind "version"
      "generator": {"name": "fractalshards", "version": "0.1.0"},
      "definition": {...},                   # plan.DatasetDefinition.to_dict(): render settings, K, seed, ...
      "categories": {...},                   # the category manifest, embedded (with its content_hash)
      "shards": [{"name", "samples", "bytes", "sha256", "diverged"}, ...],
      "totals": {"shards", "samples", "bytes", "categories", "instances_per_category", "diverged"},
      "reproduce": "fractalshards build ..."
    }
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import __version__
from .errors import ConfigError
from .manifest import CategoryManifest, canonical_hash
from .plan import DatasetDefinition
from .render import RenderSettings
from .storage import Store, open_store

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST_NAME", "DatasetManifest", "load_dataset"]

FORMAT = "fractalshards.dataset"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"


@dataclass
class DatasetManifest:
    """A built dataset: its definition, its category parameters and its shards."""

    data: dict

    @classmethod
    def create(cls, definition: DatasetDefinition, shards: list[dict]) -> "DatasetManifest":
        """Assemble the manifest of a finished build (deterministic: no clock, no host)."""
        defn = definition.to_dict()
        fingerprint = canonical_hash({"definition": defn, "shards": [s["sha256"] for s in shards]})
        categories = definition.categories.body()
        categories["content_hash"] = definition.categories.content_hash
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": definition.name,
            "version": fingerprint.split(":", 1)[1][:16],
            "fingerprint": fingerprint,
            "generator": {"name": "fractalshards", "version": __version__},
            "definition": defn,
            "categories": categories,
            "shards": shards,
            "totals": {
                "shards": len(shards),
                "samples": sum(s["samples"] for s in shards),
                "bytes": sum(s["bytes"] for s in shards),
                "categories": definition.num_categories,
                "instances_per_category": definition.instances,
                "diverged": sum(s.get("diverged", 0) for s in shards),
            },
            "reproduce": reproduce_command(definition),
        }
        return cls(body)

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str, source: str = "manifest.json") -> "DatasetManifest":
        """Parse and validate."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a fractalshards dataset manifest (format must be {FORMAT!r})")
        if data.get("format_version") not in SUPPORTED_VERSIONS:
            raise ConfigError(
                f"{source}: format_version {data.get('format_version')!r} is not supported; this fractalshards reads {list(SUPPORTED_VERSIONS)}"
            )
        for key in ("name", "version", "definition", "categories", "shards", "totals"):
            if key not in data:
                raise ConfigError(f"{source}: field {key!r} is missing; the manifest is damaged, rebuild or re-publish it")
        return cls(data)

    def to_json(self) -> str:
        """Canonical text (sorted keys, indented)."""
        return json.dumps(self.data, indent=1, sort_keys=True) + "\n"

    @property
    def name(self) -> str:
        """Dataset name."""
        return self.data["name"]

    @property
    def version(self) -> str:
        """Version id (16 hex digits of the fingerprint)."""
        return self.data["version"]

    @property
    def shards(self) -> list[dict]:
        """Shard entries in order."""
        return self.data["shards"]

    @property
    def totals(self) -> dict:
        """Totals: shards, samples, bytes, categories, instances per category, diverged."""
        return self.data["totals"]

    @property
    def render_settings(self) -> RenderSettings:
        """The render settings of every sample."""
        return RenderSettings.from_dict(self.data["definition"]["render"])

    def category_manifest(self) -> CategoryManifest:
        """The embedded category parameters."""
        return CategoryManifest.from_dict(self.data["categories"], source=f"dataset {self.name!r} categories")

    def definition(self) -> DatasetDefinition:
        """Rebuild the definition (for verify and rebuilds)."""
        d = self.data["definition"]
        return DatasetDefinition(
            categories=self.category_manifest(),
            instances=int(d["instances_per_category"]),
            render=self.render_settings,
            shard_size=int(d["shard_size"]),
            name=self.name,
            png_compress_level=int(d["png"]["compress_level"]),
        )


def reproduce_command(definition: DatasetDefinition) -> str:
    """The command that rebuilds this dataset byte for byte (categories from the embedded manifest)."""
    r = definition.render
    return (
        f"fractalshards build --manifest <categories of this manifest, content_hash {definition.categories.content_hash}> "
        f"--instances {definition.instances} --shard-size {definition.shard_size} --seed {r.seed} --mode {r.mode} "
        f"--draw {r.draw} --color {r.color} --size {r.size} --points {r.points} --name {definition.name} --out URL"
    )


def load_dataset(url: str, storage_options: dict | None = None) -> tuple[DatasetManifest, Store]:
    """Open a dataset folder or URL and read its manifest.

    ``PREFIX@tag``, ``PREFIX@latest`` and ``PREFIX@<version>`` resolve through the
    publication index at ``PREFIX`` (see :mod:`fractalshards.publish`).
    """
    from .publish import resolve

    url = resolve(url, storage_options)
    store = open_store(url, storage_options)
    try:
        text = store.read_bytes(MANIFEST_NAME).decode()
    except FileNotFoundError:
        raise ConfigError(f"url: {url!r} has no {MANIFEST_NAME}; it is not a (finished) fractalshards dataset") from None
    except Exception as exc:
        from .storage import redact

        raise ConfigError(f"url: cannot read {url!r} ({redact(str(exc), store.storage_options).splitlines()[0]}); check the URL and credentials") from None
    return DatasetManifest.from_json(text, source=f"{url}/{MANIFEST_NAME}"), store
