"""Fine-tuning on real labelled images (scikit-learn's digits) from a real checkpoint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fractalshards.train import FinetuneConfig, build_model, format_table, load_digits_images, run_finetune

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A checkpoint shaped like jobs/pretrain.py's (random weights: fine-tuning mechanics only)."""
    path = tmp_path_factory.mktemp("ft") / "last.pt"
    torch.manual_seed(0)
    model = build_model("test_resnet", 7)  # timm's test network: the mechanics are under test, not the model
    torch.save(
        {"model": model.state_dict(), "arch": "test_resnet", "model_name": "test_resnet", "num_classes": 7, "step": 1}, path
    )
    return path


def test_digits_are_real_images():
    images, labels = load_digits_images()
    assert images.shape == (1797, 8, 8) and images.dtype.name == "uint8"
    assert images.max() == 255 and sorted(set(labels.tolist())) == list(range(10))


def test_finetune_reports_every_cell(checkpoint):
    config = FinetuneConfig(checkpoint=str(checkpoint), labels_per_class=(5,), seeds=(0, 1), epochs=2, image_size=16)
    results = run_finetune(config, progress=lambda line: None)
    for regime in ("finetune", "probe"):
        for init in ("pretrained", "scratch"):
            accs = results[(5, regime, init)]
            assert len(accs) == 2 and all(0.0 <= a <= 1.0 for a in accs)
    floor = results[(5, "pixels", "logreg")]
    assert all(a > 0.5 for a in floor)  # pixels of digits are informative: far above chance (0.1)
    # Same seed, same checkpoint: the pre-trained and scratch probes differ (weights are loaded).
    assert results[(5, "probe", "pretrained")] != results[(5, "probe", "scratch")]
    table = format_table(results)
    assert "| 5 | finetune |" in table and "floor" in table


def test_job_rejects_a_mismatched_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"conv1.weight": torch.zeros(1)}, "arch": "resnet18"}, bad)
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "jobs" / "finetune.py"),
            "--checkpoint",
            str(bad),
            "--seeds",
            "0",
            "--labels-per-class",
            "2",
            "--epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "checkpoint" in out.stderr


def test_a_vit_checkpoint_fine_tunes_at_another_size(tmp_path):
    """The ViT path: weights trained at a 32 px crop load into a 16 px network (position embeddings resampled)."""
    path = tmp_path / "vit.pt"
    torch.manual_seed(0)
    model = build_model("test_vit", 5, img_size=32)
    torch.save({"model": model.state_dict(), "model_name": "test_vit", "num_classes": 5, "step": 1, "config": {"crop": 32}}, path)
    config = FinetuneConfig(checkpoint=str(path), labels_per_class=(3,), seeds=(0,), epochs=1, image_size=16)
    results = run_finetune(config, progress=lambda line: None)
    for regime in ("finetune", "probe"):
        assert 0.0 <= results[(3, regime, "pretrained")][0] <= 1.0
    assert results[(3, "probe", "pretrained")] != results[(3, "probe", "scratch")]
