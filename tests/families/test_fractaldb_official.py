"""The official mode reproduces the official FractalDB release exactly."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from helpers import read_vectors

from fractalshards.families.fractaldb.export import official_csv
from fractalshards.families.fractaldb.instances import Instance
from fractalshards.families.fractaldb.render import RenderSettings, render
from fractalshards.families.fractaldb.search import search_official
from fractalshards.presets import load_preset

CSV_HASHES = {name: digest for name, digest in read_vectors("official-csv-sha256-first10.txt")}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_first_ten_official_csv_files_are_byte_identical():
    result = search_official(10, workers=2)
    assert [c.trial for c in result.categories[:5]] == [23, 28, 67, 87, 94]
    got = {f"{c.index:05d}.csv": _sha(official_csv(c.system).encode()) for c in result.categories}
    assert got == CSV_HASHES


def test_committed_fractaldb_1k_manifest_matches_official_files():
    manifest = load_preset("fractaldb-1k")
    assert len(manifest) == 1000
    assert manifest.mode == "official" and manifest.seed == 1
    assert manifest.trials == 42655
    assert manifest.categories[-1].trial == 42654
    for cat in manifest.categories[:10]:
        assert _sha(official_csv(cat.system).encode()) == CSV_HASHES[f"{cat.index:05d}.csv"]
    # Every category passed the quality check it records.
    assert all(c.fill >= 0.2 for c in manifest.categories)


def test_fractaldb_100_is_the_first_hundred_of_1k():
    small, big = load_preset("fractaldb-100"), load_preset("fractaldb-1k")
    assert len(small) == 100 and small.render_mode == "official"
    for a, b in zip(small.categories, big.categories[:100]):
        assert np.array_equal(a.system.coefficients, b.system.coefficients)


@pytest.mark.parametrize("row", read_vectors("official-point-gray-pixels-sha256-sample.txt"), ids=lambda r: r[0])
def test_official_point_renders_are_pixel_identical(row):
    name, size, digest, fill = row
    category, weight, flip = int(name[:5]), int(name[6:8]), int(name.split("flip")[1][0])
    manifest = load_preset("fractaldb-1k")
    settings = RenderSettings(mode="official", draw="point", size=int(size.split("x")[0]))
    out = render(manifest.category(category).system, category, Instance(weight=weight, flip=flip, patch=0), settings)
    assert out.image.shape == (362, 362) and out.image.dtype == np.uint8
    assert _sha(out.image.tobytes()) == digest
    assert round(out.fill, 4) == float(fill.split("=")[1])
