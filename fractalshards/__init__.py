"""fractalshards: formula-driven (FDSL) pre-training datasets as deterministic WebDataset shards.

The main names are here, imported on first use (PEP 562), so ``import fractalshards`` stays
cheap and pulls in neither torch nor Ray::

    import fractalshards as fs

    definition = fs.DatasetDefinition.from_preset("fractaldb-100", instances=10)
    fs.build(definition, "./data/fractaldb-100")            # embedded local Ray; workers=0 inline
    loader = fs.FractalLoader(fs.FractalStream("./data/fractaldb-100"), batch_size=64)

The module map is in the docs (``docs/modules.md``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Name -> module that defines it (relative to this package).
_LAZY = {
    "FractalStream": "stream",
    "FractalLoader": "loader",
    "MixedStream": "mixture",
    "MixtureSpec": "mixspec",
    "make_spec": "mixture",
    "RenderLoader": "loader",
    "build": "builder",
    "publish": "publisher",
    "verify": "verifier",
    "open_manifest": "dataset",
    "load_dataset": "dataset",  # the old name of open_manifest: warns once
    "open_definition": "dataset",
    "DatasetManifest": "dataset",
    "load_preset": "presets",
    "all_presets": "presets",
    "DatasetDefinition": "definition",
    "CategoryManifest": "categories",
    "Recipe": "recipe",
    "get_family": "families",
    "family_names": "families",
    "ConfigError": "errors",
    "ShardIntegrityError": "errors",
    "TransferError": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fractalshards' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
