"""FDSL families: what a category is, how categories are searched, the instance space and the renderer.

A family is one module of this package that defines ``FAMILY``, an instance of a
:class:`Family` subclass. Everything above this layer (category manifests, dataset
definitions, build, recipes, stream, publish, verify, preview and the CLI) goes
through this interface and never names a family, so adding a family is adding a
module here (or registering one under the ``fractalshards.families`` entry-point
group from another package).

Families shipped:

- ``fractaldb``: 2-D IFS fractals (Kataoka et al., ACCV 2020); also OFDB's presets.
- ``visualatom``: Perlin-noised circular harmonics (Takashima et al., CVPR 2023).
- ``rcdb``: radial contours (Kataoka et al., CVPR 2022).
- ``1p-frac``: perturbations of one sigma-factor fractal (Nakamura et al., ECCV 2024).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..render import Rendered
from ..search import SearchResult

__all__ = ["Family", "Rendered", "SearchResult", "get_family", "family_names", "DEFAULT_FAMILY", "settings_from_options"]

#: The family of a manifest that names none (every manifest written before families existed).
DEFAULT_FAMILY = "fractaldb"


def settings_from_options(cls: type, options: dict, what: str, family: str, defaults: dict | None = None) -> Any:
    """Build the settings dataclass ``cls`` from the options a user gave (``None`` = not given).

    An option that is not a field of ``cls`` is a one-line error naming it, so that a
    flag of one family given for another is never silently ignored.
    """
    names = {f.name for f in fields(cls)}
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in names:
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{key}: not a {what} of the {family} family; drop {flag} "
                              f"(its {what}s are {', '.join(sorted(names))})")
    return cls(**{**(defaults or {}), **given})


class Family:
    """The interface every family implements (plain arrays in and out; see the module docstring).

    Class attributes describe the family; methods are called with a
    :class:`~fractalshards.manifest.CategoryManifest` of this family.
    """

    #: Registry name, written into manifests (``"family"``).
    name: ClassVar[str] = ""
    #: Paper the family comes from (for ``presets``, cards and the README).
    paper: ClassVar[str] = ""
    #: Search modes: ``official`` reproduces a released dataset's categories; ``native`` is counter-based.
    search_modes: ClassVar[tuple[str, ...]] = ("official", "native")
    #: Size of the instance space of one category.
    instances_per_category: ClassVar[int] = 1
    #: Side of the images with the default render settings.
    image_size: ClassVar[int] = 512
    #: Render settings and search settings dataclasses (``to_dict`` / ``from_dict``, frozen).
    Settings: ClassVar[type]
    SearchSettings: ClassVar[type]

    # -- categories -------------------------------------------------------------------------
    def default_seed(self, mode: str) -> int:
        """The seed of ``mode`` when none is given."""
        return 0

    def search_settings(self, options: dict) -> Any:
        """Search settings from user options (``None`` values mean "default")."""
        return settings_from_options(self.SearchSettings, options, "search setting", self.name)

    def search_settings_from_dict(self, data: dict) -> Any:
        """Search settings as stored in a manifest."""
        return settings_from_options(self.SearchSettings, dict(data), "search setting", self.name)

    def search(self, count: int, *, mode: str, seed: int, settings: Any, workers: int | None = None,
               progress: bool = False) -> SearchResult:
        """Search ``count`` categories (in index order, with the number of trials drawn)."""
        raise NotImplementedError

    def category_to_dict(self, category: Any) -> dict:
        """A category as manifest JSON (must round-trip exactly through :meth:`category_from_dict`)."""
        raise NotImplementedError

    def category_from_dict(self, data: dict) -> Any:
        """Inverse of :meth:`category_to_dict`; raise ``KeyError``/``TypeError``/``ValueError`` on bad data."""
        raise NotImplementedError

    def check_manifest(self, manifest: Any, source: str) -> None:
        """Family-specific checks of a loaded manifest (one-line :class:`ConfigError`)."""

    def subset_trials(self, manifest: Any, categories: list) -> int:
        """Trials needed for the first categories (a subset keeps an honest count)."""
        return len(categories)

    # -- instances --------------------------------------------------------------------------
    def instance_fields(self, index: int) -> dict:
        """The named parts of instance ``index`` (the invertible mapping; see :meth:`instance_index`)."""
        self.check_instance(index)
        return {}

    def instance_index(self, **parts: int) -> int:
        """Inverse of :meth:`instance_fields`."""
        if parts:
            raise ConfigError(f"instance: the {self.name} family has no parts {sorted(parts)}; give --instance I")
        return 0

    def check_instance(self, index: int) -> int:
        """``index`` if it is a valid instance, else a one-line error."""
        top = self.instances_per_category - 1
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or not 0 <= index <= top:
            raise ConfigError(f"instance: {index!r} is out of range for the {self.name} family; use an integer in 0..{top}")
        return int(index)

    def instance_label(self, index: int) -> str:
        """Short label of an instance under a preview tile."""
        return f"#{index}"

    def preview_instances(self, count: int, available: int) -> list[int]:
        """``count`` distinct instances that show the family's variety (the first ``count`` by default)."""
        return list(range(count))

    # -- rendering --------------------------------------------------------------------------
    def render_settings(self, manifest: Any, options: dict) -> Any:
        """Render settings from user options (``None`` values mean the manifest's / family's default)."""
        return settings_from_options(self.Settings, options, "render setting", self.name)

    def render(self, manifest: Any, category: int, instance: int, settings: Any) -> Rendered:
        """Render one instance: a ``uint8`` image (grey ``(H, W)`` or colour ``(H, W, 3)``)."""
        raise NotImplementedError

    def record(self, manifest: Any, category: int, instance: int, settings: Any, rendered: Rendered) -> dict:
        """The ``.json`` member of a sample: everything needed to re-render it."""
        raise NotImplementedError

    def bytes_per_sample(self, settings: Any) -> float:
        """Rough stored size of a sample (for the estimate printed before a build)."""
        return 12_000.0

    def describe_settings(self, settings: Any) -> str:
        """One line of render settings for ``info`` and preview titles."""
        return " ".join(f"{k}={v}" for k, v in settings.to_dict().items())


_REGISTRY: dict[str, Family] = {}
_LOADED = False


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        _register(getattr(module, "FAMILY", None))
    try:  # families of other packages
        from importlib.metadata import entry_points

        for ep in entry_points(group="fractalshards.families"):
            _register(ep.load())
    except Exception:  # noqa: BLE001 - a broken third-party plugin must not break the shipped families
        pass
    _LOADED = True


def _register(family: object) -> None:
    if isinstance(family, Family) and family.name:
        _REGISTRY.setdefault(family.name, family)


def family_names() -> list[str]:
    """Names of every registered family, ``fractaldb`` first."""
    _load()
    return sorted(_REGISTRY, key=lambda n: (n != DEFAULT_FAMILY, n))


def get_family(name: object) -> Family:
    """The family called ``name``; an unknown name is a one-line error listing the known ones."""
    _load()
    family = _REGISTRY.get(name) if isinstance(name, str) else None
    if family is None:
        raise ConfigError(f"family: {name!r} is not known; use one of {', '.join(family_names())}")
    return family
