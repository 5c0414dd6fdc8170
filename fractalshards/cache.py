"""A node-local cache of remote shards: each shard is fetched once per node.

Every DataLoader worker and every rank of a node that point at the same folder
share it. Layout: ``<root>/<dataset version>/<shard name>``, beside it a lock
file ``.<shard name>.lock`` per shard. The protocol, with ``flock`` locks (the
kernel drops a dead process's locks, so a stale lock is simply taken over):

- A reader takes the shard's lock *shared*, and reads the file when it exists.
- Otherwise it takes the lock *exclusive* (waiting for whoever is downloading),
  looks again, and if the file is still missing it downloads (one GET), checks
  the bytes against the manifest's sha256, writes them to a temporary name
  ``.<shard>.<pid>.<random>.tmp`` and renames. A download killed midway leaves only a temporary name,
  which nothing reads and the next downloader removes.
- Eviction keeps the folder under ``limit`` bytes, least recently used first
  (reads touch a file's mtime), and never removes a shard whose lock another
  process holds, so a file being read or written is never pulled away.

Reads return the shard's bytes: a caller holds what it reads in memory and the
file may be evicted after that. Node-local storage is assumed (``flock`` on a
network filesystem is not reliable).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError, ShardIntegrityError, check_file_name, check_version, is_version_id, reads_stored_data
from .storage import atomic_write, cache_root, check_no_symlink, locked, read_regular

__all__ = ["ShardCache", "default_cache_dir", "DEFAULT_CACHE_LIMIT"]

log = logging.getLogger(__name__)

#: Default bound of a cache folder: 20 GiB.
DEFAULT_CACHE_LIMIT = 20 * 2**30
_CHUNK = 4 << 20


def _is_shard_name(name: str) -> bool:
    try:
        check_file_name(name, "shard name", "cache")
    except ConfigError:
        return False
    return not name.startswith(".")


def default_cache_dir() -> Path:
    """``<cache_root>/shards``: the node cache of remote shards."""
    return cache_root() / "shards"


class ShardCache:
    """The cache folder ``root``, at most ``limit`` bytes of shards."""

    def __init__(self, root: str | os.PathLike, limit: int = DEFAULT_CACHE_LIMIT) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ConfigError(f"cache_limit: {limit!r} is not valid; use a number of bytes >= 0")
        self.root = Path(root).expanduser().absolute()
        self.limit = limit
        self._warned = False

    @reads_stored_data
    def path(self, version: str, shard: str) -> Path:
        """Where ``shard`` of dataset ``version`` is cached; both names are checked (they come from storage)."""
        check_version(version, "version", "cache")
        check_file_name(shard, "shard name", "cache")
        path = self.root / version / shard
        if path.parent.parent != self.root:  # belt and braces: never outside the root
            raise ConfigError(f"shards: {shard!r} would be cached outside {self.root}; refusing")
        check_no_symlink(self.root, path.parent)  # a shared cache folder: a planted link must not lead outside it
        return path

    def get(self, version: str, shard: str, sha256: str, fetch: Callable[[], bytes], *, size: int) -> bytes:
        """The bytes of ``shard``: from the cache, or fetched once (by whichever process comes first).

        ``fetch`` downloads the shard; its bytes must have ``sha256`` or nothing is
        cached and :class:`ShardIntegrityError` is raised. A cached copy that no longer
        matches (a damaged disk) is replaced; one of another ``size`` (the manifest's) is not read.
        """
        path = self.path(version, shard)
        lock = path.parent / f".{shard}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644))  # writable at all?
        except OSError as exc:  # a read-only or full disk, a folder that cannot be: read past the cache
            self._cannot_write(exc)
            return self._checked(shard, sha256, fetch())
        check_no_symlink(self.root, path.parent)  # again: the folder may have been swapped for a link meanwhile
        with locked(lock, fcntl.LOCK_SH):
            data = self._read(path, sha256, size)
        if data is not None:
            return data
        with locked(lock, fcntl.LOCK_EX):
            data = self._read(path, sha256, size)  # someone else may have fetched it while we waited
            if data is not None:
                return data
            for stale in path.parent.glob(f".{shard}.*.tmp"):  # left by a killed download
                stale.unlink(missing_ok=True)
            data = self._checked(shard, sha256, fetch())
            try:
                atomic_write(path, data)
            except OSError as exc:  # the disk filled up (or turned read-only): the verified bytes still serve
                self._cannot_write(exc)
                return data
        self.evict(keep=path)
        return data

    @staticmethod
    def _checked(shard: str, sha256: str, data: bytes) -> bytes:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise ShardIntegrityError(
                f"{shard}: downloaded {len(data)} bytes with sha256 {digest[:16]}... but the "
                f"manifest says {sha256[:16]}...; the stored shard is truncated or altered"
            )
        return data

    def _cannot_write(self, exc: OSError) -> None:
        # One warning per cache (per process): the epoch goes on, reading past the cache.
        if not self._warned:
            self._warned = True
            log.warning(
                "fractalshards: the shard cache %s cannot be written (%s); shards are read without it. "
                "Free space there or give another cache_dir",
                self.root,
                exc.strerror or exc,
            )

    def _read(self, path: Path, sha256: str, size: int) -> bytes | None:
        try:
            data = read_regular(path, size, exact=True, why="its manifest entry states")
        except FileNotFoundError:
            return None
        except ShardIntegrityError:  # a link, a device or another size where a shard should be: replaced by the download
            path.unlink(missing_ok=True)
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            return None  # damaged: the exclusive pass replaces it
        with contextlib.suppress(OSError):  # recency, for eviction (a read-only disk keeps none)
            os.utime(path)
        return data

    def cached(self) -> list[Path]:
        """Cached shard files (complete ones only): regular files the cache writes, ``<version>/<shard>``,
        found without following a symlink (a planted link never leads eviction outside the root)."""
        out: list[Path] = []
        try:
            versions = list(os.scandir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return out
        for folder in versions:
            if not is_version_id(folder.name) or not folder.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.scandir(folder.path):
                    if _is_shard_name(entry.name) and entry.is_file(follow_symlinks=False):
                        out.append(Path(entry.path))
        return out

    def size(self) -> int:
        """Bytes of cached shards."""
        total = 0
        for p in self.cached():
            with contextlib.suppress(FileNotFoundError):
                total += p.stat().st_size
        return total

    def evict(self, keep: Path | None = None) -> int:
        """Remove least recently used shards until the folder holds at most ``limit`` bytes.

        Shards locked by another process (being read or written) and ``keep`` stay.
        Returns the number of files removed.
        """
        entries = []
        for p in self.cached():
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                entries.append((st.st_mtime_ns, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        if total <= self.limit:
            return 0
        removed = 0
        with locked(self.root / ".evict.lock", fcntl.LOCK_EX):  # one evictor at a time
            for _, size, p in sorted(entries, key=lambda e: e[0]):
                if total <= self.limit:
                    break
                if keep is not None and p == keep:
                    continue
                lock = p.parent / f".{p.name}.lock"
                try:
                    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
                except OSError:  # a planted link where the lock belongs: leave that shard alone
                    continue
                try:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # in use elsewhere: never pulled from under a reader
                    with contextlib.suppress(FileNotFoundError):
                        if stat.S_ISREG(os.lstat(p).st_mode):  # still a file the cache wrote, not a link
                            p.unlink()
                            total -= size
                            removed += 1
                finally:
                    os.close(fd)
        return removed
