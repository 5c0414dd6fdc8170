"""Ray Train: jobs/pretrain.py --ray-workers gives torchrun's losses, and a killed worker's run resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.train import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent.parent
ARGS = ["--arch", "test_resnet", "--batch-size", "4", "--crop", "32", "--workers", "0", "--log-every", "1", "--eval-shards", "0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("raytrain") / "ds"
    d = DatasetDefinition.from_preset(
        "fractaldb-100", categories=4, instances=12, shard_size=12, render={"mode": "official", "size": 40, "points": 3000}
    )
    build(d, str(out), workers=0)
    return str(out)


def _losses(stderr: str) -> list[float]:
    out = []
    for line in stderr.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "loss" in record and "step" in record:
            out.append((record["step"], record["loss"]))
    return [loss for _, loss in sorted(dict(out).items())]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled"}


def _job(command: list[str], timeout: int = 300) -> str:
    """Run a training job to its end; its stderr (the JSON log lines)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _same_weights(a: dict, b: dict, rtol: float, atol: float) -> None:
    for name, tensor in a["model"].items():
        torch.testing.assert_close(tensor, b["model"][name], rtol=rtol, atol=atol, msg=name)


#: A run of 10 steps on two workers, checkpointed every 2 steps.
RUN = [*ARGS, "--max-steps", "10", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def ray_run(data, tmp_path_factory) -> tuple[Path, str]:
    """One Ray Train run straight to its end, which both tests compare against: its checkpoint folder and log."""
    out = tmp_path_factory.mktemp("ray-straight")
    log = _job([sys.executable, str(ROOT / "jobs" / "pretrain.py"), "--data", data, *RUN, "--ray-workers", "2",
                "--checkpoint-dir", str(out)])  # fmt: skip
    return out, log


@pytest.mark.slow
def test_ray_train_gives_the_losses_of_torchrun(data, ray_run, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    job = [str(ROOT / "jobs" / "pretrain.py"), "--data", data, *RUN]
    torchrun_log = _job(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", *job, "--checkpoint-dir", str(tmp_path / "ddp")], 240
    )
    expected, got = _losses(torchrun_log), _losses(ray_run[1])
    assert len(expected) == 10 and got == pytest.approx(expected, rel=1e-6)
    a, b = load_checkpoint(tmp_path / "ddp" / "last.pt"), load_checkpoint(ray_run[0] / "last.pt")
    assert a["step"] == b["step"] == 10 and a["loader"] == b["loader"] and b["loader"]["world_size"] == 2
    _same_weights(a, b, rtol=1e-5, atol=1e-6)


def _ray_train_workers(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for proc in root.children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.mark.slow
def test_a_killed_ray_worker_and_a_resubmitted_run_resume_exactly(data, ray_run, tmp_path):
    command = [sys.executable, str(ROOT / "jobs" / "pretrain.py"), "--data", data, *RUN, "--ray-workers", "2"]
    killed_dir = tmp_path / "killed"
    job = subprocess.Popen([*command, "--checkpoint-dir", str(killed_dir)], stderr=subprocess.PIPE, text=True, env=_env())
    watchdog = threading.Timer(300, job.kill)  # a silent hang must not outlive the test
    watchdog.start()
    try:
        deadline = time.monotonic() + 240
        seen = 0
        for line in job.stderr:  # wait for a checkpoint past step 4, then kill one Ray Train worker
            seen += '"loss"' in line
            if seen >= 5 and (killed_dir / "last.pt").exists():
                break
            assert time.monotonic() < deadline, "the run did not reach step 5"
        victims = _ray_train_workers(psutil.Process(job.pid))
        assert victims, "no Ray Train worker found"
        victims[-1].send_signal(signal.SIGKILL)
        rest = job.stderr.read()
        assert job.wait(timeout=240) != 0, rest[-2000:]
    finally:
        watchdog.cancel()
        if job.poll() is None:
            job.kill()
            job.wait()
    partial = load_checkpoint(killed_dir / "last.pt")
    assert 2 <= partial["step"] < 10
    assert '"event": "resumed"' in _job([*command, "--checkpoint-dir", str(killed_dir)])
    a, b = load_checkpoint(ray_run[0] / "last.pt"), load_checkpoint(killed_dir / "last.pt")
    assert a["step"] == b["step"] == 10 and a["loader"] == b["loader"]
    _same_weights(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_ray_train_streams_a_mixture(data, tmp_path):
    # A dataset and a recipe mixed 3:1 on two Ray Train workers: the checkpoint holds the mixture's state.
    from fractalshards.recipe import Recipe

    recipe = tmp_path / "recipe.json"
    other = DatasetDefinition.from_preset(
        "fractaldb-100", categories=3, instances=8, shard_size=8, render={"mode": "native", "size": 40, "points": 3000}
    )
    recipe.write_text(Recipe(other).to_json())
    out = tmp_path / "mix"
    command = [sys.executable, str(ROOT / "jobs" / "pretrain.py"), "--data", data, "--data", str(recipe), "--weights", "3,1"]
    log = _job([*command, *ARGS, "--max-steps", "4", "--checkpoint-every", "2", "--ray-workers", "2",
                "--checkpoint-dir", str(out)])  # fmt: skip
    assert len(_losses(log)) == 4
    state = load_checkpoint(out / "last.pt")
    assert state["step"] == 4 and state["num_classes"] == 4 + 3
    assert state["loader"]["kind"] == "mixture" and state["loader"]["world_size"] == 2
    assert state["loader"]["samples_seen"] == 4 * 4 and len(state["loader"]["sources"]) == 2
