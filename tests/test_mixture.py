"""MixedStream: weighted mixtures of datasets and recipes, their specs, and fresh instances.

Real components throughout: shards built here and read back, recipes rendered in DataLoader workers,
states through JSON, specs through the CLI, the S3 server for a remote source.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_definition

from fractalshards import FractalLoader, FractalStream, MixedStream, make_spec
from fractalshards.builder import build
from fractalshards.cli import main
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError, StoredDataError
from fractalshards.families.fractaldb.render import RenderSettings
from fractalshards.hashing import canonical_hash, version_id
from fractalshards.mixture import MixPosition, open_spec
from fractalshards.presets import load_preset
from fractalshards.recipe import Recipe


def _native(categories: int, instances: int, shard_size: int, *, size: int = 32, name: str, seed: int = 0):
    return DatasetDefinition(
        categories=load_preset("fractaldb-100").subset(categories, name=name),
        instances=instances,
        render=RenderSettings(mode="native", size=size, points=2_000, seed=seed),
        shard_size=shard_size,
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, str]:
    """Two built datasets (20 and 12 samples), a recipe (6), a native recipe of another size (8, 48 px),
    and two larger native recipes (60 samples each) for resume tests."""
    root = tmp_path_factory.mktemp("mixture")
    out = {"a": str(root / "a"), "b": str(root / "b")}
    build(tiny_definition(4, 5, 7, name="mixa"), out["a"], workers=0)
    build(tiny_definition(3, 4, 5, name="mixb", seed=2), out["b"], workers=0)
    for key, definition in (
        ("r", tiny_definition(2, 3, 4, name="mixr", seed=3)),
        ("big", _native(2, 4, 3, size=48, name="mixbig")),
        ("n1", _native(6, 10, 7, name="mixn1")),
        ("n2", _native(5, 12, 9, name="mixn2", seed=4)),
    ):
        path = root / f"{key}.json"
        path.write_text(Recipe(definition).to_json())
        out[key] = str(path)
    return out


def _streams(sources: dict, keys: str = "abr", **options) -> list[FractalStream]:
    return [FractalStream(sources[k], **options) for k in keys]


def _items(batches) -> list[tuple[str, int]]:
    """``(key, label)`` of every raw sample of a loader's batches (collate_fn=list)."""
    return [(s["__key__"], int(s["cls"])) for batch in batches for s in batch]


def _loader(mixture: MixedStream, workers: int = 0, batch_size: int = 4) -> FractalLoader:
    return FractalLoader(mixture, batch_size=batch_size, num_workers=workers, collate_fn=list)


def _source_of(label: int, mixture: MixedStream) -> int:
    return max(k for k, off in enumerate(mixture.offsets) if label >= off)


def test_proportions_hold_in_every_window_and_do_not_depend_on_the_rank(sources):
    weights = [3, 1, 1]
    mixture = MixedStream(_streams(sources), weights, seed=7, epoch_size=200_000)
    drawn = mixture.draws(MixPosition(), 0, 200_000)
    for k, w in enumerate(weights):
        p = w / sum(weights)
        counts = (drawn.reshape(-1, 1000) == k).sum(axis=1)
        bound = 5 * math.sqrt(1000 * p * (1 - p))  # a window this far out happens once in ~3.5 million
        assert np.all(np.abs(counts - 1000 * p) <= bound), (k, counts.min(), counts.max())
    other_rank = MixedStream(_streams(sources, rank=1, world_size=2), weights, seed=7, epoch_size=200_000)
    assert np.array_equal(other_rank.draws(MixPosition(), 0, 200_000), drawn)
    assert not np.array_equal(
        MixedStream(_streams(sources), weights, seed=8, epoch_size=200_000).draws(MixPosition(), 0, 1000), drawn[:1000]
    )


