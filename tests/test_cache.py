"""The node cache: each remote shard fetched once per node, killed downloads, eviction under locks."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import S3_REQUESTS, shard_gets, tiny_definition

from fractalshards.builder import build
from fractalshards.cache import ShardCache, default_cache_dir
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ShardIntegrityError, StoredDataError
from fractalshards.families.fractaldb.render import RenderSettings
from fractalshards.loader import FractalLoader
from fractalshards.stream import FractalStream

SETTINGS = RenderSettings(mode="official", size=32, points=4_000, seed=1)


def _definition() -> DatasetDefinition:
    # 13 x 5 = 65 samples in 8 shards of up to 9.
    return tiny_definition(13, 5, 9, size=32, points=4_000)


@pytest.fixture
def s3_dataset(s3_bucket):
    bucket, options = s3_bucket
    build(_definition(), f"s3://{bucket}/ds", storage_options=options, workers=0)
    return bucket, options


def _labels(loader) -> list[int]:
    return [int(x) for _, labels in loader for x in labels]


@pytest.mark.parametrize("workers", [0, 1, 2, 4, 8])
def test_each_shard_is_fetched_once_per_epoch_whatever_the_workers(s3_dataset, tmp_path, workers):
    bucket, options = s3_dataset
    reference = _labels(
        FractalLoader(FractalStream(f"s3://{bucket}/ds", seed=3, cache_dir=False, storage_options=options), batch_size=4)
    )
    mark = len(S3_REQUESTS)
    stream = FractalStream(f"s3://{bucket}/ds", seed=3, cache_dir=str(tmp_path / "cache"), storage_options=options)
    assert _labels(FractalLoader(stream, batch_size=4, num_workers=workers)) == reference
    gets = shard_gets(bucket, mark)
    assert len(gets) == 8 and set(gets.values()) == {1}, gets  # amplification 1.00
    # The second epoch is served from the cache: no GET at all.
    mark = len(S3_REQUESTS)
    assert len(_labels(FractalLoader(stream, batch_size=4, num_workers=workers))) == 65
    assert not shard_gets(bucket, mark)


_RANK_SCRIPT = textwrap.dedent("""
    import json, sys
    from fractalshards.loader import FractalLoader
    from fractalshards.stream import FractalStream
    url, cache, rank, options = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    stream = FractalStream(url, rank=rank, world_size=2, seed=5, cache_dir=cache, storage_options=options)
    labels = [int(x) for _, b in FractalLoader(stream, batch_size=4, num_workers=2) for x in b]
    print(json.dumps(labels))
""")


def test_two_ranks_on_one_node_share_the_cache(s3_dataset, tmp_path):
    bucket, options = s3_dataset
    cache = str(tmp_path / "cache")
    mark = len(S3_REQUESTS)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RANK_SCRIPT, f"s3://{bucket}/ds", cache, str(r), json.dumps(options)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [json.loads(p.communicate(timeout=240)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(outs[0]) == len(outs[1]) == 33
    gets = shard_gets(bucket, mark)
    assert len(gets) == 8 and set(gets.values()) == {1}, gets


_KILLED_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from fractalshards.cache import ShardCache
    root, version, shard, digest, data = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]).read_bytes()
    def fetch():
        Path(root, "started").write_text("1")
        time.sleep(600)  # killed here, holding the exclusive lock, mid-download
        return data
    ShardCache(root).get(version, shard, digest, fetch, size=len(data))
""")


def test_a_download_killed_midway_leaves_nothing_complete_and_its_lock_is_taken_over(s3_dataset, tmp_path):
    bucket, options = s3_dataset
    url = f"s3://{bucket}/ds"
    probe = FractalStream(url, storage_options=options, cache_dir=False)
    shard = probe.shard_names[0]
    local = tmp_path / "shard.tar"
    local.write_bytes(probe.store.read_bytes(shard, 1 << 30))
    root = tmp_path / "cache"
    root.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SCRIPT, str(root), probe.version, shard, probe.hashes[shard], str(local)]
    )
    try:
        deadline = time.time() + 60
        while not (root / "started").exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        # A half-written temporary file, as a download killed while writing leaves it.
        partial = root / probe.version / f".{shard}.{proc.pid}.deadbeef.tmp"
        partial.write_bytes(local.read_bytes()[:1000])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (root / probe.version / shard).exists()  # nothing that looks complete
    stream = FractalStream(url, seed=1, cache_dir=str(root), storage_options=options)
    assert len(list(FractalLoader(stream, batch_size=8, num_workers=2))) == 9
    assert (root / probe.version / shard).is_file()
    assert not list((root / probe.version).glob("*.tmp"))


