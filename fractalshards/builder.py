"""Build a dataset: one task per shard, on Ray (a cluster or an embedded local Ray) or inline.

The driver only plans and collects: each task renders one shard and writes it
straight to the destination, returning its manifest entry (a few numbers). At most
``max_in_flight`` tasks are pending, results are taken in completion order
(``ray.wait``), and a task whose worker dies or raises is retried up to
``max_retries`` times; since shards are deterministic, a retry writes the same bytes.

Resuming: every finished shard records its entry in ``_build/<version>/``. A
re-run of the same definition keeps the shards whose stored bytes have the recorded
sha256 and pass the checks of a read (keys, labels and image headers against the plan),
rebuilds the rest, and writes the same manifest as a clean build. The manifest is
written last; the journal is removed after it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .card import CARD_NAME, CROISSANT_NAME, PREVIEW_NAME
from .dataset import MANIFEST_NAME, WIDS_INDEX_NAME, DatasetManifest, ManifestShard
from .definition import DatasetDefinition, ShardSpec
from .errors import DEFAULT_LICENSE, ConfigError, ShardIntegrityError, StoredDataError, check_license, is_version_id
from .limits import accepts_limits, parse_json
from .parallel import resolve_workers
from .progress import bar as progress_bar
from .progress import default_progress
from .results import DIVERGED_MEANING
from .shardplan import ShardPlan, read_planned
from .shards import ShardEntry, render_shard
from .storage import Store, open_store, sha256_bytes

__all__ = ["BuildResult", "build", "build_shard", "journal_dir", "journal_name", "ray_init_local", "S3_ENV_VARS"]

log = logging.getLogger(__name__)

#: Environment variables forwarded to a cluster's workers (through the runtime env) so that
#: they reach the same store as the driver. Their values are never logged.
S3_ENV_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
)


@dataclass
class BuildResult:
    """What a build did."""

    manifest: DatasetManifest
    url: str
    built: int = 0
    skipped: int = 0
    seconds: float = 0.0
    entries: list[ShardEntry] = field(default_factory=list)

    @property
    def images_built(self) -> int:
        """Samples rendered in this run (skipped shards not counted)."""
        return sum(e.samples for e in self.entries if not e.skipped)

    @property
    def images_per_second(self) -> float:
        """Rendered samples per wall-clock second."""
        return self.images_built / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """A one-paragraph human summary."""
        t = self.manifest.totals
        return (
            f"{self.manifest.name} version {self.manifest.version}: {t['shards']} shards, {t['samples']} samples, "
            f"{t['bytes'] / 1e6:.1f} MB ({t['bytes'] / max(1, t['samples']) / 1024:.1f} KiB/sample), "
            f"{t['diverged']} diverged; built {self.built}, skipped {self.skipped} shards in {self.seconds:.1f} s "
            f"({self.images_per_second:.0f} images/s) -> {self.url}" + (f"\n{DIVERGED_MEANING}" if t["diverged"] else "")
        )


def journal_dir(definition: DatasetDefinition) -> str:
    """The folder where a build of ``definition`` records its finished shards (for resuming)."""
    return f"_build/{definition.version}"


def journal_name(definition: DatasetDefinition, shard: str) -> str:
    """Where a finished shard's entry is recorded during a build."""
    return f"{journal_dir(definition)}/{shard}.json"


def _intact(store: Store, definition: DatasetDefinition, spec: ShardSpec, expected: dict) -> bool:
    if store.size(spec.name) != expected["bytes"]:
        return False
    try:
        data = store.read_bytes(spec.name, expected["bytes"], exact=True, why="its entry states")
    except ShardIntegrityError:  # changed since its size was looked at
        return False
    if sha256_bytes(data) != expected["sha256"]:
        return False
    try:
        for _ in read_planned(data, ShardPlan.of(definition, spec.index)):
            pass
    except ShardIntegrityError as exc:
        log.warning("%s: kept from an earlier run but fails its checks (%s); rebuilding it", spec.name, exc)
        return False
    return True


