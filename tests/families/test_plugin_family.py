"""A family that only the test suite defines, registered through the entry point: the core needs no change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture()
def plugin_env(tmp_path):
    """A site folder holding the test suite's families (``toy``; ``toy-pair``, of a sample kind of its own)
    and an installed-package record whose entry points name them."""
    site = tmp_path / "site"
    dist = site / "fractalshards_toy-0.1.dist-info"
    dist.mkdir(parents=True)
    for module in ("toy_family.py", "pair_family.py"):
        shutil.copy(PLUGINS / module, site / module)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fractalshards-toy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fractalshards.families]\ntoy = toy_family:FAMILY\ntoy-pair = pair_family:FAMILY\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def _cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fractalshards", "--no-progress", *args], env=env, capture_output=True, text=True, timeout=240
    )


def test_a_family_from_an_entry_point_searches_builds_verifies_previews_and_streams(tmp_path, plugin_env):
    manifest, data, grid = tmp_path / "toy.json", tmp_path / "ds", tmp_path / "grid.png"
    run = _cli(plugin_env, "search", "--family", "toy", "--categories", "4", "--max-frequency", "2.5", "--out", str(manifest))
    assert run.returncode == 0, run.stderr
    assert json.loads(manifest.read_text())["family"] == "toy"
    run = _cli(
        plugin_env,
        "build",
        "--manifest",
        str(manifest),
        "--instances",
        "5",
        "--shard-size",
        "7",
        "--workers",
        "0",
        "--size",
        "20",
        "--out",
        str(data),
    )
    assert run.returncode == 0, run.stderr
    stored = json.loads((data / "manifest.json").read_text())
    assert stored["definition"]["family"] == "toy" and stored["totals"]["samples"] == 20 and len(stored["shards"]) == 3
    # A family without GPU kernels cannot build on the GPU: a one-line error, nothing written.
    run = _cli(
        plugin_env, "build", "--manifest", str(manifest), "--instances", "2", "--device", "cuda", "--out", str(tmp_path / "g")
    )
    assert run.returncode != 0 and "toy family has no GPU kernels" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "g" / "manifest.json").exists()
    run = _cli(plugin_env, "verify", str(data), "--render-sample", "6")
    assert run.returncode == 0 and "ok:" in run.stdout, run.stdout + run.stderr
    run = _cli(plugin_env, "preview", str(data), "--categories", "3", "--instances", "4", "--out", str(grid))
    assert run.returncode == 0 and grid.stat().st_size > 0, run.stderr
    # A flag of the toy family given to another family is the usual one-line error.
    run = _cli(
        plugin_env,
        "search",
        "--family",
        "fractaldb",
        "--max-frequency",
        "2",
        "--categories",
        "1",
        "--out",
        str(tmp_path / "x.json"),
    )
    assert run.returncode == 2 and "max_frequency" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    # The stream renders the same pixels from the recipe as it reads from the shards.
    script = textwrap.dedent(f"""
        import json, numpy as np
        from fractalshards import FractalStream
        shards = list(FractalStream({str(data)!r}, shuffle=False, decode="numpy"))
        rendered = list(FractalStream({str(data)!r}, shuffle=False, decode="numpy", source="render"))
        assert len(shards) == len(rendered) == 20
        for (a, la), (b, lb) in zip(shards, rendered):
            assert la == lb and a.shape == (20, 20, 3) and np.array_equal(a, b)
        print(json.dumps(sorted({{int(label) for _, label in shards}})))
    """)
    run = subprocess.run([sys.executable, "-c", script], env=plugin_env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [0, 1, 2, 3]


def test_without_the_entry_point_the_family_is_unknown(tmp_path):
    run = _cli(dict(os.environ), "search", "--family", "toy", "--categories", "1", "--out", str(tmp_path / "m.json"))
    assert run.returncode == 2 and "family: 'toy' is not known" in run.stderr


@pytest.mark.slow
def test_a_sample_kind_from_the_test_package_builds_verifies_streams_previews_cards_and_reads_through_ray(tmp_path, plugin_env):
    # The toy-pair family's samples are a kind no library module knows (two images and a class): every
    # path that handles samples reaches it through the kind's methods alone.
    script = textwrap.dedent(f"""
        import json, tarfile, numpy as np
        import fractalshards as fs
        from fractalshards.builder import ray_init_local
        from fractalshards.card import write_card
        from fractalshards.categories import CategoryManifest
        from fractalshards.dataset import open_manifest
        from fractalshards.preview import grid_from_shards
        from fractalshards.raydata import read_dataset
        from fractalshards.storage import open_store

        family = fs.get_family("toy-pair")
        settings = family.search_settings({{}})
        manifest = CategoryManifest.from_search("pairs", "native", 0, settings, family.search(3, mode="native", seed=0,
                                                settings=settings), family="toy-pair")
        d = fs.DatasetDefinition.from_manifest(manifest, instances=4, shard_size=5, render={{"size": 16}})
        out = {str(tmp_path / "ds")!r}
        fs.build(d, out, workers=0)
        with tarfile.open(out + "/shard-000000.tar") as tar:
            names = tar.getnames()
        assert {{n.split(".", 1)[1] for n in names}} == {{"png", "right.png", "cls", "json"}}, names
        report = fs.verify(out, render_sample=12)
        assert report.ok and report.rendered == 12, report.problems
        for decode_mode in ("tensor", "float", "numpy", "packed", "raw"):
            for source in ("shards", "render"):
                got = list(fs.FractalStream(out, shuffle=False, decode=decode_mode, source=source))
                assert len(got) == 12
                if decode_mode == "raw":
                    assert all("right.png" in s for s in got)
                    continue
                (left, right), label = got[0]
                assert isinstance(label, int)
                first = np.asarray(left, np.float64), np.asarray(right, np.float64)
                if decode_mode == "numpy":
                    assert first[0].shape == (16, 16, 3) and np.array_equal(first[0] + first[1], np.full((16, 16, 3), 255.0))
        loader = fs.FractalLoader(fs.FractalStream(out, decode="tensor"), batch_size=4)
        (left, right), labels = next(iter(loader))
        assert left.shape == right.shape == (4, 3, 16, 16) and labels.shape == (4,)
        loaded, store = open_manifest(out)
        grid = np.asarray(grid_from_shards(loaded, store, 2, 3, tile=32))
        assert grid.shape[1] > 2 * 3 * 32  # each tile two images wide
        card_dir = open_store({str(tmp_path / "card")!r})
        write_card(loaded, store, card_dir)
        croissant = json.loads(card_dir.read_document("croissant.json"))
        assert any(f["@id"] == "right-files" for f in croissant["distribution"])
        readme = card_dir.read_document("README.md").decode()
        assert "right.png" in readme and "image pairs | 12" in readme
        ray_init_local(1)
        try:
            rows = read_dataset(out).take_all()
        finally:
            import ray
            ray.shutdown()
        assert len(rows) == 12 and all(r["image"].shape == r["right"].shape == (16, 16) for r in rows)
        assert all(np.array_equal(r["image"].astype(int) + r["right"], np.full((16, 16), 255)) for r in rows)
        print("ok")
    """)
    run = subprocess.run([sys.executable, "-c", script], env=plugin_env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