def test_samples_follow_the_draws_labels_are_disjoint_and_workers_change_nothing(sources):
    mixture = MixedStream(_streams(sources, decode="raw"), [3, 1, 1], seed=5)
    assert mixture.num_classes == 4 + 3 + 2 and mixture.offsets == [0, 4, 7]
    assert [m["classes"] for m in mixture.label_map] == [4, 3, 2]
    assert len(mixture) == 20 + 12 + 6
    plain = [(s["__key__"], int(s["cls"])) for s in mixture]
    assert [_source_of(label, mixture) for _, label in plain] == mixture.draws(MixPosition(), 0, len(mixture)).tolist()
    for workers in (0, 2):
        again = MixedStream(_streams(sources, decode="raw"), [3, 1, 1], seed=5)
        assert _items(_loader(again, workers)) == plain
    shared = MixedStream(_streams(sources, "ar", decode="raw"), [1, 1], labels="disjoint")
    assert shared.offsets == [0, 4]
    with pytest.raises(ConfigError, match="labels: source 1 .* has 2 classes but source 0 .* has 4"):
        MixedStream(_streams(sources, "ar"), [1, 1], labels="shared")


def test_each_source_gives_every_sample_before_repeating(sources):
    sizes = {0: 20, 1: 12, 2: 6}
    mixture = MixedStream(_streams(sources, decode="raw"), [2, 1, 2], seed=3, epoch_size=3 * 38)
    loader = _loader(mixture)
    got = _items(loader)  # one epoch of 114: every source wraps at least once
    assert loader.epoch == 1
    for k, size in sizes.items():
        mine = [item for item in got if _source_of(item[1], mixture) == k]
        passes = [mine[i : i + size] for i in range(0, len(mine), size)]
        assert len(passes) >= 2
        for chunk in passes[:-1]:
            assert len(set(chunk)) == size  # a whole pass: every sample once
        assert len(set(passes[-1])) == len(passes[-1])
        assert passes[0] != passes[1]  # the next pass has the next permutation
    # The next epoch goes on where each source stands (not from each source's start).
    second = _items(loader)
    assert len(second) == 114 and second != got


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume_mid_epoch_continues_with_the_same_samples(sources, workers):
    def make() -> MixedStream:
        return MixedStream(_streams(sources, decode="raw"), [3, 1, 2], seed=11, epoch_size=50)

    straight = _loader(make(), workers, batch_size=4)
    first = _items(straight)
    second = _items(straight)  # epoch 1 starts where epoch 0 left every source
    loader = _loader(make(), workers, batch_size=4)
    assert _items(loader) == first
    seen = []
    for batch in loader:
        seen += _items([batch])
        if len(seen) == 20:
            break
    state = json.loads(json.dumps(loader.state_dict()))
    assert state["kind"] == "mixture" and state["epoch"] == 1 and state["samples_seen"] == 20
    assert len(state["sources"]) == 3 and all(s["version"] == 2 for s in state["sources"])
    resumed = _loader(make(), 2 - workers, batch_size=4)
    resumed.load_state_dict(state)
    assert seen + _items(resumed) == second


def test_elastic_resume_from_two_to_three_ranks_loses_and_repeats_nothing(sources):
    def ranks(world: int) -> list[FractalLoader]:
        return [
            _loader(MixedStream(_streams(sources, ["n1", "n2"], decode="raw", rank=r, world_size=world), [1, 1], seed=2,
                                epoch_size=60), batch_size=3)
            for r in range(world)
        ]  # fmt: skip

    def keys_of(loaders, batches=None) -> list[tuple[int, str]]:
        out = []
        for loader in loaders:
            for i, batch in enumerate(loader):
                out += [(_source_of(label, loader.stream), key) for key, label in _items([batch])]
                if batches is not None and i + 1 == batches:
                    break
        return out

    old = ranks(2)
    before = keys_of(old, batches=4)  # 12 samples a rank
    state = old[0].state_dict()
    new = ranks(3)
    for loader in new:
        loader.load_state_dict(state)
    assert all(len(loader.stream) == math.ceil((60 - 24) / 3) for loader in new)
    after = keys_of(new)
    everything = before + after
    assert len(everything) == 60
    # No source wrapped, so a sample twice is a source's padding at its new level: at most 3 - 1 each.
    for k in (0, 1):
        counts = Counter(key for s, key in everything if s == k)
        assert sum(c - 1 for c in counts.values()) <= 2
    # Every rank drew the same sources (lockstep), so each source gave its draws times the ranks.
    for k in (0, 1):
        expected = 2 * int(np.sum(old[0].stream.draws(MixPosition(), 0, 12) == k))
        expected += 3 * int(np.sum(new[0].stream.draws(new[0].stream.position, 0, 12) == k))
        assert sum(1 for s, _ in everything if s == k) == expected


