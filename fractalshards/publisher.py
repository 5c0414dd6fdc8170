"""Publishing: immutable, versioned, checksummed datasets under a bucket prefix.

The layout of a publication prefix ``DEST`` is described once, in the docs (``docs/formats.md``,
"Publication layout").

A version is the dataset manifest's version id, so the same content always lands
in the same place and a published version is never silently replaced.

A new tag is claimed before anything is copied, with a conditional create (S3
``If-None-Match: *``; an exclusive link on local folders): of two publishers racing
for the same new tag exactly one wins and the other gets a one-line error.
``--force`` overwrites the claim (moves the tag).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .card import write_card
from .catalog import INDEX_DIR, TAGS_DIR, check_tag, check_version, entry_from_dict, read_index, rebuild_index
from .dataset import MANIFEST_NAME, WIDS_INDEX_NAME, DatasetManifest, open_document
from .errors import ConfigError, StoredDataError, check_license, reads_stored_data
from .limits import accepts_limits, parse_json
from .mixspec import MIXTURE_NAME, MixtureSpec
from .progress import bar as progress_bar
from .progress import default_progress
from .recipe import RECIPE_NAME, Recipe
from .storage import Store, open_store

__all__ = ["PublishResult", "publish", "TAGS_DIR"]

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    """What a publication did."""

    dest: str
    version: str
    tags: list[str]
    copied: int
    kept: int
    server_side: bool


def _now() -> str:
    # Microseconds: "latest" is the newest entry by this time, and two publications can
    # fall within one second.
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _claim_tag(target: Store, tag: str, version: str, force: bool, dest: str) -> None:
    """Claim ``tag`` for ``version`` (exclusive create); a claim of another version is a one-line error."""
    name = f"{TAGS_DIR}/{tag}"
    if force:
        target.write_bytes(name, version.encode())
        return
    if target.create_exclusive(name, version.encode()):
        return
    try:
        owner = target.read_bytes(name, 1024, why="a tag file holds a version id").decode().strip()
    except (FileNotFoundError, UnicodeDecodeError, StoredDataError):
        owner = "?"
    if owner != version:
        raise ConfigError(f"tag: {tag!r} already names version {owner} at {dest!r}; choose another tag or use --force to move it")


def _same_store(a: Store, b: Store) -> bool:
    # Local copies go through write_bytes instead (temporary name, then rename).
    return not b.is_local and type(a.fs) is type(b.fs) and a.fs.storage_options == b.fs.storage_options


@accepts_limits
def publish(
    src: str,
    dest: str | Store,
    *,
    tags: list[str] | None = None,
    force: bool = False,
    src_options: dict | None = None,
    dest_options: dict | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
    license: str | None = None,
    card: bool = True,
) -> PublishResult:
    """Publish the dataset at ``src`` under ``dest/<version>/`` and record it in ``dest/index.json``.

    Shards are copied server-side when both sides are the same store, and every copy
    is read back and checked against its sha256. Then the dataset card (``README.md``,
    ``preview.png``, ``croissant.json``; :mod:`fractalshards.card`) is written unless
    ``card`` is false, then the manifest, then the index entry. ``license`` (an SPDX id)
    replaces the manifest's license in the published copy (it is not part of the version). A version or tag that is already
    published is refused unless ``force``; an interrupted publication is completed by
    running it again (intact shards are kept).
    """
    say = say or log.info
    tags = list(tags or [])
    progress = default_progress(progress)
    for tag in tags:
        check_tag(tag)
    kind, manifest, source = open_document(src, src_options)
    version = check_version(manifest.version)
    if license is not None:
        if kind != "dataset":
            raise ConfigError("license: a recipe has no images to license; give --license when you build or publish the dataset")
        manifest = dataclasses.replace(manifest, license=check_license(license))
    target = dest if isinstance(dest, Store) else open_store(dest, dest_options)
    dest = target.url
    target.check_reachable(create=True)
    index = read_index(target)
    published = version in index.get("versions", {})
    for tag in tags:
        owner = index.get("tags", {}).get(tag)
        if owner is not None and owner != version and not force:
            raise ConfigError(
                f"tag: {tag!r} already names version {owner} at {dest!r}; choose another tag or use --force to move it"
            )
    new_tags = [t for t in tags if index.get("tags", {}).get(t) != version]
    if published and not new_tags and not force:
        raise ConfigError(f"version: {version} is already published at {dest!r}; use --force to publish it again")
    for tag in new_tags:
        _claim_tag(target, tag, version, force, dest)

    vdir = target.sub(version)
    if kind == "recipe":
        return _publish_recipe(manifest, target, vdir, index, tags, force, dest, say)
    if kind == "mixture":
        return _publish_mixture(manifest, target, vdir, index, tags, force, dest, say)
    existing_manifest = vdir.exists(MANIFEST_NAME)
    server_side = _same_store(source, target)
    copied = kept = 0
    if force or not existing_manifest:
        bar = progress_bar(total=len(manifest.shards), desc="publish", unit="shard", enabled=progress)
        for shard in manifest.shards:
            name = shard.name
            if not force and vdir.size(name) == shard.bytes and vdir.sha256(name) == shard.sha256:
                kept += 1
            else:
                _copy_shard(source, vdir, name, shard.bytes, server_side)
                got = vdir.sha256(name)
                if got != shard.sha256:
                    raise ConfigError(
                        f"publish: {name} arrived with sha256 {str(got)[:16]}... instead of "
                        f"{shard.sha256[:16]}...; the source is damaged, verify it"
                    )
                copied += 1
            bar.update(1)
        bar.close()
        if card:
            write_card(manifest, vdir, vdir, url=f"{dest.rstrip('/')}/{version}")
        vdir.write_bytes(WIDS_INDEX_NAME, manifest.wids_index())  # wids.ShardListDataset(<version>/wids-index.json)
        vdir.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    else:
        stored = DatasetManifest.from_json(vdir.read_document(MANIFEST_NAME), source=f"{dest}/{version}/{MANIFEST_NAME}")
        if stored.data != manifest.data:
            raise ConfigError(f"version: {dest}/{version} holds a different manifest; use --force to replace it")
        kept = len(manifest.shards)

    entry = _record(
        target,
        index,
        version,
        tags,
        name=manifest.name,
        fingerprint=manifest.fingerprint,
        kind="dataset",
        samples=manifest.totals["samples"],
        shards=manifest.totals["shards"],
        bytes=manifest.totals["bytes"],
    )
    say(
        f"published {manifest.name} version {version} at {dest.rstrip('/')}/{version} "
        f"(tags: {', '.join(entry['tags']) or 'none'}; {copied} shards copied"
        f"{' server-side' if server_side and copied else ''}, {kept} kept)"
    )
    return PublishResult(dest, version, entry["tags"], copied, kept, server_side)


def _record(target: Store, index: dict, version: str, tags: list[str], **fields) -> dict:
    """Write the version's index entry (tags merged; moved tags dropped from other entries) and rebuild the index."""
    entry = _entry(target, version)
    previous = index.get("versions", {}).get(version, {})
    # Tags move to this version: drop them from the entries that held them (only with --force).
    for other_version, other in index.get("versions", {}).items():
        if other_version != version and set(other.get("tags", [])) & set(tags):
            other = dict(other, tags=[t for t in other.get("tags", []) if t not in tags])
            _write_entry(target, other)
    entry.update(
        version=version,
        tags=sorted(set(previous.get("tags", [])) | set(tags)),
        created=previous.get("created") or entry.get("created") or _now(),
        path=version,
        **fields,
    )
    _write_entry(target, entry)
    rebuild_index(target)
    return entry


