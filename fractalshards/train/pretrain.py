"""Pre-training on a fractalshards stream with any timm network: two recipes, DDP, AMP, checkpoints.

Recipes (``TRAINING_RECIPES``, ``jobs/pretrain.py --recipe``):

- ``fractaldb-resnet`` (the defaults, Kataoka et al.): ResNet-50, SGD momentum 0.9, weight
  decay 1e-4, batch 256, 90 epochs, lr 0.01 divided by 10 at epochs 30 and 60, random 224 crop
  of the 362 px images, normalisation mean 0.2 / std 0.5.
- ``fdsl-vit`` (the ViT papers: Nakashima et al. AAAI 2022, Kataoka et al. CVPR 2022, Takashima
  et al. CVPR 2023): DeiT-Tiny, AdamW lr 1e-3, weight decay 0.05, cosine schedule with 5 warm-up
  epochs, 224 px, label smoothing 0.1, and the augmentations of those papers that timm provides on
  batches: Mixup 0.8, CutMix 1.0, random erasing 0.25, plus horizontal flips.

Every random choice of step ``s`` (crop offsets, flips, Mixup/CutMix, erasing) comes from
generators seeded with ``(seed, s)``, and the loader's position is in every checkpoint, so a
resumed run continues exactly where the checkpoint left it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import pickle
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..augment import AugmentConfig, DeviceTransform, center_crop, random_crop
from ..dataset import open_document
from ..errors import ConfigError, check_choice
from ..limits import check
from ..loader import FractalLoader
from ..mixture import MixedStream, make_spec, open_spec
from ..storage import atomic_write
from ..stream import FractalStream
from .flags import flag_field as _f
from .models import build_model, timm_version

__all__ = [
    "PretrainConfig",
    "TRAINING_RECIPES",
    "training_recipe_config",
    "pretrain",
    "prepare",
    "random_crop",
    "center_crop",
    "load_checkpoint",
    "normalize",
    "evaluate",
    "learning_rate",
]

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Settings of :func:`pretrain`; ``jobs/pretrain.py`` generates one flag per field."""

    data: str | tuple[str, ...] = _f(
        "",
        "dataset or recipe folder or URL (PREFIX@tag resolves), or a mixture spec (fractalshards mix); "
        "give it more than once with --weights to mix several",
        repeat=True,
    )
    weights: tuple[float, ...] | None = _f(None, "weights of several --data sources, e.g. 3,1 (a mixture)")
    recipe: str = _f("fractaldb-resnet", "the recipe these settings start from", choices=("fractaldb-resnet", "fdsl-vit"))
    arch: str = _f("resnet50", "any timm model name (resnet50, resnet18, vit_tiny_patch16_224, deit_tiny_patch16_224, ...)")
    epochs: int = _f(90, "epochs")
    batch_size: int = _f(256, "batch size per process")
    optimizer: str = _f("sgd", "sgd (momentum) or adamw (timm's, no decay on norms and biases)", choices=("sgd", "adamw"))
    lr: float = _f(0.01, "learning rate (at the end of warm-up)")
    momentum: float = _f(0.9, "SGD momentum")
    weight_decay: float = _f(1e-4, "weight decay")
    schedule: str = _f(
        "step", "step: lr x lr_gamma at each of lr_steps; cosine: warm-up then cosine to min_lr", choices=("step", "cosine")
    )
    lr_steps: tuple[int, ...] = _f((30, 60), "epochs at which a step schedule multiplies lr by lr_gamma")
    lr_gamma: float = _f(0.1, "factor of a step schedule")
    warmup_epochs: float = _f(0.0, "linear warm-up epochs of a cosine schedule")
    min_lr: float = _f(1e-6, "floor of a cosine schedule (and where warm-up starts)")
    label_smoothing: float = _f(0.0, "label smoothing")
    mixup: float = _f(0.0, "Mixup alpha (0: off)")
    cutmix: float = _f(0.0, "CutMix alpha (0: off)")
    random_erase: float = _f(0.0, "probability of timm's random erasing per image")
    hflip: bool = _f(False, "random horizontal flips")
    crop: int = _f(224, "random crop size (centre crop for evaluation)")
    resize: int | None = _f(None, "resize images to this size before cropping (small runs)")
    decode: str = _f(
        "packed",
        "packed: images travel as compact as their PNGs and become the network's input on the device "
        "(fractalshards.augment); tensor: uint8 3 x H x W tensors from the workers (the old path)",
        choices=("packed", "tensor"),
    )
    render_on: str = _f(
        "cpu",
        "cpu: samples come from the dataset's shards (or a recipe rendered in the workers); gpu: every "
        "sample is rendered on the training GPU (fractalshards.loader.RenderLoader: no shard read, no workers)",
        choices=("cpu", "gpu"),
    )
    mean: float = _f(0.2, "normalisation mean")
    std: float = _f(0.5, "normalisation std")
    workers: int = _f(4, "DataLoader workers per process")
    seed: int = _f(0, "seed of the sample order and every augmentation")
    shuffle_buffer: int = _f(1000, "shuffle buffer of the stream")
    amp: bool | None = _f(None, "mixed precision (default: on with CUDA)")
    device: str | None = _f(None, "cpu, cuda, cuda:1 (default: cuda when available)")
    checkpoint_dir: str | None = _f(None, "where last.pt goes")
    checkpoint_every: int = _f(500, "steps between checkpoints")
    resume: bool = _f(True, "resume from CHECKPOINT_DIR/last.pt when it exists")
    max_steps: int | None = _f(None, "stop after this many steps")
    log_every: int = _f(20, "steps between log lines")
    eval_shards: int = _f(1, "the last N shards are held out for top-1 (0: no evaluation)")
    eval_every_epoch: bool = _f(True, "evaluate after every epoch")
    storage_options: dict = _f({}, "fsspec options", flag=False)

    def __post_init__(self) -> None:
        check_choice("recipe", self.recipe, tuple(TRAINING_RECIPES))
        check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        check_choice("schedule", self.schedule, ("step", "cosine"))
        check_choice("decode", self.decode, ("packed", "tensor"))
        check_choice("render_on", self.render_on, ("cpu", "gpu"))
        if self.render_on == "gpu" and self.decode != "packed":
            raise ConfigError("render_on: gpu renders packed images; drop --decode tensor")
        if isinstance(self.data, (list, tuple)):
            self.data = tuple(self.data) if len(self.data) != 1 else self.data[0]
        if not self.data:
            raise ConfigError("data: give the dataset folder or URL (--data)")
        if isinstance(self.data, tuple) and self.weights is None:
            raise ConfigError(f"weights: {len(self.data)} --data sources need --weights (one number each, e.g. 3,1)")
        if self.weights is not None and not isinstance(self.data, tuple):
            raise ConfigError("weights: --weights mixes several --data sources; give --data more than once")
        if isinstance(self.data, tuple) and self.render_on == "gpu":
            raise ConfigError("render_on: a mixture is read through FractalLoader; drop --render-on gpu")
        for name in ("label_smoothing", "random_erase"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is out of range; use a number in [0, 1)")
        if self.mixup < 0 or self.cutmix < 0:
            raise ConfigError("mixup/cutmix: alphas must be >= 0 (0 turns them off)")


#: Recipes: the field values each starts from (flags given on top of them win).
TRAINING_RECIPES: dict[str, dict] = {
    "fractaldb-resnet": {},
    "fdsl-vit": {
        "arch": "deit_tiny_patch16_224",
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 0.05,
        "schedule": "cosine",
        "warmup_epochs": 5.0,
        "min_lr": 1e-5,
        "label_smoothing": 0.1,
        "mixup": 0.8,
        "cutmix": 1.0,
        "random_erase": 0.25,
        "hflip": True,
        "crop": 224,
        "epochs": 90,
    },
}


def training_recipe_config(recipe: str = "fractaldb-resnet", **overrides: Any) -> PretrainConfig:
    """The :class:`PretrainConfig` of ``recipe`` with ``overrides`` on top."""
    check_choice("recipe", recipe, tuple(TRAINING_RECIPES))
    return PretrainConfig(**{**TRAINING_RECIPES[recipe], "recipe": recipe, **overrides})


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """``(N, 3, H, W)`` pixels in 0..255 (uint8 or float) -> float, ``(x / 255 - mean) / std``."""
    return (images.float() / 255.0 - mean) / std


def prepare(
    images: torch.Tensor, config: PretrainConfig, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """uint8 batch -> resized (optional), cropped (random with ``generator``, else centre), normalised, on ``device``."""
    x = images.to(device, non_blocking=True)
    if config.resize:
        x = torch.nn.functional.interpolate(
            x.float(), size=(config.resize, config.resize), mode="bilinear", antialias=True, align_corners=False
        )
    x = random_crop(x, config.crop, generator) if generator is not None else center_crop(x, config.crop)
    if generator is not None and config.hflip:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    return normalize(x, config.mean, config.std)


class _Augment:
    """Mixup / CutMix with label smoothing and random erasing, from timm, made exact on resume:
    timm draws from the global numpy, ``random`` and torch generators, so each step runs
    them seeded with ``(seed, step)`` and puts the caller's generator states back."""

    def __init__(self, config: PretrainConfig, num_classes: int, device: torch.device) -> None:
        self.config, self.num_classes, self.device = config, num_classes, device
        self.mix = self.erase = None
        if config.mixup > 0 or config.cutmix > 0:
            from timm.data import Mixup

            self.mix = Mixup(
                mixup_alpha=config.mixup,
                cutmix_alpha=config.cutmix,
                label_smoothing=config.label_smoothing,
                num_classes=num_classes,
            )
        if config.random_erase > 0:
            from timm.data.random_erasing import RandomErasing

            self.erase = RandomErasing(probability=config.random_erase, mode="pixel", device=str(device))

    @property
    def soft_targets(self) -> bool:
        """Whether targets become distributions (then the loss is soft-target cross-entropy)."""
        return self.mix is not None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mix is None and self.erase is None:
            return images, labels
        images = images.contiguous()  # timm writes in place; the device transform's grey batch is a view
        with _seeded(self.config.seed * 1_000_003 + step):
            if self.erase is not None:
                images = self.erase(images)
            if self.mix is not None:
                if images.shape[0] % 2 == 0:
                    images, labels = self.mix(images, labels)
                else:  # timm mixes pairs: an odd last batch gets the smoothed targets only
                    off = self.config.label_smoothing / self.num_classes
                    labels = torch.full((labels.shape[0], self.num_classes), off, device=labels.device).scatter_(
                        1, labels[:, None], 1.0 - self.config.label_smoothing + off
                    )
        return images, labels


@contextlib.contextmanager
def _seeded(seed: int):
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed % 2**32)
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


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
    """Read a checkpoint written by :func:`pretrain`: data only (``torch.load(weights_only=True)``).

    A checkpoint is plain data (tensors, numbers, strings, lists and dicts: the model, optimiser and
    scaler states, the loader state and the config), so nothing in it can run code. A file that needs
    pickled objects is refused with a one-line :class:`ConfigError` naming it.
    """
    try:
        check("checkpoint size", os.stat(path).st_size, "checkpoint_bytes", f"checkpoint {str(path)!r}")  # before reading it
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise ConfigError(f"checkpoint: {str(path)!r} does not exist; give a checkpoint written by jobs/pretrain.py") from exc
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split())[:160]
        raise ConfigError(
            f"checkpoint: {str(path)!r} holds pickled objects, not only data ({first}); fractalshards loads data-only "
            "checkpoints (written by jobs/pretrain.py); do not load this file unless you trust its author"
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(
            f"checkpoint: {str(path)!r} is not a fractalshards checkpoint (no model state); give one written by jobs/pretrain.py"
        )
    return state


def _save(path: Path, payload: dict) -> None:
    atomic_write(path, lambda fh: torch.save(payload, fh))


def input_transform(config: PretrainConfig, stream: FractalStream | MixedStream, source: int | None = None):
    """``(images, device, generator) -> network input`` for batches of ``stream``: the device transform of
    packed batches, or :func:`prepare` of uint8 tensors (``config.decode``); the same tensors either way.
    A ``per_source`` mixture's batches each take their source's transform (``source``)."""
    if config.decode == "tensor":
        return lambda images, device, generator: prepare(images, config, device, generator)
    augment = AugmentConfig(crop=config.crop, resize=config.resize or 0, hflip=config.hflip, mean=config.mean, std=config.std)
    layout = stream.layouts[source] if source is not None else stream.layout
    return DeviceTransform(augment, layout)


def _batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """``(images, labels, source)`` of a loader's batch: a ``per_source`` mixture's carry their source."""
    if len(batch) == 3:
        return batch[0], batch[1], int(batch[2][0])
    return batch[0], batch[1], None


def evaluate(model: nn.Module, loader: Any, config: PretrainConfig, device: torch.device) -> float:
    """Top-1 accuracy (centre crop) over ``loader``."""
    model.eval()
    correct = total = 0
    loaders = loader if isinstance(loader, list) else [(loader, 0)]
    with torch.no_grad():
        for part, offset in loaders:  # a mixture's held-out shards: each source's, its labels offset
            transform = input_transform(config, part.stream)
            for images, labels in part:
                pred = model(transform(images, device, None)).argmax(1).cpu()
                correct += int((pred == labels + offset).sum())
                total += int(labels.numel())
    model.train()
    return correct / max(1, total)


def _device(config: PretrainConfig, local_rank: int) -> tuple[torch.device, bool]:
    """The training device (``config.device``, else this process's GPU, else the CPU) and whether AMP is on."""
    if config.device:
        device = torch.device(config.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return device, config.amp if config.amp is not None else device.type == "cuda"


@dataclass
class _Data:
    """What a run reads: the training stream and loader, the held-out loader, the network's input."""

    stream: FractalStream | MixedStream
    loader: Any
    eval_loader: Any
    transform: Callable
    num_classes: int
    #: A ``per_source`` mixture's transform of each source (its batches name their source).
    transforms: list[Callable] | None = None

    def transform_of(self, source: int | None) -> Callable:
        """The transform of a batch from ``source`` (None: every batch's)."""
        return self.transform if source is None or self.transforms is None else self.transforms[source]


def _is_mixture(config: PretrainConfig) -> bool:
    if isinstance(config.data, tuple):
        return True
    kind, _, _ = open_document(config.data, config.storage_options)
    return kind == "mixture"


def _mixture_data(config: PretrainConfig, rank: int, world: int, device: torch.device) -> _Data:
    """A mixture's streams (a spec, or several --data by --weights): each source's last ``eval_shards``
    shards held out, the rest mixed; top-1 over every held-out sample, labels as the mixture maps them."""
    if config.render_on == "gpu":
        raise ConfigError("render_on: a mixture is read through FractalLoader; drop --render-on gpu")
    common = {"storage_options": config.storage_options, "decode": config.decode}
    if isinstance(config.data, tuple):
        spec = make_spec(list(config.data), list(config.weights or ()), storage_options=config.storage_options)
    else:
        spec = open_spec(config.data, config.storage_options)
    train, held = [], []
    for k, src in enumerate(spec.sources):
        names = FractalStream(src.url, storage_options=config.storage_options, rank=0, world_size=1).shard_names
        if config.eval_shards and len(names) <= config.eval_shards:
            raise ConfigError(
                f"eval_shards: {config.eval_shards} of {len(names)} shards of source {k} ({src.url}) leaves none to "
                "train on; use --eval-shards 0 or sources with more shards"
            )
        cut = len(names) - config.eval_shards if config.eval_shards else len(names)
        train.append(
            FractalStream(
                src.url,
                rank=rank,
                world_size=world,
                shards=names[:cut],
                seed=config.seed + k,
                shuffle_buffer=config.shuffle_buffer,
                fresh_instances=src.fresh_instances,
                **common,
            )
        )
        held.append(names[cut:])
    mixture = MixedStream.of_spec(spec, train)  # each source at the version the spec pins
    loader = FractalLoader(mixture, batch_size=config.batch_size, num_workers=config.workers, pin_memory=device.type == "cuda")
    eval_loader = None
    if config.eval_shards and rank == 0:
        eval_loader = [
            (
                FractalLoader(
                    FractalStream(src.url, rank=0, world_size=1, shuffle=False, shards=names, **common),
                    batch_size=config.batch_size,
                    num_workers=min(config.workers, 2),
                ),
                mixture.offsets[k],
            )
            for k, (src, names) in enumerate(zip(spec.sources, held))
        ]
    per_source = mixture.batching == "per_source"
    transforms = [input_transform(config, mixture, k) for k in range(len(train))] if per_source else None
    transform = transforms[0] if transforms else input_transform(config, mixture)
    return _Data(mixture, loader, eval_loader, transform, mixture.num_classes, transforms)


def _data(config: PretrainConfig, rank: int, world: int, device: torch.device) -> _Data:
    """The streams of a dataset or a recipe: the last ``eval_shards`` shards held out for top-1."""
    if _is_mixture(config):
        return _mixture_data(config, rank, world, device)
    probe = FractalStream(config.data, storage_options=config.storage_options, rank=0, world_size=1)
    names = probe.shard_names
    if config.eval_shards and len(names) <= config.eval_shards:
        raise ConfigError(
            f"eval_shards: {config.eval_shards} of {len(names)} shards leaves none to train on; "
            "use --eval-shards 0 or more shards"
        )
    train_names = names[: len(names) - config.eval_shards] if config.eval_shards else names
    eval_names = names[len(names) - config.eval_shards :] if config.eval_shards else []
    common = {"storage_options": config.storage_options, "decode": config.decode}
    order = {"seed": config.seed, "shuffle_buffer": config.shuffle_buffer}
    stream = FractalStream(config.data, rank=rank, world_size=world, shards=train_names, **order, **common)
    if config.render_on == "gpu":
        from ..loader import RenderLoader

        # The same samples, order and states as the stream above, rendered on this process's GPU.
        loader: Any = RenderLoader(
            config.data,
            config.batch_size,
            device=device if device.type == "cuda" else "cuda",
            seed=config.seed,
            shuffle_buffer=config.shuffle_buffer,
            rank=rank,
            world_size=world,
            shards=train_names,
            storage_options=config.storage_options,
        )
    else:
        loader = FractalLoader(stream, batch_size=config.batch_size, num_workers=config.workers, pin_memory=device.type == "cuda")
    eval_loader = None
    if eval_names and rank == 0:
        eval_stream = FractalStream(config.data, rank=0, world_size=1, shuffle=False, shards=eval_names, **common)
        eval_loader = FractalLoader(eval_stream, batch_size=config.batch_size, num_workers=min(config.workers, 2))
    # A dataset's categories or a recipe's: the definition says (a recipe has no manifest totals).
    return _Data(stream, loader, eval_loader, input_transform(config, stream), probe.definition.num_categories)


def _optimizer(config: PretrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        from timm.optim import create_optimizer_v2

        return create_optimizer_v2(model, "adamw", lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def learning_rate(config: PretrainConfig, steps_per_epoch: int, epoch: int, step: int = 0) -> float:
    """The learning rate at ``epoch``, ``step`` (a pure function: a resumed run gets the same)."""
    if config.schedule == "step":
        return config.lr * config.lr_gamma ** sum(epoch >= m for m in config.lr_steps)
    warmup = config.warmup_epochs * steps_per_epoch
    total = max(1.0, config.epochs * steps_per_epoch - warmup)
    if step < warmup:
        return config.min_lr + (config.lr - config.min_lr) * step / warmup
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * min(1.0, (step - warmup) / total)))


class _Run:
    """One pre-training run, phase by phase: set up (data, model, optimiser), resume, train, finish."""

    def __init__(self, config: PretrainConfig, on_log: Callable[[dict], None] | None) -> None:
        self.config = config
        self.started_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
        self.rank, self.world, local_rank = _distributed_setup()
        self.started_group = self.started_group and self.world > 1
        self.sink = on_log or (lambda rec: log.info(json.dumps(rec)))
        self.device, amp = _device(config, local_rank)
        self.data = _data(config, self.rank, self.world, self.device)
        torch.manual_seed(config.seed)
        model = build_model(config.arch, self.data.num_classes, img_size=config.crop).to(self.device)
        self.optimizer = _optimizer(config, model)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.model = model
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp)
        self.amp = amp
        self.augment = _Augment(config, self.data.num_classes, self.device)
        if self.augment.soft_targets:
            from timm.loss import SoftTargetCrossEntropy

            self.criterion: nn.Module = SoftTargetCrossEntropy()
        else:
            self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.steps_per_epoch = max(1, math.ceil(len(self.data.stream) / config.batch_size))
        self.step, self.epoch = 0, 0
        self.history: list[float] = []
        self.top1: float | None = None
        ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        if ckpt_dir:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.last = ckpt_dir / "last.pt" if ckpt_dir else None

    def emit(self, record: dict) -> None:
        if self.rank == 0:  # one log, not one per process
            self.sink(record)

    def resume(self) -> None:
        """Continue from ``last.pt`` (model, optimiser, scaler, the loader's exact position) when there is one."""
        if self.last is None or not self.config.resume or not self.last.exists():
            return
        state = load_checkpoint(self.last)
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        # Any rank's loader state serves every rank, also on another number of processes.
        self.data.loader.load_state_dict(state["loader"])
        self.step, self.epoch = int(state["step"]), self.data.loader.epoch
        seen = state["loader"]["samples_seen"]
        self.emit({"event": "resumed", "step": self.step, "epoch": self.epoch, "samples_seen": seen, "from": str(self.last)})

    def save(self) -> None:
        if self.last is None or self.rank != 0:
            return
        config, stream = self.config, self.data.stream
        _save(
            self.last,
            {
                "model": _unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "loader": self.data.loader.state_dict(),
                "step": self.step,
                "arch": config.arch,
                "model_name": config.arch,
                "timm_version": timm_version(),
                "recipe": config.recipe,
                "num_classes": self.data.num_classes,
                "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "storage_options"},
                "dataset": _describe(config, stream),
            },
        )

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, source: int | None = None) -> float:
        """One optimiser step on a batch as the loader gives it (from mixture source ``source``); the loss."""
        config, device = self.config, self.device
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, self.steps_per_epoch, self.epoch, self.step)
        images = self.data.transform_of(source)(images, device, _step_generator(config.seed, self.step))
        labels = labels.to(device, non_blocking=True)
        images, labels = self.augment(images, labels, self.step)
        with torch.autocast(device.type, enabled=self.amp):
            loss = self.criterion(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return float(loss.detach())

    def train(self) -> None:
        """Epochs until ``epochs`` (or ``max_steps``): log lines, checkpoints, top-1 after each epoch."""
        config, loader = self.config, self.data.loader
        self.model.train()
        t0, seen_since = time.perf_counter(), 0
        while self.epoch < config.epochs:
            for batch in loader:
                images, labels, source = _batch(batch)
                self.history.append(self.train_step(images, labels, source))
                seen_since += int(labels.shape[0]) * self.world
                if self.step % config.log_every == 0:
                    elapsed = time.perf_counter() - t0
                    self.emit(
                        {
                            "step": self.step,
                            "epoch": self.epoch,
                            "loss": round(self.history[-1], 5),
                            "lr": learning_rate(config, self.steps_per_epoch, self.epoch, self.step),
                            "images_per_s": round(seen_since / elapsed, 1) if elapsed > 0 else None,
                        }
                    )
                    t0, seen_since = time.perf_counter(), 0
                if self.last is not None and self.step % config.checkpoint_every == 0:
                    self.save()
                if config.max_steps is not None and self.step >= config.max_steps:
                    return
            self.epoch = loader.epoch  # the loader moved on to the next epoch by itself
            if self.data.eval_loader is not None and config.eval_every_epoch and self.epoch < config.epochs:
                self.evaluate()

    def evaluate(self) -> None:
        self.top1 = evaluate(_unwrap(self.model), self.data.eval_loader, self.config, self.device)
        self.emit({"event": "eval", "step": self.step, "epoch": self.epoch, "top1": round(self.top1, 4)})

    def finish(self) -> dict:
        """The last evaluation and checkpoint; the summary."""
        if self.data.eval_loader is not None:
            self.evaluate()
        self.save()
        history = self.history
        summary = {
            "steps": self.step,
            "epoch": self.epoch,
            "losses": history,
            "top1": self.top1,
            "num_classes": self.data.num_classes,
            "checkpoint": str(self.last) if self.last else None,
        }
        self.emit(
            {
                "event": "done",
                "step": self.step,
                "first_loss": history[0] if history else None,
                "final_loss": history[-1] if history else None,
                "top1": self.top1,
            }
        )
        if self.started_group:
            # Every rank past its last collective and rank 0's checkpoint before any tears the group
            # down: a rank that destroyed it while another was still saving aborted at exit
            # ("terminate called without an active exception"), now and then, under load.
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
        return summary


def pretrain(config: PretrainConfig, on_log: Callable[[dict], None] | None = None) -> dict:
    """Train ``config.arch`` on the dataset or recipe at ``config.data``; returns a summary dict.

    Every ``log_every`` steps (and at the end) a record ``{step, epoch, loss, lr,
    images_per_s}`` goes to ``on_log`` (default: logging, one JSON line). The run's phases:
    set up (streams, model, optimiser), resume from ``last.pt``, train, evaluate and save.
    """
    run = _Run(config, on_log)
    run.resume()
    run.train()
    return run.finish()


def _describe(config: PretrainConfig, stream: FractalStream | MixedStream) -> dict:
    """What a checkpoint says it was trained on: the dataset, or the mixture and its sources."""
    if isinstance(stream, MixedStream):
        return {
            "url": list(config.data) if isinstance(config.data, tuple) else config.data,
            "name": stream.spec.name if stream.spec is not None else "mixture",
            "version": stream.version,
            "sources": stream.label_map,
        }
    return {"url": config.data, "name": stream.definition.name, "version": stream.version}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