def build_shard(
    store: Store, definition: DatasetDefinition, spec: ShardSpec, expected: dict | None = None, renderer=None
) -> ShardEntry:
    """Build one shard straight into ``store`` and return its entry.

    ``expected`` is the shard's entry from an earlier run of the same definition
    (manifest or build journal): when the stored shard has its size and sha256 and passes the
    checks of a read (members, keys, labels and image headers against the definition's plan),
    nothing is rendered (resume). Otherwise the shard is rendered, written whole, and its entry
    recorded in the build journal: a journal is a hint, never trusted on its own (a shared
    output folder may hold a planted shard and a forged entry that match each other).
    ``renderer`` renders on a GPU (see :func:`render_shard`).
    """
    start = time.perf_counter()
    if expected is not None and _intact(store, definition, spec, expected):
        return ShardEntry(
            spec.name,
            spec.samples,
            int(expected["bytes"]),
            str(expected["sha256"]),
            int(expected.get("diverged", 0)),
            skipped=True,
            seconds=time.perf_counter() - start,
        )
    data, diverged = render_shard(definition, spec, renderer)
    entry = ShardEntry(spec.name, spec.samples, len(data), sha256_bytes(data), diverged)
    store.write_bytes(spec.name, data)
    store.write_bytes(journal_name(definition, spec.name), json.dumps(entry.manifest_entry(), sort_keys=True).encode())
    entry.seconds = time.perf_counter() - start
    return entry


def ray_init_local(num_cpus: int | None = None, **kwargs) -> None:
    """Start an embedded local Ray with ``num_cpus`` CPUs (token auth off unless the user set RAY_AUTH_MODE)."""
    import ray

    # A local ray.init can leave ~/.ray/auth_token behind, after which token auth
    # switches itself on; an explicit mode keeps embedded builds working.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # An embedded Ray is a local tool: no usage reports unless the user asks for them.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # address="local": always a new embedded instance, never a leftover `ray start` cluster.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        configure_logging=True,
        log_to_driver=True,
        **kwargs,
    )


def _check_foreign(store: Store, definition: DatasetDefinition) -> None:
    """A one-line error when ``store`` holds files but no dataset, manifest or build journal: a build
    never writes over someone else's folder (one that happens to hold ``shard-000000.tar``, say)."""
    names = set(store.list())
    if not names or MANIFEST_NAME in names:
        return  # empty, or a dataset (which must be this definition's: checked next)
    if "_build" in names:
        journals = {v for v in store.sub("_build").list() if is_version_id(v)}
        others = sorted(journals - {definition.version})
        if others and definition.version not in journals:
            raise ConfigError(
                f"out: {store.url!r} holds an unfinished build of another definition (_build/{others[0]}); "
                "finish that one with --like, replace it with --overwrite, or give an empty or new folder"
            )
        return
    ours = {s.name for s in definition.shard_specs()} | {WIDS_INDEX_NAME}
    foreign = sorted(n for n in names if n not in ours and not (n.startswith(".") and n.endswith(".tmp")))
    if foreign:
        raise ConfigError(
            f"out: {store.url!r} holds files that are not a fractalshards dataset ({', '.join(repr(n) for n in foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); give an empty or new folder"
        )


#: Shard names a build writes: what ``--overwrite`` may remove of an unfinished build of another definition.
_SHARD_FILE = re.compile(r"^shard-[0-9]{6,}\.tar$")


def _replace_owned(store: Store, definition: DatasetDefinition, say: Callable[[str], None]) -> None:
    """``overwrite``: take back a folder that holds another definition's dataset or unfinished build.

    The manifest goes first (readers stop seeing a dataset before any shard is removed), then its
    shards and card, then other definitions' journals and the shards they wrote. Files that are not
    a fractalshards dataset's are never removed: such a folder is still refused."""
    names = set(store.list())
    if MANIFEST_NAME in names:
        existing = DatasetManifest.from_json(store.read_document(MANIFEST_NAME), source=f"{store.url}/{MANIFEST_NAME}")
        if existing.definition_data == definition.to_dict():
            return  # this definition's own dataset: a resume keeps it
        store.delete(MANIFEST_NAME)
        for shard in existing.shards:
            store.delete(shard.name)
        for name in (CARD_NAME, CROISSANT_NAME, PREVIEW_NAME, WIDS_INDEX_NAME):
            store.delete(name)
        say(f"overwrite: removed dataset {existing.name!r} version {existing.version} ({len(existing.shards)} shards)")
    if "_build" in names:
        journals = sorted(v for v in store.sub("_build").list() if is_version_id(v) and v != definition.version)
        if journals:
            for name in list(store.list("shard-")):
                if _SHARD_FILE.match(name):
                    store.delete(name)
            for version in journals:
                store.fs.rm(store.path(f"_build/{version}"), recursive=True)
            say(f"overwrite: removed the unfinished build of {', '.join(journals)}")


