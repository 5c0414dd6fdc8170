"""One URL-based view of every store (local folder, ``file://``, ``s3://``, ...) via fsspec.

A :class:`Store` is a dataset root: a filesystem plus a root path. It is picklable
(fsspec filesystems rebuild themselves from their storage options), so a Ray task
takes a ``Store`` and writes straight to the destination. Credentials and
endpoints come from the environment as each backend reads them (``AWS_*``,
``FSSPEC_S3_ENDPOINT_URL``) or from ``storage_options``; they are never written
into manifests or messages.

Atomicity: on a local filesystem a file is written to a temporary name beside its
target (:func:`temp_name`) and renamed (:func:`atomic_write`, the one implementation:
the file gets a plain write's permissions, and nothing is left behind on failure).
Object stores make an object visible only when its upload completes, so a whole object
is written in one put; a dataset as a whole is committed by its manifest, written last.

Local helpers that several layers share live here too: :func:`cache_root` (where derived
data is kept) and :func:`locked` (an ``flock`` held for a block).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import posixpath
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from fsspec.config import set_conf_env
from fsspec.core import split_protocol, url_to_fs

from . import limits
from .errors import ConfigError, ShardIntegrityError, StoredDataError, TransferError

__all__ = [
    "Store",
    "open_store",
    "sha256_bytes",
    "redact",
    "atomic_write",
    "temp_name",
    "read_regular",
    "check_no_symlink",
    "cache_root",
    "fetch_deadline",
    "locked",
]

_CHUNK = 1 << 20


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{name}: {text!r} is not a positive number; unset it or give one")
    return value


def fetch_deadline(size: int) -> float:
    """Seconds a remote read of ``size`` bytes may take: ``FRACTALSHARDS_FETCH_WINDOW_S`` (30) plus the
    size at ``FRACTALSHARDS_FETCH_MIN_RATE`` bytes/s (64 KiB/s). A store that sends a body a byte at a
    time keeps a client's read timeout from ever firing (it restarts with each byte); this does not."""
    window = _env_number("FRACTALSHARDS_FETCH_WINDOW_S", 30.0)
    return window + size / _env_number("FRACTALSHARDS_FETCH_MIN_RATE", 64 * 1024.0)


def temp_name(path: str | os.PathLike) -> str:
    """A temporary name beside ``path``: ``.<name>.<pid>.<random>.tmp`` (hidden, and never a dataset file)."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[IO[bytes]], Any]) -> None:
    """Write a local file whole: into :func:`temp_name` beside it, then rename over ``path``.

    ``data`` is the bytes, or a function that writes into the open binary file (``np.savez``,
    ``torch.save``). The file gets the permissions of a plain ``open(path, "wb")`` (0666 under
    the umask); on any failure the temporary file is removed and ``path`` is untouched.
    """
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                view = memoryview(data)
                for at in range(0, len(view), _CHUNK):
                    fh.write(view[at : at + _CHUNK])
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # A failed write names no file (ENOSPC, EDQUOT...): name the one being written.
            raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc
        raise


def _too_large(where: str, size: int, limit: int, exact: bool, why: str) -> StoredDataError:
    if exact:
        return StoredDataError(f"{where}: {size:,} bytes stored where {why} {limit:,}; it is truncated, altered or replaced")
    return StoredDataError(f"{where}: {size:,} bytes stored, more than the {limit:,} allowed ({why}); refusing to read it")


def read_regular(path: str | os.PathLike, limit: int | None = None, *, exact: bool = False, why: str = "the bound") -> bytes:
    """The bytes of the regular file ``path``, never through a symlink (``O_NOFOLLOW``) nor from a device
    or pipe: what a shared folder holds is checked before it is read. Missing: ``FileNotFoundError``.

    ``limit``: the file's size is checked against it before anything is read (``exact``: it must be
    exactly ``limit``), and the read stops at ``limit + 1`` bytes whatever the file does meanwhile; more
    is a :class:`~fractalshards.errors.StoredDataError` naming the file, its size and ``why``."""
    try:
        # O_NONBLOCK: opening a FIFO planted where a file belongs must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ShardIntegrityError(
                f"{os.fspath(path)}: is a symbolic link; a shared folder's files are read only as regular files"
            ) from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ShardIntegrityError(f"{os.fspath(path)}: is not a regular file; refusing to read it")
        if limit is None:
            return fh.read()
        if info.st_size > limit or (exact and info.st_size != limit):
            raise _too_large(os.fspath(path), info.st_size, limit, exact, why)
        data = fh.read(limit + 1)
    if len(data) > limit or (exact and len(data) != limit):  # it changed while read
        raise _too_large(os.fspath(path), len(data), limit, exact, why)
    return data


def check_no_symlink(root: str | os.PathLike, path: str | os.PathLike) -> None:
    """Refuse ``path`` when a component of it below ``root`` is a symbolic link (or it is not under ``root``):
    writes into a shared folder must land in it. Components that do not exist yet are fine."""
    root_s, path_s = os.path.abspath(os.fspath(root)), os.path.abspath(os.fspath(path))
    if os.path.commonpath([root_s, path_s]) != root_s:
        raise ShardIntegrityError(f"{path_s}: is not under {root_s}; refusing to write there")
    current = root_s
    for part in os.path.relpath(path_s, root_s).split(os.sep):
        if part in ("", "."):
            continue
        current = os.path.join(current, part)
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                raise ShardIntegrityError(
                    f"{current}: is a symbolic link inside {root_s}; a dataset or cache folder never follows one"
                )
        except FileNotFoundError:
            return


def cache_root() -> Path:
    """Where fractalshards keeps derived data: ``$FRACTALSHARDS_CACHE``, else ``~/.cache/fractalshards``."""
    base = os.environ.get("FRACTALSHARDS_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "fractalshards"


@contextlib.contextmanager
def locked(path: str | os.PathLike, mode: int = fcntl.LOCK_EX) -> Iterator[int]:
    """Hold an ``flock`` on ``path`` (created if missing) for the ``with`` block; a dead holder's lock is released."""
    # O_NOFOLLOW: a lock file planted as a symlink in a shared folder must not create or open a file elsewhere.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)  # closing drops the lock


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def redact(text: str, storage_options: dict | None = None) -> str:
    """Remove secret-looking values of ``storage_options`` and the environment from ``text``."""
    secrets = []
    for key, value in (storage_options or {}).items():
        if isinstance(value, str) and any(w in key.lower() for w in ("secret", "key", "token", "password")):
            secrets.append(value)
    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        if os.environ.get(key):
            secrets.append(os.environ[key])
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


