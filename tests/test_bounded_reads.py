"""Every stored object is read no further than its parent declares or its limit allows: an object swapped
for a huge one costs nothing (sparse files of gigabytes here; an unbounded read would hold them in memory)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from fractalshards.errors import StoredDataError
from fractalshards.storage import open_store

GIB = 1 << 30

#: Reads a swapped dataset in a fresh process and prints what it raised and its peak memory (MB).
_PROBE = r"""
import json, sys
what, url = sys.argv[1], sys.argv[2]
try:
    if what == "verify":
        from fractalshards.verifier import verify
        report = verify(url)
        outcome = "; ".join(report.problems)
    elif what == "stream":
        from fractalshards.stream import FractalStream
        list(FractalStream(url, shuffle=False))
        outcome = "read"
    elif what == "preview":
        from fractalshards.preview import preview_from_dataset
        preview_from_dataset(url, 2, 2)
        outcome = "read"
    elif what == "publish":
        from fractalshards.publisher import publish
        publish(url, sys.argv[3])
        outcome = "read"
    elif what == "info":
        from fractalshards.dataset import open_manifest
        open_manifest(url)
        outcome = "read"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
# VmHWM: the peak of this process's own memory (ru_maxrss would carry over a big parent's peak across exec).
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"outcome": outcome, "peak_mb": peak / 1024}))
"""


def _probe(what: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, what, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def swapped(built_dataset, tmp_path):
    """A copy of the built dataset whose first shard is a 3 GiB (sparse) file."""
    copy = tmp_path / "ds"
    shutil.copytree(built_dataset, copy)
    with open(copy / "shard-000000.tar", "r+b") as fh:
        fh.truncate(3 * GIB)
    return copy


@pytest.mark.parametrize("what", ["verify", "stream", "preview", "publish"])
def test_a_shard_swapped_for_a_huge_file_is_refused_before_it_is_read(swapped, tmp_path, what):
    args = [str(tmp_path / "pub")] if what == "publish" else []
    got = _probe(what, str(swapped), *args)
    assert "shard-000000.tar" in got["outcome"] and "3,221,225,472 bytes stored where" in got["outcome"], got
    assert got["peak_mb"] < 1024, got  # a read of the whole file would hold 3 GiB


def test_a_manifest_past_the_json_limit_is_refused_before_it_is_read(built_dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(built_dataset, copy)
    with open(copy / "manifest.json", "r+b") as fh:
        fh.truncate(600 * 2**20)  # past the 512 MiB json_bytes limit
    got = _probe("info", str(copy))
    assert "manifest.json" in got["outcome"] and "limit json_bytes" in got["outcome"], got
    assert got["peak_mb"] < 400, got


def test_remote_objects_are_read_no_further_than_declared(built_dataset, s3_bucket):
    bucket, options = s3_bucket
    store = open_store(f"s3://{bucket}/ds", options)
    data = (built_dataset / "shard-000000.tar").read_bytes()
    store.write_bytes("shard.tar", data + b"\0" * 100_000)
    with pytest.raises(StoredDataError, match=r"shard\.tar: 1\d\d,\d{3} bytes stored where the manifest states"):
        store.read_bytes("shard.tar", len(data), exact=True, why="the manifest states")
    with pytest.raises(StoredDataError, match=r"more than the 1,000 allowed \(a test bound\)"):
        store.read_bytes("shard.tar", 1000, why="a test bound")
    assert store.read_bytes("shard.tar", len(data) + 100_000) == data + b"\0" * 100_000
    store.write_bytes("empty", b"")
    assert store.read_bytes("empty", 10) == b""
    with pytest.raises(FileNotFoundError):
        store.read_bytes("missing", 10)


def test_a_local_file_that_grows_while_it_is_read_stops_at_the_bound(tmp_path):
    store = open_store(str(tmp_path))
    (tmp_path / "a").write_bytes(b"x" * 100)
    assert store.read_bytes("a", 100, exact=True) == b"x" * 100
    with pytest.raises(StoredDataError, match="100 bytes stored where the bound 99"):
        store.read_bytes("a", 99, exact=True)
    os.truncate(tmp_path / "a", 5 * GIB)
    with pytest.raises(StoredDataError, match="5,368,709,120 bytes stored, more than the 1,000 allowed"):
        store.read_bytes("a", 1000)


def test_a_category_manifest_and_a_checkpoint_are_bounded_before_they_are_read(tmp_path):
    from fractalshards.categories import CategoryManifest
    from fractalshards.errors import LimitError
    from fractalshards.limits import Limits, raised
    from fractalshards.train import load_checkpoint

    huge = tmp_path / "m.json"
    with open(huge, "wb") as fh:
        fh.truncate(600 * 2**20)  # past json_bytes: refused from its size, not read
    with pytest.raises(LimitError, match=r"holds 629,145,600 bytes, above the limit of 536,870,912 \(json_bytes\)"):
        CategoryManifest.load(huge)
    import torch

    torch.save({"model": {"w": torch.zeros(1000)}}, tmp_path / "c.pt")
    assert "model" in load_checkpoint(tmp_path / "c.pt")
    with (
        raised(Limits(checkpoint_bytes=1000)),
        pytest.raises(LimitError, match=r"checkpoint size [\d,]+ is above the limit of 1,000"),
    ):
        load_checkpoint(tmp_path / "c.pt")