def _planned_entries(store: Store, definition: DatasetDefinition) -> dict[str, dict]:
    """Entries of shards finished by an earlier run of the same definition."""
    planned: dict[str, dict] = {}
    _check_foreign(store, definition)
    if store.exists(MANIFEST_NAME):
        existing = DatasetManifest.from_json(store.read_document(MANIFEST_NAME), source=f"{store.url}/{MANIFEST_NAME}")
        if existing.definition_data != definition.to_dict():
            raise ConfigError(
                f"out: {store.url!r} already holds dataset {existing.name!r} version {existing.version} of another "
                f"definition (it differs in {', '.join(_differences(existing.definition_data, definition.to_dict()))}); "
                "replace it with --overwrite, choose an empty folder or prefix, or rebuild that one with --like"
            )
        planned.update({s.name: s.to_dict() for s in existing.shards})
    journal = store.sub(journal_dir(definition))
    for name in journal.list("shard-"):
        if name.endswith(".json"):
            source = f"{journal.url}/{name}"
            try:
                entry = ManifestShard.from_dict(parse_json(journal.read_document(name), source), "entry", source).to_dict()
            except (ConfigError, StoredDataError):
                continue  # a damaged journal entry only costs a rebuild of that shard
            planned.setdefault(entry["name"], entry)
    return planned