def test_fresh_instances_render_new_images_every_epoch_and_resume_exactly(sources, tmp_path):
    stream = FractalStream(sources["n1"], fresh_instances=True, decode="raw", seed=1)
    epoch0 = [s["__key__"] for s in stream]
    stream.set_epoch(1)
    epoch1 = [s["__key__"] for s in stream]
    assert len(epoch0) == len(epoch1) == 60
    assert sorted(int(k.split("-")[1]) for k in epoch0) == sorted(list(range(10)) * 6)
    assert sorted(int(k.split("-")[1]) for k in epoch1) == sorted(list(range(10, 20)) * 6)
    pixels = FractalStream(sources["n1"], fresh_instances=True, shuffle=False, decode="numpy")
    first = [img for img, _ in pixels]
    pixels.set_epoch(1)
    assert not any(np.array_equal(a, b) for a, b in zip(first, [img for img, _ in pixels]))
    # Exact resume mid-epoch 1, also from 2 workers to none.
    loader = FractalLoader(FractalStream(sources["n1"], fresh_instances=True, decode="raw", seed=1), batch_size=5,
                           num_workers=2, collate_fn=list)  # fmt: skip
    list(loader)
    seen = []
    for batch in loader:
        seen += [s["__key__"] for s in batch]
        if len(seen) == 25:
            break
    state = loader.state_dict()
    assert state["fresh_instances"] is True and state["epoch"] == 1
    again = FractalLoader(FractalStream(sources["n1"], fresh_instances=True, decode="raw", seed=1), batch_size=5,
                          collate_fn=list)  # fmt: skip
    again.load_state_dict(state)
    assert seen + [s["__key__"] for b in again for s in b] == epoch1
    with pytest.raises(ConfigError, match="fresh_instances is False but this stream has True"):
        FractalLoader(FractalStream(sources["n1"], fresh_instances=True, seed=1)).load_state_dict(
            {**state, "fresh_instances": False}
        )
    # Official renders are the released instance space: refused in one line that says so.
    with pytest.raises(ConfigError, match="fresh_instances: .* official mode renders the released instance space"):
        FractalStream(sources["r"], fresh_instances=True)
    with pytest.raises(ConfigError, match="fresh_instances: new instances are rendered"):
        FractalStream(sources["a"], fresh_instances=True, source="shards")


def test_a_fresh_source_in_a_mixture_never_repeats(sources):
    fresh = FractalStream(sources["r"], decode="raw")  # official: a plain source beside the fresh one
    mixture = MixedStream([FractalStream(sources["n2"], fresh_instances=True, decode="raw"), fresh], [5, 1], epoch_size=200)
    got = _items(_loader(mixture))
    native = [key for key, label in got if label < mixture.offsets[1]]
    assert len(native) > 60  # more than one pass of the 60-sample recipe
    assert len(set(native)) == len(native)  # every pass rendered new instances


def test_per_source_batching_for_sources_of_different_sizes(sources):
    with pytest.raises(ConfigError, match=r"batching: source 0 .* and source 1 .* give different samples \(shape"):
        MixedStream(_streams(sources, "a") + _streams(sources, ["big"]), [1, 1])
    mixture = MixedStream(_streams(sources, "a") + [FractalStream(sources["big"])], [1, 1], batching="per_source", seed=4)
    loader = FractalLoader(mixture, batch_size=3)
    shapes = set()
    count = 0
    for images, labels, source in loader:
        assert len(set(source.tolist())) == 1  # one source per batch
        k = int(source[0])
        shapes.add((k, tuple(images.shape[1:])))
        assert all(_source_of(int(label), mixture) == k for label in labels)
        count += len(labels)
    assert shapes == {(0, (3, 32, 32)), (1, (3, 48, 48))} and count == len(mixture)
    with pytest.raises(ConfigError, match="per_source mixture has one layout per source"):
        _ = mixture.layout
    assert len(mixture.layouts) == 2


