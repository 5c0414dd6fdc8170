"""What VisualAtom and RCDB share: categories as rows of contour parameters, 1,000 instances, two modes.

Not a family itself (no ``FAMILY``): :mod:`.visualatom` and :mod:`.rcdb` subclass
:class:`RadialFamily` with their distributions and kernels (:mod:`fractalshards.families.contours.kernels`).

- ``official`` search: the official scripts' Python ``random`` streams, one per official
  worker (thread ``t`` seeded ``t + seed``, ``seed`` 1 as released), replayed in compiled
  code, so category ``c`` has the released parameters. ``official`` rendering of instance
  ``k`` needs the generator state at that instance, which depends on every draw before
  it in the thread: one replay of a thread saves the state every :data:`STRIDE`
  instances (``$FRACTALSHARDS_CACHE/streams/``, about 5 MB per thread of 50 categories,
  computed once per machine under a file lock, only as far into a thread as asked), and a
  render skips at most ``STRIDE - 1`` instances from the nearest saved state.
- ``native``: category ``c`` from the counter stream ``(seed, c)``, instance ``k``'s
  draws (and, for ``k > 0``, its shape) from ``(render seed, c, k)``; any instance alone.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError, check_choice, check_int, is_number
from ...limits import check
from ...mt19937 import new_state
from ...parallel import resolve_workers
from ...progress import bar as progress_bar
from ...results import Rendered, SearchResult
from ...seeds import stream_key
from ...statecache import StateLayout, saved_states
from .. import Family, Renderer, SettingsDict, setting
from .kernels import IMAGE_SIZE, PARAM_FIELDS, SHAPE_FIELDS, native_instance_draws, native_shape, official_instance_draws

__all__ = [
    "RadialFamily",
    "ContourRenderer",
    "ContourCategory",
    "ContourSettings",
    "STRIDE",
    "INTEGER_FIELDS",
    "check_contour_search",
]

#: Saved generator states per category in official mode: one every STRIDE instances.
STRIDE = 25
#: Parameters that are integers (written as JSON integers).
INTEGER_FIELDS = ("vertices", "lines", "radius", "freq1", "freq2")


@dataclass(frozen=True)
class ContourCategory:
    """A category: its index and its parameter row (:data:`fractalshards.families.contours.kernels.PARAM_FIELDS`)."""

    index: int
    params: tuple

    def value(self, name: str) -> float:
        """One parameter by name."""
        return self.params[PARAM_FIELDS.index(name)]


@dataclass(frozen=True)
class ContourSettings(SettingsDict):
    """Render settings of a contour family: the instance streams' mode and the dataset seed.

    Images are 512 x 512 grey, as released (the official parameters are in 512-pixel units).
    """

    mode: str = "native"
    seed: int = setting(0, "dataset seed of the sample order and the native streams", minimum=0)

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, ("official", "native"))
        check_int("seed", self.seed, 0)


def check_range(low_name: str, low: float, high_name: str, high: float, floor: float = 0) -> None:
    """``floor <= low <= high``, else a one-line error naming both settings."""
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and floor <= low <= high):
        raise ConfigError(f"{low_name}/{high_name}: {low!r}..{high!r} is out of order; use {floor} <= {low_name} <= {high_name}")


def check_contour_search(settings: Any, numbers: tuple[str, ...]) -> None:
    """The checks VisualAtom's and RCDB's search settings share: ranges in order and within bounds,
    ``numbers`` non-negative, the thread layout positive; one-line errors naming the setting."""
    check_range("min_vertices", settings.min_vertices, "max_vertices", settings.max_vertices, 3)
    check("max_vertices", settings.max_vertices, "vertices")
    check_range("min_lines", settings.min_lines, "max_lines", settings.max_lines, 1)
    check("max_lines", settings.max_lines, "lines")
    check_range("min_radius", settings.min_radius, "max_radius", settings.max_radius, 0)
    for name in numbers:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e6:
            raise ConfigError(f"{name}: {value!r} is out of range; use a number >= 0")
    check_int("categories_per_thread", settings.categories_per_thread, 1)
    check_int("instances_per_category", settings.instances_per_category, 1)


class RadialFamily(Family):
    """Shared implementation; subclasses set the class attributes below."""

    rcdb: ClassVar[bool] = False
    #: Names of the distribution bounds in kernel order (``contours.VISUALATOM_SPEC`` / ``RCDB_SPEC``).
    spec_fields: ClassVar[tuple] = ()
    #: Number of grey levels an instance's lines draw from (the official randint's range).
    grey_levels: ClassVar[int] = 256
    #: Stored bytes per sample (8-bit grey PNG of many levels, record, tar), measured on the official 1k sets.
    typical_bytes: ClassVar[int] = 60_000  # VisualAtom at 512 px, direct PNG (75,000 with pillow)
    instances_per_category = 1000
    Settings = ContourSettings

    # subclasses: the official replay kernel, the native category kernel and the image kernel
    def _replay(self, state, count, instances, spec, out, stride, states, shapes) -> None:
        raise NotImplementedError

    def _native_category(self, key, spec, row) -> None:
        raise NotImplementedError

    def _image(self, p: dict, shape: np.ndarray, greys, ux, uy) -> np.ndarray:
        raise NotImplementedError

    # -- categories -------------------------------------------------------------------------
    def default_seed(self, mode: str) -> int:
        """As :meth:`fractalshards.families.Family.default_seed`."""
        return 1 if mode == "official" else 0

    def spec(self, settings: Any) -> np.ndarray:
        """The kernels' bounds array from search settings."""
        return np.asarray([float(getattr(settings, name)) for name in self.spec_fields])

    def search(self, count, *, mode, seed, settings, workers=None, progress=False) -> SearchResult:
        """As :meth:`fractalshards.families.Family.search`."""
        check_int("categories", count, 1)
        self.check_search_mode(mode)
        spec = self.spec(settings)
        rows = np.zeros((count, len(PARAM_FIELDS)))
        if mode == "native":
            for c in progress_bar(range(count), desc=f"search ({self.name}, native)", unit="cat", enabled=progress):
                self._native_category(stream_key(self.name, "category", seed, c), spec, rows[c])
        else:
            per = settings.categories_per_thread
            threads = math.ceil(count / per)
            bar = progress_bar(total=count, desc=f"search ({self.name}, official)", unit="cat", enabled=progress)

            def replay(t: int) -> None:
                n = min(per, count - t * per)
                empty = np.zeros((0, 0, 0), np.uint32)
                self._replay(
                    new_state(t + seed),
                    n,
                    settings.instances_per_category,
                    spec,
                    rows[t * per : t * per + n],
                    0,
                    empty,
                    empty.astype(np.float64),
                )
                bar.update(n)

            with ThreadPoolExecutor(max_workers=resolve_workers(workers)) as pool:
                list(pool.map(replay, range(threads)))
            bar.close()
        return SearchResult([ContourCategory(c, tuple(rows[c].tolist())) for c in range(count)], count)

    def search_at(self, indices, *, mode, seed, settings) -> list:
        """Native categories are independent: each drawn alone (official ones share a thread's stream)."""
        if mode != "native":
            return super().search_at(indices, mode=mode, seed=seed, settings=settings)
        spec, out = self.spec(settings), []
        for c in indices:
            row = np.zeros(len(PARAM_FIELDS))
            self._native_category(stream_key(self.name, "category", seed, c), spec, row)
            out.append(ContourCategory(c, tuple(row.tolist())))
        return out

    def category_to_dict(self, category: ContourCategory) -> dict:
        """As :meth:`fractalshards.families.Family.category_to_dict`."""
        out: dict = {"index": category.index}
        for name, value in zip(PARAM_FIELDS, category.params):
            if name in ("freq1", "freq2") and self.rcdb:
                continue
            out[name] = int(value) if name in INTEGER_FIELDS else float(value)
        return out

    def category_from_dict(self, data: dict) -> ContourCategory:
        """As :meth:`fractalshards.families.Family.category_from_dict`."""
        row = []
        for name in PARAM_FIELDS:
            value = 0 if (self.rcdb and name in ("freq1", "freq2")) else data[name]
            if not is_number(value):
                raise ValueError(f"category {data.get('index')!r}: {name} must be a finite number")
            if name in INTEGER_FIELDS and value != int(value):
                raise ValueError(f"category {data.get('index')!r}: {name} must be an integer")
            row.append(float(value))
        p = dict(zip(PARAM_FIELDS, row))
        if not (3 <= p["vertices"] and 1 <= p["lines"] and p["radius"] >= 0):
            raise ValueError(f"category {data.get('index')!r}: vertices must be >= 3, lines >= 1 and radius >= 0")
        check(f"category {data.get('index')!r}: vertices", int(p["vertices"]), "vertices")  # they size a render's buffers
        check(f"category {data.get('index')!r}: lines", int(p["lines"]), "lines")
        return ContourCategory(int(data["index"]), tuple(row))

    def check_manifest(self, manifest, source: str) -> None:
        """As :meth:`fractalshards.families.Family.check_manifest`."""
        if manifest.mode not in self.search_modes:
            raise ConfigError(
                f"{source}: mode {manifest.mode!r} is not a {self.name} search mode; use one of {', '.join(self.search_modes)}"
            )
        try:
            self.search_settings_from_dict(manifest.search)
        except TypeError as exc:
            raise ConfigError(f"{source}: search settings are malformed ({exc}); regenerate the manifest") from exc

    # -- instances: the k-th draw of a category's stream ----------------------------------------
    def instance_fields(self, index: int) -> dict:
        """As :meth:`fractalshards.families.Family.instance_fields`."""
        return {"draw": self.check_instance(index)}

    def instance_index(self, **parts: int) -> int:
        """As :meth:`fractalshards.families.Family.instance_index`."""
        if set(parts) != {"draw"}:
            raise ConfigError(f"instance: the {self.name} family names an instance by its index; give --instance I")
        return self.check_instance(parts["draw"])

    def fresh_instances(self, settings: ContourSettings) -> str | None:
        """As :meth:`fractalshards.families.Family.fresh_instances`: native instances are drawn from a
        stream keyed by the instance number (unbounded); official ones replay the released streams."""
        if settings.mode == "official":
            return "official mode renders the released instance space (1,000 per category)"
        return None

    # -- rendering --------------------------------------------------------------------------
    def render_settings(self, manifest, options: dict) -> ContourSettings:
        """As :meth:`fractalshards.families.Family.render_settings`."""
        mode = options.get("mode") or ("official" if manifest.render_mode == "official" else "native")
        settings = super().render_settings(manifest, {**options, "mode": mode})
        self.check_official_render(manifest, settings.mode)
        return settings

    def renderer(self, manifest, settings: ContourSettings) -> ContourRenderer:
        """As :meth:`fractalshards.families.Family.renderer`: a :class:`ContourRenderer`."""
        return ContourRenderer(self, manifest, settings)

    def device_renderer(self) -> type:
        """As :meth:`fractalshards.families.Family.device_renderer` (:mod:`.gpu`: numba-cuda)."""
        from .gpu import ContourGPU

        return ContourGPU

    def image_shape(self, manifest, settings) -> tuple[int, ...]:
        """512 x 512 grey, as released."""
        return (IMAGE_SIZE, IMAGE_SIZE)

    def bytes_per_sample(self, settings) -> float:
        """As :meth:`fractalshards.families.Family.bytes_per_sample`."""
        return float(self.typical_bytes)

    # -- official: a thread's saved generator states ---------------------------------------------
    def state_layout(self, settings: Any) -> StateLayout:
        """The arrays a thread's saved states file holds (:mod:`fractalshards.statecache`)."""
        per_cat = math.ceil(settings.instances_per_category / STRIDE)
        return StateLayout(
            rows={
                "params": ((len(PARAM_FIELDS),), np.float64),
                "states": ((per_cat, 625), np.uint32),
                "shapes": ((per_cat, len(SHAPE_FIELDS)), np.float64),
            },
            fixed={"next": ((625,), np.uint32)},
            most=settings.categories_per_thread,
        )

    def _extend(self, seed: int, settings: Any, thread: int, saved: dict | None, slot: int) -> dict:
        per, instances = settings.categories_per_thread, settings.instances_per_category
        done = 0 if saved is None else len(saved["params"])
        upto = min(per, max(slot + 1, 2 * done))
        count = upto - done
        per_cat = math.ceil(instances / STRIDE)
        params = np.zeros((count, len(PARAM_FIELDS)))
        states = np.zeros((count, per_cat, 625), np.uint32)
        shapes = np.zeros((count, per_cat, 5))
        state = new_state(thread + seed) if saved is None else saved["next"].copy()
        self._replay(state, count, instances, self.spec(settings), params, STRIDE, states, shapes)
        if saved is not None:
            params = np.concatenate([saved["params"], params])
            states = np.concatenate([saved["states"], states])
            shapes = np.concatenate([saved["shapes"], shapes])
        return {"params": params, "states": states, "shapes": shapes, "next": state}

    def _spot_check(self, seed: int, settings: Any, thread: int, saved: dict) -> bool:
        """The thread's first category, replayed afresh, has the saved parameters, states and shapes."""
        fresh = self._extend(seed, settings, thread, None, 0)
        return all(np.array_equal(fresh[k][0], saved[k][0]) for k in ("params", "states", "shapes"))