@dataclass
class Store:
    """A dataset root on some filesystem."""

    url: str
    fs: Any
    root: str
    storage_options: dict = field(default_factory=dict, repr=False)
    pid: int = field(default_factory=os.getpid, repr=False)

    def for_this_process(self) -> Store:
        """This store, or a reopened one in a forked child (async filesystems such as
        s3fs are not fork-safe: a DataLoader worker must make its own)."""
        if self.pid == os.getpid():
            return self
        return replace(self, fs=open_store(self.url, self.storage_options).fs, pid=os.getpid())  # keeps a subclass

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["pid"] = -1  # unpickled elsewhere: reopen there on first use
        return state

    @property
    def is_local(self) -> bool:
        """True when the root is on the local filesystem (rename is atomic there)."""
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protocols or "local" in protocols

    def path(self, name: str) -> str:
        """Full path of ``name`` under the root."""
        return posixpath.join(self.root, name) if self.root else name

    def sub(self, folder: str) -> Store:
        """The store rooted at ``folder`` under this one (same filesystem and options)."""
        # dataclasses.replace keeps a subclass (the tests' fault-injecting store, for one).
        return replace(self, url=self.url.rstrip("/") + "/" + folder, root=self.path(folder))

    def url_of(self, name: str) -> str:
        """A URL of ``name`` that ``fsspec.open`` and webdataset understand."""
        return self.fs.unstrip_protocol(self.path(name)) if not self.is_local else self.path(name)

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists (no cached listing: a fresh look every time)."""
        self.fs.invalidate_cache(self.path(name))
        return bool(self.fs.exists(self.path(name)))

    def size(self, name: str) -> int | None:
        """Size in bytes of ``name``, or None when it does not exist."""
        if self.is_local:
            target = self.path(name)
            check_no_symlink(self.root, target)
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                return None
            if not stat.S_ISREG(st.st_mode):
                raise ShardIntegrityError(f"{target}: is not a regular file; refusing to read it")
            return st.st_size
        try:
            self.fs.invalidate_cache(self.path(name))
            return int(self.fs.info(self.path(name))["size"])
        except FileNotFoundError:
            return None

    def read_bytes(self, name: str, limit: int, *, exact: bool = False, why: str = "the bound") -> bytes:
        """The content of ``name``, never more than ``limit`` bytes: the size its parent declares
        (``exact``: it must be exactly that, a shard's manifest entry) or a limit of its format.

        The stored size is checked before the read (locally the open file's, remotely the object's
        listed size) and the read stops at ``limit + 1`` bytes, so an object swapped for a larger one
        costs no more than its bound; beyond it, a :class:`~fractalshards.errors.StoredDataError` naming
        ``name``, its size and ``why`` (the declaration or limit). Locally a regular file reached
        through no symlink. Missing: ``FileNotFoundError``."""
        where = self.url_of(name)
        if self.is_local:
            target = self.path(name)
            check_no_symlink(self.root, target)
            return read_regular(target, limit, exact=exact, why=why)
        size = self._remote_size(name)
        if size is None:
            raise FileNotFoundError(where)
        if size > limit or (exact and size != limit):
            raise _too_large(where, size, limit, exact, why)
        if size == 0:
            return b""  # a ranged GET of an empty object is refused by S3 (416)
        data = self._fetch(name, limit + 1, size)
        if len(data) > limit or (exact and len(data) != limit):  # replaced between the listing and the read
            raise _too_large(where, len(data), limit, exact, why)
        return data

    def _remote_size(self, name: str) -> int | None:
        # The object's listed size (a HEAD), under the fetch deadline of an empty read.
        path = self.path(name)
        self.fs.invalidate_cache(path)
        try:
            info = self._within(name, 0, lambda: self.fs._info(path)) if self._is_async else self.fs.info(path)
        except FileNotFoundError:
            return None
        return int(info["size"])

    @property
    def _is_async(self) -> bool:
        return bool(getattr(self.fs, "async_impl", False))

    def _fetch(self, name: str, end: int, size: int) -> bytes:
        # One GET of bytes [0, end); on an async filesystem (s3, gcs, http) under a deadline that cancels
        # the request (fetch_deadline): a TransferError naming the object when too little arrives in time.
        path = self.path(name)
        if not self._is_async:
            return self.fs.cat_file(path, start=0, end=end)
        return self._within(name, size, lambda: self.fs._cat_file(path, start=0, end=end))

    def _within(self, name: str, size: int, request: Callable[[], Any]) -> Any:
        import asyncio

        from fsspec.asyn import sync

        seconds = fetch_deadline(size)

        async def run() -> Any:
            return await asyncio.wait_for(request(), seconds)

        try:
            return sync(self.fs.loop, run)
        except asyncio.TimeoutError as exc:
            raise TransferError(
                f"{name}: {size:,} bytes not read within {seconds:.0f} s (a store too slow or stalled; "
                "FRACTALSHARDS_FETCH_MIN_RATE and FRACTALSHARDS_FETCH_WINDOW_S set the bound)"
            ) from exc

    def read_document(self, name: str) -> bytes:
        """A stored JSON document (manifest, recipe, index, entry), read no further than the ``json_bytes``
        limit in force (:mod:`fractalshards.limits`)."""
        return self.read_bytes(name, limits.current().json_bytes, why="limit json_bytes; --allow-large raises it")

    def sha256(self, name: str) -> str | None:
        """Hex sha256 of ``name`` streamed in chunks, or None when it does not exist."""
        digest = hashlib.sha256()
        if self.is_local and self.size(name) is None:  # size(): a regular file reached through no symlink
            return None
        try:
            with self.fs.open(self.path(name), "rb") as fh:
                for chunk in iter(lambda: fh.read(_CHUNK), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            return None
        return digest.hexdigest()

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``name`` whole: temporary name and rename locally, one put on object stores."""
        target = self.path(name)
        if self.is_local:
            check_no_symlink(self.root, target)  # a planted link (a journal folder, a shard name) must not lead outside
            self.fs.makedirs(posixpath.dirname(target) or ".", exist_ok=True)
            check_no_symlink(self.root, target)
            atomic_write(target, data)
        else:
            self.fs.pipe_file(target, data)
        self.fs.invalidate_cache(target)

    def create_exclusive(self, name: str, data: bytes) -> bool:
        """Create ``name`` with ``data`` only if it does not exist; True when this call created it.

        Race-free: an exclusive hard link of a complete temporary file on local
        filesystems, a conditional put (``If-None-Match: *``) on S3. Other backends
        check and write, which is not atomic across processes.
        """
        target = self.path(name)
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        if self.is_local:
            folder = posixpath.dirname(target) or "."
            check_no_symlink(self.root, target)
            self.fs.makedirs(folder, exist_ok=True)
            check_no_symlink(self.root, target)
            tmp = temp_name(target)
            atomic_write(tmp, data)  # complete before it is linked
            try:
                os.link(tmp, target)  # fails if the target exists, whoever made it
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        if "s3" in protocols:
            try:
                self.fs.pipe_file(target, data, mode="create")
                return True
            except (FileExistsError, OSError) as exc:
                if isinstance(exc, FileExistsError) or "PreconditionFailed" in str(exc) or "412" in str(exc):
                    return False
                raise
            finally:
                self.fs.invalidate_cache(target)
        if self.exists(name):
            return False
        self.write_bytes(name, data)
        return True

    def delete(self, name: str) -> None:
        """Remove ``name`` if it exists."""
        if self.exists(name):
            self.fs.rm(self.path(name))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Names (relative to the root) of files whose names start with ``prefix``."""
        self.fs.invalidate_cache(self.root)
        try:
            entries = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return
        for entry in entries:
            name = posixpath.basename(entry.rstrip("/"))
            if name.startswith(prefix):
                yield name

    def _probe_fs(self):
        # A copy of the filesystem that gives up at once: an unreachable endpoint should
        # fail in a second, not after the backend's minutes of retries and backoff.
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        if "s3" not in protocols:
            return self.fs
        options = dict(self.fs.storage_options)
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
        config.setdefault("connect_timeout", 5)
        options.update(config_kwargs=config, skip_instance_cache=True)
        probe = type(self.fs)(**options)
        probe.retries = 1  # s3fs's own retry loop (a class attribute, not an init argument)
        return probe

    def _check_bucket(self, bucket: str) -> None:
        # An unreachable endpoint, a missing bucket and refused credentials, told apart (one request,
        # no retries: seconds, not the client's minutes of backoff). Object stores other than S3: exists().
        probe = self._probe_fs()
        if not hasattr(probe, "_call_s3"):
            if not probe.exists(bucket):
                raise ConfigError(f"url: {bucket!r} of {self.url!r} does not exist or is not visible; check the URL")
            return
        from fsspec.asyn import sync

        endpoint = (self.storage_options.get("endpoint_url") or os.environ.get("FSSPEC_S3_ENDPOINT_URL")
                    or os.environ.get("AWS_ENDPOINT_URL") or "AWS's")  # fmt: skip
        try:
            sync(probe.loop, probe._call_s3, "head_bucket", Bucket=bucket, timeout=15)
        except FileNotFoundError as exc:
            raise ConfigError(
                f"url: bucket {bucket!r} of {self.url!r} does not exist at endpoint {endpoint}; create it or fix the name"
            ) from exc
        except PermissionError as exc:
            raise ConfigError(
                f"url: the endpoint {endpoint} refused the credentials for bucket {bucket!r}; check AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY (or storage_options key and secret)"
            ) from exc
        except Exception as exc:  # noqa: BLE001 - connection errors of botocore, aiohttp, OSError and timeouts
            message = redact(f"{type(exc).__name__}: {exc}", self.storage_options).splitlines()[0][:200]
            raise ConfigError(
                f"url: the endpoint {endpoint} of {self.url!r} cannot be reached ({message}); check FSSPEC_S3_ENDPOINT_URL "
                "(or storage_options endpoint_url) and the network"
            ) from exc

    def check_reachable(self, create: bool = False) -> None:
        """Fail early, with a one-line error, when the store cannot be reached or written.

        With ``create`` the root folder is made on local stores; on object stores the
        bucket must exist.
        """
        try:
            if self.is_local:
                if create:
                    self.fs.makedirs(self.root, exist_ok=True)
                elif not self.fs.exists(self.root):
                    raise ConfigError(f"url: {self.url!r} does not exist; check the path")
                probe = f".fractalshards-probe-{uuid.uuid4().hex}"
                self.write_bytes(probe, b"")
                self.delete(probe)
            else:
                bucket = self.root.split("/", 1)[0]
                self._check_bucket(bucket)
                if create:
                    probe = f".fractalshards-probe-{uuid.uuid4().hex}"
                    self.write_bytes(probe, b"")
                    self.delete(probe)
        except ConfigError:
            raise
        except Exception as exc:  # backends raise many types: botocore, aiohttp, OSError...
            message = redact(f"{type(exc).__name__}: {exc}", self.storage_options).splitlines()[0]
            raise ConfigError(f"url: cannot reach {self.url!r} ({message}); check the URL, endpoint and credentials") from exc


def open_store(url: str, storage_options: dict | None = None) -> Store:
    """Resolve ``url`` (a path, ``file://...``, ``s3://bucket/prefix``, ...) into a :class:`Store`."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("url: empty; give a folder path or a URL such as s3://bucket/prefix")
    # fsspec reads FSSPEC_<PROTOCOL>_<KWARG> variables once, at import; read them now so
    # that a variable set later (a test, a notebook, a job's runtime env) is honoured.
    protocol = split_protocol(url)[0] or "file"
    from_env: dict = {}
    set_conf_env(from_env)
    options = {**from_env.get(protocol, {}), **(storage_options or {})}
    try:
        fs, root = url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"url: {url!r} cannot be opened ({exc}); use a local path or a URL fsspec knows, e.g. s3://bucket/prefix"
        ) from exc
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if not root.strip("/") and not protocols & {"file", "local"}:
        raise ConfigError(f"url: {url!r} names no bucket or folder; use e.g. s3://bucket/prefix")
    # Fresh listings always: a build must see what is there now, not a cached view.
    if hasattr(fs, "dircache"):
        fs.dircache.clear()
    return Store(url=url, fs=fs, root=root.rstrip("/") if root not in ("/", "") else root, storage_options=options)
