"""The top level: the main names, imported on first use, without torch or Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import fractalshards


def test_main_names_load_lazily_without_torch_or_ray():
    script = (
        "import json, sys, fractalshards as fs\n"
        "before = sorted(m for m in ('torch', 'ray') if m in sys.modules)\n"
        "d = fs.DatasetDefinition.from_preset('fractaldb-100', categories=2, instances=3, render={'size': 32, 'points': 400})\n"
        "names = [fs.build.__module__, fs.publish.__module__, fs.verify.__module__, fs.open_manifest.__module__,\n"
        "         fs.load_preset.__module__, fs.FractalStream.__module__]\n"
        "print(json.dumps({'before': before, 'samples': d.num_samples, 'names': names}))\n"
    )
    out = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert out["before"] == [] and out["samples"] == 6
    assert out["names"] == [
        "fractalshards.builder",
        "fractalshards.publisher",
        "fractalshards.verifier",
        "fractalshards.dataset",
        "fractalshards.presets",
        "fractalshards.stream",
    ]


def test_every_advertised_name_resolves_and_unknown_names_raise():
    for name in fractalshards.__all__:
        assert getattr(fractalshards, name) is not None
    try:
        fractalshards.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_definition_from_preset_applies_defaults_and_caps_once():
    from fractalshards.definition import DEFAULT_INSTANCES, DatasetDefinition
    from fractalshards.errors import ConfigError

    full = DatasetDefinition.from_preset("fractaldb-100", categories=2)
    assert full.instances == DEFAULT_INSTANCES and full.shard_size == 1000 and full.png_encoder == "portable"
    assert DatasetDefinition.from_preset("ofdb-1k", categories=3).instances == 1
    try:
        DatasetDefinition.from_preset("ofdb-1k", categories=3, instances=2)
    except ConfigError as exc:
        assert "use --instances 1..1" in str(exc)
    else:
        raise AssertionError("a preset's instance cap must hold")


def test_debug_shows_the_chained_cause_of_a_one_line_error(tmp_path, monkeypatch, capsys):
    import pytest

    from fractalshards.cli import main
    from fractalshards.errors import ConfigError, StoredDataError

    bad = tmp_path / "recipe.json"
    bad.write_text('{"format": "fractalshards.recipe", "format_version": 1, "name": "x", "version": "zz"}')
    assert main(["--no-progress", "build", "--recipe", str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "version 'zz' is not a version id" in err[0]
    monkeypatch.setenv("FRACTALSHARDS_DEBUG", "1")
    with pytest.raises(StoredDataError) as info:
        main(["--no-progress", "build", "--recipe", str(bad), "--out", str(tmp_path / "o")])
    assert isinstance(info.value.__cause__, ConfigError)
    assert not (tmp_path / "o").exists()


def test_load_dataset_is_the_old_name_of_open_manifest_and_warns_once(built_dataset):
    import warnings

    import fractalshards as fs
    from fractalshards import dataset

    dataset._WARNED.discard("load_dataset")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest, store = fs.load_dataset(str(built_dataset))
        fs.load_dataset(str(built_dataset))
    assert [type(w.message) for w in caught] == [FutureWarning]
    assert "renamed open_manifest" in str(caught[0].message)
    assert manifest.version == fs.open_manifest(str(built_dataset))[0].version
