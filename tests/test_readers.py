"""Other tools read our datasets: Hugging Face datasets, Ray Data (and fractalshards.raydata), webdataset, tar."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from helpers import forge_shard

from fractalshards.dataset import open_manifest
from fractalshards.png import decode as decode_png
from fractalshards.tarformat import read_samples


@pytest.fixture
def built(built_dataset) -> Path:
    return built_dataset


def _truth(url: str) -> dict:
    """key -> (grey pixels, label) from our own reader."""
    manifest, store = open_manifest(url)
    return {
        s["__key__"]: (decode_png(s["png"]), int(s["cls"]))
        for shard in manifest.shards
        for s in read_samples(store.read_bytes(shard.name, shard.bytes, exact=True), shard.name)
    }


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from fractalshards.builder import ray_init_local

    ray_init_local(2)
    yield
    ray.shutdown()


def test_hugging_face_datasets_reads_images_and_labels(built, tmp_path):
    import datasets

    truth = _truth(str(built))
    files = sorted(str(p) for p in built.glob("shard-*.tar"))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == len(truth) == 12
    for row in ds:
        pixels, label = truth[row["__key__"]]
        assert row["cls"] == label and row["json"]["category"] == label
        assert np.array_equal(np.asarray(row["png"].convert("L")), pixels)  # the 1-bit PNG's palette applied


def test_ray_data_read_webdataset_and_read_dataset(built, local_ray):
    import ray.data

    from fractalshards.raydata import read_dataset

    truth = _truth(str(built))
    rows = ray.data.read_webdataset(sorted(str(p) for p in built.glob("shard-*.tar"))).take_all()
    assert {r["__key__"]: r["cls"] for r in rows} == {k: v[1] for k, v in truth.items()}
    # Its default decoder gives the palette indices of our 1-bit PNGs, not grey levels (0/1, not 0/127).
    assert {int(v) for r in rows for v in np.unique(r["png"])} <= {0, 1}
    ours = read_dataset(str(built)).take_all()
    assert len(ours) == 12 and {r["key"] for r in ours} == set(truth)
    for r in ours:
        pixels, label = truth[r["key"]]
        assert r["label"] == label and np.array_equal(r["image"], pixels) and r["image"].dtype == np.uint8
    part = read_dataset(str(built), shards=["shard-000001.tar"], decode=False).take_all()
    assert len(part) == 5 and all(isinstance(r["png"], bytes) for r in part)


def test_read_dataset_refuses_a_replaced_shard(built, tmp_path, local_ray):
    import shutil

    from fractalshards.errors import ConfigError
    from fractalshards.raydata import read_dataset

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / "shard-000000.tar").write_bytes((copy / "shard-000001.tar").read_bytes())
    with pytest.raises(Exception, match="sha256 does not match"):
        read_dataset(str(copy)).take_all()
    with pytest.raises(ConfigError, match="is not a shard"):
        read_dataset(str(copy), shards=["../secret.tar"])
    # Relabelled and re-signed, as a bucket owner could: the plan check still refuses it.
    shutil.rmtree(copy)
    shutil.copytree(built, copy)
    forge_shard(copy, "shard-000001.tar", lambda members: [(n, b"0" if n.endswith(".cls") else b) for n, b in members])
    with pytest.raises(Exception, match="has label"):
        read_dataset(str(copy)).take_all()
    # Issue 29's classes through Ray Data too: a member outside the kind, a PNG with a second IHDR, a
    # shard swapped for a huge file (read no further than its manifest states).
    from test_png_strict import _join, _second_ihdr, _split

    crafted = {
        "a member outside the kind": (lambda ms: [*ms, (ms[0][0].split(".")[0] + ".pyd", b"\x80\x04N.")], "is not one of"),
        "a second IHDR": (lambda ms: [(n, _join(_second_ihdr(_split(b))) if n.endswith(".png") else b) for n, b in ms], "IHDR"),
    }
    for mutate, message in crafted.values():
        shutil.rmtree(copy)
        shutil.copytree(built, copy)
        forge_shard(copy, "shard-000001.tar", mutate)
        for decode in (True, False):
            with pytest.raises(Exception, match=message):
                read_dataset(str(copy), decode=decode).take_all()
    shutil.rmtree(copy)
    shutil.copytree(built, copy)
    with open(copy / "shard-000001.tar", "r+b") as fh:
        fh.truncate(3 << 30)
    with pytest.raises(Exception, match="3,221,225,472 bytes stored where the manifest states"):
        read_dataset(str(copy)).take_all()


def test_plain_webdataset_and_tar(built):
    import webdataset as wds

    truth = _truth(str(built))
    urls = sorted(str(p) for p in built.glob("shard-*.tar"))
    got = {
        s["__key__"]: (np.asarray(s["png"].convert("L")), s["cls"])
        for s in wds.WebDataset(urls, shardshuffle=False).decode("pil")
    }
    assert set(got) == set(truth)
    for key, (pixels, label) in got.items():
        assert label == truth[key][1] and np.array_equal(pixels, truth[key][0])
    listing = subprocess.run(["tar", "tf", urls[0]], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(urls[0]) as tar:
        assert listing == tar.getnames() and listing[:3] == [
            f"{listing[0][:-4]}.cls",
            f"{listing[0][:-4]}.json",
            f"{listing[0][:-4]}.png",
        ]


def test_wids_opens_a_built_and_a_published_dataset_from_its_index_sample_for_sample(built, tmp_path):
    import json

    import wids

    from fractalshards.cli import main
    from fractalshards.stream import FractalStream

    ours = list(FractalStream(str(built), shuffle=False, decode="raw"))
    manifest, _ = open_manifest(str(built))
    pub = tmp_path / "pub"
    assert main(["--no-progress", "publish", str(built), str(pub), "--tag", "v1", "--no-card"]) == 0
    for folder in (Path(built), pub / manifest.version):
        index = json.loads((folder / "wids-index.json").read_text())
        assert index["__kind__"] == "wids-shard-index-v1"
        assert [(s["url"], s["nsamples"], s["filesize"], s["sha256"]) for s in index["shardlist"]] == [
            (s.name, s.samples, s.bytes, s.sha256) for s in manifest.shards
        ]
        ds = wids.ShardListDataset(str(folder / "wids-index.json"), cache_dir=str(tmp_path / "wids"), transformations=[])
        assert len(ds) == len(ours)
        for i, mine in enumerate(ours):  # random access, in the stored order: the same members, byte for byte
            theirs = ds[i]
            assert theirs["__key__"] == mine["__key__"]
            assert {k: v.read() for k, v in theirs.items() if k.startswith(".")} == {
                f".{k}": v for k, v in mine.items() if not k.startswith("__")
            }
