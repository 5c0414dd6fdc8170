"""FractalStream / FractalLoader over real shards: splits, order, resume, integrity, S3."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import reseal, tiny_definition

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.errors import ConfigError
from fractalshards.families.fractaldb.instances import instance_from_index
from fractalshards.families.fractaldb.render import RenderSettings, render
from fractalshards.loader import FractalLoader
from fractalshards.presets import load_preset
from fractalshards.stream import FractalStream, ShardIntegrityError

SETTINGS = RenderSettings(mode="official", size=48, points=8_000, seed=1)


def _definition() -> DatasetDefinition:
    # 13 x 5 = 65 samples in 5 shards (14, 14, 14, 14, 9): neither divides by 3.
    return tiny_definition(13, 5, 14, size=48, points=8_000)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream") / "ds"
    build(_definition(), str(out), workers=0)
    return out


def keys_of(stream: FractalStream) -> list[str]:
    raw = FractalStream(
        stream.url,
        rank=stream.rank,
        world_size=stream.world_size,
        shuffle=stream.shuffle,
        seed=stream.seed,
        shuffle_buffer=stream.shuffle_buffer,
        pad=stream.pad,
        decode="raw",
    )
    raw.set_epoch(stream.epoch)
    return [s["__key__"] for s in raw]


def test_yields_every_sample_once_as_uint8_chw_and_label(dataset):
    stream = FractalStream(str(dataset), shuffle=False)
    pairs = list(stream)
    assert len(pairs) == len(stream) == 65
    image, label = pairs[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 48) and isinstance(label, int)
    keys = keys_of(stream)
    assert len(set(keys)) == 65
    # Pixels are the renderer's, grey expanded to 3 channels.
    cat, inst = (int(x) for x in keys[0].split("-"))
    expected = render(load_preset("fractaldb-100").category(cat).system, cat, instance_from_index(inst), SETTINGS).image
    assert label == cat
    for c in range(3):
        np.testing.assert_array_equal(image[c].numpy(), expected)


def test_decode_modes(dataset):
    img_f, _ = next(iter(FractalStream(str(dataset), decode="float", shuffle=False)))
    img_u, _ = next(iter(FractalStream(str(dataset), decode="tensor", shuffle=False)))
    assert img_f.dtype == torch.float32
    torch.testing.assert_close(img_f, (img_u.float() / 255 - 0.2) / 0.5)
    arr, _ = next(iter(FractalStream(str(dataset), decode="numpy", shuffle=False)))
    assert arr.shape == (48, 48, 3) and arr.dtype == np.uint8
    flipped, _ = next(iter(FractalStream(str(dataset), transform=lambda t: t.flip(-1), shuffle=False)))
    torch.testing.assert_close(flipped, img_u.flip(-1))


def test_epochs_are_deterministic_and_differ(dataset):
    a = FractalStream(str(dataset), seed=7, shuffle_buffer=10)
    b = FractalStream(str(dataset), seed=7, shuffle_buffer=10)
    assert keys_of(a) == keys_of(b)
    first = keys_of(a)
    a.set_epoch(1)
    second = keys_of(a)
    assert sorted(first) == sorted(second) and first != second
    assert keys_of(FractalStream(str(dataset), seed=8, shuffle_buffer=10)) != first
    # The cheap layout agrees with what iteration yields.
    layout = a.epoch_keys()
    assert len(layout) == 65 and len(set(layout)) == 65


def test_three_ranks_get_equal_counts_and_cover_everything(dataset):
    per_rank = []
    for rank in range(3):
        stream = FractalStream(str(dataset), rank=rank, world_size=3, seed=3, shuffle_buffer=8)
        keys = keys_of(stream)
        assert len(keys) == len(stream) == 22
        per_rank.append(keys)
    union = Counter(k for keys in per_rank for k in keys)
    assert len(union) == 65  # nothing lost
    assert sum(union.values()) == 66 and sorted(union.values())[-1] == 2  # one documented padding repeat
    dropped = [len(keys_of(FractalStream(str(dataset), rank=r, world_size=3, pad=False))) for r in range(3)]
    assert dropped == [21, 21, 21]


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_dataloader_order_is_the_same_with_any_number_of_workers(dataset, workers):
    stream = FractalStream(str(dataset), seed=5, shuffle_buffer=16, decode="raw")
    loader = FractalLoader(stream, batch_size=4, num_workers=workers, collate_fn=lambda batch: [s["__key__"] for s in batch])
    got = [k for batch in loader for k in batch]
    assert got == keys_of(FractalStream(str(dataset), seed=5, shuffle_buffer=16))
    assert len(loader) == 17


@pytest.mark.parametrize("workers,resume_workers", [(0, 0), (1, 1), (2, 2), (2, 0)])
def test_exact_mid_epoch_resume(dataset, workers, resume_workers):
    def loader(nw):
        stream = FractalStream(str(dataset), seed=11, shuffle_buffer=12)
        stream.set_epoch(2)
        return FractalLoader(stream, batch_size=5, num_workers=nw)

    full = [int(x) for _, labels in loader(0) for x in labels]
    first = loader(workers)
    seen = []
    for i, (_, labels) in enumerate(first):
        seen += labels.tolist()
        if i == 5:
            break
    state = json.loads(json.dumps(first.state_dict()))  # JSON-able
    assert state["samples_seen"] == 30 and state["epoch"] == 2 and state["world_size"] == 1
    second = loader(resume_workers)
    second.load_state_dict(state)
    rest = [int(x) for _, labels in second for x in labels]
    assert seen + rest == full
    # After the epoch the loader moves on to the next one.
    assert second.state_dict()["epoch"] == 3 and second.state_dict()["samples_seen"] == 0


def test_state_from_another_setup_is_refused(dataset):
    a = FractalLoader(FractalStream(str(dataset), seed=1), batch_size=4)
    b = FractalLoader(FractalStream(str(dataset), seed=2), batch_size=4)
    with pytest.raises(ConfigError, match="seed"):
        b.load_state_dict(a.state_dict())
    with pytest.raises(ConfigError, match="shard_set"):
        FractalLoader(FractalStream(str(dataset), seed=1, shards=["shard-000000.tar"]), batch_size=4).load_state_dict(
            a.state_dict()
        )


def _rewrite_shard(folder: Path, shard: str, mutate) -> None:
    """Rewrite a shard with `mutate(members) -> members` and fix its manifest entry (size, sha256)."""
    path = folder / shard
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in mutate(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    manifest = json.loads((folder / "manifest.json").read_text())
    for s in manifest["shards"]:
        if s["name"] == shard:
            s["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
            s["bytes"] = len(buf.getvalue())
    (folder / "manifest.json").write_text(json.dumps(reseal(manifest)))


def test_corrupt_shards_raise_errors_naming_them(dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    data = (copy / "shard-000002.tar").read_bytes()
    (copy / "shard-000002.tar").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ShardIntegrityError, match="shard-000002.tar"):
        list(FractalStream(str(copy), shuffle=False, verify=True))
    with pytest.raises(ShardIntegrityError, match="shard-000002.tar"):
        list(FractalStream(str(copy), shuffle=False))  # even without verify, named
    altered = bytearray(data)
    altered[len(altered) // 3] ^= 0xFF
    (copy / "shard-000002.tar").write_bytes(bytes(altered))
    with pytest.raises(ShardIntegrityError, match="shard-000002.tar.*sha256"):
        list(FractalStream(str(copy), shuffle=False, verify=True))


def test_never_unpickles_and_rejects_unsafe_names(dataset, tmp_path):
    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "PWNED",))

    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    _rewrite_shard(
        copy,
        "shard-000000.tar",
        lambda ms: [(n, d) for n, d in ms] + [(ms[0][0].rsplit(".", 1)[0] + ".pyd", pickle.dumps(Boom()))],
    )
    # A member outside the kind's (a pickle a plain webdataset .decode() would load) is refused, never read.
    for decode in ("raw", "tensor"):
        with pytest.raises(ShardIntegrityError, match=r"shard-000000\.tar: member '.*\.pyd' is not one of its samples' members"):
            list(FractalStream(str(copy), shuffle=False, decode=decode, verify=True))
    assert not (tmp_path / "PWNED").exists()
    shutil.rmtree(copy)
    shutil.copytree(dataset, copy)
    _rewrite_shard(copy, "shard-000001.tar", lambda ms: [("../" + ms[0][0], ms[0][1])] + ms[1:])
    with pytest.raises(ShardIntegrityError, match=r"shard-000001.tar: unsafe member name"):
        list(FractalStream(str(copy), shuffle=False))


def test_stream_from_s3_with_cache(tmp_path, s3_bucket, dataset):
    import s3fs

    bucket, options = s3_bucket
    build(_definition(), f"s3://{bucket}/ds", storage_options=options, workers=0)
    local = [(img, label) for img, label in FractalStream(str(dataset), seed=2)]
    cache = tmp_path / "cache"
    remote = FractalStream(f"s3://{bucket}/ds", seed=2, verify=True, cache_dir=str(cache), storage_options=options)
    got = list(remote)
    assert [l for _, l in got] == [l for _, l in local]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(got, local))
    assert len(list(cache.rglob("shard-*.tar"))) == 5
    # A limit of one shard's size keeps at most one shard (the most recent).
    biggest = max(s.bytes for s in remote.manifest.shards)
    limited = FractalStream(
        f"s3://{bucket}/ds", cache_dir=str(tmp_path / "small"), cache_limit=biggest + 1, storage_options=options
    )
    assert len(list(limited)) == 65
    assert len(list((tmp_path / "small").rglob("shard-*.tar"))) == 1
    # DataLoader workers (forked) open their own S3 filesystem: async s3fs is not fork-safe.
    loader = FractalLoader(FractalStream(f"s3://{bucket}/ds", seed=2, storage_options=options), batch_size=8, num_workers=2)
    assert [int(x) for _, labels in loader for x in labels] == [l for _, l in local]
    # The cache serves the next epoch even when the bucket's shards are gone.
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    for i in range(5):
        fs.rm(f"{bucket}/ds/shard-{i:06d}.tar")
    remote.set_epoch(1)
    assert len(list(remote)) == 65


def test_bad_arguments(dataset):
    with pytest.raises(ConfigError, match="decode"):
        FractalStream(str(dataset), decode="pickle")
    with pytest.raises(ConfigError, match="rank"):
        FractalStream(str(dataset), rank=3, world_size=3)
    with pytest.raises(ConfigError, match="manifest.json"):
        FractalStream(str(dataset / "nope"))
    with pytest.raises(ConfigError, match="shards"):
        FractalStream(str(dataset), shards=["shard-999999.tar"])


def test_file_url_is_the_same_dataset(dataset):
    plain = [label for _, label in FractalStream(str(dataset), seed=4)]
    assert [label for _, label in FractalStream(f"file://{dataset}", seed=4)] == plain


def _run_ranks(
    url: str, world: int, batch: int, workers: int, stop_after: int | None, state: dict | None = None, buffer: int = 12
) -> tuple[list[list[str]], dict]:
    """Each of ``world`` ranks reads ``stop_after`` batches (all when None); returns keys per rank and rank 0's state."""
    keys, states = [], []
    for rank in range(world):
        stream = FractalStream(url, rank=rank, world_size=world, seed=9, shuffle_buffer=buffer, decode="raw")
        loader = FractalLoader(stream, batch_size=batch, num_workers=workers, collate_fn=lambda b: [s["__key__"] for s in b])
        if state is not None:
            loader.load_state_dict(json.loads(json.dumps(state)))
        got = []
        for i, batch_keys in enumerate(loader):
            got += batch_keys
            if stop_after is not None and i + 1 == stop_after:
                break
        keys.append(got)
        states.append(loader.state_dict())
    assert all(s["samples_seen"] == states[0]["samples_seen"] for s in states)  # lockstep
    return keys, states[0]


