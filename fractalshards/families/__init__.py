"""FDSL families: what a category is, how categories are searched, the instance space and the renderer.

A family is an instance of a :class:`Family` subclass, found in one of two ways:

- a package of this one that lists its families in ``FAMILIES`` (the shipped ones), or
- an entry point of the ``fractalshards.families`` group, from any installed package
  (``[project.entry-points."fractalshards.families"] myfam = "mypkg.family:FAMILY"``).

A family's package owns everything about it: its sampler and acceptance rule, its
instance space, its settings dataclasses, its kernels and its presets (:class:`Preset`).
Everything above this layer (category manifests, dataset definitions, build, recipes,
stream, publish, verify, preview, cards and the CLI) goes through this interface and the
registry and never names a family, so adding a family touches no other module.

Families shipped (``fractalshards presets`` lists their presets):

- ``fractalshards.families.fractaldb``: ``fractaldb``, 2-D IFS fractals (Kataoka et al., ACCV 2020); also OFDB's presets.
- ``fractalshards.families.contours``: ``visualatom`` (Takashima et al., CVPR 2023) and ``rcdb``
  (Kataoka et al., CVPR 2022), which share Perlin noise, Pillow's line and Python's ``random`` replayed.
- ``fractalshards.families.onepfrac``: ``1p-frac``, perturbations of one fractal (Nakamura et al., ECCV 2024).
- ``fractalshards.families.segrcdb``: ``segrcdb``, images of radial contours with per-pixel class masks
  (Shinoda et al., ICCV 2023): the ``segmentation`` sample kind.
- ``fractalshards.families.exfractaldb``: ``exfractaldb``, 3-D IFS fractals rendered as points from
  several views (ExFractalDB, Kataoka et al., CVPR 2022; MV-FractalDB, Yamada et al., IROS 2021).
- ``fractalshards.families.pcfractaldb``: ``pc-fractaldb``, 3-D fractal point clouds (Yamada et al.,
  CVPR 2022): the ``points`` sample kind.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, is_int, is_number
from ..results import Rendered, SearchResult
from .renderer import Renderer

__all__ = [
    "DEFAULT_FAMILY",
    "Family",
    "Preset",
    "Renderer",
    "SettingsDict",
    "family_names",
    "get_family",
    "register",
    "flagged_fields",
    "setting",
    "settings_from_options",
]

log = logging.getLogger(__name__)

#: The family of a manifest that names none (every manifest written before families existed).
DEFAULT_FAMILY = "fractaldb"


def _check_type(field_name: str, value: object, default: object) -> None:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = is_int(value)
    elif isinstance(default, float):
        ok = is_number(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{field_name}: {value!r} is not a {type(default).__name__} like its default {default!r}")


class SettingsDict:
    """``to_dict``/``from_dict`` of a frozen settings dataclass of scalar fields: one implementation for
    every family's render and search settings (and the form they take in manifests and records)."""

    def to_dict(self) -> dict:
        """Plain JSON-able form (every field is a scalar, so a shallow dict: no ``asdict`` deep copy,
        which cost 90 us per sample record)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: object) -> Any:
        """Inverse of :meth:`to_dict`, for stored data: unknown fields, and values of another type than the
        field's default (an integer is not a bool, a number is finite), are one-line errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"settings: {type(data).__name__} is not an object of {cls.__name__} fields")
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - set(known)
        if unknown:
            raise ConfigError(f"settings: unknown field(s) {sorted(unknown)} of {cls.__name__}; remove them")
        for name, value in data.items():
            _check_type(f"{cls.__name__}.{name}", value, known[name].default)
        return cls(**data)


def setting(
    default: Any, help: str, *, choices: tuple | None = None, minimum: int | None = None, preset_override: bool = False
) -> Any:
    """A settings field with a command-line flag: ``--<name>`` is generated from it (type from the
    default, ``help`` and the defaults of every family that has the field in the help text).

    ``minimum`` bounds integer flags (1 unless given); ``preset_override`` also offers the flag
    where a generated preset is loaded (``render``, ``preview``, ``build``, ``recipe``).
    """
    meta = {"help": help, "choices": choices, "minimum": minimum, "preset_override": preset_override}
    return field(default=default, metadata=meta)


