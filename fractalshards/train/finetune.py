"""What pre-training is worth: fine-tune on real labelled images, against training from scratch.

The real images are scikit-learn's bundled handwritten digits (1,797 8x8 images,
10 classes; no download), or a folder of ``<class>/<image>`` files. For each seed
and each labels-per-class budget the same model is trained twice with the same
budget, once from the pre-trained checkpoint and once from a random
initialisation, in two regimes:

- ``finetune``: every parameter trained (SGD, cosine schedule, same epochs);
- ``probe``: the backbone frozen, a logistic regression on its pooled features.

Logistic regression on the raw pixels is the floor. Test images are a fixed
held-out split, never used for training.
"""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .flags import flag_field as _f
from .models import build_model, load_backbone
from .pretrain import load_checkpoint, normalize

__all__ = ["FinetuneConfig", "load_digits_images", "load_folder_images", "run_finetune", "format_table"]


@dataclass
class FinetuneConfig:
    """Settings of :func:`run_finetune`; ``jobs/finetune.py`` generates one flag per field."""

    checkpoint: str = _f("", "last.pt written by jobs/pretrain.py")
    data: str = _f("digits", "'digits' (scikit-learn's, no download) or a folder of <class>/<image> files")
    labels_per_class: tuple[int, ...] = _f((10, 50), "labelled training images per class (each a separate run)")
    seeds: tuple[int, ...] = _f((0, 1, 2), "seeds of the label draws and the training")
    image_size: int = _f(32, "image size the networks see")
    epochs: int = _f(30, "epochs of full fine-tuning")
    batch_size: int = _f(32, "batch size")
    lr: float = _f(0.01, "learning rate of full fine-tuning (SGD, cosine)")
    weight_decay: float = _f(1e-4, "weight decay")
    test_fraction: float = _f(0.3, "fraction held out as the fixed test set")
    mean: float = _f(0.2, "normalisation mean")
    std: float = _f(0.5, "normalisation std")
    regimes: tuple[str, ...] = _f(("finetune", "probe"), "finetune (every weight) and/or probe (frozen backbone)")
    threads: int | None = _f(None, "torch CPU threads")
    results: dict = _f({}, "filled by run_finetune", flag=False)


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 ``(N, 8, 8)`` grey images (0..255) and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def load_folder_images(path: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images under ``path/<class>/`` (any PIL format) as grey uint8 ``(N, size, size)`` and labels."""
    from PIL import Image

    root = Path(path)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise ConfigError(f"data: {path!r} has no class folders; use 'digits' or a folder of <class>/<image> files")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            with Image.open(file) as im:
                images.append(np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR)))
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int64)


def _to_tensor(images: np.ndarray, size: int, mean: float, std: float) -> torch.Tensor:
    x = torch.from_numpy(images).float().unsqueeze(1)
    if x.shape[-1] != size:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = normalize(x, mean, std)
    return x.expand(-1, 3, -1, -1).contiguous()


def _split(labels: np.ndarray, per_class: int, seed: int, test_idx: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pool = np.setdiff1d(np.arange(len(labels)), test_idx)
    chosen = []
    for c in np.unique(labels):
        members = pool[labels[pool] == c]
        if len(members) < per_class:
            raise ConfigError(f"labels_per_class: {per_class} is more than the {len(members)} training images of class {c}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.concatenate(chosen)


def _backbone(checkpoint: dict | None, arch: str, seed: int, image_size: int, trained_size: int | None) -> nn.Module:
    """The network without its classifier (``reset_classifier(0)``: pooled features out)."""
    torch.manual_seed(seed)
    if checkpoint is not None:
        # Built at the size it was trained at (a ViT's position embeddings), then resampled.
        model = build_model(arch, 10, img_size=trained_size or image_size)
        load_backbone(model, checkpoint["model"], img_size=image_size if trained_size not in (None, image_size) else None)
    else:
        model = build_model(arch, 10, img_size=image_size)
    model.reset_classifier(0)
    return model


def _features(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + 256]) for i in range(0, len(x), 256)]).numpy()


def _probe(model: nn.Module, x_train, y_train, x_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    f_train, f_test = _features(model, x_train), _features(model, x_test)
    scaler = StandardScaler().fit(f_train)
    clf = LogisticRegression(max_iter=2000, C=0.1).fit(scaler.transform(f_train), y_train)
    return float(clf.score(scaler.transform(f_test), y_test))


def _finetune(model: nn.Module, x_train, y_train, x_test, y_test, config: FinetuneConfig, seed: int) -> float:
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the new classifier's initial weights too
    model.reset_classifier(10)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    total = config.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    y = torch.from_numpy(y_train)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = nn.functional.cross_entropy(model(x_train[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_test[i : i + 256]).argmax(1) for i in range(0, len(x_test), 256)])
    return float((pred.numpy() == y_test).mean())


def run_finetune(config: FinetuneConfig, progress=print) -> dict:
    """Run every (labels per class, seed, regime, init) cell; returns ``{key: [accuracy per seed]}``.

    Keys are ``(labels_per_class, regime, init)`` with init ``pretrained`` or
    ``scratch``, and ``(labels_per_class, "pixels", "logreg")`` for the floor.
    """
    from sklearn.linear_model import LogisticRegression

    if config.threads:
        torch.set_num_threads(config.threads)
    state = load_checkpoint(config.checkpoint)
    arch = state.get("model_name", state.get("arch", "resnet18"))
    trained_size = (state.get("config") or {}).get("crop")
    images, labels = load_digits_images() if config.data == "digits" else load_folder_images(config.data, config.image_size)
    x_all = _to_tensor(images, config.image_size, config.mean, config.std)
    test_idx = np.random.default_rng(12345).permutation(len(labels))[: int(len(labels) * config.test_fraction)]
    x_test, y_test = x_all[test_idx], labels[test_idx]
    results: dict = {}
    for per_class in config.labels_per_class:
        for seed in config.seeds:
            train_idx = _split(labels, per_class, seed, test_idx)
            x_train, y_train = x_all[train_idx], labels[train_idx]
            pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
            floor = LogisticRegression(max_iter=5000).fit(pixels[train_idx], y_train).score(pixels[test_idx], y_test)
            results.setdefault((per_class, "pixels", "logreg"), []).append(float(floor))
            for init in ("pretrained", "scratch"):
                model = _backbone(state if init == "pretrained" else None, arch, seed, config.image_size, trained_size)
                for regime in config.regimes:
                    if regime == "probe":
                        acc = _probe(model, x_train, y_train, x_test, y_test)
                    elif regime == "finetune":
                        acc = _finetune(model, x_train, y_train, x_test, y_test, config, seed)
                    else:
                        raise ConfigError(f"regimes: {regime!r} is not known; use finetune and/or probe")
                    results.setdefault((per_class, regime, init), []).append(acc)
                    progress(f"labels/class={per_class} seed={seed} {regime:8s} {init:10s} top-1={acc:.4f}")
    config.results = results
    return results


def format_table(results: dict) -> str:
    """A Markdown table: mean ± sd over seeds, pretrained next to scratch."""
    rows = ["| labels/class | regime | pre-trained | scratch | difference |", "|---|---|---|---|---|"]

    def ms(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"

    for per_class in sorted({k[0] for k in results}):
        for regime in ("finetune", "probe"):
            pre, scr = results.get((per_class, regime, "pretrained")), results.get((per_class, regime, "scratch"))
            if pre and scr:
                diff = [a - b for a, b in zip(pre, scr)]
                rows.append(f"| {per_class} | {regime} | {ms(pre)} | {ms(scr)} | {ms(diff)} |")
        floor = results.get((per_class, "pixels", "logreg"))
        if floor:
            rows.append(f"| {per_class} | logistic regression on pixels (floor) | {ms(floor)} | | |")
    return "\n".join(rows)