@pytest.mark.parametrize(
    "plan",
    [
        [(4, 3, 0, 2), (3, 5, 2, None)],  # 4 -> 3 ranks, batch 3 -> 5, workers 0 -> 2
        [(4, 2, 1, 2), (2, 4, 0, 2), (6, 2, 2, None)],  # 4 -> 2 -> 6 ranks, composed
        [(2, 4, 2, 3), (2, 3, 0, None)],  # same ranks, another batch size and worker count
    ],
)
def test_elastic_resume_consumes_exactly_one_epoch(dataset, plan):
    url = str(dataset)
    consumed: list[str] = []
    state = None
    for k, (world, batch, workers, stop) in enumerate(plan):
        keys, new_state = _run_ranks(url, world, batch, workers, stop, state)
        assert len({len(k_) for k_ in keys}) == 1  # every rank yields the same count
        consumed += [key for rank_keys in keys for key in rank_keys]
        state = new_state
    counts = Counter(consumed)
    assert set(counts) == set(keys_of(FractalStream(url, shuffle=False)))  # the whole epoch
    # Each sample once, plus the documented padding (fewer than the ranks of each level).
    assert sum(counts.values()) - len(counts) < sum(world for world, *_ in plan)
    assert state["epoch"] == 1 and state["samples_seen"] == 0  # the resumed epoch ran to its end


