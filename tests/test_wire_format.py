"""The wire format of definitions: what is hashed, golden fingerprints per family, and old formats kept.

``tests/vectors/legacy/<case>/`` holds a recipe, a built dataset's manifest and the pixels of every
sample, written by the code before ``definition_format`` 2 (commit 07bb52b): they must still load
under their fingerprints and rebuild the same pixels and records.
``tests/vectors/definitions-v2.json`` pins ``to_dict()`` and the fingerprint of one fixed definition
per family: a change there changes every version id, and must be deliberate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fractalshards import png
from fractalshards.builder import build
from fractalshards.dataset import DatasetManifest
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import StoredDataError
from fractalshards.families import family_names
from fractalshards.png import decode as decode_png
from fractalshards.recipe import Recipe
from fractalshards.stream import FractalStream
from fractalshards.tarformat import read_samples
from fractalshards.verifier import verify

VECTORS = Path(__file__).parent / "vectors"
LEGACY = sorted(p.name for p in (VECTORS / "legacy").iterdir())
#: One fixed definition per family (and OFDB's presets): (preset, categories, instances, render options).
GOLDEN = {
    "fractaldb": ("fractaldb-1k", 3, 4, {"mode": "official", "size": 64, "points": 5000}),
    "ofdb": ("ofdb-1k", 2, 1, {"draw": "point", "size": 40, "points": 3000}),
    "visualatom": ("visualatom-1k", 2, 2, {"mode": "official"}),
    "rcdb": ("rcdb-1k", 2, 2, {"mode": "native", "seed": 3}),
    "1p-frac": ("1p-frac", 2, 1, {"size": 64, "points": 5000}),
    "segrcdb": ("segrcdb", 3, 2, {"size": 64}),
    "exfractaldb": ("mv-fractaldb-1k", 2, 3, {"mode": "official"}),
    "pc-fractaldb": ("pc-fractaldb-1k", 2, 3, {}),
}


def _golden_definition(case: str) -> DatasetDefinition:
    # The encoder as pinned (the goldens were written when new definitions defaulted to `direct`;
    # a definition keeps the encoder it names, so these are also the controls of that default).
    preset, categories, instances, render = GOLDEN[case]
    encoder = json.loads((VECTORS / "definitions-v2.json").read_text())[case]["definition"]["png"]["encoder"]
    return DatasetDefinition.from_preset(
        preset, categories=categories, instances=instances, render=render, shard_size=3, png_encoder=encoder
    )


def test_new_definitions_of_every_family_default_to_the_portable_encoder():
    for case in GOLDEN:
        preset, categories, instances, render = GOLDEN[case]
        d = DatasetDefinition.from_preset(preset, categories=categories, instances=instances, render=render, shard_size=3)
        assert d.png_encoder == png.DEFAULT_ENCODER == "portable", case
        assert d.to_dict()["png"]["encoder"] == "portable"


def test_the_hashed_definition_holds_only_fields_that_change_bytes():
    d = _golden_definition("fractaldb")
    data = d.to_dict()
    assert set(data) == {
        "definition_format",
        "family",
        "categories",
        "instances_per_category",
        "render",
        "shard_size",
        "png",
        "order",
        "key_format",
        "shard_format",
    }
    assert set(data["categories"]) == {"content_hash", "count"} and set(data["png"]) == {"compress_level", "encoder"}
    # The dataset's name is not a byte: renaming it keeps the version.
    renamed = DatasetDefinition.from_preset(
        "fractaldb-1k",
        categories=3,
        instances=4,
        shard_size=3,
        name="another name",
        render={"mode": "official", "size": 64, "points": 5000},
        png_encoder=d.png_encoder,
    )
    assert renamed.fingerprint == d.fingerprint and renamed.name != d.name
    # Every field that is there does change the bytes, so it changes the fingerprint.
    assert (
        DatasetDefinition.from_preset(
            "fractaldb-1k",
            categories=3,
            instances=4,
            shard_size=4,
            render={"mode": "official", "size": 64, "points": 5000},
            png_encoder=d.png_encoder,
        ).fingerprint
        != d.fingerprint
    )


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden_definition_of_each_family(case):
    golden = json.loads((VECTORS / "definitions-v2.json").read_text())[case]
    d = _golden_definition(case)
    assert d.to_dict() == golden["definition"]
    assert d.fingerprint == golden["fingerprint"] and d.version == golden["fingerprint"][7:23]


def test_every_shipped_family_has_a_golden_definition():
    golden = json.loads((VECTORS / "definitions-v2.json").read_text())
    assert set(golden) == set(GOLDEN)
    assert {g["definition"]["family"] for g in golden.values()} == set(family_names())


@pytest.mark.parametrize("case", LEGACY)
def test_format_1_recipes_and_datasets_load_under_their_fingerprints(case):
    folder = VECTORS / "legacy" / case
    text = (folder / "recipe.json").read_text()
    recipe = Recipe.from_json(text)
    stored = json.loads(text)
    assert recipe.definition.definition_format == 1 and "definition_format" not in stored["definition"]
    assert recipe.version == stored["version"] and recipe.fingerprint == stored["fingerprint"]
    again = json.loads(recipe.to_json())  # written again: the same document but for the generator's version
    assert {k: v for k, v in again.items() if k != "generator"} == {k: v for k, v in stored.items() if k != "generator"}
    manifest = DatasetManifest.from_json((folder / "manifest.json").read_text())
    assert manifest.definition().fingerprint == recipe.fingerprint
    assert manifest.definition_id == recipe.version


@pytest.mark.parametrize("case", LEGACY)
def test_format_1_definitions_rebuild_the_same_samples(tmp_path, case):
    folder = VECTORS / "legacy" / case
    recipe = Recipe.from_json((folder / "recipe.json").read_text())
    old = json.loads((folder / "manifest.json").read_text())
    build(recipe.definition, str(tmp_path), workers=0)
    new = json.loads((tmp_path / "manifest.json").read_text())
    assert new["definition"] == old["definition"]
    pixels = json.loads((folder / "pixels.json").read_text())
    seen = {}
    for shard in new["shards"]:
        for sample in read_samples((tmp_path / shard["name"]).read_bytes(), shard["name"]):
            image = decode_png(sample["png"])
            seen[sample["__key__"]] = {
                "shape": list(image.shape),
                "sha256": hashlib.sha256(image.tobytes()).hexdigest(),
                "json_sha256": hashlib.sha256(sample["json"]).hexdigest(),
                "cls": sample["cls"].decode(),
            }
    assert seen == pixels
    # Shard bytes depend on zlib (and Pillow): with the libraries the vectors were made with, they are equal too.
    if old["generator"].get("png_libraries") == png.library_versions():
        assert new["fingerprint"] == old["fingerprint"] and new["shards"] == old["shards"]
    assert verify(str(tmp_path), render_sample=2).ok
    rendered = list(FractalStream(str(folder / "recipe.json"), shuffle=False, decode="numpy"))
    assert len(rendered) == len(pixels)
    stored = {p["sha256"] for p in pixels.values()}
    for image, _ in rendered[:3]:  # decode="numpy" gives 3 channels; a grey sample's are equal
        grey = image[..., 0] if image.ndim == 3 and next(iter(pixels.values()))["shape"][-1] != 3 else image
        assert hashlib.sha256(grey.copy().tobytes()).hexdigest() in stored


def test_an_unknown_definition_format_is_a_one_line_error():
    data = json.loads((VECTORS / "legacy" / "fractaldb" / "recipe.json").read_text())
    data["definition"]["definition_format"] = 9
    with pytest.raises(StoredDataError, match=r"definition_format 9 is not supported; this fractalshards reads \[1, 2\]"):
        Recipe.from_dict(data)
