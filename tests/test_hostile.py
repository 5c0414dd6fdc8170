"""Hostile storage: a bucket owner who re-signs what they change (hashes, fingerprint and version
recomputed) still cannot mislabel, reorder or swap samples, nor ship a huge image, through any read path."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import forge_shard

from fractalshards import png
from fractalshards.builder import build
from fractalshards.cli import main
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ShardIntegrityError
from fractalshards.preview import preview_from_dataset
from fractalshards.stream import FractalStream
from fractalshards.verifier import verify


@pytest.fixture
def genuine(built_dataset) -> Path:
    return built_dataset


@pytest.fixture()
def copy(genuine, tmp_path) -> Path:
    dest = tmp_path / "ds"
    shutil.copytree(genuine, dest)
    return dest


def _read_all(url: str) -> list:
    return list(FractalStream(url, shuffle=False, decode="numpy"))


def _relabel(value: bytes):
    return lambda members: [(n, value if n.endswith(".cls") else b) for n, b in members]


@pytest.mark.parametrize("label", [b"-7", b"1000000", b"2"])
def test_relabelled_samples_fail_the_loader_and_the_default_verify(copy, capsys, label):
    forge_shard(copy, "shard-000001.tar", _relabel(label))
    with pytest.raises(ShardIntegrityError, match=r"shard-000001\.tar: sample '\d{6}-\d{4}' has label"):
        _read_all(str(copy))
    report = verify(str(copy))  # the default: no re-rendering, and still caught
    assert not report.ok and any("has label" in p and "shard-000001.tar" in p for p in report.problems)
    assert main(["--no-progress", "verify", str(copy)]) == 1
    with pytest.raises(ShardIntegrityError, match="has label"):
        preview_from_dataset(str(copy), 4, 5)


@pytest.mark.parametrize(
    "mutate,member",
    [
        (lambda ms: ms[:3] + [(ms[0][0].split(".")[0] + ".pyd", b"\x80\x04N.")] + ms[3:], ".pyd"),  # a pickle
        (lambda ms: [*ms, ("README", b"hello")], "README"),  # not a sample's member at all
        (lambda ms: [m for m in ms if not m[0].endswith(".json")], "json"),  # a member missing
    ],
)
def test_a_shard_with_other_members_than_its_kinds_is_refused(copy, mutate, member):
    forge_shard(copy, "shard-000000.tar", mutate)
    with pytest.raises(ShardIntegrityError, match=rf"shard-000000\.tar: .*{member}"):
        _read_all(str(copy))
    report = verify(str(copy))
    assert not report.ok and any("shard-000000.tar" in p and member in p for p in report.problems)


def test_swapped_or_reordered_samples_are_refused(copy):
    def swap(members):
        return members[3:6] + members[:3] + members[6:]  # samples 0 and 1 trade places

    forge_shard(copy, "shard-000000.tar", swap)
    with pytest.raises(ShardIntegrityError, match=r"sample 0 is '.*' but the definition's plan has"):
        _read_all(str(copy))
    assert not verify(str(copy)).ok


def test_a_sample_renamed_to_another_category_is_refused(copy):
    def rename(members):
        first = members[0][0].split(".")[0]
        return [(n.replace(first, "000003-0004"), b) for n, b in members]

    forge_shard(copy, "shard-000000.tar", rename)
    with pytest.raises(ShardIntegrityError, match="definition's plan"):
        _read_all(str(copy))


def test_a_huge_image_is_refused_from_its_header_before_decoding(copy):
    big = png.encode(np.zeros((13000, 13000), np.uint8))  # a few hundred KB that would decode to 169 MB

    def swap_in(members):
        return [(n, big if i == 2 else b) for i, (n, b) in enumerate(members)]

    forge_shard(copy, "shard-000000.tar", swap_in)
    start = time.perf_counter()
    with pytest.raises(ShardIntegrityError, match=r"image header \(13000, 13000, 1, 3\) where the definition makes 40x40"):
        _read_all(str(copy))
    assert time.perf_counter() - start < 10


def test_verify_reads_nothing_of_a_shard_whose_hash_failed(copy):
    shard = copy / "shard-000000.tar"
    data = bytearray(shard.read_bytes())
    data[124:136] = b"-0000000001\0"  # a negative size: a reader that parses it may never advance
    shard.write_bytes(bytes(data))  # not re-signed: the hash fails
    start = time.perf_counter()
    report = verify(str(copy))
    assert time.perf_counter() - start < 10
    problems = [p for p in report.problems if "shard-000000.tar" in p]
    assert len(problems) == 1 and "sha256" in problems[0]


def test_the_genuine_dataset_passes_every_check(genuine):
    assert len(_read_all(str(genuine))) == 12
    assert verify(str(genuine), render_sample=4).ok


class _Planted:
    """What a hostile checkpoint carries: an object whose unpickling runs code (here: creates a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_needs_pickled_objects_is_refused_and_runs_nothing(tmp_path):
    import torch

    from fractalshards.errors import ConfigError
    from fractalshards.train.pretrain import load_checkpoint

    marker = tmp_path / "code-ran"
    path = tmp_path / "last.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "step": 3, "extra": _Planted(marker)}, path)
    with pytest.raises(ConfigError, match=r"holds pickled objects, not only data") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()
    # A data-only checkpoint (what pretrain writes) loads.
    torch.save({"model": {"w": torch.ones(2)}, "step": 3, "config": {"lr_steps": (1, 2)}, "loader": {"epoch": 1}}, path)
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))


