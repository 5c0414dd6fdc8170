"""Pre-training on a real stream: loss falls, checkpoints resume exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fractalshards.build import build
from fractalshards.plan import DatasetDefinition
from fractalshards.presets import load_preset
from fractalshards.render import RenderSettings
from fractalshards.train import PretrainConfig, load_checkpoint, pretrain

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("train") / "ds"
    d = DatasetDefinition(categories=load_preset("fractaldb-100").subset(4, name="four"), instances=30,
                          render=RenderSettings(mode="official", size=48, points=8_000), shard_size=30)
    build(d, str(out), workers=0)
    return str(out)


def _config(data: str, **kw) -> PretrainConfig:
    base = dict(data=data, arch="resnet18", epochs=50, batch_size=8, lr=0.05, crop=40, workers=0, log_every=1,
                checkpoint_every=3, eval_shards=1, shuffle_buffer=16)
    base.update(kw)
    return PretrainConfig(**base)


def test_loss_decreases_and_top1_is_reported(tiny):
    summary = pretrain(_config(tiny, max_steps=36), on_log=lambda r: None)
    losses = summary["losses"]
    assert len(losses) == 36
    assert sum(losses[-6:]) / 6 < 0.8 * sum(losses[:6]) / 6
    assert 0.0 <= summary["top1"] <= 1.0 and summary["num_classes"] == 4


def test_checkpoint_resume_continues_exactly(tiny, tmp_path):
    straight = pretrain(_config(tiny, max_steps=8, checkpoint_dir=str(tmp_path / "a"), resume=False), on_log=lambda r: None)
    first = pretrain(_config(tiny, max_steps=4, checkpoint_dir=str(tmp_path / "b")), on_log=lambda r: None)
    records = []
    second = pretrain(_config(tiny, max_steps=8, checkpoint_dir=str(tmp_path / "b")), on_log=records.append)
    assert records[0]["event"] == "resumed" and records[0]["step"] == 4
    assert first["losses"] + second["losses"] == pytest.approx(straight["losses"], rel=1e-5)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] == 8 and a["loader"] == b["loader"]
    for name, tensor in a["model"].items():
        torch.testing.assert_close(tensor, b["model"][name], rtol=1e-4, atol=1e-5, msg=name)


def test_job_script_runs_with_workers(tiny, tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "pretrain.py"), "--data", tiny, "--arch", "resnet18", "--batch-size", "8",
         "--crop", "32", "--resize", "40", "--max-steps", "6", "--workers", "2", "--log-every", "2",
         "--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-every", "3"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"event": "done"' in out.stderr and '"images_per_s"' in out.stderr
    assert (tmp_path / "ck" / "last.pt").exists()
    bad = subprocess.run([sys.executable, str(ROOT / "jobs" / "pretrain.py"), "--data", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "manifest.json" in bad.stderr


def test_torchrun_ddp_two_processes(tiny, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    out = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", str(ROOT / "jobs" / "pretrain.py"), "--data", tiny,
         "--arch", "resnet18", "--batch-size", "4", "--crop", "32", "--max-steps", "4", "--workers", "0", "--log-every", "2",
         "--checkpoint-dir", str(tmp_path / "ck")],
        capture_output=True, text=True, timeout=180, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    state = load_checkpoint(tmp_path / "ck" / "last.pt")
    assert state["step"] == 4 and state["loader"]["world_size"] == 2
    assert state["loader"]["samples_seen"] == 16  # 4 steps x 4 per rank, the same on both ranks
