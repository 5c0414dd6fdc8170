"""The fuzzing harness, sample members: a mask (``.seg.png``), a point cloud (``.npy``) or an image
(``.png``) of a stored shard, its bytes mutated (edits, cuts, extensions, a lying header), the shard
re-signed, then read by the stream in every decode mode, ``verify`` and the preview, under the
resource guard of ``test_stored_formats``."""

from __future__ import annotations

import shutil

import pytest
from helpers import forge_shard
from hypothesis import given
from hypothesis import strategies as st
from test_stored_formats import read

from fractalshards.builder import build
from fractalshards.definition import DatasetDefinition
from fractalshards.preview import preview_from_dataset
from fractalshards.publisher import publish
from fractalshards.stream import FractalStream
from fractalshards.verifier import verify

CASES = {
    "mask": ("segrcdb", {"size": 48, "instances_per_image": 3}, "seg.png", ("numpy", "tensor", "packed")),
    "points": ("pc-fractaldb-1k", {"main_points": 200, "other_points": 50}, "npy", ("numpy", "tensor", "float")),
    "image": ("fractaldb-100", {"size": 40, "points": 2000}, "png", ("numpy", "packed", "float")),
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    out = {}
    for case, (preset, render, _, _) in CASES.items():
        kw = {} if preset == "segrcdb" else {"categories": 2}
        d = DatasetDefinition.from_preset(preset, instances=3, shard_size=3, render=render, **kw)
        folder = tmp_path_factory.mktemp(case) / "ds"
        build(d, str(folder), workers=0)
        out[case] = folder
    return out


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["flip", "cut", "extend", "header"]))
        if how == "flip" and out:
            at = draw(st.integers(0, len(out) - 1))
            out[at] ^= draw(st.integers(1, 255))
        elif how == "cut":
            out = out[: draw(st.integers(0, len(out)))]
        elif how == "extend":
            out += draw(st.binary(min_size=1, max_size=64))
        elif how == "header" and len(out) > 24:  # the first bytes hold sizes and types in both formats
            at = draw(st.integers(8, 24))
            out[at : at + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(out)


@pytest.mark.parametrize("case", sorted(CASES))
@given(data=st.data())
def test_a_mutated_member_is_read_or_refused_by_every_reader(datasets, tmp_path_factory, case, data):
    _, _, member, decodes = CASES[case]
    folder = tmp_path_factory.mktemp("member") / "ds"
    shutil.copytree(datasets[case], folder)
    done = False

    def mutate(members):
        nonlocal done
        out = []
        for name, body in members:
            if not done and name.split(".", 1)[1] == member:
                body, done = data.draw(mutated_bytes(body)), True
            out.append((name, body))
        return out

    forge_shard(folder, "shard-000000.tar", mutate)
    for decode in decodes:
        read(lambda: list(FractalStream(str(folder), shuffle=False, decode=decode)))
    read(lambda: verify(str(folder), render_sample=3))
    read(lambda: preview_from_dataset(str(folder), 1, 2))
    shutil.rmtree(folder.parent)


@st.composite
def restructured(draw, members: list) -> list:
    """A shard's member list with structural mutations: members duplicated, dropped, swapped, renamed
    or added (under a sample's key or not)."""
    out = list(members)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, max(0, len(out) - 1)))
        how = draw(st.sampled_from(["duplicate", "drop", "swap", "rename", "add"]))
        if how == "duplicate" and out:
            out.insert(i, out[i])
        elif how == "drop" and out:
            out.pop(i)
        elif how == "swap" and len(out) > 1:
            j = draw(st.integers(0, len(out) - 1))
            out[i], out[j] = out[j], out[i]
        elif how == "rename" and out:
            key = out[i][0].split(".", 1)[0]
            ext = draw(st.sampled_from(["png", "cls", "json", "pyd", "PNG", "seg.png", "npy", "txt", "png.png"]))
            out[i] = (f"{key}.{ext}", out[i][1])
        elif how == "add":
            key = out[i][0].split(".", 1)[0] if out and draw(st.booleans()) else draw(st.sampled_from(["x", "999999-9999"]))
            out.insert(i, (f"{key}.{draw(st.sampled_from(['cls', 'json', 'pyd', 'bin']))}", draw(st.binary(max_size=32))))
    return out


@given(data=st.data())
def test_a_restructured_shard_is_read_or_refused_by_every_reader_and_publish(datasets, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("tar") / "ds"
    shutil.copytree(datasets["image"], folder)
    forge_shard(folder, "shard-000000.tar", lambda members: data.draw(restructured(members)))
    for decode in ("raw", "numpy", "packed"):
        read(lambda: list(FractalStream(str(folder), shuffle=False, decode=decode)))
    read(lambda: verify(str(folder), render_sample=2))
    read(lambda: publish(str(folder), str(folder.parent / "pub"), card=True))  # the card's preview reads the shards
    shutil.rmtree(folder.parent)
