"""Batch augmentation on the training device: packed (or grey) batches in, the network's input out.

A ``decode="packed"`` loader ships each image as compact as its PNG (1-bit rows of two-level
images, grey bytes, RGB bytes: :class:`fractalshards.png.PackedLayout`), so workers, shared memory
and PCIe carry up to 24x fewer bytes; the pixels are made here, on the device, batch by batch:

    unpack -> [resize] -> crop (random, RandomResizedCrop, or centre) -> [flip] -> normalise -> channels

Every random draw comes from the ``torch.Generator`` passed in (one per step in
:mod:`fractalshards.train.pretrain`), so a resumed run draws the same crops and flips. For the
same draws, :class:`DeviceTransform` gives the same tensors as the uint8 path it replaces
(``decode="tensor"`` and :func:`fractalshards.train.pretrain.prepare`): a grey image's three
channels are equal, so it is unpacked, resized, cropped and normalised on one channel and
expanded last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError
from .png import PackedLayout

__all__ = ["AugmentConfig", "DeviceTransform", "unpack", "random_crop", "center_crop", "random_resized_crop_params"]

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)


@dataclass(frozen=True)
class AugmentConfig:
    """What :class:`DeviceTransform` does (the pre-training recipes' input pipeline)."""

    #: Side of the network's input.
    crop: int = 224
    #: Resize the whole image to ``resize`` x ``resize`` first (bilinear, antialiased); 0: no resize.
    resize: int = 0
    #: RandomResizedCrop (``scale``, ``ratio``, torchvision's sampling) instead of a plain random crop.
    resized_crop: bool = False
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    #: Flip half of the images left to right.
    hflip: bool = True
    #: ``(x / 255 - mean) / std``.
    mean: float = 0.2
    std: float = 0.5
    #: Channels of the network's input (grey images are repeated).
    channels: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.crop, int) or self.crop < 1:
            raise ConfigError(f"crop: {self.crop!r} is not valid; use a positive integer")
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0 or not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"scale/ratio: {self.scale}/{self.ratio} are not valid; use 0 < lo <= hi (scale <= 1)")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels: {self.channels!r} is not valid; use 1 or 3")


