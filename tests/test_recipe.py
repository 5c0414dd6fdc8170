"""Recipes: written, built, rendered on the fly (equal to the shards, sample for sample), published."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fractalshards.catalog import read_index
from fractalshards.cli import main
from fractalshards.errors import ConfigError, StoredDataError
from fractalshards.loader import FractalLoader
from fractalshards.publisher import publish
from fractalshards.recipe import Recipe
from fractalshards.stream import FractalStream

ARGS = [
    "--preset",
    "fractaldb-100",
    "--instances",
    "3",
    "--shard-size",
    "7",
    "--size",
    "40",
    "--points",
    "3000",
    "--seed",
    "2",
    "--mode",
    "native",
    "--png-compress-level",
    "3",
    "--name",
    "r100",
]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """(recipe.json, a dataset built from the same flags)."""
    root = tmp_path_factory.mktemp("recipe")
    assert main(["--no-progress", "recipe", *ARGS, "--out", str(root / "recipe.json")]) == 0
    assert main(["--no-progress", "build", *ARGS, "--out", str(root / "ds"), "--workers", "0"]) == 0
    return root / "recipe.json", root / "ds"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_build_recipe_gives_the_bytes_of_the_equivalent_flags(made, tmp_path):
    recipe, ds = made
    text = recipe.read_text()
    assert len(text) < 1_000_000 and "shards" not in json.loads(text)
    assert main(["--no-progress", "build", "--recipe", str(recipe), "--out", str(tmp_path / "b"), "--workers", "0"]) == 0
    assert _files(tmp_path / "b") == _files(ds)
    # The recipe's version is the definition's: the built dataset says the same.
    assert FractalStream(str(ds)).definition_id == Recipe.from_json(text).version
    # A dataset's manifest.json serves as a recipe.
    assert (
        main(["--no-progress", "build", "--recipe", str(ds / "manifest.json"), "--out", str(tmp_path / "c"), "--workers", "0"])
        == 0
    )
    assert _files(tmp_path / "c") == _files(ds)


def _hashes(loader) -> list[str]:
    return [
        hashlib.sha256(image.numpy().tobytes() + str(int(label)).encode()).hexdigest()
        for images, labels in loader
        for image, label in zip(images, labels)
    ]


@pytest.mark.parametrize("workers", [0, 2])
def test_rendered_stream_equals_the_shard_stream(made, workers):
    recipe, ds = made
    for rank in range(2):

        def loader(url, source):
            stream = FractalStream(url, rank=rank, world_size=2, seed=5, shuffle_buffer=9, source=source)
            stream.set_epoch(1)
            return FractalLoader(stream, batch_size=4, num_workers=workers)

        shards = _hashes(loader(str(ds), "shards"))
        assert len(shards) == 150
        assert _hashes(loader(str(recipe), "auto")) == shards
        assert _hashes(loader(str(ds), "render")) == shards  # a built dataset rendered: no shard byte read


def test_rendered_raw_samples_equal_the_stored_members(made):
    recipe, ds = made
    stored = list(FractalStream(str(ds), decode="raw", shuffle=False))
    rendered = list(FractalStream(str(recipe), decode="raw", shuffle=False))
    assert [(s["__key__"], s["png"], s["cls"], s["json"]) for s in stored] == [
        (s["__key__"], s["png"], s["cls"], s["json"]) for s in rendered
    ]


def test_state_resumes_across_sources(made):
    recipe, ds = made

    def loader(url):
        return FractalLoader(FractalStream(url, seed=8, shuffle_buffer=10), batch_size=5)

    full = [int(x) for _, labels in loader(str(ds)) for x in labels]
    for first, second in ((str(ds), str(recipe)), (str(recipe), str(ds))):
        a = loader(first)
        seen = []
        for i, (_, labels) in enumerate(a):
            seen += labels.tolist()
            if i == 6:
                break
        b = loader(second)
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        assert seen + [int(x) for _, labels in b for x in labels] == full


def test_published_recipe_streams_and_materialises(made, s3_bucket, tmp_path, monkeypatch):
    recipe, ds = made
    bucket, options = s3_bucket
    dest = f"s3://{bucket}/recipes"
    result = publish(str(recipe), dest, tags=["v1"], dest_options=options)
    index = read_index(dest, options)
    assert index["versions"][result.version]["kind"] == "recipe" and index["tags"]["v1"] == result.version
    assert index["versions"][result.version]["bytes"] < 1_000_000
    stream = FractalStream(f"{dest}@v1", storage_options=options, seed=1)
    assert stream.source == "render"
    assert [label for _, label in stream] == [label for _, label in FractalStream(str(ds), seed=1)]
    with pytest.raises(ConfigError, match="recipe and has no shards"):
        FractalStream(f"{dest}@v1", storage_options=options, source="shards")
    # build --like materialises it (the CLI reads credentials and endpoint from the environment).
    assert main(["--no-progress", "build", "--like", f"{dest}@v1", "--out", str(tmp_path / "m"), "--workers", "0"]) == 0
    assert _files(tmp_path / "m") == _files(ds)
    assert main(["--no-progress", "ls", dest]) == 0


def test_bad_recipes_are_one_line_errors(made, tmp_path, capsys):
    recipe, _ = made
    assert main(["--no-progress", "recipe", "--preset", "nope", "--instances", "2", "--out", str(tmp_path / "x.json")]) == 2
    data = json.loads(recipe.read_text())
    tampered = dict(data, version="0123456789abcdef")
    (tmp_path / "t.json").write_text(json.dumps(tampered))
    with pytest.raises(StoredDataError, match="version 0123456789abcdef does not match"):
        FractalStream(str(tmp_path / "t.json"))
    out_of_range = json.loads(recipe.read_text())
    out_of_range["definition"]["instances_per_category"] = 5000
    (tmp_path / "o.json").write_text(json.dumps(out_of_range))
    with pytest.raises(StoredDataError, match="instances"):
        Recipe.from_json((tmp_path / "o.json").read_text())
    capsys.readouterr()
    # A tampered recipe is bad stored data: one line, exit status 1 (bad input is 2).
    assert main(["--no-progress", "build", "--recipe", str(tmp_path / "t.json"), "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match" in err[0]
    assert main(["--no-progress", "info", str(recipe)]) == 2  # a recipe is not a built dataset
    assert "is a recipe, not a built dataset" in capsys.readouterr().err


def test_verify_a_shard_version_against_its_recipe(made, tmp_path):
    from fractalshards.verifier import verify

    recipe, ds = made
    report = verify(str(ds), render_sample=10, recipe=str(recipe))
    assert report.ok and report.rendered == 10
    other = json.loads(recipe.read_text())
    other_recipe = tmp_path / "other.json"
    assert main(["--no-progress", "recipe", *[a if a != "2" else "3" for a in ARGS], "--out", str(other_recipe)]) == 0
    report = verify(str(ds), recipe=str(other_recipe))
    assert not report.ok and "not the recipe's" in report.problems[0]
    assert other["version"] != json.loads(other_recipe.read_text())["version"]


def test_rendering_a_dataset_whose_shard_list_is_not_its_plan_is_refused(made, tmp_path):
    import shutil

    _, ds = made
    copy = tmp_path / "ds"
    shutil.copytree(ds, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][0]["name"] = "x.tar"  # names are not part of the fingerprint, but must be the plan's
    (copy / "manifest.json").write_text(json.dumps(manifest))
    for source in ("shards", "render"):
        with pytest.raises(StoredDataError, match="shards listed are not the definition's plan"):
            FractalStream(str(copy), source=source)