class ContourRenderer(Renderer):
    """Renders of a VisualAtom or RCDB manifest: its search settings and the kernels' bounds parsed once,
    and in official mode the saved generator states of each thread rendered from so far."""

    family: RadialFamily

    def __init__(self, family: RadialFamily, manifest, settings: ContourSettings) -> None:
        super().__init__(family, manifest, settings)
        family.check_official_render(manifest, settings.mode)  # official renders need an official search
        self.search = family.search_settings_from_dict(manifest.search)
        self.spec = family.spec(self.search)
        self._threads: dict[int, dict] = {}  # thread -> saved states of its first categories
        self._lock = threading.Lock()

    def render(self, category: int, instance: int) -> Rendered:
        """As :meth:`fractalshards.families.Renderer.render`."""
        fam = self.family
        cat = self.manifest.category(category)
        k = fam.check_instance(instance, self.settings)
        p = dict(zip(PARAM_FIELDS, cat.params))
        vertices, lines = int(p["vertices"]), int(p["lines"])
        greys = np.empty(lines, np.int64)
        ux = np.empty((lines, vertices))
        uy = np.empty((lines, vertices))
        shape = np.array([p["center_x"], p["center_y"], p["radius"], p["oval_x"], p["oval_y"]])
        if self.settings.mode == "official":
            states, shapes = self._saved_state(category, k // STRIDE)
            official_instance_draws(fam.rcdb, states, shapes, k % STRIDE, self.spec, greys, ux, uy)
            shape = shapes
        else:
            key = stream_key(fam.name, "instance", self.settings.seed, category, k)
            native_instance_draws(key, fam.grey_levels, greys, ux, uy)
            if k > 0:  # instance 0 is drawn with its category, as in the official scripts
                native_shape(key, fam.rcdb, self.spec, shape)
        image = fam._image(p, shape, greys, ux, uy)
        return Rendered(image, False, info={"shape": dict(zip(SHAPE_FIELDS, shape.tolist()))})

    def record(self, category: int, instance: int, rendered: Rendered) -> dict:
        """The category's parameters, the instance's shape and the render settings."""
        params = self.family.category_to_dict(self.manifest.category(category))
        params.pop("index")
        return {"params": params, "shape": rendered.info["shape"], "render": self.settings.to_dict()}

    def official_starts(self, pairs, workers: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where official renders of ``pairs`` start: the saved generator states ``(n, 625)`` and shapes
        ``(n, 5)`` nearest before each instance, and how many instances to skip from there.

        The threads a batch spans are replayed (or loaded) in parallel: one alone takes seconds."""
        per = self.search.categories_per_thread
        cats = np.fromiter((c for c, _ in pairs), np.int64, len(pairs))
        ks = np.fromiter((self.family.check_instance(k) for _, k in pairs), np.int64, len(pairs))
        threads, slots = np.divmod(cats, per)
        last = {int(t): int(slots[threads == t].max()) for t in np.unique(threads)}
        with ThreadPoolExecutor(max_workers=max(1, min(len(last), resolve_workers(workers)))) as pool:
            saved = dict(zip(last, pool.map(lambda t: self.thread_states(t, last[t]), last)))
        for c in np.unique(cats).tolist():
            self._check_official(saved[c // per], c % per, c)
        states = np.empty((len(pairs), 625), np.uint32)
        shapes = np.empty((len(pairs), len(SHAPE_FIELDS)))
        for t, thread in saved.items():
            sel = threads == t
            states[sel] = thread["states"][slots[sel], ks[sel] // STRIDE]
            shapes[sel] = thread["shapes"][slots[sel], ks[sel] // STRIDE]
        return states, shapes, ks % STRIDE

    def _check_official(self, saved: dict, slot: int, category: int) -> None:
        if not np.array_equal(saved["params"][slot], np.asarray(self.manifest.category(category).params)):
            raise ConfigError(
                f"categories: category {category} of {self.manifest.name!r} is not the official stream's "
                "(the manifest was not written by an official search); render it with --mode native"
            )

    def _saved_state(self, category: int, checkpoint: int) -> tuple[np.ndarray, np.ndarray]:
        # Copies of the generator state and shape saved at instance ``checkpoint * STRIDE`` of ``category``.
        thread, slot = divmod(category, self.search.categories_per_thread)
        saved = self.thread_states(thread, slot)
        self._check_official(saved, slot, category)
        return saved["states"][slot, checkpoint].copy(), saved["shapes"][slot, checkpoint].copy()

    def thread_states(self, thread: int, slot: int) -> dict:
        """The saved states of ``thread``'s first categories, at least up to ``slot``.

        A thread is replayed incrementally (the state after its last replayed category is kept), at
        least doubling what is saved each time, so a single render replays only the categories before
        it and a build replays each thread about once per machine (:mod:`fractalshards.statecache`)."""
        with self._lock:
            saved = self._threads.get(thread)
            if saved is not None and len(saved["params"]) > slot:
                return saved
        fam, seed, search = self.family, self.manifest.seed, self.search
        saved = saved_states(
            fam.name,
            {"seed": seed, "search": asdict(search), "stride": STRIDE, "thread": thread},
            fam.state_layout(search),
            enough=lambda saved: len(saved["params"]) > slot,
            extend=lambda saved: fam._extend(seed, search, thread, saved, slot),
            check=lambda saved: fam._spot_check(seed, search, thread, saved),
        )
        with self._lock:
            self._threads[thread] = saved
        return saved
