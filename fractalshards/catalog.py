"""The publication index of a prefix: reading, validating, resolving ``PREFIX@ref``, rebuilding.

The layout of a publication prefix is described in the docs (``docs/formats.md``, "Publication
layout").

``index.json`` is derived data: it is rebuilt from a fresh listing of ``index.d/``
until a listing taken after the write matches, so a concurrent publisher's entry
is never lost. Everything here is read from storage and validated before use:
versions are 16 lowercase hex digits, tags match :data:`TAG_PATTERN`, counts are
non-negative integers, and a version is never used as a path part otherwise.
"""

from __future__ import annotations

import json
import re

from .errors import ConfigError, check_dataset_name, check_version, is_version_id, reads_stored_data
from .limits import parse_json
from .storage import Store, open_store

__all__ = [
    "INDEX_NAME",
    "INDEX_DIR",
    "TAGS_DIR",
    "read_claims",
    "INDEX_FORMAT",
    "TAG_PATTERN",
    "check_version",
    "check_tag",
    "entry_from_dict",
    "read_entries",
    "index_body",
    "rebuild_index",
    "read_index",
    "resolve",
    "resolve_pinned",
    "split_ref",
]

INDEX_NAME = "index.json"
INDEX_DIR = "index.d"
#: Tag claims: ``tags/<tag>`` holds the version the tag names, created exclusively (the truth of a tag).
TAGS_DIR = "tags"
INDEX_FORMAT = "fractalshards.index"
#: Tags: a letter or digit, then up to 63 letters, digits, '.', '_' or '-'.
TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_tag(value: object, field: str = "tag", source: str = "tag") -> str:
    """``value`` if it is a valid tag name (not ``latest``, not a version id)."""
    if not isinstance(value, str) or not TAG_PATTERN.match(value) or value == "latest" or is_version_id(value):
        raise ConfigError(
            f"{source}: {field} {value!r} is not valid; use letters, digits, '.', '_' or '-' (not 'latest' or a version id)"
        )
    return value


