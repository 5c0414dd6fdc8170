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
