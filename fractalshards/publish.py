"""Publishing: immutable, versioned, checksummed datasets under a bucket prefix.

Layout of a publication prefix ``DEST`` (e.g. ``s3://bucket/datasets/fractaldb-1k``)::

    DEST/<version>/shard-000000.tar ...    # copied shards, each checked against its sha256
    DEST/<version>/manifest.json           # written after every shard is in place
    DEST/index.d/<version>.json            # one entry per published version (name, tags, created, sizes)
    DEST/index.json                        # all entries, rebuilt from index.d/

A version is the dataset manifest's version id, so the same content always lands
in the same place and a published version is never silently replaced.

``index.json`` is derived data: each publisher writes its own entry object (which
no other publisher touches), then rewrites ``index.json`` from a fresh listing of
``index.d/`` until a listing taken after its write matches what it wrote. A
concurrent publisher's entry is therefore never lost: whoever writes last has
listed after the other's entry existed. Readers resolve ``DEST@tag``,
``DEST@latest`` and ``DEST@<version>`` through ``index.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from dataclasses import dataclass
from typing import Callable

from tqdm import tqdm

from .dataset import MANIFEST_NAME, DatasetManifest, load_dataset
from .errors import ConfigError
from .faults import fault_point
from .storage import Store, open_store

__all__ = ["INDEX_NAME", "PublishResult", "publish", "read_index", "resolve", "split_ref"]

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
INDEX_DIR = "index.d"
INDEX_FORMAT = "fractalshards.index"
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class PublishResult:
    """What a publication did."""

    dest: str
    version: str
    tags: list[str]
    copied: int
    kept: int
    server_side: bool


def split_ref(url: str) -> tuple[str, str | None]:
    """``s3://b/p@v1`` -> (``s3://b/p``, ``v1``); a URL without ``@ref`` -> (url, None)."""
    head, sep, last = url.rstrip("/").rpartition("/")
    if "@" in last:
        name, _, ref = last.rpartition("@")
        if name and ref:
            return (f"{head}{sep}{name}", ref)
    return url, None


def _now() -> str:
    # Microseconds: "latest" is the newest entry by this time, and two publications can
    # fall within one second.
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _entries(dest: Store) -> list[dict]:
    entries = []
    sub = dest.sub(INDEX_DIR)
    for name in sorted(sub.list()):
        if name.endswith(".json"):
            entries.append(json.loads(sub.read_bytes(name)))
    return sorted(entries, key=lambda e: (e["created"], e["version"]))


def _index_body(entries: list[dict]) -> dict:
    latest = entries[-1]["version"] if entries else None
    return {"format": INDEX_FORMAT, "format_version": 1, "latest": latest,
            "versions": {e["version"]: e for e in entries},
            "tags": {t: e["version"] for e in entries for t in e.get("tags", [])}}


def _rebuild_index(dest: Store, attempts: int = 10) -> dict:
    """Write index.json from index.d/ until a later listing agrees with what was written."""
    body: dict = {}
    for _ in range(attempts):
        body = _index_body(_entries(dest))
        dest.write_bytes(INDEX_NAME, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())
        if _index_body(_entries(dest)) == body:
            return body
    return body


def read_index(dest: str | Store, storage_options: dict | None = None) -> dict:
    """The publication index of ``dest`` (empty when nothing is published there)."""
    store = dest if isinstance(dest, Store) else open_store(dest, storage_options)
    if not store.exists(INDEX_NAME):
        return _index_body([])
    data = json.loads(store.read_bytes(INDEX_NAME))
    if data.get("format") != INDEX_FORMAT:
        raise ConfigError(f"index: {store.url}/{INDEX_NAME} is not a fractalshards index; check the URL")
    return data


def resolve(url: str, storage_options: dict | None = None) -> str:
    """``DEST@ref`` -> ``DEST/<version>``; other URLs are returned unchanged."""
    base, ref = split_ref(url)
    if ref is None:
        return url
    index = read_index(base, storage_options)
    if ref == "latest":
        version = index.get("latest")
    elif ref in index.get("tags", {}):
        version = index["tags"][ref]
    elif ref in index.get("versions", {}):
        version = ref
    else:
        version = None
    if not version:
        known = sorted(index.get("tags", {})) + sorted(index.get("versions", {}))
        raise ConfigError(f"url: {ref!r} is not a tag or version published at {base!r}; known: {', '.join(known) or 'none'}")
    return f"{base.rstrip('/')}/{version}"


def _same_store(a: Store, b: Store) -> bool:
    # Local copies go through write_bytes instead (temporary name, then rename).
    return not b.is_local and type(a.fs) is type(b.fs) and a.fs.storage_options == b.fs.storage_options