def _differences(stored: object, wanted: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields where two definitions differ (the stored one is untrusted data)."""
    if not isinstance(stored, dict):
        return [prefix.rstrip(".") or "definition"]
    out = []
    for key in sorted(set(stored) | set(wanted), key=str):
        a, b = stored.get(key), wanted.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out[:5] or ["definition"]


def _run_inline(store, definition, specs, planned, on_done, renderer=None) -> None:
    for spec in specs:
        on_done(build_shard(store, definition, spec, planned.get(spec.name), renderer))


def _run_ray(store, definition, specs, planned, on_done, max_in_flight, max_retries) -> None:
    import ray

    remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=True)(build_shard)
    # The definition carries every category's parameters: put it in the object store once.
    definition_ref = ray.put(definition)
    store_ref = ray.put(store)
    if max_in_flight is None:
        max_in_flight = max(2, 2 * int(ray.available_resources().get("CPU", 1) or 1))
    pending = []
    queue = list(specs)
    while queue or pending:
        while queue and len(pending) < max_in_flight:
            spec = queue.pop(0)
            pending.append(remote.remote(store_ref, definition_ref, spec, planned.get(spec.name)))
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            on_done(ray.get(ref))


@accepts_limits
def build(
    definition: DatasetDefinition,
    out: str | Store,
    *,
    storage_options: dict | None = None,
    workers: int | None = None,
    address: str | None = None,
    max_in_flight: int | None = None,
    max_retries: int = 3,
    progress: bool | None = None,
    log_fn: Callable[[str], None] | None = None,
    license: str = DEFAULT_LICENSE,
    device: str = "cpu",
    overwrite: bool = False,
) -> BuildResult:
    """Build ``definition`` into ``out`` (a folder or URL) and write its manifest last.

    Args:
        definition: what to build.
        out: destination folder or URL (``s3://bucket/prefix``...), or an opened :class:`Store`.
        storage_options: fsspec options of the destination (credentials come from the
            environment when omitted).
        workers: ``0`` builds inline without Ray; ``N`` starts an embedded local Ray with
            N CPUs (default: all cores) unless Ray is already initialised or ``address`` is given.
        address: a Ray cluster to join (``auto``, ``ray://host:10001``, ``host:6379``).
        max_in_flight: most tasks pending at once (default: twice the cluster's CPUs).
        max_retries: retries of a task whose worker dies or that raises.
        progress: show a bar of shards and images/s (a tqdm bar on a terminal, one log line every 10 s
            elsewhere); default: on in an interactive session, off in scripts.
        log_fn: where to send the plan and summary lines (default: logging).
        license: SPDX id recorded in the manifest (default ``CC-BY-4.0``, FractalDB's release).
        device: ``cpu`` (default) renders in the workers; ``cuda`` / ``cuda:N`` renders each shard's
            images on this machine's GPU (:mod:`fractalshards.gpu_renderer`) and encodes them here, inline:
            the same shard bytes as a CPU build.
        overwrite: replace a dataset (or an unfinished build) of another definition that ``out``
            holds: its manifest is removed first, then its shards, card and journals. Without it such a
            folder is refused. A folder of files that are not a fractalshards dataset is refused either way.
    """
    say = log_fn or log.info
    check_license(license)
    progress = default_progress(progress)
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"workers: {workers!r} is not valid; use 0 (inline) or a positive integer")
    if workers == 0 and address:
        raise ConfigError("workers: --workers 0 builds inline and cannot join a cluster; drop --address or --workers")
    renderer = None
    if device != "cpu":
        if workers or address:
            raise ConfigError(f"device: --device {device} renders on this machine's GPU, inline; drop --workers/--address")
        from .gpu_renderer import GPURenderer

        renderer = GPURenderer(definition, device)  # a one-line error without a GPU or GPU kernels
        workers = 0
    store = out if isinstance(out, Store) else open_store(out, storage_options)
    out = store.url
    store.check_reachable(create=True)
    if overwrite:
        _replace_owned(store, definition, say)
    planned = _planned_entries(store, definition)
    specs = definition.shard_specs()
    say(
        f"plan: {definition.name}: {_grid(definition)} = "
        f"{definition.num_samples} samples in {len(specs)} shards of {definition.shard_size} "
        f"(~{definition.estimated_bytes() / 1e6:.0f} MB) -> {out}"
    )
    if planned:
        say(f"resume: {len(planned)} shards recorded by an earlier run; they are checked and kept if intact")

    entries: dict[str, ShardEntry] = {}
    bar = progress_bar(total=len(specs), desc="build", unit="shard", enabled=progress)
    start = time.perf_counter()

    def on_done(entry: ShardEntry) -> None:
        entries[entry.name] = entry
        bar.update(1)
        built = sum(e.samples for e in entries.values() if not e.skipped)
        elapsed = time.perf_counter() - start
        bar.set_postfix_str(f"{built / elapsed if elapsed > 0 else 0:.0f} images/s")

    try:
        if workers == 0:
            _run_inline(store, definition, specs, planned, on_done, renderer)
        else:
            _with_ray(workers, address, lambda: _run_ray(store, definition, specs, planned, on_done, max_in_flight, max_retries))
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    ordered = [entries[s.name] for s in specs]
    manifest = DatasetManifest.create(definition, [e.manifest_entry() for e in ordered], license=license)
    store.write_bytes(WIDS_INDEX_NAME, manifest.wids_index())  # for wids.ShardListDataset; the manifest last
    store.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    _remove_journal(store, definition)
    result = BuildResult(
        manifest,
        out,
        built=sum(not e.skipped for e in ordered),
        skipped=sum(e.skipped for e in ordered),
        seconds=seconds,
        entries=ordered,
    )
    say("done: " + result.summary())
    return result


def _with_ray(workers: int | None, address: str | None, run: Callable[[], None]) -> None:
    import ray

    started = False
    if not ray.is_initialized():
        if address:
            # Workers of a cluster do not inherit this shell: forward the store's settings.
            env = {k: os.environ[k] for k in S3_ENV_VARS if k in os.environ}
            env.update({k: v for k, v in os.environ.items() if k.startswith("FSSPEC_")})
            ray.init(address=address, runtime_env={"env_vars": env} if env else None, logging_level=logging.WARNING)
        elif os.environ.get("RAY_ADDRESS"):
            # Inside `ray job submit`: the job's runtime env already reaches every worker.
            ray.init(logging_level=logging.WARNING)
        else:
            ray_init_local(resolve_workers(workers))
        started = True
    try:
        run()
    finally:
        if started:
            ray.shutdown()


def _remove_journal(store: Store, definition: DatasetDefinition) -> None:
    path = store.path(journal_dir(definition))
    try:
        if store.fs.exists(path):
            store.fs.rm(path, recursive=True)
        parent = store.path("_build")
        if store.is_local and store.fs.exists(parent) and not store.fs.ls(parent):
            store.fs.rmdir(parent)
    except FileNotFoundError:
        pass


def _grid(definition: DatasetDefinition) -> str:
    # "C categories x K instances", or the family's own grouping (segmentation: one group of images).
    groups, k = definition.num_groups, definition.instances
    if groups == definition.num_categories:
        return f"{groups} categories x {k} instances"
    return f"{groups} group{'s' if groups != 1 else ''} x {k} samples ({definition.num_categories} classes)"
