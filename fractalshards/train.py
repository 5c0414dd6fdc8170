"""Pre-training on a fractalshards stream: the FractalDB recipe, DDP, AMP, checkpoints.

Defaults are the paper's (Kataoka et al.): ResNet-50, SGD momentum 0.9, weight
decay 1e-4, batch 256, 90 epochs, lr 0.01 divided by 10 at epochs 30 and 60,
random 224 crop of the 362 px images, normalisation mean 0.2 / std 0.5. The crop
offsets of step ``s`` come from a generator seeded with ``(seed, s)``, and the
loader's position is in every checkpoint, so a resumed run continues exactly
where the checkpoint left it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .errors import ConfigError
from .models import build_model
from .stream import FractalLoader, FractalStream

__all__ = ["PretrainConfig", "pretrain", "prepare", "random_crop", "center_crop", "load_checkpoint", "normalize", "evaluate"]

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Settings of :func:`pretrain` (``jobs/pretrain.py`` exposes each as a flag)."""

    data: str
    arch: str = "resnet50"
    epochs: int = 90
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple[int, ...] = (30, 60)
    lr_gamma: float = 0.1
    crop: int = 224
    resize: int | None = None  # resize images to this size before cropping (small CPU runs)
    mean: float = 0.2
    std: float = 0.5
    workers: int = 4
    seed: int = 0
    shuffle_buffer: int = 1000
    amp: bool | None = None  # default: on with CUDA
    device: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int = 500
    resume: bool = True
    max_steps: int | None = None
    log_every: int = 20
    eval_shards: int = 1  # the last N shards are held out for top-1 (0: no evaluation)
    eval_every_epoch: bool = True
    storage_options: dict = field(default_factory=dict)


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``(N, 3, H, W)`` pixels in 0..255 (uint8 or float) -> float, ``(x / 255 - mean) / std``."""
    return (images.float() / 255.0 - mean) / std


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``size`` x ``size`` crop per image, offsets drawn from ``generator``."""
    n, _, h, w = images.shape
    if size > h or size > w:
        raise ConfigError(f"crop: {size} is larger than the images ({h}x{w}); use --crop <= {min(h, w)}")
    ys = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    xs = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    return torch.stack([images[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(zip(ys, xs))])


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` crop."""
    h, w = images.shape[-2:]
    y, x = (h - size) // 2, (w - size) // 2
    return images[..., y : y + size, x : x + size]


def prepare(images: torch.Tensor, config: "PretrainConfig", device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 batch -> resized (optional), cropped (random with ``generator``, else centre), normalised, on ``device``."""
    x = images.to(device, non_blocking=True)
    if config.resize:
        x = torch.nn.functional.interpolate(x.float(), size=(config.resize, config.resize), mode="bilinear",
                                            antialias=True, align_corners=False)
    x = random_crop(x, config.crop, generator) if generator is not None else center_crop(x, config.crop)
    return normalize(x, config.mean, config.std)


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _distributed_setup() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """Read a checkpoint written by :func:`pretrain`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise ConfigError(f"checkpoint: {str(path)!r} does not exist; give a checkpoint written by jobs/pretrain.py") from None


def _save(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def evaluate(model: nn.Module, loader: Any, config: PretrainConfig, device: torch.device) -> float:
    """Top-1 accuracy (centre crop) over ``loader``."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            pred = model(prepare(images, config, device, None)).argmax(1).cpu()
            correct += int((pred == labels).sum())
            total += int(labels.numel())
    model.train()
    return correct / max(1, total)


def pretrain(config: PretrainConfig, on_log: Callable[[dict], None] | None = None) -> dict:
    """Train ``config.arch`` on the stream at ``config.data``; returns a summary dict.

    Every ``log_every`` steps (and at the end) a record ``{step, epoch, loss, lr,
    images_per_s}`` goes to ``on_log`` (default: logging, one JSON line).
    """
    started_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    rank, world, local_rank = _distributed_setup()
    started_group = started_group and world > 1
    sink = on_log or (lambda rec: log.info(json.dumps(rec)))

    def emit(record: dict) -> None:
        if rank == 0:  # one log, not one per process
            sink(record)
    if config.device:
        device = torch.device(config.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    amp = config.amp if config.amp is not None else device.type == "cuda"

    probe = FractalStream(config.data, storage_options=config.storage_options, rank=0, world_size=1)
    names = probe.shard_names
    if config.eval_shards and len(names) <= config.eval_shards:
        raise ConfigError(f"eval_shards: {config.eval_shards} of {len(names)} shards leaves none to train on; use --eval-shards 0 or more shards")
    train_names = names[: len(names) - config.eval_shards] if config.eval_shards else names
    eval_names = names[len(names) - config.eval_shards :] if config.eval_shards else []
    num_classes = int(probe.manifest.totals["categories"])

    stream = FractalStream(config.data, rank=rank, world_size=world, seed=config.seed, shuffle_buffer=config.shuffle_buffer,
                           storage_options=config.storage_options, shards=train_names)
    loader = FractalLoader(stream, batch_size=config.batch_size, num_workers=config.workers,
                           pin_memory=device.type == "cuda")
    eval_loader = None
    if eval_names and rank == 0:
        eval_stream = FractalStream(config.data, rank=0, world_size=1, shuffle=False, shards=eval_names,
                                    storage_options=config.storage_options)
        eval_loader = FractalLoader(eval_stream, batch_size=config.batch_size, num_workers=min(config.workers, 2))

    torch.manual_seed(config.seed)
    model = build_model(config.arch, num_classes).to(device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    criterion = nn.CrossEntropyLoss()

    step, epoch = 0, 0
    ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    last = ckpt_dir / "last.pt" if ckpt_dir else None
    if ckpt_dir:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    if last is not None and config.resume and last.exists():
        state = load_checkpoint(last)
        _unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        # Any rank's loader state serves every rank, also on another number of processes.
        loader.load_state_dict(state["loader"])
        step, epoch = int(state["step"]), loader.epoch
        emit({"event": "resumed", "step": step, "epoch": epoch, "samples_seen": state["loader"]["samples_seen"],
              "from": str(last)})

    def lr_at(e: int) -> float:
        return config.lr * config.lr_gamma ** sum(e >= m for m in config.lr_steps)

    def save() -> None:
        if last is None or rank != 0:
            return
        _save(last, {
            "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "loader": loader.state_dict(), "step": step, "arch": config.arch, "num_classes": num_classes,
            "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "storage_options"},
            "dataset": {"url": config.data, "version": stream.version},
        })

    model.train()
    history: list[float] = []
    top1 = None
    t0, seen_since = time.perf_counter(), 0
    done = False
    while epoch < config.epochs and not done:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(epoch)
        for images, labels in loader:
            images = prepare(images, config, device, _step_generator(config.seed, step))
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp):
                loss = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            seen_since += int(labels.numel()) * world
            history.append(float(loss.detach()))
            if step % config.log_every == 0:
                elapsed = time.perf_counter() - t0
                emit({"step": step, "epoch": epoch, "loss": round(history[-1], 5), "lr": lr_at(epoch),
                      "images_per_s": round(seen_since / elapsed, 1) if elapsed > 0 else None})
                t0, seen_since = time.perf_counter(), 0
            if ckpt_dir and step % config.checkpoint_every == 0:
                save()
            if config.max_steps is not None and step >= config.max_steps:
                done = True
                break
        else:
            epoch = loader.epoch  # the loader moved on to the next epoch by itself
            if eval_loader is not None and config.eval_every_epoch and epoch < config.epochs:
                top1 = evaluate(_unwrap(model), eval_loader, config, device)
                emit({"event": "eval", "step": step, "epoch": epoch, "top1": round(top1, 4)})
    if eval_loader is not None:
        top1 = evaluate(_unwrap(model), eval_loader, config, device)
        emit({"event": "eval", "step": step, "epoch": epoch, "top1": round(top1, 4)})
    save()
    summary = {"steps": step, "epoch": epoch, "losses": history, "top1": top1, "num_classes": num_classes,
               "checkpoint": str(last) if last else None}
    emit({"event": "done", "step": step, "first_loss": history[0] if history else None,
          "final_loss": history[-1] if history else None, "top1": top1})
    if started_group:
        torch.distributed.destroy_process_group()
    return summary


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

