"""One contract for every store: a local folder, file://, memory:// and the S3 server on loopback."""

from __future__ import annotations

import hashlib
import multiprocessing
import pickle
import uuid

import pytest

from fractalshards.errors import ConfigError
from fractalshards.storage import Store, open_store


@pytest.fixture(params=["folder", "file", "memory", "s3"])
def store(request, tmp_path) -> Store:
    kind = request.param
    if kind == "folder":
        return open_store(str(tmp_path / "root"))
    if kind == "file":
        return open_store(f"file://{tmp_path / 'root'}")
    if kind == "memory":
        return open_store(f"memory://contract-{uuid.uuid4().hex}/root")
    bucket, options = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/root", options)


def test_write_read_size_hash_list_delete(store):
    store.check_reachable(create=True)
    assert not store.exists("a.bin") and store.size("a.bin") is None and store.sha256("a.bin") is None
    data = bytes(range(256)) * 1000
    store.write_bytes("a.bin", data)
    store.write_bytes("b.txt", b"b")
    assert store.exists("a.bin") and store.read_bytes("a.bin", 1 << 20) == data
    assert store.size("a.bin") == len(data)
    assert store.sha256("a.bin") == hashlib.sha256(data).hexdigest()
    store.write_bytes("a.bin", b"new")  # overwrite is whole
    assert store.read_bytes("a.bin", 1 << 20) == b"new"
    assert sorted(store.list()) == ["a.bin", "b.txt"]
    assert list(store.list("b")) == ["b.txt"]
    store.delete("b.txt")
    store.delete("b.txt")  # deleting what is gone is fine
    assert sorted(store.list()) == ["a.bin"]
    with pytest.raises(FileNotFoundError):
        store.read_bytes("missing.bin", 1 << 20)


def test_sub_stores_share_the_filesystem(store):
    store.check_reachable(create=True)
    sub = store.sub("inner")
    sub.write_bytes("x.json", b"{}")
    assert store.read_bytes("inner/x.json", 1 << 20) == b"{}"
    assert list(sub.list()) == ["x.json"]
    assert sub.url.rstrip("/").endswith("/inner")


def test_exclusive_create_is_exclusive(store):
    store.check_reachable(create=True)
    assert store.create_exclusive("tags/v1", b"aaaa") is True
    assert store.create_exclusive("tags/v1", b"bbbb") is False
    assert store.read_bytes("tags/v1", 1 << 20) == b"aaaa"


def test_no_temporary_names_are_left(store):
    store.check_reachable(create=True)
    for i in range(3):
        store.write_bytes(f"f{i}", b"x" * i)
    assert sorted(store.list()) == ["f0", "f1", "f2"]


def _read_in_child(store: Store, queue) -> None:
    try:
        queue.put(store.for_this_process().read_bytes("p.bin", 1 << 20))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        queue.put(repr(exc))


def test_pickles_and_reopens_in_a_forked_process(store):
    store.check_reachable(create=True)
    store.write_bytes("p.bin", b"payload")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.for_this_process().read_bytes("p.bin", 1 << 20) == b"payload"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(store, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert got == b"payload", got


def test_unreachable_or_bad_urls_are_one_line_errors(tmp_path, s3_endpoint):
    with pytest.raises(ConfigError, match="does not exist"):
        open_store(str(tmp_path / "nope")).check_reachable()
    with pytest.raises(ConfigError, match="bucket"):
        open_store("s3://no-such-bucket-here/x", {"key": "k", "secret": "s", "endpoint_url": s3_endpoint}).check_reachable()
    with pytest.raises(ConfigError, match="names no bucket"):
        open_store("s3://")
    with pytest.raises(ConfigError, match="empty"):
        open_store("  ")


def test_atomic_write_has_plain_permissions_and_leaves_nothing_on_failure(tmp_path):
    import os

    import pytest

    from fractalshards.storage import atomic_write

    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    atomic_write(tmp_path / "a.bin", b"abc")
    atomic_write(tmp_path / "b.bin", lambda fh: fh.write(b"streamed"))
    assert (tmp_path / "a.bin").read_bytes() == b"abc" and (tmp_path / "b.bin").read_bytes() == b"streamed"
    mode = os.stat(plain).st_mode & 0o777
    assert os.stat(tmp_path / "a.bin").st_mode & 0o777 == mode == os.stat(tmp_path / "b.bin").st_mode & 0o777

    def fail(fh):
        fh.write(b"half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.bin", fail)
    assert (tmp_path / "a.bin").read_bytes() == b"abc"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin", "plain.bin"]  # no temporary left