def test_spec_through_the_cli_pins_versions_and_refuses_bad_ones(sources, tmp_path, capsys):
    spec_path = tmp_path / "mixture.json"
    assert main(["mix", sources["a"], sources["b"], "--weights", "3,1", "--out", str(spec_path)]) == 0
    spec = open_spec(str(spec_path))
    assert [s.weight for s in spec.sources] == [3.0, 1.0] and all(len(s.version) == 16 for s in spec.sources)
    from_spec = MixedStream.from_spec(str(spec_path), decode="raw")
    by_hand = MixedStream(_streams(sources, "ab", decode="raw"), [3, 1])
    assert [s["__key__"] for s in from_spec] == [s["__key__"] for s in by_hand]
    assert main(["info", str(spec_path)]) == 0
    assert "source 1   25.0%" in capsys.readouterr().out
    assert main(["verify", str(spec_path)]) == 0
    assert "ok: mixture" in capsys.readouterr().out
    dest = tmp_path / "pub"
    assert main(["publish", str(spec_path), str(dest), "--tag", "v1"]) == 0
    assert main(["ls", str(dest)]) == 0
    assert "mixture" in capsys.readouterr().out
    assert MixedStream.from_spec(f"{dest}@v1").version == spec.version

    data = json.loads(spec_path.read_text())
    cases = {
        r"sources\[1\]: weight -1 is not valid; use a finite number >= 0": lambda d: d["sources"][1].update(weight=-1),
        "weights sum to 0": lambda d: [s.update(weight=0) for s in d["sources"]],
        r"sources\[0\]: weight '3' is not valid": lambda d: d["sources"][0].update(weight="3"),
        "is not pinned": lambda d: d["sources"][0].pop("version"),
        "version .* does not match its body": lambda d: d.update(seed=5),
    }
    for message, edit in cases.items():
        bad = json.loads(json.dumps(data))
        edit(bad)
        if "does not match" not in message:
            bad = _reseal(bad)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises((ConfigError, StoredDataError), match=message):  # read from storage: StoredDataError
            MixedStream.from_spec(str(path))
        assert main(["info", str(path)]) in (1, 2)  # refused in one line: stored data (1) or a bad argument (2)
    # A source that changed since the spec pinned it.
    changed = _reseal({**data, "sources": [dict(data["sources"][0], version="0" * 16), data["sources"][1]]})
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    with pytest.raises(ConfigError, match="source 0 .* is version .* but the spec pins 0000000000000000"):
        MixedStream.from_spec(str(tmp_path / "changed.json"))
    assert main(["verify", str(tmp_path / "changed.json")]) == 1
    # A spec is not a source of another spec.
    assert main(["mix", str(spec_path), sources["a"], "--weights", "1,1", "--out", str(tmp_path / "y.json")]) == 2
    assert "is a mixture spec, not a dataset or recipe" in capsys.readouterr().err
    # Shapes that differ are refused when the spec is written.
    assert main(["mix", sources["a"], sources["big"], "--weights", "1,1", "--out", str(tmp_path / "x.json")]) == 2
    assert "give different samples" in capsys.readouterr().err
    assert main(["mix", sources["a"], sources["big"], "--weights", "1,1", "--batching", "per_source",
                 "--out", str(tmp_path / "x.json")]) == 0  # fmt: skip


def _reseal(data: dict) -> dict:
    """An edited spec signed again, as someone with write access could (what is validated must still fail)."""
    fingerprint = canonical_hash({k: data.get(k) for k in ("name", "seed", "epoch_size", "labels", "batching", "sources")})
    return {**data, "fingerprint": fingerprint, "version": version_id(fingerprint)}


