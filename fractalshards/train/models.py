"""Networks from ``timm``: any ``timm.create_model`` name (``resnet50``, ``vit_tiny_patch16_224``, ...).

Models that take an input size (ViT, DeiT, ...) are built for the crop they are trained on,
so small CPU runs (a 32 px crop) work; their position embeddings are resampled when a
checkpoint is fine-tuned at another size.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import ConfigError

__all__ = ["timm_version", "build_model", "classifier_prefix", "load_backbone"]


def _timm() -> Any:
    try:
        import timm
    except ImportError as exc:  # timm also needs a torchvision that imports beside this torch
        raise ConfigError(
            f"arch: training builds networks with timm, which does not import here ({exc}); "
            "install fractalshards[train] (make train-install)"
        ) from exc
    return timm


def timm_version() -> str:
    """The installed timm's version (recorded in checkpoints)."""
    return str(_timm().__version__)


def build_model(name: str, num_classes: int, img_size: int | None = None) -> nn.Module:
    """``timm.create_model(name, num_classes=num_classes)``; for models with an input size, built for ``img_size``."""
    timm = _timm()
    if name.split(".", 1)[0] not in timm.list_models():
        raise ConfigError(
            f"arch: {name!r} is not a timm model; use a timm name such as resnet50, resnet18, "
            "vit_tiny_patch16_224 or deit_tiny_patch16_224 (timm.list_models())"
        )
    if img_size is not None:
        try:
            return timm.create_model(name, num_classes=num_classes, img_size=img_size)
        except TypeError:  # convolutional networks take any input size and no img_size argument
            pass
    return timm.create_model(name, num_classes=num_classes)


def classifier_prefix(model: nn.Module) -> str:
    """Name prefix of the classifier's parameters (``fc`` for ResNets, ``head`` for ViTs)."""
    name = getattr(model, "pretrained_cfg", {}).get("classifier") or "fc"
    return name if isinstance(name, str) else name[0]


def load_backbone(model: nn.Module, weights: dict, img_size: int | None = None) -> nn.Module:
    """Load every weight but the classifier's into ``model``; a mismatch is a one-line error."""
    prefix = classifier_prefix(model) + "."
    keep = {k: v for k, v in weights.items() if not k.startswith(prefix)}
    try:
        missing, unexpected = model.load_state_dict(keep, strict=False)
    except RuntimeError:  # shape mismatches
        missing, unexpected = [], ["?"]
    if unexpected or any(not k.startswith(prefix) for k in missing):
        raise ConfigError(
            "checkpoint: its weights do not fit this network; give a checkpoint of the same --arch written by jobs/pretrain.py"
        )
    if img_size is not None and hasattr(model, "set_input_size"):
        model.set_input_size(img_size=img_size)  # resample the position embeddings
    return model