def test_a_pinned_reference_opens_only_the_version_it_names(genuine, tmp_path):
    import json

    from fractalshards.catalog import resolve
    from fractalshards.errors import StoredDataError
    from fractalshards.publisher import publish

    dest = tmp_path / "pub"
    publish(str(genuine), str(dest), tags=["v1"])
    version = resolve(f"{dest}@v1").rsplit("/", 1)[1]
    assert len(_read_all(f"{dest}@{version}")) == len(_read_all(f"{dest}@v1")) == 12
    # Another dataset's manifest, valid in itself, planted in the folder of the pinned version.
    other = tmp_path / "other"
    d = DatasetDefinition.from_preset(
        "fractaldb-100",
        categories=4,
        instances=5,
        shard_size=10,
        render={"mode": "official", "size": 64, "points": 3000, "seed": 9},
    )
    build(d, str(other), workers=0)
    for p in other.iterdir():
        shutil.copy(p, dest / version / p.name)
    planted = json.loads((dest / version / "manifest.json").read_text())["version"]
    assert planted != version
    for ref in (version, "v1", "latest"):
        with pytest.raises(StoredDataError, match=f"pins version {version} but .* holds version {planted}"):
            FractalStream(f"{dest}@{ref}")
    assert main(["--no-progress", "verify", f"{dest}@v1"]) == 1


@pytest.fixture(scope="module")
def recipe_text(tmp_path_factory) -> str:
    from fractalshards.recipe import Recipe

    d = DatasetDefinition.from_preset(
        "fractaldb-100", categories=3, instances=4, shard_size=6, render={"size": 48, "points": 2000}
    )
    return Recipe(d).to_json()


def _forged_recipe(tmp_path, recipe_text, edit) -> Path:
    import json

    from helpers import reseal_recipe

    data = json.loads(recipe_text)
    edit(data)
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(reseal_recipe(data)))
    return path


