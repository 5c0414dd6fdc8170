"""decode="packed": each image as compact as its PNG, equal to Pillow's pixels on every kind and encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.png import PackedLayout, decode_packed, encode
from fractalshards.png import decode as decode_png
from fractalshards.stream import FractalStream
from fractalshards.tarformat import read_samples

VECTORS = Path(__file__).parent / "vectors" / "legacy"

CASES = {
    "fractaldb grey, direct": ("fractaldb-100", {"mode": "official", "size": 64, "points": 3000}, "direct"),
    "fractaldb grey, pillow": ("fractaldb-100", {"mode": "official", "size": 64, "points": 3000}, "pillow"),
    "fractaldb points": ("fractaldb-100", {"draw": "point", "size": 40, "points": 3000}, "direct"),
    "fractaldb colour": ("fractaldb-100", {"color": "color", "size": 36, "points": 2000}, "direct"),
    "fractaldb colour, pillow": ("fractaldb-100", {"color": "color", "size": 36, "points": 2000}, "pillow"),
    "rcdb grey": ("rcdb-1k", {"mode": "native"}, "direct"),
    "rcdb grey, pillow": ("rcdb-1k", {"mode": "native"}, "pillow"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def dataset(request, tmp_path_factory):
    preset, render, encoder = CASES[request.param]
    d = DatasetDefinition.from_preset(preset, categories=2, instances=3, shard_size=4, render=render, png_encoder=encoder)
    out = tmp_path_factory.mktemp("packed") / "ds"
    build(d, str(out), workers=0)
    return d, out


def test_packed_samples_are_the_pngs_pixels(dataset):
    d, out = dataset
    stream = FractalStream(str(out), shuffle=False, decode="packed")
    layout = stream.layout
    assert layout == d.packed_layout
    stored = [decode_png(s["png"]) for p in sorted(out.glob("shard-*.tar")) for s in read_samples(p.read_bytes(), p.name)]
    samples = list(stream)
    assert len(samples) == len(stored) == 6
    for (packed, label), pixels in zip(samples, stored):
        assert isinstance(packed, torch.Tensor) and packed.dtype == torch.uint8 and tuple(packed.shape) == layout.shape
        np.testing.assert_array_equal(layout.unpack(packed.numpy()), pixels)
    # Rendered on the fly: the same packed images, without a PNG.
    rendered = list(FractalStream(str(out), shuffle=False, decode="packed", source="render"))
    for (a, la), (b, lb) in zip(samples, rendered):
        assert la == lb and torch.equal(a, b)


def test_two_level_images_travel_as_bits():
    layout = DatasetDefinition.from_preset("fractaldb-100", categories=1, instances=1).packed_layout
    assert layout.kind == "bits" and layout.level == 127 and layout.shape == (362, 46)
    assert 362 * 362 * 3 / np.prod(layout.shape) > 20  # 24x fewer bytes than a 3-channel tensor
    grey = DatasetDefinition.from_preset("visualatom-1k", categories=1, instances=1).packed_layout
    assert grey == PackedLayout("grey", 512, 512)


@pytest.mark.parametrize("case", sorted(p.name for p in VECTORS.iterdir()))
def test_datasets_built_before_decode_packed_the_same(tmp_path, case):
    # The recorded datasets' recipes, rebuilt: the packed decode equals their recorded pixels.
    import hashlib

    from fractalshards.recipe import Recipe

    recipe = Recipe.from_json((VECTORS / case / "recipe.json").read_text())
    build(recipe.definition, str(tmp_path), workers=0)
    pixels = json.loads((VECTORS / case / "pixels.json").read_text())
    stream = FractalStream(str(tmp_path), shuffle=False, decode="packed")
    keys = [s["__key__"] for s in FractalStream(str(tmp_path), shuffle=False, decode="raw")]
    for key, (packed, _) in zip(keys, stream):
        image = stream.layout.unpack(packed.numpy())
        assert hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() == pixels[key]["sha256"]


def test_a_png_that_does_not_fit_the_layout_is_refused():
    layout = PackedLayout("bits", 8, 8, 127)
    other_level = encode(np.where(np.eye(8, dtype=bool), 200, 0).astype(np.uint8))
    with pytest.raises(ValueError, match="grey level 200"):
        decode_packed(other_level, layout)
    many_levels = encode(np.arange(64, dtype=np.uint8).reshape(8, 8))
    with pytest.raises(ValueError, match="values other than 0"):
        decode_packed(many_levels, layout)
    with pytest.raises(ValueError, match="not 8x8"):
        decode_packed(encode(np.zeros((9, 8), np.uint8)), layout)
