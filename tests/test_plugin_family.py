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

PLUGIN = Path(__file__).parent / "plugins" / "toy_family.py"


@pytest.fixture()
def plugin_env(tmp_path):
    """A site folder holding the toy family and an installed-package record whose entry point names it."""
    site = tmp_path / "site"
    dist = site / "fractalshards_toy-0.1.dist-info"
    dist.mkdir(parents=True)
    shutil.copy(PLUGIN, site / "toy_family.py")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fractalshards-toy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fractalshards.families]\ntoy = toy_family:FAMILY\n")
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


def test_the_core_names_no_family():
    # The core imports nothing from a family's package: only the interface and the registry.
    root = Path(__file__).parent.parent / "fractalshards"
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] == "families":
            continue
        text = path.read_text()
        for line in text.splitlines():
            if "import" in line and ("families." in line or "from .families." in line):
                offenders.append(f"{rel}: {line.strip()}")
    assert offenders == []
