"""Native search, samplers, manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fractalshards.categories import CategoryManifest
from fractalshards.errors import ConfigError
from fractalshards.families.fractaldb.ifs import sample_fractaldb, sample_sigma
from fractalshards.families.fractaldb.search import SearchSettings, fill_rate, search, search_native, search_official

FAST = SearchSettings(points=20_000, canvas=256)


def _coefs(result):
    return [c.system.coefficients.tobytes() + c.system.probabilities.tobytes() for c in result.categories]


def test_native_categories_depend_only_on_seed_and_index():
    big = search_native(12, seed=7, settings=FAST, workers=2)
    small = search_native(5, seed=7, settings=FAST, workers=1)
    assert _coefs(big)[:5] == _coefs(small)
    tail = search_native(4, seed=7, settings=FAST, start=8, workers=2)
    assert _coefs(big)[8:] == _coefs(tail)
    assert _coefs(search_native(5, seed=8, settings=FAST)) != _coefs(small)
    assert all(c.fill >= FAST.fill_threshold for c in big.categories)


def test_official_search_is_independent_of_thread_count():
    one = search_official(4, workers=1)
    two = search_official(4, workers=2)
    assert _coefs(one) == _coefs(two)
    assert [c.trial for c in one.categories] == [23, 28, 67, 87]


def test_accepted_systems_really_fill_the_canvas(sierpinski):
    assert fill_rate(sierpinski, 123, FAST) > 0.05
    result = search_native(3, seed=1, settings=FAST)
    for cat in result.categories:
        # Replay the category's own stream: the recorded trial and fill are real.
        rng = np.random.default_rng([1, cat.index])
        for _ in range(cat.trial + 1):
            system = sample_fractaldb(rng)
            key = int(rng.integers(0, 2**63))
        np.testing.assert_array_equal(system.coefficients, cat.system.coefficients)
        assert fill_rate(system, key, FAST) == cat.fill >= 0.2


def test_sigma_sampler_is_contractive_with_the_alpha_budget():
    rng = np.random.default_rng(0)
    for _ in range(200):
        system = sample_sigma(rng)
        n = system.num_maps
        assert 2 <= n <= 7
        total = 0.0
        for a, b, c, d, _, _ in system.coefficients:
            s = np.linalg.svd(np.array([[a, b], [c, d]]), compute_uv=False)
            assert s[0] <= 1.0 + 1e-9
            total += s[0] + 2 * s[1]
        assert (5 + n) / 2 - 1e-9 <= total <= (6 + n) / 2 + 1e-9
        assert abs(system.probabilities.sum() - 1.0) < 1e-12


def test_sigma_search_finds_categories():
    result = search_native(3, seed=0, settings=SearchSettings(sampler="sigma", points=20_000, canvas=256))
    assert len(result.categories) == 3


def test_manifest_round_trip_and_hash(tmp_path):
    result = search_native(4, seed=3, settings=FAST)
    manifest = CategoryManifest.from_search("t", "native", 3, FAST, result)
    path = tmp_path / "m.json"
    manifest.save(path)
    loaded = CategoryManifest.load(path)
    assert loaded.content_hash == manifest.content_hash
    assert _coefs(loaded) == _coefs(manifest)
    data = json.loads(path.read_text())
    assert data["content_hash"] == manifest.content_hash and data["num_categories"] == 4
    # Saving again gives the same bytes.
    again = tmp_path / "again.json"
    loaded.save(again)
    assert again.read_bytes() == path.read_bytes()
    # A tampered coefficient is caught.
    data["categories"][0]["maps"][0][0] += 1e-3
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="content_hash"):
        CategoryManifest.load(path)


def test_manifest_rejects_unknown_version(tmp_path):
    manifest = CategoryManifest.from_search("t", "native", 3, FAST, search_native(1, seed=3, settings=FAST))
    data = json.loads(manifest.to_json())
    data["format_version"] = 99
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="format_version 99"):
        CategoryManifest.load(path)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"sampler": "x"}, "sampler"),
        ({"fill_threshold": 2.0}, "fill_threshold"),
        ({"min_maps": 5, "max_maps": 3}, "min_maps"),
        ({"points": 5}, "points"),
    ],
)
def test_bad_search_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        SearchSettings(**kwargs)


def test_bad_search_arguments():
    with pytest.raises(ConfigError, match="categories"):
        search(0)
    with pytest.raises(ConfigError, match="mode"):
        search(1, mode="other")
    with pytest.raises(ConfigError, match="sampler"):
        search(1, mode="official", settings=SearchSettings(sampler="sigma"))