def publish(
    src: str,
    dest: str,
    *,
    tags: list[str] | None = None,
    force: bool = False,
    src_options: dict | None = None,
    dest_options: dict | None = None,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
) -> PublishResult:
    """Publish the dataset at ``src`` under ``dest/<version>/`` and record it in ``dest/index.json``.

    Shards are copied server-side when both sides are the same store, and every copy
    is read back and checked against its sha256. The manifest is written after the
    shards, the index entry after the manifest. A version or tag that is already
    published is refused unless ``force``; an interrupted publication is completed by
    running it again (intact shards are kept).
    """
    say = say or log.info
    tags = list(tags or [])
    for tag in tags:
        if not _TAG.match(tag) or tag == "latest" or re.fullmatch(r"[0-9a-f]{16}", tag):
            raise ConfigError(f"tag: {tag!r} is not valid; use letters, digits, '.', '_' or '-' (not 'latest' or a version id)")
    manifest, source = load_dataset(src, src_options)
    version = manifest.version
    target = open_store(dest, dest_options)
    target.check_reachable(create=True)
    index = read_index(target)
    published = version in index.get("versions", {})
    for tag in tags:
        owner = index.get("tags", {}).get(tag)
        if owner is not None and owner != version and not force:
            raise ConfigError(f"tag: {tag!r} already names version {owner} at {dest!r}; choose another tag or use --force to move it")
    new_tags = [t for t in tags if index.get("tags", {}).get(t) != version]
    if published and not new_tags and not force:
        raise ConfigError(f"version: {version} is already published at {dest!r}; use --force to publish it again")

    vdir = target.sub(version)
    existing_manifest = vdir.exists(MANIFEST_NAME)
    server_side = _same_store(source, target)
    copied = kept = 0
    if force or not existing_manifest:
        bar = tqdm(total=len(manifest.shards), desc="publish", unit="shard", disable=not progress)
        for shard in manifest.shards:
            name = shard["name"]
            if not force and vdir.size(name) == shard["bytes"] and vdir.sha256(name) == shard["sha256"]:
                kept += 1
            else:
                _copy_shard(source, vdir, name, server_side)
                got = vdir.sha256(name)
                if got != shard["sha256"]:
                    raise ConfigError(f"publish: {name} arrived with sha256 {str(got)[:16]}... instead of "
                                      f"{shard['sha256'][:16]}...; the source is damaged, verify it")
                copied += 1
            bar.update(1)
        bar.close()
        vdir.write_bytes(MANIFEST_NAME, manifest.to_json().encode())
    else:
        stored = DatasetManifest.from_json(vdir.read_bytes(MANIFEST_NAME).decode())
        if stored.data != manifest.data:
            raise ConfigError(f"version: {dest}/{version} holds a different manifest; use --force to replace it")
        kept = len(manifest.shards)

    entry = _entry(target, version)
    previous = index.get("versions", {}).get(version, {})
    # Tags move to this version: drop them from the entries that held them (only with --force).
    for other_version, other in index.get("versions", {}).items():
        if other_version != version and set(other.get("tags", [])) & set(tags):
            other = dict(other, tags=[t for t in other.get("tags", []) if t not in tags])
            _write_entry(target, other)
    entry.update(
        name=manifest.name, version=version, fingerprint=manifest.data["fingerprint"],
        tags=sorted(set(previous.get("tags", [])) | set(tags)),
        created=previous.get("created") or entry.get("created") or _now(),
        samples=manifest.totals["samples"], shards=manifest.totals["shards"], bytes=manifest.totals["bytes"],
        path=version,
    )
    _write_entry(target, entry)
    _rebuild_index(target)
    say(f"published {manifest.name} version {version} at {dest.rstrip('/')}/{version} "
        f"(tags: {', '.join(entry['tags']) or 'none'}; {copied} shards copied{' server-side' if server_side and copied else ''}, {kept} kept)")
    return PublishResult(dest, version, entry["tags"], copied, kept, server_side)


def _entry(target: Store, version: str) -> dict:
    path = f"{INDEX_DIR}/{version}.json"
    return json.loads(target.read_bytes(path)) if target.exists(path) else {}


def _write_entry(target: Store, entry: dict) -> None:
    target.write_bytes(f"{INDEX_DIR}/{entry['version']}.json", (json.dumps(entry, indent=1, sort_keys=True) + "\n").encode())


def _copy_shard(source: Store, vdir: Store, name: str, server_side: bool) -> None:
    fault_point(f"publish:{name}")
    if server_side:
        # Same store: the server copies (S3 CopyObject); nothing passes through here.
        vdir.fs.copy(source.path(name), vdir.path(name))
        vdir.fs.invalidate_cache(vdir.path(name))
    else:
        vdir.write_bytes(name, source.read_bytes(name))