def test_a_mixture_from_s3_is_the_local_mixture(sources, s3_bucket, tmp_path):
    bucket, options = s3_bucket
    build(tiny_definition(4, 5, 7, name="mixa"), f"s3://{bucket}/mixa", storage_options=options, workers=0)
    remote = MixedStream(
        [FractalStream(f"s3://{bucket}/mixa", decode="raw", storage_options=options, cache_dir=str(tmp_path / "c")),
         FractalStream(sources["r"], decode="raw")], [2, 1], seed=9)  # fmt: skip
    local = MixedStream(_streams(sources, "ar", decode="raw"), [2, 1], seed=9)
    assert _items(_loader(remote, 2)) == _items(_loader(local))
    spec = make_spec([f"s3://{bucket}/mixa", sources["r"]], [2, 1], seed=9, storage_options=options)
    assert spec.sources[0].url == f"s3://{bucket}/mixa" and spec.sources[1].url == str(Path(sources["r"]).resolve())


def test_mixed_batches_train_a_real_step(sources):
    mixture = MixedStream(_streams(sources, "ab"), [1, 1], seed=1)
    images, labels = next(iter(FractalLoader(mixture, batch_size=8)))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, mixture.num_classes))
    loss = torch.nn.functional.cross_entropy(model(images.float() / 255), labels)
    loss.backward()
    assert labels.max() < mixture.num_classes and torch.isfinite(loss)


def test_two_families_mix_within_batches_and_two_kinds_batch_per_source(sources, tmp_path):
    def recipe(preset: str, **options) -> str:
        path = tmp_path / f"{preset}.json"
        path.write_text(Recipe(DatasetDefinition.from_preset(preset, **options)).to_json())
        return str(path)

    onep = recipe("1p-frac", categories=3, render={"size": 32, "points": 1500})  # another family, 32 px images
    points = recipe("pc-fractaldb-1k", categories=2, instances=3)  # another kind: point clouds
    atoms = recipe("visualatom-1k", categories=2, instances=2, render={"mode": "native"})  # 512 px contours
    families = MixedStream([FractalStream(sources["a"]), FractalStream(onep)], [1, 1], seed=3)
    labels = torch.cat([labels for _, labels in FractalLoader(families, batch_size=8)])
    assert set(labels.tolist()) == set(range(4 + 3)) and families.num_classes == 7
    with pytest.raises(ConfigError, match="kind 'image' vs 'points'"):
        MixedStream([FractalStream(sources["a"]), FractalStream(points)], [1, 1])
    kinds = MixedStream([FractalStream(sources["a"]), FractalStream(points)], [1, 1], batching="per_source", seed=2)
    seen = set()
    for data, _, source in FractalLoader(kinds, batch_size=3):
        seen.add((int(source[0]), tuple(data.shape[1:])))
    assert seen == {(0, (3, 32, 32)), (1, (9999, 3))}
    # Fresh instances of a native contour family, in a mixture: its second pass draws instances 2 and 3.
    fresh = MixedStream(
        [FractalStream(sources["r"], decode="raw"), FractalStream(atoms, fresh_instances=True, decode="raw")],
        [1, 3],
        epoch_size=12,
        seed=1,
    )
    got = _items(_loader(fresh))
    contour = [key for key, label in got if label >= fresh.offsets[1]]
    assert len(contour) > 4 and len(set(contour)) == len(contour)
    assert {int(key.split("-")[1]) for key in contour} >= {0, 1, 2, 3}


def test_a_mixture_state_bounds_the_replay_its_sources_ask_for_together(sources):
    from fractalshards.limits import Limits

    mixture = MixedStream(_streams(sources, "ab"), [1, 1])
    loader = _loader(mixture)
    state = loader.state_dict()
    # Each source's levels alone within replay_ranks, both together over it: refused before any replay.
    level = {"world_size": 3, "shuffle_buffer": 1000, "pad": True, "samples_seen": 1}
    for src in state["sources"]:
        src["history"] = [level] * 4  # 12 ranks of levels + its own 1: 13 each, 26 together
    small = MixedStream([FractalStream(sources[k], limits=Limits(replay_ranks=20)) for k in "ab"], [1, 1])
    with pytest.raises(ConfigError, match="ranks of the sources' levels 26 is above the limit of 20"):
        _loader(small).load_state_dict(state)