def _publish_document(
    kind: str, document: Recipe | MixtureSpec, target: Store, vdir: Store, index: dict, tags: list[str], force: bool, dest: str
) -> tuple[dict, int]:
    """A version that is one document (a recipe, a mixture spec): ``DEST/<version>/<its file>`` alone,
    marked with its ``kind`` in the index; an existing file of another version is refused unless ``force``.
    The index entry and the document's size."""
    name, parse = (RECIPE_NAME, Recipe.from_json) if kind == "recipe" else (MIXTURE_NAME, MixtureSpec.from_json)
    text = document.to_json().encode()
    if vdir.exists(name) and not force:
        if parse(vdir.read_document(name), f"{dest}/{document.version}/{name}").version != document.version:
            raise ConfigError(f"version: {dest}/{document.version} holds a different {kind}; use --force to replace it")
    else:
        vdir.write_bytes(name, text)
    samples = document.definition.num_samples if kind == "recipe" else (document.epoch_size or 0)  # type: ignore[union-attr]
    entry = _record(
        target,
        index,
        document.version,
        tags,
        name=document.name,
        fingerprint=document.fingerprint,
        kind=kind,
        samples=samples,
        shards=0,
        bytes=len(text),
    )
    return entry, len(text)


def _publish_recipe(
    recipe: Recipe, target: Store, vdir: Store, index: dict, tags: list[str], force: bool, dest: str, say: Callable[[str], None]
) -> PublishResult:
    """A recipe version: ``DEST/<version>/recipe.json`` alone (kilobytes), marked ``kind: recipe`` in the index."""
    entry, size = _publish_document("recipe", recipe, target, vdir, index, tags, force, dest)
    say(
        f"published recipe {recipe.name} version {recipe.version} at {dest.rstrip('/')}/{recipe.version} "
        f"(tags: {', '.join(entry['tags']) or 'none'}; {size / 1024:.1f} KiB, "
        f"{recipe.definition.num_samples} samples rendered on demand)"
    )
    return PublishResult(dest, recipe.version, entry["tags"], 0, 0, False)


def _publish_mixture(
    spec: MixtureSpec,
    target: Store,
    vdir: Store,
    index: dict,
    tags: list[str],
    force: bool,
    dest: str,
    say: Callable[[str], None],
) -> PublishResult:
    """A mixture spec version: ``DEST/<version>/mixture.json`` alone, marked ``kind: mixture`` in the index.
    Its sources stay where the spec names them, pinned to their versions."""
    entry, _ = _publish_document("mixture", spec, target, vdir, index, tags, force, dest)
    say(
        f"published mixture {spec.name} version {spec.version} at {dest.rstrip('/')}/{spec.version} "
        f"(tags: {', '.join(entry['tags']) or 'none'}; {len(spec.sources)} sources, each pinned to its version)"
    )
    return PublishResult(dest, spec.version, entry["tags"], 0, 0, False)


@reads_stored_data
def _entry(target: Store, version: str) -> dict:
    path = f"{INDEX_DIR}/{version}.json"
    if not target.exists(path):
        return {}
    return entry_from_dict(parse_json(target.read_document(path), f"{target.url}/{path}"), f"{target.url}/{path}")


def _write_entry(target: Store, entry: dict) -> None:
    target.write_bytes(f"{INDEX_DIR}/{entry['version']}.json", (json.dumps(entry, indent=1, sort_keys=True) + "\n").encode())


def _copy_shard(source: Store, vdir: Store, name: str, size: int, server_side: bool) -> None:
    if server_side:
        # Same store: the server copies (S3 CopyObject); nothing passes through here.
        vdir.fs.copy(source.path(name), vdir.path(name))
        vdir.fs.invalidate_cache(vdir.path(name))
    else:
        vdir.write_bytes(name, source.read_bytes(name, size, exact=True, why="the manifest states"))
