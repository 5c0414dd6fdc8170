"""The device transform: packed batches to the network's input, equal to the uint8 path for the same draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from fractalshards.augment import AugmentConfig, DeviceTransform, random_resized_crop_params, unpack
from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.png import PackedLayout
from fractalshards.stream import FractalLoader, FractalStream
from fractalshards.train.pretrain import PretrainConfig, prepare


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("augment") / "ds"
    d = DatasetDefinition.from_preset(
        "fractaldb-100", categories=4, instances=4, shard_size=8, render={"mode": "official", "size": 64, "points": 3000}
    )
    build(d, str(out), workers=0)
    return out


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
        assert ours.shape == theirs.shape == (8, 3, 40, 40) and torch.equal(ours, theirs)
        # Evaluation: no generator, a centre crop.
        assert torch.equal(transform(p, "cpu", None), prepare(t, config, torch.device("cpu"), None))


def test_unpack_every_layout():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 2, (2, 5, 13), dtype=np.uint8) * 127
    bits = torch.from_numpy(np.packbits(grey != 0, axis=-1))
    assert torch.equal(unpack(bits, PackedLayout("bits", 5, 13, 127))[:, 0], torch.from_numpy(grey))
    rgb = torch.from_numpy(rng.integers(0, 256, (2, 5, 13, 3), dtype=np.uint8))
    assert torch.equal(unpack(rgb, PackedLayout("rgb", 5, 13)), rgb.permute(0, 3, 1, 2))


def test_random_resized_crop_matches_torchvision_per_sample():
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (4, 3, 50, 70), dtype=np.uint8))
    config = AugmentConfig(crop=32, resized_crop=True, hflip=False, channels=3)
    ours = DeviceTransform(config, PackedLayout("rgb", 50, 70))(
        images.permute(0, 2, 3, 1).contiguous(), "cpu", torch.Generator().manual_seed(5)
    )
    gen = torch.Generator().manual_seed(5)
    for i in range(4):
        top, left, h, w = random_resized_crop_params(50, 70, config.scale, config.ratio, gen)
        ref = TF.resized_crop(images[i].float(), top, left, h, w, [32, 32], antialias=True)
        expected = (ref / 255.0 - config.mean) / config.std
        torch.testing.assert_close(ours[i], expected, rtol=0, atol=1e-5)
