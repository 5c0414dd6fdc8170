"""The cluster path: a real `ray start --head` and `ray job submit` of jobs/build_shards.py."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.families.fractaldb.render import RenderSettings
from fractalshards.presets import load_preset

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_tree(proc: subprocess.Popen) -> None:
    """End the process tree we started (a --block head ignores a plain TERM), then KILL the rest."""
    try:
        parent = psutil.Process(proc.pid)
        tree = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in tree:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=4)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)


@pytest.fixture
def ray_head(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    port, dash = _free_port(), _free_port()
    log = open(tmp_path / "head.log", "w")
    proc = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--dashboard-port={dash}",
            "--dashboard-host=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            ok = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True).returncode == 0
            if ok:
                break
            if proc.poll() is not None:
                pytest.fail(f"ray head exited: {(tmp_path / 'head.log').read_text()[-2000:]}")
            time.sleep(1)
        else:
            pytest.fail("ray head did not come up in 120 s")
        yield address, env
    finally:
        _stop_tree(proc)
        log.close()


@pytest.mark.slow
def test_ray_job_submit_builds_the_same_bytes(tmp_path, ray_head):
    address, env = ray_head
    out = tmp_path / "cluster-out"
    args = [
        "--preset",
        "fractaldb-100",
        "--instances",
        "2",
        "--shard-size",
        "40",
        "--size",
        "64",
        "--points",
        "10000",
        "--seed",
        "5",
        "--no-progress",
    ]
    job = subprocess.run(
        [
            RAY,
            "job",
            "submit",
            "--address",
            address,
            "--working-dir",
            str(ROOT),
            "--",
            sys.executable,
            "jobs/build_shards.py",
            *args,
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout
    definition = DatasetDefinition(
        categories=load_preset("fractaldb-100"),
        instances=2,
        shard_size=40,
        render=RenderSettings(mode="official", size=64, points=10_000, seed=5),
    )
    build(definition, str(tmp_path / "inline"), workers=0)
    assert (out / "manifest.json").read_bytes() == (tmp_path / "inline" / "manifest.json").read_bytes()
    for shard in sorted((tmp_path / "inline").glob("shard-*.tar")):
        assert hashlib.sha256((out / shard.name).read_bytes()).digest() == hashlib.sha256(shard.read_bytes()).digest()
