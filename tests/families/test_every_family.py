"""Families end to end: official categories and pixels through the family interface, native determinism,
instance mappings, a build and a stream of a slice of every preset, and one-line errors for bad settings."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_contours import _vectors

from fractalshards.cli import main
from fractalshards.families import family_names, get_family
from fractalshards.families.contours.kernels import PARAM_FIELDS
from fractalshards.loader import FractalLoader
from fractalshards.mt19937 import new_state
from fractalshards.presets import PRESETS, load_preset
from fractalshards.stream import FractalStream


def _sha(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def test_every_family_is_registered_and_fractaldb_comes_first():
    assert family_names() == ["fractaldb", "1p-frac", "exfractaldb", "pc-fractaldb", "rcdb", "segrcdb", "visualatom"]
    for name in family_names():
        assert get_family(name).name == name and get_family(name).paper


@pytest.mark.parametrize("family,per", [("visualatom", 50), ("rcdb", 100)])
def test_committed_official_categories_equal_a_replay_of_every_thread(family, per):
    """The first two categories of every official thread, replayed now, equal the committed manifest's."""
    manifest = load_preset(f"{family}-1k")
    fam = manifest.family
    assert manifest.mode == "official" and len(manifest) == 1000 and manifest.family_name == family
    settings = fam.search_settings({})
    spec = fam.spec(settings)
    none = np.zeros((0, 0, 0), np.uint32)
    for thread in range(1000 // per):
        out = np.zeros((2, len(PARAM_FIELDS)))
        fam._replay(new_state(thread + 1), 2, 1000, spec, out, 0, none, none.astype(float))
        for slot in range(2):
            assert tuple(out[slot].tolist()) == manifest.category(thread * per + slot).params, (thread, slot)
    _, params = _vectors()
    for (fam_name, thread, category), fields in params.items():
        if fam_name == family:
            row = dict(zip(PARAM_FIELDS, manifest.category(category).params))
            assert all(float(v) == row[k] for k, v in fields.items()), category


def test_official_pixels_through_the_cli_and_the_family(tmp_path):
    pixels, _ = _vectors()
    for (family, thread, category, instance), digest in sorted(pixels.items()):
        manifest = load_preset(f"{family}-1k")
        fam = manifest.family
        image = fam.render(manifest, category, instance, fam.render_settings(manifest, {}))
        assert _sha(image.image) == digest, (family, category, instance)
    out = tmp_path / "va.png"
    assert (
        main(["--no-progress", "render", "--preset", "visualatom-1k", "--category", "50", "--instance", "2", "--out", str(out)])
        == 0
    )
    from fractalshards.png import decode as decode_png

    assert _sha(decode_png(out.read_bytes())) == pixels[("visualatom", 1, 50, 2)]


def test_official_states_are_saved_once_and_reused(tmp_path, monkeypatch):
    """A second process reads the saved states instead of replaying; a corrupt cache file is replayed again."""
    from fractalshards.storage import cache_root

    manifest = load_preset("rcdb-1k")
    fam = manifest.family
    settings = fam.render_settings(manifest, {})
    first = fam.render(manifest, 3, 57, settings).image
    files = sorted((cache_root() / "streams").glob("rcdb-*.npz"))
    assert files
    # A new renderer holds nothing in memory, as in another process: it reads the saved file.
    assert np.array_equal(fam.render(manifest, 3, 57, settings).image, first)
    for f in files:
        f.write_bytes(b"not an npz")
    assert np.array_equal(fam.render(manifest, 3, 57, settings).image, first)
    # Instance 57 from the state saved at instance 50 equals skipping all 57 instances from the category's start.
    from fractalshards.families.contours.kernels import official_instance_draws

    saved = fam._extend(1, fam.search_settings({}), 0, None, 3)
    assert np.array_equal(saved["params"][3], np.asarray(manifest.category(3).params))
    p = dict(zip(PARAM_FIELDS, manifest.category(3).params))
    V, L = int(p["vertices"]), int(p["lines"])
    greys, ux, uy = np.empty(L, np.int64), np.empty((L, V)), np.empty((L, V))
    shape = saved["shapes"][3, 0].copy()
    official_instance_draws(True, saved["states"][3, 0].copy(), shape, 57, fam.spec(fam.search_settings({})), greys, ux, uy)
    assert np.array_equal(fam._image(p, shape, greys, ux, uy), first)


_NATIVE = """
import hashlib, sys
from fractalshards.presets import load_preset
name, cat, inst = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = load_preset(name, categories=cat + 1)
f = m.family
print(hashlib.sha256(f.render(m, cat, inst, f.render_settings(m, {"mode": "native", "seed": 3})).image.tobytes()).hexdigest())
"""


@pytest.mark.parametrize("preset,cat,inst", [("visualatom-21k", 5, 7), ("rcdb-21k", 9, 0), ("1p-frac", 2, 0)])
def test_native_renders_are_the_same_in_another_process(preset, cat, inst):
    m = load_preset(preset, categories=cat + 1)
    f = m.family
    here = hashlib.sha256(f.render(m, cat, inst, f.render_settings(m, {"mode": "native", "seed": 3})).image.tobytes()).hexdigest()
    there = subprocess.run(
        [sys.executable, "-c", _NATIVE, preset, str(cat), str(inst)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert here == there
    other = f.render(m, cat, inst, f.render_settings(m, {"mode": "native", "seed": 4})).image
    assert preset == "1p-frac" or hashlib.sha256(other.tobytes()).hexdigest() != here  # the seed matters


def test_native_contour_categories_follow_their_distributions():
    for name, lo, hi in (("visualatom-21k", 200, 1000), ("rcdb-21k", 3, 200)):
        m = load_preset(name, categories=300)
        v = np.array([c.value("vertices") for c in m.categories])
        lines = np.array([c.value("lines") for c in m.categories])
        assert v.min() >= lo and v.max() <= hi and lines.min() >= 1 and lines.max() <= 200 and len(set(v)) > 100
        # The first N of the 21k set are a search of N alone.
        assert load_preset(name, categories=10).categories == m.categories[:10]


@pytest.mark.parametrize("family", ["fractaldb", "visualatom", "rcdb", "1p-frac"])
def test_instance_mapping_round_trips(family):
    fam = get_family(family)
    seen = set()
    for index in range(fam.instances_per_category):
        fields = fam.instance_fields(index)
        assert fam.instance_index(**fields) == index
        seen.add(tuple(sorted(fields.items())))
    assert len(seen) == fam.instances_per_category
    with pytest.raises(Exception, match="instance"):
        fam.instance_fields(fam.instances_per_category)


def test_1p_frac_classes_perturb_one_system_and_fill_enough():
    m = load_preset("1p-frac", categories=6)
    fam = m.family
    settings = fam.search_settings({})
    base = fam.base_system(0, settings)
    assert base.num_maps == 2
    for cat in m.categories:
        ratio = cat.system.coefficients / base.coefficients
        assert np.all(np.abs(ratio - 1) <= 0.1 + 1e-12) and cat.fill > 0.05
    wider = load_preset("1p-frac", categories=6, search={"delta": 0.3})
    assert wider.categories[0].system.coefficients.tolist() != m.categories[0].system.coefficients.tolist()
    image = fam.render(m, 0, 0, fam.render_settings(m, {})).image
    assert image.shape == (512, 512) and set(np.unique(image)) <= {0, 127}


def _slice_args(preset: str) -> list[str]:
    args = ["--preset", preset, "--categories", "3", "--shard-size", "4", "--seed", "1"]
    if PRESETS[preset].family == "segrcdb":  # one group of images: --instances is the number of images
        return [*args, "--instances", "6", "--size", "64"]
    if PRESETS[preset].instances > 1:
        args += ["--instances", "2"]
    if PRESETS[preset].family == "fractaldb" or preset == "1p-frac":
        args += ["--size", "64", "--points", "4000"]
    return args


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_slice_of_every_preset_builds_verifies_and_streams(preset, tmp_path):
    out = tmp_path / "ds"
    assert main(["--no-progress", "build", *_slice_args(preset), "--out", str(out), "--workers", "0"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    family = PRESETS[preset].family
    assert manifest["definition"].get("family", "fractaldb") == family
    assert main(["--no-progress", "verify", str(out), "--render-sample", "2"]) == 0
    assert main(["--no-progress", "publish", str(out), str(tmp_path / "pub"), "--tag", "v1"]) == 0
    assert main(["--no-progress", "verify", f"{tmp_path / 'pub'}@v1", "--render-sample", "1"]) == 0
    stream = FractalStream(str(out), decode="numpy", shuffle_buffer=1, source="shards")
    rendered = FractalStream(str(out), decode="numpy", shuffle_buffer=1, source="render")
    # Images with their labels, or (segmentation) with their masks: the same from the shards and rendered.
    got = [(_sha(x.numpy()), _sha(y.numpy())) for bx, by in FractalLoader(stream, batch_size=2) for x, y in zip(bx, by)]
    again = [(_sha(x.numpy()), _sha(y.numpy())) for bx, by in FractalLoader(rendered, batch_size=2) for x, y in zip(bx, by)]
    assert got == again and len(got) == manifest["totals"]["samples"]
    if family == "segrcdb":
        assert all(tuple(y.shape) == (64, 64) for _, by in FractalLoader(stream, batch_size=2) for y in by)
    else:
        labels = {int(y) for _, by in FractalLoader(stream, batch_size=2) for y in by}
        assert labels == {0, 1, 2}


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["search", "--family", "nope", "--out", "{tmp}/m.json"], "family: 'nope' is not known"),
        (
            ["search", "--family", "visualatom", "--min-vertices", "900", "--max-vertices", "200", "--out", "{tmp}/m.json"],
            "min_vertices/max_vertices: 900..200 is out of order",
        ),
        (["search", "--family", "1p-frac", "--delta", "-0.1", "--out", "{tmp}/m.json"], "delta: -0.1 is out of range"),
        (["build", "--preset", "1p-frac", "--delta", "-0.1", "--out", "{tmp}/d"], "delta: -0.1 is out of range"),
        (
            ["search", "--family", "visualatom", "--min-maps", "3", "--out", "{tmp}/m.json"],
            "min_maps: not a search setting of the visualatom family",
        ),
        (
            ["build", "--preset", "rcdb-1k", "--draw", "point", "--out", "{tmp}/d"],
            "draw: not a render setting of the rcdb family",
        ),
        (["build", "--preset", "ofdb-1k", "--instances", "5", "--out", "{tmp}/d"], "ofdb-1k has 1 image(s) per category"),
        (
            ["build", "--preset", "visualatom-21k", "--categories", "2", "--mode", "official", "--out", "{tmp}/d"],
            "searched in native mode; use --mode native",
        ),
        (["search", "--family", "1p-frac", "--mode", "official", "--out", "{tmp}/m.json"], "use --mode native"),
        (["build", "--preset", "visualatom-1k", "--sigma", "3", "--out", "{tmp}/d"], "is a fixed set of categories"),
    ],
)
def test_bad_family_settings_are_one_line_errors(argv, needle, tmp_path, capsys):
    code = main(["--no-progress", *[a.replace("{tmp}", str(tmp_path)) for a in argv]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and "\n" not in err, err
    assert not (tmp_path / "d").exists() and not (tmp_path / "m.json").exists()


def test_a_manifest_naming_an_unknown_family_is_refused(tmp_path, capsys):
    data = json.loads((Path(__file__).resolve().parents[2] / "manifests" / "rcdb-1k.json").read_text())
    data["family"] = "nope"
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data))
    assert (
        main(
            [
                "--no-progress",
                "render",
                "--manifest",
                str(path),
                "--category",
                "0",
                "--instance",
                "0",
                "--out",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    assert "family: 'nope' is not known" in capsys.readouterr().err


def test_presets_lists_every_preset(capsys):
    assert main(["presets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(PRESETS)
    assert rows["visualatom-1k"]["family"] == "visualatom" and rows["ofdb-21k"]["instances"] == 1
    assert rows["1p-frac"]["size"] == 512 and rows["fractaldb-1k"]["size"] == 362