def unpack(batch: torch.Tensor, layout: PackedLayout) -> torch.Tensor:
    """A packed batch (``(N, *layout.shape)``, uint8, on any device) as uint8 pixels ``(N, C, H, W)``
    (``C`` 1 for grey and two-level images, 3 for colour)."""
    if layout.kind == "bits":
        if batch.device.type == "cpu":  # numpy's unpackbits: 7x the shifts below on one core (measured)
            pixels = np.unpackbits(batch.numpy(), axis=-1, count=layout.width)
            pixels *= np.uint8(layout.level)
            return torch.from_numpy(pixels).unsqueeze(1)
        bits = (batch.unsqueeze(-1) >> _SHIFTS.to(batch.device)) & 1  # (N, H, Wb, 8), leftmost pixel first
        pixels = bits.flatten(-2)[..., : layout.width] * layout.level
        return pixels.unsqueeze(1)
    if layout.kind == "grey":
        return batch.unsqueeze(1)
    return batch.permute(0, 3, 1, 2)


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``size`` x ``size`` crop per image; offsets drawn from ``generator`` (all ``y`` then all ``x``)."""
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


def random_resized_crop_params(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator
) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` as torchvision's ``RandomResizedCrop.get_params`` samples them (10
    tries of an area in ``scale`` and a log-uniform aspect ratio in ``ratio``, else a centre crop),
    every draw from ``generator``."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator).item())
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, w - cw + 1, (1,), generator=generator).item())
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Bilinear and antialiased, as torchvision v2 resizes tensors.
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _resize_pixels(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Resize uint8 pixels as torchvision v2 does (RandomResizedCrop on a uint8 image): on the CPU
    # torch's uint8 kernel (1.4x the float one here, measured); elsewhere in float, rounded back.
    if x.dtype != torch.uint8 or x.device.type == "cpu":
        return _resize(x, size)
    return _resize(x.float(), size).clamp_(0, 255).round_().to(torch.uint8)


def _normalize(x: torch.Tensor, c: AugmentConfig) -> torch.Tensor:
    return (x.float() / 255.0 - c.mean) / c.std


class DeviceTransform:
    """The input pipeline of :class:`AugmentConfig` for batches of one :class:`PackedLayout`, on any device.

    ``transform(batch, device, generator)`` takes a packed uint8 batch as a loader yields it and
    returns float32 ``(N, channels, crop, crop)`` on ``device``; ``generator`` (a CPU
    ``torch.Generator``) decides the crops and flips, and ``None`` means evaluation (a centre crop,
    no flip).
    """

    def __init__(self, config: AugmentConfig, layout: PackedLayout) -> None:
        self.config, self.layout = config, layout

    def __call__(
        self,
        batch: torch.Tensor,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
        masks: torch.Tensor | None = None,
    ):
        """The network's input for ``batch`` (see the class docstring). With ``masks`` (segmentation:
        uint8 ``(N, H, W)`` class ids) returns ``(input, targets)``: the masks cropped, resized
        (nearest, as torchvision resizes masks) and flipped exactly as their images, int64 ``(N, crop, crop)``."""
        c = self.config
        x = unpack(batch.to(device, non_blocking=True), self.layout)
        m = None if masks is None else masks.to(device, non_blocking=True)[:, None].float()
        if c.resize:
            x = _resize(x.float(), (c.resize, c.resize))
            m = None if m is None else F.interpolate(m, size=(c.resize, c.resize), mode="nearest")
        if generator is None:
            x = _normalize(center_crop(x, c.crop), c)
            m = None if m is None else center_crop(m, c.crop)
        elif c.resized_crop:
            x, m = self._resized_crops(x, generator, m)
        else:
            channels = x.shape[1]
            both = x if m is None else torch.cat([x.float(), m], dim=1)  # one crop and flip for both
            both = random_crop(both, c.crop, generator)
            if c.hflip:
                flip = torch.rand(both.shape[0], generator=generator) < 0.5
                both = torch.where(flip.to(both.device)[:, None, None, None], both.flip(-1), both)
            x, m = both[:, :channels], (None if m is None else both[:, channels:])
            x = _normalize(x, c)
        if x.shape[1] != c.channels:
            # A grey image's channels are one tensor seen three times (stride 0): a convolution reads
            # it as it is, and the host writes a third of the bytes (on a CPU device, a contiguous
            # 3-channel batch of 224 crops is 38 MB of fresh pages per step: 2/3 of the transform's time).
            x = x.expand(-1, c.channels, -1, -1) if x.shape[1] == 1 else x[:, :1]
        if masks is None:
            return x
        return x, m[:, 0].round().to(torch.int64)

    def _resized_crops(self, x: torch.Tensor, generator: torch.Generator, m: torch.Tensor | None = None):
        # Every crop has its own size, so each is resized alone; its flip and normalisation are done
        # on it while it is small and in cache, written once into the batch (the same operations, in
        # the same order, as on the whole batch: the same floats). A mask gets the same box and flip.
        c, n = self.config, x.shape[0]
        h, w = x.shape[-2:]
        boxes = [random_resized_crop_params(h, w, c.scale, c.ratio, generator) for _ in range(n)]
        flips = (torch.rand(n, generator=generator) < 0.5).tolist() if c.hflip else [False] * n
        out = torch.empty((n, x.shape[1], c.crop, c.crop), device=x.device)
        targets = None if m is None else torch.empty((n, 1, c.crop, c.crop), device=x.device)
        for i, (top, left, bh, bw) in enumerate(boxes):
            crop = _normalize(_resize_pixels(x[i : i + 1, :, top : top + bh, left : left + bw], (c.crop, c.crop))[0], c)
            out[i] = crop.flip(-1) if flips[i] else crop
            if targets is not None:
                box = F.interpolate(m[i : i + 1, :, top : top + bh, left : left + bw], size=(c.crop, c.crop), mode="nearest")[0]
                targets[i] = box.flip(-1) if flips[i] else box
        return out, targets
