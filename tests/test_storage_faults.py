"""Faults of storage: a throttling S3 (503 SlowDown, 429) and a full disk. Results stay identical."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import tiny_definition

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.publisher import publish
from fractalshards.stream import FractalStream


def _definition() -> DatasetDefinition:
    return tiny_definition(6, 5, 6, size=40, points=2_000, seed=0)


@pytest.mark.slow
def test_build_publish_and_stream_through_a_throttling_s3_give_identical_results(tmp_path, s3_bucket, s3_throttled):
    bucket, options = s3_bucket
    local = tmp_path / "local"
    build(_definition(), str(local), workers=0)
    expected = json.loads((local / "manifest.json").read_text())
    genuine = [(label, image.tobytes()) for image, label in FractalStream(str(local), shuffle=False, decode="numpy")]
    knob = s3_throttled(0.2, seed=3)
    build(_definition(), f"s3://{bucket}/ds", workers=0, storage_options=options)
    publish(f"s3://{bucket}/ds", f"s3://{bucket}/pub", tags=["v1"], src_options=options, dest_options=options)
    stream = FractalStream(
        f"s3://{bucket}/pub@v1", shuffle=False, decode="numpy", storage_options=options, cache_dir=str(tmp_path / "cache")
    )
    got = [(label, image.tobytes()) for image, label in stream]
    assert knob["answered"] > 10, knob  # the server did throttle, many times
    knob["rate"] = 0.0
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    stored = json.loads(fs.cat(f"{bucket}/ds/manifest.json"))
    assert stored["fingerprint"] == expected["fingerprint"] and stored["shards"] == expected["shards"]
    assert got == genuine


@contextlib.contextmanager
def _small_filesystem(path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` for the block (the tests run as root, as CI does)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def test_a_full_disk_stops_the_build_in_one_line_and_the_same_command_resumes(tmp_path):
    clean = tmp_path / "clean"
    args = [
        "--no-progress",
        "build",
        "--preset",
        "fractaldb-100",
        "--categories",
        "8",
        "--instances",
        "5",
        "--shard-size",
        "5",
        "--size",
        "256",
        "--points",
        "40000",
        "--workers",
        "0",
    ]
    run = subprocess.run([sys.executable, "-m", "fractalshards", *args, "--out", str(clean)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    needed = sum(p.stat().st_size for p in clean.glob("shard-*.tar"))
    with _small_filesystem(tmp_path / "small", "4m") as disk:
        filler = disk / "filler.bin"
        free = shutil.disk_usage(disk).free
        filler.write_bytes(b"\0" * (free - needed // 2))  # room for about half of the shards
        out = disk / "ds"
        run = subprocess.run([sys.executable, "-m", "fractalshards", *args, "--out", str(out)], capture_output=True, text=True)
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 1 and "No space left on device" in lines[-1] and str(out) in lines[-1], run.stderr
        assert not (out / "manifest.json").exists()
        assert [p.name for p in out.rglob("*.tmp")] == []  # nothing half-written
        written = sorted(p.name for p in out.glob("shard-*.tar"))
        assert 0 < len(written) < 8
        filler.unlink()  # space is free again: the same command resumes
        run = subprocess.run([sys.executable, "-m", "fractalshards", *args, "--out", str(out)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert f"skipped {len(written)} shards" in run.stderr
        ours, theirs = json.loads((out / "manifest.json").read_text()), json.loads((clean / "manifest.json").read_text())
        assert ours["fingerprint"] == theirs["fingerprint"] and ours["shards"] == theirs["shards"]
    assert os.path.ismount(tmp_path / "small") is False


@pytest.mark.parametrize("fault", ["endpoint down", "no such bucket"])
def test_an_unreachable_endpoint_and_a_missing_bucket_are_told_apart_by_every_command(
    tmp_path, s3_bucket, monkeypatch, capsys, fault
):
    import time

    from fractalshards.cli import main
    from fractalshards.errors import ConfigError

    bucket, options = s3_bucket
    build(tiny_definition(2, 2, 2), f"s3://{bucket}/ds", storage_options=options, workers=0)
    local = tmp_path / "local"
    build(tiny_definition(2, 2, 2), str(local), workers=0)
    if fault == "endpoint down":
        monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
        url, expected = f"s3://{bucket}/ds", "cannot be reached"
    else:
        url, expected = "s3://no-such-bucket-here/ds", "bucket 'no-such-bucket-here' of "
    commands = [
        ["build", "--like", str(local), "--workers", "0", "--out", url],
        ["publish", str(local), url],
        ["info", url],
        ["ls", url],
        ["verify", url],
    ]
    capsys.readouterr()  # the builds' lines above
    for argv in commands:
        start = time.perf_counter()
        code = main(["--no-progress", *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], (argv, err)
        assert time.perf_counter() - start < 15, argv
    with pytest.raises(ConfigError, match=expected):
        FractalStream(url, storage_options={k: v for k, v in options.items() if k != "endpoint_url"})
