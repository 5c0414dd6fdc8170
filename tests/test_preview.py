"""Preview grids: diverged samples marked or skipped (from shards and from renders), titles that fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fractalshards.builder import build
from fractalshards.cli import main
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError
from fractalshards.presets import load_preset
from fractalshards.preview import Tile, grid_image, preview_from_dataset, preview_manifest
from fractalshards.results import DIVERGED_MEANING

RED = np.array([220, 60, 50])


@pytest.fixture(scope="module")
def diverging(tmp_path_factory) -> str:
    """15 categories x 5 instances of fractaldb-100 at 32 px: category 14's weight row 3 diverges."""
    out = tmp_path_factory.mktemp("diverging") / "ds"
    d = DatasetDefinition.from_preset(
        "fractaldb-100", categories=15, instances=5, shard_size=25, render={"size": 32, "points": 3000}
    )
    build(d, str(out), workers=0)
    assert json.loads((out / "manifest.json").read_text())["totals"]["diverged"] >= 1
    return str(out)


def _red_pixels(image: Image.Image) -> int:
    return int(np.all(np.asarray(image.convert("RGB")) == RED, axis=-1).sum())


def test_diverged_samples_are_framed_skipped_or_shown_as_asked(diverging, capsys):
    marked = preview_from_dataset(diverging, 15, 5, tile=32, diverged="mark")
    shown = preview_from_dataset(diverging, 15, 5, tile=32, diverged="show")
    skipped = preview_from_dataset(diverging, 15, 5, tile=32, diverged="skip")
    assert _red_pixels(marked) > 4 * 32 and _red_pixels(shown) == 0 and _red_pixels(skipped) == 0
    # Skipped: category 14's row has one tile less (no other instance to take its place here).
    assert np.asarray(skipped).shape == np.asarray(shown).shape
    assert not np.array_equal(np.asarray(skipped), np.asarray(shown))
    with pytest.raises(ConfigError, match="diverged"):
        preview_from_dataset(diverging, 2, 2, diverged="hide")
    assert main(["info", diverging]) == 0
    assert DIVERGED_MEANING in capsys.readouterr().out


def test_renders_skip_diverged_instances_for_the_next_ones():
    manifest = load_preset("fractaldb-100").subset(15, name="fifteen")
    render = {"mode": "official", "size": 32, "points": 3000}
    shown = preview_manifest(manifest, 15, 5, render=render, available=5, tile=32, diverged="show")
    marked = preview_manifest(manifest, 15, 5, render=render, available=5, tile=32, diverged="mark")
    skipped = preview_manifest(manifest, 15, 5, render=render, available=5, tile=32, diverged="skip")
    assert _red_pixels(marked) > 0 and _red_pixels(skipped) == 0
    assert np.asarray(skipped).shape == np.asarray(shown).shape  # every row full: later instances filled in


def test_a_long_title_wraps_to_the_grid_and_labels_fit_their_tiles():
    tiles = [[Tile(np.zeros((16, 16), np.uint8), 0, "a label much wider than its tile", 0, True) for _ in range(2)]]
    title = "a title far longer than a grid of two small tiles can hold on one line " * 2
    image = grid_image(tiles, tile=16, title=title)
    assert image.width == 64 + 2 * 22  # the grid's own width: the title wrapped, not cut or widened
    assert image.height > 6 + 20 + 16 + 12 + 6