def test_eviction_keeps_the_limit_and_never_removes_a_shard_in_use(s3_dataset, tmp_path):
    bucket, options = s3_dataset
    url = f"s3://{bucket}/ds"
    biggest = max(s.bytes for s in FractalStream(url, storage_options=options, cache_dir=False).manifest.shards)
    small = tmp_path / "small"
    # Two shards' worth while reading with two workers: everything is still read, the folder stays bounded.
    stream = FractalStream(url, seed=2, cache_dir=str(small), cache_limit=2 * biggest, storage_options=options)
    assert len(_labels(FractalLoader(stream, batch_size=4, num_workers=2))) == 65
    cache = ShardCache(small, 2 * biggest)
    assert cache.size() <= 2 * biggest and 1 <= len(cache.cached()) <= 2
    # Fill it, hold one shard's lock as a reader would, and evict everything: that one stays.
    full = ShardCache(small, 100 * biggest)
    stream = FractalStream(url, seed=2, cache_dir=str(small), cache_limit=100 * biggest, storage_options=options)
    list(stream)
    files = sorted(full.cached())
    assert len(files) == 8
    held = files[3]
    fd = os.open(held.parent / f".{held.name}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert ShardCache(small, 0).evict() == 7
        assert full.cached() == [held]
    finally:
        os.close(fd)
    assert ShardCache(small, 0).evict() == 1


def test_cache_checks_what_it_stores_and_serves(tmp_path):
    cache = ShardCache(tmp_path)
    data = b"x" * 3000
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(ShardIntegrityError, match="shard-000000.tar.*sha256"):
        cache.get("0123456789abcdef", "shard-000000.tar", digest, lambda: data[:-1], size=len(data))
    assert cache.cached() == []
    calls = []
    assert cache.get("0123456789abcdef", "shard-000000.tar", digest, lambda: calls.append(1) or data, size=len(data)) == data
    assert cache.get("0123456789abcdef", "shard-000000.tar", digest, lambda: calls.append(1) or data, size=len(data)) == data
    assert calls == [1]
    # A damaged cached copy is replaced, not served.
    (tmp_path / "0123456789abcdef" / "shard-000000.tar").write_bytes(b"y" * 3000)
    assert cache.get("0123456789abcdef", "shard-000000.tar", digest, lambda: calls.append(1) or data, size=len(data)) == data
    assert calls == [1, 1]
    for version, shard in (("../../etc", "shard.tar"), ("0123456789abcdef", "../x.tar"), ("0123456789abcdef", "/tmp/x.tar")):
        with pytest.raises(StoredDataError):  # names read from storage: bad data, not bad input
            cache.path(version, shard)


def test_default_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FRACTALSHARDS_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "shards"
    monkeypatch.delenv("FRACTALSHARDS_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "fractalshards" / "shards"


_FULL_DISK = textwrap.dedent("""
    import json, logging, resource, signal, sys
    from fractalshards.stream import FractalStream
    # A disk that takes no file over 100 bytes (the kernel refuses the write with EFBIG, as a full disk
    # refuses with ENOSPC): the lock files are created, no shard can be written.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
    warnings = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("fractalshards").addHandler(handler)
    url, cache, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    keys = [s["__key__"] for s in FractalStream(url, storage_options=options, cache_dir=cache, shuffle=False, decode="raw")]
    print(json.dumps({"keys": keys, "warnings": warnings}))
""")


@pytest.mark.parametrize("where", ["full", "unwritable"])
def test_a_cache_that_cannot_be_written_serves_the_epoch_and_warns_once(s3_dataset, tmp_path, where):
    import json

    bucket, options = s3_dataset
    url = f"s3://{bucket}/ds"
    cache = str(tmp_path / "cache") if where == "full" else "/proc/fractalshards-cache"  # /proc takes no folder
    expected = [s["__key__"] for s in FractalStream(url, storage_options=options, cache_dir=False, shuffle=False, decode="raw")]
    done = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, url, cache, json.dumps(options)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["keys"] == expected
    assert len(got["warnings"]) == 1 and "cannot be written" in got["warnings"][0], got["warnings"]
    if where == "full":
        assert not list((tmp_path / "cache").rglob("shard-*.tar"))  # nothing half-written took a shard's name