@pytest.mark.parametrize(
    "field,edit",
    [
        ("size 20,000 is above the limit of 4,096 (image_size)", lambda d: d["definition"]["render"].update(size=20_000)),
        ("points 1,000,000,000,000 is above the limit", lambda d: d["definition"]["render"].update(points=10**12)),
        ("shard_size 1,000,000,000 is above the limit", lambda d: d["definition"].update(shard_size=10**9)),
    ],
)
def test_a_recipe_asking_for_too_much_is_refused_before_anything_is_made(tmp_path, recipe_text, capsys, field, edit):
    from fractalshards.errors import LimitError
    from fractalshards.limits import Limits, raised
    from fractalshards.recipe import Recipe

    path = _forged_recipe(tmp_path, recipe_text, edit)
    start = time.perf_counter()
    with pytest.raises(LimitError, match=re.escape(field)):
        FractalStream(str(path))
    out = tmp_path / "out"
    assert main(["--no-progress", "build", "--recipe", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--allow-large" in err[0] and not out.exists()
    assert time.perf_counter() - start < 20
    with raised(Limits.large()):  # a user who means it
        assert Recipe.from_json(path.read_text()).definition.num_samples == 12


@pytest.mark.parametrize(
    "where,value,message",
    [
        ("png", {"compress_level": 1.5, "encoder": "direct"}, "png_compress_level: 1.5 is not valid"),
        ("png", {"compress_level": "1", "encoder": "direct"}, "png_compress_level: '1' is not valid"),
        ("render", "NAN", "not valid JSON"),
        ("render", "BIG", "not valid JSON"),
        ("render", "DEEP", "nested"),
        ("render", {"size": "48"}, "RenderSettings.size: '48' is not a int"),
        ("render", {"weight_delta": True}, "RenderSettings.weight_delta: True is not a float"),
    ],
)
def test_json_fields_of_the_wrong_type_are_one_line_errors(tmp_path, recipe_text, capsys, where, value, message):
    import json

    from helpers import reseal_recipe

    data = json.loads(recipe_text)
    if isinstance(value, dict):
        data["definition"][where].update(value)
        text = json.dumps(reseal_recipe(data))
    else:
        text = json.dumps(reseal_recipe(data))
        marker = '"seed": 0'
        replacement = {"NAN": '"seed": NaN', "BIG": '"seed": 1' + "0" * 400, "DEEP": '"seed": ' + "[" * 200_000 + "]" * 200_000}
        text = text.replace(marker, replacement[value], 1)
    path = tmp_path / "r.json"
    path.write_text(text)
    out = tmp_path / "out"
    code = main(["--no-progress", "build", "--recipe", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2) and len(err) == 1 and message in err[0], err
    assert "Traceback" not in err[0] and not out.exists()


def test_a_loader_state_asking_for_a_huge_world_is_refused_at_once(genuine):
    from fractalshards.errors import LimitError
    from fractalshards.loader import FractalLoader

    loader = FractalLoader(FractalStream(str(genuine), seed=1), batch_size=4)
    state = loader.state_dict()
    state["history"] = [{"world_size": 10**9, "shuffle_buffer": 8, "pad": True, "samples_seen": 4}]
    start = time.perf_counter()
    with pytest.raises(LimitError, match="world_size 1,000,000,000 is above the limit"):
        loader.load_state_dict(state)
    state["history"] = [{"world_size": 1, "shuffle_buffer": 8, "pad": True, "samples_seen": 4}] * 100_000
    with pytest.raises(LimitError, match="history 100,000 is above the limit"):
        loader.load_state_dict(state)
    assert time.perf_counter() - start < 5


def _level(world_size: int, seen: int = 1) -> dict:
    return {"world_size": world_size, "shuffle_buffer": 8, "pad": True, "samples_seen": seen}


def test_a_loader_state_whose_levels_multiply_past_the_bound_is_refused_and_one_at_the_bound_is_cheap(genuine):
    import resource

    from fractalshards.epochs import EpochLayout, Level
    from fractalshards.errors import LimitError
    from fractalshards.limits import current
    from fractalshards.loader import FractalLoader

    loader = FractalLoader(FractalStream(str(genuine), seed=1), batch_size=4)
    state = loader.state_dict()
    start = time.perf_counter()
    # Each level within the per-field bounds; together 67 million ranks to replay (about 37 minutes before).
    with pytest.raises(LimitError, match=r"ranks of the state's levels 67,108,865 is above the limit of 131,072"):
        loader.load_state_dict({**state, "history": [_level(65_536)] * 1_024})
    assert time.perf_counter() - start < 2
    bound = current().replay_ranks
    at_bound = [_level(65_536), _level(bound - 65_536 - state["world_size"], seen=0)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    s = loader.stream
    split = EpochLayout(
        s.shard_samples, seed=s.seed, epoch=state["epoch"], shuffle=s.shuffle, world_size=state["world_size"],
        shuffle_buffer=state["shuffle_buffer"], pad=state["pad"], history=tuple(Level.from_dict(lv, "t") for lv in at_bound),
    )  # fmt: skip
    loader.load_state_dict({**state, "history": at_bound, "samples_per_rank": split.per_rank, "samples_seen": 0})
    assert time.perf_counter() - start < 20
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 1024  # MB
    assert len(list(loader)) >= 0


def test_a_recipe_implying_too_many_shards_is_refused_and_one_at_the_bound_opens_in_seconds(tmp_path):
    import resource

    from fractalshards.errors import LimitError
    from fractalshards.limits import current
    from fractalshards.recipe import Recipe

    bound = current().shards
    with pytest.raises(LimitError, match=r"shards 1,000,000 is above the limit of 262,144 \(shards\)"):
        DatasetDefinition.from_preset("fractaldb-1k", instances=1000, shard_size=1)
    d = DatasetDefinition.from_preset("fractaldb-1k", categories=bound // 1000, instances=1000, shard_size=1)
    text = Recipe(d).to_json()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    opened = Recipe.from_json(text.encode(), "recipe.json").definition
    assert opened.num_shards == d.num_shards <= bound and opened.shard_spec(opened.num_shards - 1).samples == 1
    assert time.perf_counter() - start < 20
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 1024  # MB


def test_a_planted_shard_with_a_forged_journal_entry_is_rebuilt(tmp_path):
    import hashlib
    import json

    from fractalshards.builder import journal_name

    d = DatasetDefinition.from_preset(
        "fractaldb-100", categories=4, instances=5, shard_size=10, render={"mode": "official", "size": 48, "points": 2000}
    )
    clean = tmp_path / "clean"
    build(d, str(clean), workers=0)
    shared = tmp_path / "shared"
    shared.mkdir()
    # The planter: shard 1 with every label rewritten, and a journal entry whose hash matches it.
    shutil.copy(clean / "shard-000001.tar", shared / "shard-000001.tar")
    forge_shard_bytes = _relabel(b"0")
    import io
    import tarfile

    from fractalshards.tarformat import tar_bytes

    with tarfile.open(fileobj=io.BytesIO((shared / "shard-000001.tar").read_bytes())) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    planted = tar_bytes(forge_shard_bytes(members))
    (shared / "shard-000001.tar").write_bytes(planted)
    entry = {"name": "shard-000001.tar", "samples": 10, "bytes": len(planted), "sha256": hashlib.sha256(planted).hexdigest()}
    journal = shared / journal_name(d, "shard-000001.tar")
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps(entry))
    result = build(d, str(shared), workers=0)
    assert result.skipped == 0 and result.built == 2
    assert (shared / "shard-000001.tar").read_bytes() == (clean / "shard-000001.tar").read_bytes()
    assert verify(str(shared)).ok


def test_eviction_never_follows_a_link_planted_in_a_shared_cache(tmp_path):
    import os

    from fractalshards.cache import ShardCache

    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "shard-000000.tar"
    victim.write_bytes(b"precious" * 1000)
    root = tmp_path / "cache"
    (root / "0123456789abcdef").mkdir(parents=True)
    os.symlink(outside, root / "fedcba9876543210")  # a version folder that is a link
    os.symlink(victim, root / "0123456789abcdef" / "shard-000001.tar")  # a shard that is a link
    (root / "0123456789abcdef" / "shard-000002.tar").write_bytes(b"x" * 5000)  # a real cached shard
    cache = ShardCache(root, limit=0)
    assert [p.name for p in cache.cached()] == ["shard-000002.tar"]
    assert cache.evict() == 1
    assert victim.read_bytes() == b"precious" * 1000 and (root / "0123456789abcdef" / "shard-000001.tar").is_symlink()
    with pytest.raises(ShardIntegrityError, match="symbolic link"):
        cache.get("fedcba9876543210", "shard-000000.tar", "0" * 64, lambda: b"", size=0)
    # A shard planted as a link is never read through: it is replaced by a verified download.
    data = b"genuine"
    digest = __import__("hashlib").sha256(data).hexdigest()
    assert cache.get("0123456789abcdef", "shard-000001.tar", digest, lambda: data, size=len(data)) == data
    assert victim.read_bytes() == b"precious" * 1000
    assert not (root / "0123456789abcdef" / "shard-000001.tar").is_symlink()


@pytest.mark.parametrize("planted", ["_build", "shard-000001.tar"])
def test_a_build_never_writes_through_a_link_in_its_output_folder(tmp_path, capsys, planted):
    import os

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(outside if planted == "_build" else outside / "keep.txt", out / planted)
    code = main(
        [
            "--no-progress",
            "build",
            "--preset",
            "fractaldb-100",
            "--categories",
            "4",
            "--instances",
            "5",
            "--shard-size",
            "10",
            "--size",
            "32",
            "--points",
            "1000",
            "--workers",
            "0",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "symbolic link" in err[-1] and len([e for e in err if "error" in e]) == 1
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"] and (outside / "keep.txt").read_text() == "untouched"
    assert not (out / "manifest.json").exists()


def test_a_tampered_cache_of_a_generated_preset_is_searched_again(tmp_path, monkeypatch):
    import json

    from fractalshards.categories import CategoryManifest
    from fractalshards.presets import load_preset

    monkeypatch.setenv("FRACTALSHARDS_CACHE", str(tmp_path / "cache"))
    genuine = load_preset("1p-frac", categories=3)
    (cached,) = (tmp_path / "cache").glob("1p-frac*.json")
    data = json.loads(cached.read_text())
    data["categories"][0]["maps"][0][0] += 0.25  # another system, the file re-sealed as a forger would
    data.pop("content_hash")
    forged = CategoryManifest.from_dict(data)
    forged.save(cached)
    again = load_preset("1p-frac", categories=3)
    fam = genuine.family
    assert [fam.category_to_dict(c) for c in again.categories] == [fam.category_to_dict(c) for c in genuine.categories]
    assert json.loads(cached.read_text())["categories"][0] == fam.category_to_dict(genuine.categories[0])


def test_tampered_saved_generator_states_are_replayed_again(tmp_path, monkeypatch):
    import numpy as np

    from fractalshards.presets import load_preset

    monkeypatch.setenv("FRACTALSHARDS_CACHE", str(tmp_path / "cache"))
    m = load_preset("rcdb-1k", categories=2)
    fam = m.family
    settings = fam.render_settings(m, {"mode": "official"})
    expected = fam.render(m, 1, 30, settings).image
    (states,) = (tmp_path / "cache" / "streams").glob("rcdb-*.npz")
    with np.load(states) as saved:
        arrays = {k: saved[k].copy() for k in saved.files}
    arrays["states"][0] ^= np.uint32(1)  # every saved state of the first category off by one bit
    np.savez(states, **arrays)
    # fam.render makes a new renderer: nothing in memory, as in a new process; the file is read again.
    assert np.array_equal(fam.render(m, 1, 30, settings).image, expected)
    with np.load(states) as saved:
        assert not np.array_equal(saved["states"][0], arrays["states"][0])  # the file was written again


@pytest.mark.parametrize(
    "field,value",
    [("index", True), ("index", "1"), ("trial", 1.5), ("fill", "0.3"), ("fill", 7.0), ("maps", [[0.5] * 6 + ["x"]])],
)
def test_category_fields_of_the_wrong_type_are_one_line_errors(field, value):
    from fractalshards.categories import CategoryManifest
    from fractalshards.errors import ConfigError
    from fractalshards.presets import load_preset

    body = load_preset("fractaldb-100").subset(2).body()
    body["categories"][1][field] = value
    with pytest.raises(ConfigError, match="malformed category manifest") as err:
        CategoryManifest.from_dict(body, source="m.json")
    assert "\n" not in str(err.value)


def test_a_fifo_planted_in_a_dataset_folder_is_refused_at_once(copy):
    import os

    shard = copy / "shard-000001.tar"
    shard.unlink()
    os.mkfifo(shard)  # opening it for reading would wait for a writer forever
    start = time.perf_counter()
    with pytest.raises(ShardIntegrityError, match="not a regular file"):
        _read_all(str(copy))
    assert time.perf_counter() - start < 10