def flagged_fields(cls: type) -> list:
    """The fields of a settings dataclass that have a command-line flag (declared with :func:`setting`)."""
    return [f for f in fields(cls) if "help" in f.metadata]


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
            raise ConfigError(
                f"{key}: not a {what} of the {family} family; drop {flag} (its {what}s are {', '.join(sorted(names))})"
            )
    return cls(**{**(defaults or {}), **given})


@dataclass(frozen=True)
class Preset:
    """A named category set of a family, and what a dataset of it is by default.

    Exactly one of ``file`` (a committed manifest under ``manifests/``), ``base`` (the first
    ``categories`` of another preset) or ``native_seed`` (generated on first use by the
    family's native search, then cached) says where the categories come from.
    """

    name: str
    family: str
    description: str
    categories: int
    render_mode: str
    paper: str
    instances: int = 1000  # instances per category by default, and at most
    file: str | None = None  # committed manifest file name
    base: str | None = None  # take the first ``categories`` of this preset
    native_seed: int | None = None  # generate with the family's native search
    search: dict = field(default_factory=dict)  # search settings of a generated set


class Family:
    """The interface every family implements (plain arrays in and out; see the module docstring).

    Class attributes describe the family; methods are called with a
    :class:`~fractalshards.categories.CategoryManifest` of this family.
    """

    #: Registry name, written into manifests (``"family"``).
    name: ClassVar[str] = ""
    #: Paper the family comes from (for ``presets``, cards and the docs).
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
    #: Render settings of this family's images where they differ from the settings dataclass's defaults.
    render_overrides: ClassVar[dict] = {}
    #: The PNG encoder (:data:`fractalshards.png.ENCODERS`) of new definitions that name none; None:
    #: :data:`fractalshards.png.DEFAULT_ENCODER`.
    png_encoder: ClassVar[str | None] = None
    #: The family's named category sets.
    presets: ClassVar[tuple[Preset, ...]] = ()
    #: Named parts of an instance index, ``(name, help)`` (``render --<name>``; see :meth:`instance_index`).
    instance_parts: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Formats besides the category manifest that :meth:`export` writes (``search --format``).
    export_formats: ClassVar[tuple[str, ...]] = ()
    #: What a sample is (:mod:`fractalshards.kinds`): the name of a registered kind (``image``: an image
    #: and a class; ``segmentation``: an image and its class mask; ``points``: a point cloud and a class)
    #: or a :class:`~fractalshards.kinds.SampleKind` instance of the family's own.
    sample_kind: ClassVar[Any] = "image"

    # -- categories -------------------------------------------------------------------------
    def default_seed(self, mode: str) -> int:
        """The seed of ``mode`` when none is given."""
        return 0

    def check_search_mode(self, mode: object) -> str:
        """``mode`` if this family searches in it, else a one-line error naming the modes it has."""
        if mode not in self.search_modes:
            raise ConfigError(
                f"mode: the {self.name} family searches in {', '.join(self.search_modes)} mode; use --mode {self.search_modes[0]}"
            )
        return mode  # type: ignore[return-value]

    def default_name(self, mode: str, seed: int, settings: Any, count: int) -> str:
        """The name of a searched category set when the user gives none."""
        return f"{mode}-{self.name}-seed{seed}-{count}"

    def check_export_format(self, fmt: str) -> None:
        """A one-line error unless this family writes ``fmt`` (:attr:`export_formats`)."""
        if fmt not in self.export_formats:
            raise ConfigError(f"format: the {self.name} family has no {fmt!r} format; use --format manifest")

    def export(self, manifest: Any, fmt: str, out: Any) -> list:
        """Write ``manifest`` in ``fmt`` (one of :attr:`export_formats`) under folder ``out``; the files written."""
        self.check_export_format(fmt)
        raise NotImplementedError

    def search_settings(self, options: dict) -> Any:
        """Search settings from user options (``None`` values mean "default")."""
        return settings_from_options(self.SearchSettings, options, "search setting", self.name)

    def search_settings_from_dict(self, data: dict) -> Any:
        """Search settings as stored in a manifest."""
        return settings_from_options(self.SearchSettings, dict(data), "search setting", self.name)

    def search(
        self, count: int, *, mode: str, seed: int, settings: Any, workers: int | None = None, progress: bool = False
    ) -> SearchResult:
        """Search ``count`` categories (in index order, with the number of trials drawn)."""
        raise NotImplementedError

    def search_at(self, indices: list[int], *, mode: str, seed: int, settings: Any) -> list:
        """Categories ``indices`` of a ``mode`` search, exactly as :meth:`search` finds them (used to
        spot-check cached sets). By default the first ``max(indices) + 1`` are searched; families whose
        categories are independent (native streams) override it to search only those."""
        found = self.search(max(indices) + 1, mode=mode, seed=seed, settings=settings).categories
        return [found[i] for i in indices]

    def category_to_dict(self, category: Any) -> dict:
        """A category as manifest JSON (must round-trip exactly through :meth:`category_from_dict`)."""
        raise NotImplementedError

    def category_from_dict(self, data: dict) -> Any:
        """Inverse of :meth:`category_to_dict`; raise ``KeyError``/``TypeError``/``ValueError`` on bad data."""
        raise NotImplementedError

    def check_manifest(self, manifest: Any, source: str) -> None:
        """Family-specific checks of a loaded manifest (one-line :class:`ConfigError`)."""

    def check_limits(self, manifest: Any, settings: Any) -> None:
        """Render settings within :func:`fractalshards.limits.current` (image size, points...): a one-line
        error before anything is allocated. Called for every definition; a family with sizes sets it."""

    def subset_trials(self, manifest: Any, categories: list) -> int:
        """Trials needed for the first categories (a subset keeps an honest count)."""
        return len(categories)

    def sample_groups(self, manifest: Any) -> int:
        """How many groups a dataset's samples are planned in: sample ``(g, k)`` is instance ``k`` of
        group ``g``, labelled ``g``. One per category by default; a family whose samples are not of one
        category (segmentation images) has one group (:meth:`groups_of`)."""
        return self.groups_of(len(manifest))

    def groups_of(self, categories: int) -> int:
        """The groups of a set of ``categories`` categories (see :meth:`sample_groups`)."""
        return categories

    def num_classes(self, manifest: Any) -> int:
        """The classes a model trained on the dataset predicts (categories; mask ids for segmentation)."""
        return len(manifest)

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

    def check_instance(self, index: int, settings: Any = None) -> int:
        """``index`` if it is a valid instance, else a one-line error. With ``settings`` whose
        instances are unbounded (:meth:`fresh_instances` is None), any non-negative index is one."""
        unbounded = settings is not None and self.fresh_instances(settings) is None
        top = self.instances_per_category - 1
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or index < 0 or (not unbounded and index > top):
            raise ConfigError(f"instance: {index!r} is out of range for the {self.name} family; use an integer in 0..{top}")
        return int(index)

    def fresh_instances(self, settings: Any) -> str | None:
        """``None`` when instance numbers past :attr:`instances_per_category` render new instances in
        ``settings`` (what ``FractalStream(fresh_instances=True)`` needs: instances drawn from streams
        keyed by the instance number); otherwise why not, as the end of a one-line error."""
        return f"the {self.name} family has a finite instance space ({self.instances_per_category} per category)"

    def instance_label(self, index: int) -> str:
        """Short label of an instance under a preview tile."""
        return f"#{index}"

    def preview_instances(self, count: int, available: int) -> list[int]:
        """``count`` distinct instances that show the family's variety (the first ``count`` by default)."""
        return list(range(count))

    # -- rendering --------------------------------------------------------------------------
    def render_defaults(self) -> dict:
        """The render settings a dataset of this family gets when no option is given (for help texts)."""
        return {**{f.name: f.default for f in fields(self.Settings)}, **self.render_overrides}

    def search_defaults(self) -> dict:
        """The search settings of a search with no option given (for help texts)."""
        return {f.name: f.default for f in fields(self.SearchSettings)}

    def check_official_render(self, manifest: Any, mode: str) -> None:
        """A one-line error when ``mode`` is ``official`` but ``manifest`` was not searched in official
        mode (official renders replay the official streams, which only an official search starts)."""
        if mode == "official" and manifest.mode != "official":
            raise ConfigError(
                f"mode: official rendering replays the official streams, but {manifest.name!r} was "
                "searched in native mode; use --mode native"
            )

    def render_settings(self, manifest: Any, options: dict) -> Any:
        """Render settings from user options (``None`` values mean the manifest's / family's default)."""
        return settings_from_options(self.Settings, options, "render setting", self.name, self.render_overrides)

    def renderer(self, manifest: Any, settings: Any) -> Renderer:
        """The bound renderer of ``manifest``'s samples with ``settings`` (:mod:`.renderer`): what renders
        need, derived once. Everything that renders more than one sample renders through one. A family
        with derived state (saved generator states, parsed settings) returns a subclass of its own."""
        return Renderer(self, manifest, settings)

    def render(self, manifest: Any, category: int, instance: int, settings: Any) -> Rendered:
        """Render one instance: a ``uint8`` image (grey ``(H, W)`` or colour ``(H, W, 3)``).

        A family implements this (and :meth:`record`), or returns a :class:`Renderer` subclass from
        :meth:`renderer` whose ``render`` this calls through a renderer made for this one sample."""
        renderer = self.renderer(manifest, settings)
        if type(renderer).render is Renderer.render:
            raise NotImplementedError(f"the {self.name} family implements neither render nor a renderer of its own")
        return renderer.render(category, instance)

    def point_cloud(self, manifest: Any, category: int, instance: int, settings: Any) -> np.ndarray:
        """The 3-D points an instance is drawn from, float64 ``(N, 3)`` (3-D families); a one-line error
        for families whose instances have none."""
        renderer = self.renderer(manifest, settings)
        if type(renderer).point_cloud is Renderer.point_cloud:
            raise ConfigError(f"cloud_out: the {self.name} family's instances are not point clouds; drop --cloud-out")
        return renderer.point_cloud(category, instance)

    def record(self, manifest: Any, category: int, instance: int, settings: Any, rendered: Rendered) -> dict:
        """The ``.json`` member of a sample: everything needed to re-render it (as :meth:`render`)."""
        renderer = self.renderer(manifest, settings)
        if type(renderer).record is Renderer.record:
            raise NotImplementedError(f"the {self.name} family implements neither record nor a renderer of its own")
        return renderer.record(category, instance, rendered)

    def image_shape(self, manifest: Any, settings: Any) -> tuple[int, ...]:
        """``(H, W)`` of grey images, ``(H, W, 3)`` of colour ones: every sample's, checked against each
        stored PNG's header before it is decoded. By default, the shape of one render (a renderer asks
        once: :attr:`Renderer.image_shape`); families override it with arithmetic."""
        return tuple(self.render(manifest, 0, 0, settings).image.shape)

    def grey_level(self, settings: Any) -> int | None:
        """The one grey level of two-level images (what a set bit of their packed rows means), or None
        when images are not two-level (then ``decode="packed"`` gives grey or RGB bytes)."""
        return None

    def device_renderer(self) -> type | None:
        """The family's device renderer class (a :class:`fractalshards.gpu.contract.DeviceRenderer`,
        constructed as ``cls(family, manifest, settings)``), or None when the family has no GPU kernels.
        Families import it here, on first use: the kernels need the ``gpu`` extra (numba-cuda)."""
        return None

    def gpu_renderer(self, manifest: Any, settings: Any) -> Any:
        """A :class:`~fractalshards.gpu.contract.DeviceRenderer` of ``manifest``'s samples, or None when
        the family has no GPU kernels (:meth:`device_renderer`)."""
        cls = self.device_renderer()
        return None if cls is None else cls(self, manifest, settings)

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
    _LOADED = True
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for family in getattr(module, "FAMILIES", ()):
            register(family)
    from importlib.metadata import entry_points

    for ep in entry_points(group="fractalshards.families"):
        try:
            register(ep.load())
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the shipped families
            log.warning(
                "fractalshards: family entry point %r could not be loaded (%s: %s); skipped", ep.name, type(exc).__name__, exc
            )


def register(family: object) -> Family:
    """Add ``family`` to the registry (what the ``fractalshards.families`` entry points resolve to).

    The first family of a name wins: a plugin cannot replace a shipped family.
    """
    if not isinstance(family, Family) or not isinstance(family.name, str) or not family.name:
        raise ConfigError(f"family: {family!r} is not a Family instance with a name; an entry point must name one")
    _REGISTRY.setdefault(family.name, family)
    return _REGISTRY[family.name]


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
