"""The device transform: packed batches to the network's input, equal to the uint8 path for the same draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from fractalshards.augment import AugmentConfig, DeviceTransform, random_resized_crop_params, unpack
from fractalshards.loader import FractalLoader
from fractalshards.png import PackedLayout
from fractalshards.stream import FractalStream
from fractalshards.train.pretrain import PretrainConfig, prepare


@pytest.fixture
def built(built_dataset):
    return built_dataset


def _batches(url, decode):
    return list(FractalLoader(FractalStream(url, decode=decode, seed=3), batch_size=8))


@pytest.mark.parametrize("resize", [0, 48])
def test_packed_and_the_device_transform_equal_the_tensor_path_for_the_same_draws(built, resize):
    config = PretrainConfig(data=str(built), crop=40, resize=resize, hflip=True)
    packed, tensors = _batches(str(built), "packed"), _batches(str(built), "tensor")
    layout = FractalStream(str(built), decode="packed").layout
    transform = DeviceTransform(AugmentConfig(crop=40, resize=resize, hflip=True, mean=config.mean, std=config.std), layout)
    for step, ((p, lp), (t, lt)) in enumerate(zip(packed, tensors)):
        assert torch.equal(lp, lt)
        assert p.nbytes * 20 <= t.nbytes  # what crosses from the workers: bits, not 3 x H x W bytes
        ours = transform(p, "cpu", torch.Generator().manual_seed(step))
        theirs = prepare(t, config, torch.device("cpu"), torch.Generator().manual_seed(step))
        assert ours.shape == theirs.shape == (len(ours), 3, 40, 40) and torch.equal(ours, theirs)
        # Evaluation: no generator, a centre crop.
        assert torch.equal(transform(p, "cpu", None), prepare(t, config, torch.device("cpu"), None))


def test_unpack_every_layout():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 2, (2, 5, 13), dtype=np.uint8) * 127
    bits = torch.from_numpy(np.packbits(grey != 0, axis=-1))
    assert torch.equal(unpack(bits, PackedLayout("bits", 5, 13, 127))[:, 0], torch.from_numpy(grey))
    rgb = torch.from_numpy(rng.integers(0, 256, (2, 5, 13, 3), dtype=np.uint8))
    assert torch.equal(unpack(rgb, PackedLayout("rgb", 5, 13)), rgb.permute(0, 3, 1, 2))


@pytest.mark.parametrize("kind", ["rgb", "bits"])
def test_random_resized_crop_equals_torchvision_v2_per_sample(kind):
    # The path a torchvision user writes: RandomResizedCrop on the uint8 image, flip, ToDtype, Normalize.
    rng = np.random.default_rng(1)
    if kind == "rgb":
        images = torch.from_numpy(rng.integers(0, 256, (6, 3, 50, 70), dtype=np.uint8))
        layout, batch = PackedLayout("rgb", 50, 70), images.permute(0, 2, 3, 1).contiguous()
    else:
        grey = rng.integers(0, 2, (6, 50, 70), dtype=np.uint8) * 127
        images = torch.from_numpy(grey)[:, None].expand(-1, 3, -1, -1)
        layout, batch = PackedLayout("bits", 50, 70, 127), torch.from_numpy(np.packbits(grey != 0, axis=-1))
    config = AugmentConfig(crop=32, resized_crop=True, hflip=True, channels=3)
    ours = DeviceTransform(config, layout)(batch, "cpu", torch.Generator().manual_seed(5))
    assert ours.shape == (6, 3, 32, 32) and ours.dtype == torch.float32
    gen = torch.Generator().manual_seed(5)
    boxes = [random_resized_crop_params(50, 70, config.scale, config.ratio, gen) for _ in range(6)]
    flips = torch.rand(6, generator=gen) < 0.5
    assert 0 < int(flips.sum()) < 6  # both branches are exercised
    for i, (top, left, h, w) in enumerate(boxes):
        ref = TF.resized_crop(images[i].contiguous(), top, left, h, w, [32, 32], antialias=True)
        ref = TF.horizontal_flip(ref) if flips[i] else ref
        expected = TF.normalize(TF.to_dtype(ref, torch.float32, scale=True), [config.mean] * 3, [config.std] * 3)
        torch.testing.assert_close(ours[i], expected, rtol=0, atol=1e-6)
