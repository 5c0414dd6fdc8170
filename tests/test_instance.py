"""The render and preset logic of the command line, as library calls: the same files as the CLI writes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fractalshards import png
from fractalshards.errors import ConfigError
from fractalshards.instance import render_instance
from fractalshards.presets import load_preset, load_source, preset_table
from fractalshards.preview import preview_manifest


def test_render_instance_writes_the_bytes_of_the_cli(tmp_path):
    manifest = load_preset("fractaldb-100", categories=8)
    one = render_instance(manifest, category=7, parts={"weight": 12, "flip": 0, "patch": 3}, render={"size": 64})
    assert one.instance == manifest.family.instance_index(weight=12, flip=0, patch=3)
    one.write(tmp_path / "lib.png")
    cli = [sys.executable, "-m", "fractalshards", "render", "--preset", "fractaldb-100", "--category", "7"]
    cli += ["--weight", "12", "--flip", "0", "--patch", "3", "--size", "64", "--out", str(tmp_path / "cli.png")]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli.png").read_bytes() == (tmp_path / "lib.png").read_bytes()
    assert one.describe() in done.stderr


def test_render_instance_errors_name_the_field_and_write_nothing(tmp_path):
    manifest = load_preset("fractaldb-100", categories=2)
    with pytest.raises(ConfigError, match="^instance: give either"):
        render_instance(manifest, category=0, instance=3, parts={"weight": 1})
    with pytest.raises(ConfigError, match="^instance: give --instance I, or all of --weight"):
        render_instance(manifest, category=0)
    with pytest.raises(ConfigError, match="^category: 5 is out of range"):
        render_instance(manifest, category=5, instance=0)
    with pytest.raises(ConfigError, match="^cloud_out: the fractaldb family's instances are not point clouds"):
        render_instance(manifest, category=0, instance=0, cloud=True)
    one = render_instance(manifest, category=1, instance=2, render={"size": 32})
    with pytest.raises(ConfigError, match="^mask_out: the fractaldb family's samples have no mask"):
        one.write(tmp_path / "a.png", mask_out=tmp_path / "m.png")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_segmentation_instance_is_its_one_group_and_writes_its_mask(tmp_path):
    manifest = load_preset("segrcdb")
    one = render_instance(manifest, instance=4, render={"size": 64, "mode": "native", "instances_per_image": 3})
    assert one.category == 0
    one.write(tmp_path / "i.png", mask_out=tmp_path / "m.png")
    assert np.array_equal(png.decode((tmp_path / "m.png").read_bytes()), one.rendered.mask)


def test_load_source_takes_a_preset_or_a_manifest_and_refuses_search_flags_for_a_file(tmp_path):
    preset = load_source(preset="1p-frac", categories=3, search={"sigma": None})
    assert len(preset) == 3 and preset.name == "1p-frac[:3]"
    path = tmp_path / "m.json"
    load_preset("fractaldb-100").save(path)
    assert len(load_source(manifest=path, categories=5)) == 5
    with pytest.raises(ConfigError, match="^sigma: --sigma applies to a generated --preset"):
        load_source(manifest=path, search={"sigma": 4.0})
    with pytest.raises(ConfigError, match="^source: give exactly one"):
        load_source()


def test_the_preset_table_lists_every_preset_with_its_kind_and_samples():
    rows = {r["name"]: r for r in preset_table()}
    assert rows["segrcdb"]["kind"] == "segmentation" and rows["segrcdb"]["samples"] == 20_000
    assert rows["pc-fractaldb-1k"]["kind"] == "points" and rows["fractaldb-1k"]["samples"] == 1_000_000


def test_preview_manifest_checks_its_counts():
    manifest = load_preset("fractaldb-100", categories=2)
    grid = preview_manifest(manifest, 2, 3, render={"size": 32}, tile=32)
    assert grid.width > 3 * 32 and grid.height > 2 * 32
    with pytest.raises(ConfigError, match="^categories: 3 is more than the 2"):
        preview_manifest(manifest, 3)
