"""Bound renderers: a family's renders of one category manifest with one set of render settings.

:meth:`Family.renderer(manifest, settings) <fractalshards.families.Family.renderer>` makes one. It holds
what every render of that pair needs, derived once: the manifest's hash, the samples' shape, the
family's parsed search settings, its saved generator states (:mod:`fractalshards.statecache`) and its
compiled choices. A build renders millions of samples through one renderer (a dataset definition keeps
its own, :attr:`~fractalshards.definition.DatasetDefinition.renderer`) instead of re-deriving them per
sample: re-hashing the manifest per render once held an MV-FractalDB build at 548 images/s.

A family implements its renders in one of two ways:

- stateless families implement ``Family.render`` / ``record`` (/ ``point_cloud``) on the family, and
  the plain :class:`Renderer` calls them with the bound manifest and settings;
- families with derived state return a :class:`Renderer` subclass from ``Family.renderer`` and
  implement the renders there; ``Family.render(manifest, ...)`` then makes a renderer for that one render.

A renderer is made in the process that renders (it is never pickled) and may be used from threads.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from ..results import Rendered

__all__ = ["Renderer"]


class Renderer:
    """Renders of ``manifest``'s samples with ``settings`` (see the module docstring).

    Args:
        family: the :class:`~fractalshards.families.Family` of ``manifest``.
        manifest: a :class:`~fractalshards.categories.CategoryManifest` (frozen: nothing derived from it goes stale).
        settings: the family's render settings (frozen).
    """

    def __init__(self, family: Any, manifest: Any, settings: Any) -> None:
        self.family = family
        self.manifest = manifest
        self.settings = settings

    @cached_property
    def manifest_hash(self) -> str:
        """The manifest's ``content_hash`` (it hashes every category: derived once)."""
        return self.manifest.content_hash

    @cached_property
    def image_shape(self) -> tuple[int, ...]:
        """Every sample's array shape: ``(H, W)`` grey, ``(H, W, 3)`` colour, ``(N, 3)`` points."""
        return tuple(self.family.image_shape(self.manifest, self.settings))

    def render(self, category: int, instance: int) -> Rendered:
        """Sample ``(category, instance)``."""
        return self.family.render(self.manifest, category, instance, self.settings)

    def record(self, category: int, instance: int, rendered: Rendered) -> dict:
        """The sample's ``.json`` member: everything needed to re-render it."""
        return self.family.record(self.manifest, category, instance, self.settings, rendered)

    def point_cloud(self, category: int, instance: int) -> np.ndarray:
        """The 3-D points an instance is drawn from, float64 ``(N, 3)`` (3-D families)."""
        return self.family.point_cloud(self.manifest, category, instance, self.settings)

    def __reduce__(self) -> Any:
        # Made where it renders: saved states and locks do not travel (a definition drops it when pickled).
        raise TypeError(f"a {type(self).__name__} is not pickled; pickle its definition and call family.renderer() there")