def test_elastic_resume_order_does_not_depend_on_workers(dataset):
    _, state = _run_ranks(str(dataset), 4, 3, 0, 2)
    a, _ = _run_ranks(str(dataset), 3, 5, 0, None, state)
    b, _ = _run_ranks(str(dataset), 3, 2, 2, None, state)
    assert a == b


def test_persistent_workers_give_the_batches_of_fresh_workers(dataset):
    def epochs(persistent: bool) -> list[list[int]]:
        stream = FractalStream(str(dataset), seed=6, shuffle_buffer=10)
        loader = FractalLoader(stream, batch_size=4, num_workers=2, persistent_workers=persistent)
        out = []
        for _ in range(3):
            out.append([int(x) for _, labels in loader for x in labels])
        return out

    fresh, persistent = epochs(False), epochs(True)
    assert fresh == persistent
    assert fresh[0] != fresh[1] != fresh[2] and sorted(fresh[0]) == sorted(fresh[2])


def test_persistent_workers_follow_a_loaded_state_and_a_break(dataset):
    stream = FractalStream(str(dataset), seed=6, shuffle_buffer=10)
    loader = FractalLoader(stream, batch_size=4, num_workers=2, persistent_workers=True)
    full = [[int(x) for x in labels] for _, labels in loader]  # epoch 0
    stream2 = FractalStream(str(dataset), seed=6, shuffle_buffer=10)
    fresh = FractalLoader(stream2, batch_size=4, num_workers=0)
    fresh.set_epoch(0)
    for i, _ in enumerate(fresh):
        if i == 2:
            break
    state = fresh.state_dict()
    loader.load_state_dict(state)  # the live workers must learn it
    rest = [[int(x) for x in labels] for _, labels in loader]
    assert rest == full[3:]
    first = next(iter(loader))  # the next epoch, then a break
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["samples_seen"] == 4
    again = [[int(x) for x in labels] for _, labels in loader]
    stream3 = FractalStream(str(dataset), seed=6, shuffle_buffer=10)
    reference = FractalLoader(stream3, batch_size=4)
    reference.set_epoch(1)
    expected = [[int(x) for x in labels] for _, labels in reference]
    assert [first[1].tolist()] + again == expected