def entry_from_dict(data: object, source: str) -> dict:
    """Validate an ``index.d/`` entry (or one of ``index.json``'s versions)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an index entry must be an object")
    version = check_version(data.get("version"), "version", source)
    if data.get("path", version) != version:
        raise ConfigError(f"{source}: path {data.get('path')!r} is not the version {version}; the index was edited")
    tags = data.get("tags", [])
    if not isinstance(tags, list):
        raise ConfigError(f"{source}: tags must be a list")
    for i, tag in enumerate(tags):
        check_tag(tag, f"tags[{i}]", source)
    for key in ("samples", "shards", "bytes"):
        value = data.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{source}: {key} {value!r} is not a non-negative integer")
    created = data.get("created")
    if not isinstance(created, str) or len(created) > 40:
        raise ConfigError(f"{source}: created {created!r} is not a timestamp")
    check_dataset_name(data.get("name", ""), "name", source, allow_empty=True)
    kind = data.get("kind", "dataset")
    if kind not in ("dataset", "recipe", "mixture"):
        raise ConfigError(f"{source}: kind {kind!r} is not 'dataset', 'recipe' or 'mixture'")
    return dict(data, path=version, tags=list(tags))


@reads_stored_data
def read_entries(dest: Store) -> list[dict]:
    """Every ``index.d/`` entry, validated, oldest first."""
    entries = []
    sub = dest.sub(INDEX_DIR)
    for name in sorted(sub.list()):
        if not name.endswith(".json") or name.startswith("."):
            continue
        source = f"{dest.url.rstrip('/')}/{INDEX_DIR}/{name}"
        data = parse_json(sub.read_document(name), source)
        entry = entry_from_dict(data, source)
        if name != f"{entry['version']}.json":
            raise ConfigError(f"{source}: holds version {entry['version']}; the file name must match it")
        entries.append(entry)
    return sorted(entries, key=lambda e: (e["created"], e["version"]))


@reads_stored_data
def read_claims(dest: Store) -> dict[str, str]:
    """Every tag claim under ``tags/``: tag -> the version its file names (each read no further than 1 KiB,
    names and versions validated; a file that is not a tag's is ignored)."""
    sub, claims = dest.sub(TAGS_DIR), {}
    for name in sorted(sub.list()):
        if name.startswith(".") or not TAG_PATTERN.match(name) or name == "latest" or is_version_id(name):
            continue
        source = f"{dest.url.rstrip('/')}/{TAGS_DIR}/{name}"
        try:
            text = sub.read_bytes(name, 1024, why="a tag file holds a version id").decode("ascii").strip()
        except FileNotFoundError:
            continue  # moved away meanwhile
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not a version id; run 'fractalshards publish --force' to claim it again") from exc
        claims[name] = check_version(text, "version", source)
    return claims


def index_body(entries: list[dict], claims: dict[str, str] | None = None) -> dict:
    """``index.json``'s content for ``entries`` (oldest first): the newest is ``latest``. A tag names the
    version its claim file names (``claims``, when that version is published), else the entry that lists it:
    concurrent publishers of one version each write its entry, but none can lose another's claimed tag."""
    latest = entries[-1]["version"] if entries else None
    tags = {t: e["version"] for e in entries for t in e.get("tags", [])}
    versions = {e["version"] for e in entries}
    tags.update({t: v for t, v in (claims or {}).items() if v in versions})
    return {
        "format": INDEX_FORMAT,
        "format_version": 1,
        "latest": latest,
        "versions": {e["version"]: {**e, "tags": sorted(t for t, v in tags.items() if v == e["version"])} for e in entries},
        "tags": tags,
    }


def rebuild_index(dest: Store, attempts: int = 10) -> dict:
    """Write index.json from index.d/ and the tag claims until a later listing agrees with what was written."""
    body: dict = {}
    for _ in range(attempts):
        body = index_body(read_entries(dest), read_claims(dest))
        dest.write_bytes(INDEX_NAME, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode())
        if index_body(read_entries(dest), read_claims(dest)) == body:
            return body
    return body


@reads_stored_data
def read_index(dest: str | Store, storage_options: dict | None = None) -> dict:
    """The publication index of ``dest``, validated (empty when nothing is published there)."""
    store = dest if isinstance(dest, Store) else open_store(dest, storage_options)
    source = f"{store.url.rstrip('/')}/{INDEX_NAME}"
    if not store.exists(INDEX_NAME):
        return index_body([])
    data = parse_json(store.read_document(INDEX_NAME), source)
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise ConfigError(f"{source}: not a fractalshards index; check the URL")
    versions, tags = data.get("versions"), data.get("tags")
    if not isinstance(versions, dict) or not isinstance(tags, dict):
        raise ConfigError(f"{source}: versions and tags must be objects; run 'fractalshards publish' again to rebuild it")
    for key, entry in versions.items():
        if entry_from_dict(entry, f"{source}: versions[{key!r}]")["version"] != key:
            raise ConfigError(f"{source}: versions[{key!r}] holds another version")
    for tag, version in tags.items():
        check_tag(tag, "tag", source)
        if check_version(version, f"tags[{tag!r}]", source) not in versions:
            raise ConfigError(f"{source}: tag {tag!r} names version {version}, which is not in the index")
    latest = data.get("latest")
    if latest is not None and check_version(latest, "latest", source) not in versions:
        raise ConfigError(f"{source}: latest names version {latest}, which is not in the index")
    return data


def split_ref(url: str) -> tuple[str, str | None]:
    """``s3://b/p@v1`` -> (``s3://b/p``, ``v1``); a URL without ``@ref`` -> (url, None)."""
    head, sep, last = url.rstrip("/").rpartition("/")
    if "@" in last:
        name, _, ref = last.rpartition("@")
        if name and ref:
            return (f"{head}{sep}{name}", ref)
    return url, None


def resolve(url: str, storage_options: dict | None = None) -> str:
    """``DEST@ref`` -> ``DEST/<version>``; other URLs are returned unchanged."""
    return resolve_pinned(url, storage_options)[0]


def resolve_pinned(url: str, storage_options: dict | None = None) -> tuple[str, str | None]:
    """``DEST@ref`` -> (``DEST/<version>``, the version the reference pins); other URLs -> (url, None).

    The caller must check that what it opens there holds that version (pinned means pinned:
    a folder whose manifest is another version's is refused, see :func:`fractalshards.dataset.open_definition`).
    """
    base, ref = split_ref(url)
    if ref is None:
        return url, None
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
    return f"{base.rstrip('/')}/{check_version(version)}", version
