"""Recipes: a dataset definition with nothing rendered.

A recipe (``recipe.json``, format ``fractalshards.recipe``) is everything ``build``
needs: the category parameters, K instances per category, the render settings, the
seed and the shard plan. Its version is the first 16 hex digits of the hash of its
definition, so the same definition always has the same id. A built dataset's
``manifest.json`` serves as a recipe too (its definition is the same dictionary).

The schema is described once, in the docs (``docs/formats.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import __version__
from .categories import CategoryManifest
from .definition import DEFINITION_FORMATS, DatasetDefinition
from .errors import ConfigError, check_dataset_name, check_version, reads_stored_data
from .hashing import canonical_hash, version_id
from .limits import parse_json
from .png import LEGACY_ENCODER

__all__ = ["RECIPE_FORMAT", "RECIPE_NAME", "Recipe", "definition_from_data", "definition_id"]

RECIPE_FORMAT = "fractalshards.recipe"
RECIPE_VERSIONS = (1,)
RECIPE_NAME = "recipe.json"


def definition_id(definition_data: dict) -> str:
    """16 hex digits identifying a definition (a recipe's version; the same for the dataset built from it)."""
    return version_id(canonical_hash(definition_data))


def definition_from_data(definition_data: object, categories_data: object, name: str, source: str) -> DatasetDefinition:
    """Rebuild and validate a :class:`DatasetDefinition` from its stored form; one-line errors name the field."""
    if not isinstance(definition_data, dict):
        raise ConfigError(f"{source}: definition must be an object")
    if not isinstance(categories_data, dict):
        raise ConfigError(f"{source}: categories must be a category manifest object")
    d = definition_data
    categories = CategoryManifest.from_dict(categories_data, source=f"{source}: categories")
    if d.get("family", categories.family_name) != categories.family_name:
        raise ConfigError(
            f"{source}: definition names family {d.get('family')!r} but its categories are "
            f"{categories.family_name!r}; rebuild or re-publish it"
        )
    if not isinstance(d.get("png"), dict):
        raise ConfigError(f"{source}: definition png must be an object with compress_level; rebuild or re-publish it")
    wire = d.get("definition_format", 1)  # format 1 had no such field
    if wire not in DEFINITION_FORMATS or isinstance(wire, bool):
        raise ConfigError(
            f"{source}: definition_format {wire!r} is not supported; this fractalshards reads {list(DEFINITION_FORMATS)} "
            "(upgrade fractalshards to read newer definitions)"
        )
    try:
        render = categories.family.Settings.from_dict(dict(d["render"]))
        definition = DatasetDefinition(
            definition_format=wire,
            categories=categories,
            instances=d["instances_per_category"],
            render=render,
            shard_size=d["shard_size"],
            name=name,
            png_compress_level=d["png"]["compress_level"],
            png_encoder=d["png"].get("encoder", LEGACY_ENCODER),
        )
    except ConfigError:  # a field out of range or over a limit: its own one-line error
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{source}: definition is incomplete ({type(exc).__name__}: {exc}); rebuild or re-publish it") from exc
    if definition.to_dict() != d:
        raise ConfigError(
            f"{source}: definition was not written by this fractalshards (fields differ from a rebuild); it cannot be reproduced"
        )
    return definition


@dataclass(frozen=True)
class Recipe:
    """A dataset definition, validated, with its version id."""

    definition: DatasetDefinition

    @property
    def name(self) -> str:
        """Dataset name."""
        return self.definition.name

    @property
    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the definition."""
        return canonical_hash(self.definition.to_dict())

    @property
    def version(self) -> str:
        """16 hex digits of the fingerprint."""
        return version_id(self.fingerprint)

    def to_dict(self) -> dict:
        """The recipe as JSON-able data."""
        categories = self.definition.categories.body()
        categories["content_hash"] = self.definition.categories.content_hash
        d = self.definition
        return {
            "format": RECIPE_FORMAT,
            "format_version": 1,
            "name": d.name,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "generator": {"name": "fractalshards", "version": __version__},
            "definition": d.to_dict(),
            "categories": categories,
            "totals": {
                "shards": d.num_shards,
                "samples": d.num_samples,
                "categories": d.num_categories,
                "instances_per_category": d.instances,
            },
        }

    def to_json(self) -> str:
        """Canonical text (sorted keys, indented)."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    @reads_stored_data
    def from_json(cls, text: str | bytes, source: str = RECIPE_NAME) -> Recipe:
        """Parse and validate (a dataset manifest used as a recipe is read by :func:`fractalshards.dataset.open_definition`)."""
        return cls.from_dict(parse_json(text, source), source)

    @classmethod
    @reads_stored_data
    def from_dict(cls, data: object, source: str = RECIPE_NAME) -> Recipe:
        """Validate: the format, the version against the definition's hash, the definition and categories."""
        if not isinstance(data, dict) or data.get("format") != RECIPE_FORMAT:
            raise ConfigError(f"{source}: not a fractalshards recipe (format must be {RECIPE_FORMAT!r}) or dataset manifest")
        if data.get("format_version") not in RECIPE_VERSIONS:
            raise ConfigError(
                f"{source}: format_version {data.get('format_version')!r} is not supported; "
                f"this fractalshards reads {list(RECIPE_VERSIONS)}"
            )
        name = check_dataset_name(data.get("name"), "name", source)
        version = check_version(data.get("version"), "version", source)
        recipe = cls(definition_from_data(data.get("definition"), data.get("categories"), name, source))
        if recipe.version != version or data.get("fingerprint") != recipe.fingerprint:
            raise ConfigError(
                f"{source}: version {version} does not match its definition (hash {recipe.version}); "
                "the recipe was edited, write it again with 'fractalshards recipe'"
            )
        return recipe