def test_a_corrupt_png_or_label_names_the_shard_and_sample(dataset, tmp_path):
    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)

    def corrupt(members):
        out = list(members)
        name, data = out[2]  # the first sample's png
        out[2] = (name, data[:40] + b"\x00" * 40 + data[80:])
        return out

    _rewrite_shard(copy, "shard-000001.tar", corrupt)  # the manifest is resealed: hashes agree
    key = None
    with tarfile.open(copy / "shard-000001.tar") as tar:
        key = tar.getmembers()[2].name.split(".")[0]
    broken = rf"shard-000001.tar: sample '{key}' has an image that (does not decode|is not a sound PNG)"
    with pytest.raises(ShardIntegrityError, match=broken):
        list(FractalStream(str(copy), shuffle=False))
    _rewrite_shard(copy, "shard-000002.tar", lambda ms: [(ms[0][0], b"seven")] + ms[1:])
    with pytest.raises(ShardIntegrityError, match=r"shard-000002.tar: sample .* label b'seven'"):
        list(FractalStream(str(copy), shuffle=False, shards=["shard-000002.tar"]))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_partly_consumed_stream_exits_without_a_traceback(built_dataset, workers):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from fractalshards.loader import FractalLoader\n"
        "from fractalshards.stream import FractalStream\n"
        "stream = FractalStream(sys.argv[1])\n"
        "print(next(iter(stream))[1])\n"
        f"print(next(iter(FractalLoader(FractalStream(sys.argv[1]), batch_size=2, num_workers={workers})))[1].tolist())\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(built_dataset)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
