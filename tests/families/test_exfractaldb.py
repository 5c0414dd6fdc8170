"""ExFractalDB / MV-FractalDB: the official search, point clouds and renders against the reference's vectors
(seeded runs of the official code), through the family and the CLI; native streams; bad settings."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import VECTORS
from PIL import Image

from fractalshards.categories import CategoryManifest
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError
from fractalshards.families import get_family
from fractalshards.families.exfractaldb.family import WEIGHTS
from fractalshards.presets import load_preset

SEG_VECTORS = VECTORS / "fdsl-3d-seg-vectors.txt"  # a copy of ../shared/
FAM = get_family("exfractaldb")


def _vector(prefix: str) -> dict:
    for line in SEG_VECTORS.read_text().splitlines():
        if line.startswith(prefix):
            return dict(part.split("=", 1) for part in line.split() if "=" in part)
    raise KeyError(prefix)


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_the_official_search_finds_the_vectors_categories():
    found = FAM.search(2, mode="official", seed=1, settings=FAM.search_settings({}))
    assert [c.trial for c in found.categories] == [59, 175] and found.trials == 176
    assert [c.maps.shape[0] for c in found.categories] == [2, 4]
    for c, name in zip(found.categories, ("params 000000.csv", "params 000001.csv")):
        assert hashlib.sha256(FAM.export_csv(c)).hexdigest() == _vector(name)["file_sha256"]
    # The committed mv-fractaldb-1k starts with them.
    committed = load_preset("mv-fractaldb-1k")
    assert len(committed) == 1000 and committed.seed == 1
    assert [FAM.category_to_dict(committed.category(i)) for i in (0, 1)] == [FAM.category_to_dict(c) for c in found.categories]


def test_compiled_search_and_instance_pass_equal_the_plain_python_scripts():
    # Another seed than the vectors', against the oracle written as the official scripts are.
    import official_exfractaldb as oracle

    from fractalshards.families.exfractaldb.kernels import official_instances, orbit
    from fractalshards.families.exfractaldb.kernels import scale as scale_points
    from fractalshards.mt19937 import numpy_state

    ((trial, maps, probs),) = oracle.search(3, 1)
    (ours,) = FAM.search(1, mode="official", seed=3, settings=FAM.search_settings({})).categories
    assert ours.trial == trial and np.array_equal(ours.maps, maps)
    assert np.allclose(ours.probabilities, probs, rtol=1e-15, atol=0)  # np.linalg.det's BLAS may differ in the last bit
    weights = WEIGHTS[[0, 6, 20, 108, 144, 50, 51]]
    for scale, expect_valid in ((1.0, True), (3.0, False)):  # scaled by 3 the maps diverge: NaN, no PLY
        rs, state = np.random.RandomState(11), numpy_state(11)
        states, valid = np.zeros((2, 625), np.uint32), np.zeros(len(weights), bool)
        r, pts = np.empty(10_000), np.empty((3, 9_999))
        official_instances(state, maps * scale, probs, weights, 4, r, pts, states, valid)
        clouds = [oracle.instance(maps * scale, probs, w, rs.random_sample(10_000)) for w in weights]
        assert valid.tolist() == [c is not None for c in clouds] == [expect_valid] * len(weights)
        assert np.array_equal(states[0, :624], np.random.RandomState(11).get_state(legacy=True)[1])
        replay = np.random.RandomState(11)
        replay.random_sample(4 * 10_000)
        assert np.array_equal(states[1, :624], replay.get_state(legacy=True)[1])
        assert np.array_equal(state[:624], rs.get_state(legacy=True)[1])
        for t in (0, 5):  # the family's point clouds from those states equal the script's
            if expect_valid:
                lo, hi = orbit(maps * weights[t], np.cumsum(probs), _uniforms(states, t, 4), pts)
                scale_points(pts, lo, hi, 10_000.0)
                assert np.array_equal(pts, clouds[t])


def _uniforms(states: np.ndarray, t: int, stride: int) -> np.ndarray:
    from fractalshards.mt19937 import fill_random, skip_randoms

    state = states[t // stride].copy()
    skip_randoms(state, (t % stride) * 10_000)
    out = np.empty(10_000)
    fill_random(state, out)
    return out


def test_compiled_native_search_equals_the_scripts_algorithm_on_native_streams():
    import official_exfractaldb as oracle

    from fractalshards.families.exfractaldb.kernels import probabilities
    from fractalshards.seeds import hash_uniforms, stream_key

    (cat,) = FAM.search_at([4], mode="native", seed=9, settings=FAM.search_settings({}))
    draws = np.empty(1 + 12 * 7 + 10_000)
    for t in range(cat.trial + 1):  # every trial before the category's fails, and its own passes
        hash_uniforms(stream_key("exfractaldb", "trial", 9, 4, t), draws)
        n = 2 + int(draws[0] * 6)
        maps = (draws[1 : 1 + 12 * n] * 2.0 - 1.0).reshape(n, 12)
        p, cum = np.empty(n), np.empty(n)
        with np.errstate(all="ignore"):
            probabilities(maps, p, cum)
        passed = bool(np.isfinite(p).all()) and oracle.accepted(oracle.normalise(oracle.orbit(maps, p, draws[85:])), 0.05)
        assert passed == (t == cat.trial), t
    assert np.array_equal(cat.maps, maps) and np.array_equal(cat.probabilities, p)


def test_official_point_clouds_and_renders_equal_the_official_code():
    d = DatasetDefinition.from_preset("mv-fractaldb-1k", categories=2)
    assert d.render.mode == "official" and d.render.view_mode == "fixed" and d.instances == 145 * 12
    for t in (0, 6):
        cloud = d.renderer.point_cloud(0, t)
        v = _vector(f"PLY cat 0 inst {t}:")
        assert cloud.shape == (9999, 3) and _sha(cloud.astype("<f8")) == v["xyz_f64le_sha256"]
        assert repr(float(cloud[0, 0])) == v["x0"]
    for t, view in ((0, 0), (6, 3)):
        out = d.renderer.render(0, FAM.instance_index(weight=t, view=view))
        v = _vector(f"IMG cat 0 ply {t} view {view}:")
        assert np.count_nonzero(out.image) == int(v["lit"]) and _sha(out.image) == v["grey_sha256"]
        assert set(np.unique(out.image)) <= {0, 255} and not out.diverged


def test_the_cli_renders_a_weight_row_and_view_and_writes_its_point_cloud(tmp_path):
    exe = str(Path(sys.executable).parent / "fractalshards")
    args = ["render", "--preset", "mv-fractaldb-1k", "--category", "0", "--weight", "6", "--view", "3"]
    run = [exe, *args, "--out", str(tmp_path / "x.png"), "--cloud-out", str(tmp_path / "x.npy")]
    done = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "x.png") as im:
        assert _sha(np.asarray(im.convert("L"))) == _vector("IMG cat 0 ply 6 view 3:")["grey_sha256"]
    cloud = np.load(io.BytesIO((tmp_path / "x.npy").read_bytes()), allow_pickle=False)
    assert cloud.dtype == np.float64 and _sha(cloud) == _vector("PLY cat 0 inst 6:")["xyz_f64le_sha256"]
    # The official search with the vectors' seed, through the CLI (--search-seed names the search's --seed).
    search = [exe, "--no-progress", "search", "--family", "exfractaldb", "--mode", "official", "--categories", "2"]
    done = subprocess.run([*search, "--search-seed", "1", "--out", str(tmp_path / "m.json")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    searched = CategoryManifest.load(tmp_path / "m.json")
    assert searched.seed == 1 and [searched.category(i).trial for i in (0, 1)] == [59, 175]
    fractal = [exe, "render", "--preset", "fractaldb-1k", "--category", "0", "--instance", "0", "--out", str(tmp_path / "y.png")]
    bad = subprocess.run([*fractal, "--cloud-out", str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "not point clouds" in bad.stderr and not (tmp_path / "y.npy").exists()


def _native(count: int = 3) -> CategoryManifest:
    settings = FAM.search_settings({})
    found = FAM.search(count, mode="native", seed=4, settings=settings)
    return CategoryManifest.from_search("exf-native", "native", 4, settings, found, "native", family="exfractaldb")


def test_native_categories_are_independent_and_renders_deterministic():
    manifest = _native()
    alone = FAM.search_at([2], mode="native", seed=4, settings=FAM.search_settings({}))[0]
    assert FAM.category_to_dict(alone) == FAM.category_to_dict(manifest.category(2))
    d = DatasetDefinition.from_manifest(manifest, instances=1000, render={"size": 64})
    assert d.render.view_mode == "random"
    a = d.renderer.render(1, 17)
    assert np.array_equal(a.image, d.renderer.render(1, 17).image)
    assert not np.array_equal(a.image, d.renderer.render(1, 17 + 145).image)  # another view
    assert np.count_nonzero(a.image) > 20
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]; import test_exfractaldb as t; "
        "from fractalshards.definition import DatasetDefinition; "
        "d = DatasetDefinition.from_manifest(t._native(), instances=1000, render={'size': 64}); "
        "sys.stdout.write(d.renderer.render(1, 17).image.tobytes().hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(Path(__file__).parents[1])],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == a.image.tobytes().hex()


def test_bad_settings_are_one_line_errors():
    manifest = load_preset("mv-fractaldb-1k", categories=2)
    for options, match in (({"views": 0}, "views"), ({"view_mode": "orbit"}, "view_mode"), ({"size": 2}, "size")):
        with pytest.raises(ConfigError, match=match) as err:
            DatasetDefinition.from_manifest(manifest, instances=10, render=options)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="max_maps"):
        FAM.search_settings({"max_maps": 100})
    with pytest.raises(ConfigError, match="points") as err:  # a point count past the limit in force
        FAM.search_settings({"points": 10**9})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="--mode native"):
        DatasetDefinition.from_manifest(_native(1), instances=10, render={"mode": "official"})


def test_pc_fractaldb_samples_are_mixed_centred_point_clouds_built_verified_and_carded(tmp_path):
    from fractalshards.builder import build
    from fractalshards.card import card_markdown, croissant
    from fractalshards.dataset import open_manifest
    from fractalshards.loader import FractalLoader
    from fractalshards.stream import FractalStream

    d = DatasetDefinition.from_preset("pc-fractaldb-1k", categories=3, instances=4, shard_size=5)
    assert d.kind.name == "points" and d.family.image_shape(d.categories, d.render) == (9999, 3)
    out = d.renderer.render(1, 2)
    assert out.image is None and out.points is not None
    assert out.points.shape == (9999, 3) and out.points.dtype == np.float32 and np.abs(out.points.mean(axis=0)).max() < 1e-5
    assert np.array_equal(out.points, d.renderer.render(1, 2).points)
    alone = DatasetDefinition.from_preset("pc-fractaldb-1k", categories=3, instances=4, render={"other_points": 0})
    assert alone.renderer.render(1, 2).points.shape == (7999, 3)
    for options, match in (({"main_points": 20_000}, "at most 9999"), ({"mode": "official"}, "native mode")):
        with pytest.raises(ConfigError, match=match):
            DatasetDefinition.from_preset("pc-fractaldb-1k", categories=3, instances=4, render=options)
    result = build(d, str(tmp_path / "pc"), workers=0, log_fn=lambda s: None)
    points, labels = next(iter(FractalLoader(FractalStream(str(tmp_path / "pc"), decode="tensor"), batch_size=4)))
    assert points.shape == (4, 9999, 3) and points.dtype == torch.float32 and labels.dtype == torch.int64
    manifest, _ = open_manifest(str(tmp_path / "pc"))
    fields = [f["name"] for f in croissant(manifest)["recordSet"][0]["field"]]
    assert fields == ["points", "label", "key"] and result.manifest.totals["samples"] == 12
    card = card_markdown(manifest)
    assert "point-cloud" in card and '- name: "npy"' in card and "image-classification" not in card


def test_quick_variances_agree_with_numpys_on_the_official_normalisation():
    # The search's decision aid, against np.var of the official values, whatever the orbit's span
    # (one whose reciprocal overflows included); a NaN or a zero span is never accepted.
    from fractalshards.families.exfractaldb.kernels import ACCEPTED, REJECTED, quick_variances, scale, verdict

    rng = np.random.default_rng(0)
    quick = np.empty(3)
    for span in (1e-310, 1e-300, 1.0, 1e300):
        pts = rng.random((3, 999)) ** np.array([[1.0], [2.0], [4.0]]) * span + 0.5 * span
        lo, hi = pts.min(), pts.max()
        quick_variances(pts, lo, hi, quick)
        official = pts.copy()
        scale(official, lo, hi, 1000.0)
        assert np.allclose(quick, np.var(official, axis=1), rtol=1e-12, atol=0), span
        assert verdict(quick, 0.05) == ACCEPTED and verdict(quick, 0.9) == REJECTED
    flat = np.ones((3, 10))
    quick_variances(flat, 1.0, 1.0, quick)
    assert verdict(quick, 0.0) == REJECTED
    flat[1, 3] = np.nan
    quick_variances(flat, 1.0, 1.0, quick)
    assert verdict(quick, 0.0) == REJECTED
