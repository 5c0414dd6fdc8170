"""The one on-disk cache of saved generator states: sound files are read, anything else is computed again."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fractalshards.statecache import StateLayout, saved_states, states_path

LAYOUT = StateLayout(rows={"states": ((3, 4), np.uint32), "valid": ((5,), np.bool_)}, fixed={"next": ((4,), np.uint32)}, most=6)


def _arrays(count: int, fill: int = 7) -> dict:
    return {
        "states": np.full((count, 3, 4), fill, np.uint32),
        "valid": np.ones((count, 5), bool),
        "next": np.arange(4, dtype=np.uint32),
    }


class Calls:
    """Counts what saved_states asks the family to compute."""

    def __init__(self) -> None:
        self.extended: list = []

    def extend(self, saved: dict | None) -> dict:
        self.extended.append(None if saved is None else len(saved["valid"]))
        return _arrays(2 if saved is None else len(saved["valid"]) + 2)


def _load(key: dict, calls: Calls, upto: int = 1, check=lambda saved: True) -> dict:
    return saved_states("toy", key, LAYOUT, enough=lambda saved: len(saved["valid"]) > upto, extend=calls.extend, check=check)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTALSHARDS_CACHE", str(tmp_path))
    return tmp_path


def test_states_are_computed_once_then_read_and_extended_only_when_asked(cache):
    calls = Calls()
    first = _load({"seed": 1}, calls)
    assert calls.extended == [None] and states_path("toy", {"seed": 1}).is_file()
    again = _load({"seed": 1}, calls)
    assert calls.extended == [None]  # read, not computed
    assert all(np.array_equal(first[k], again[k]) for k in first)
    longer = _load({"seed": 1}, calls, upto=3)
    assert calls.extended == [None, 2] and len(longer["valid"]) == 4
    _load({"seed": 2}, calls)  # another stream, another file
    assert calls.extended == [None, 2, None]


def test_a_file_failing_the_spot_check_is_computed_again(cache):
    calls = Calls()
    _load({"seed": 1}, calls)
    _load({"seed": 1}, calls, check=lambda saved: False)
    assert calls.extended == [None, None]


def _npz(arrays: dict, compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as archive:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=True)  # a planted file may pickle
            archive.writestr(name + ".npy", member.getvalue())
    return buf.getvalue()


BAD_FILES = {
    "truncated": _npz(_arrays(2))[:200],
    "not a zip": b"not an npz",
    "a missing array": _npz({k: v for k, v in _arrays(2).items() if k != "next"}),
    "an extra array": _npz({**_arrays(2), "more": np.zeros(3)}),
    "a wrong dtype": _npz({**_arrays(2), "states": np.zeros((2, 3, 4), np.int64)}),
    "a wrong shape": _npz({**_arrays(2), "valid": np.ones((2, 6), bool)}),
    "rows that disagree": _npz({**_arrays(2), "valid": np.ones((3, 5), bool)}),
    "more rows than the layout allows": _npz(_arrays(7)),
    "no rows": _npz(_arrays(0)),
    "a deflated member": _npz(_arrays(2), zipfile.ZIP_DEFLATED),
    "a pickled object array": _npz({**_arrays(2), "next": np.array([None] * 4, object)}),
}


@pytest.mark.parametrize("what", sorted(BAD_FILES))
def test_an_unsound_file_is_computed_again_and_rewritten(cache, what):
    path = states_path("toy", {"seed": 1})
    path.parent.mkdir(parents=True)
    path.write_bytes(BAD_FILES[what])
    calls = Calls()
    saved = _load({"seed": 1}, calls)
    assert calls.extended == [None], what
    assert len(saved["valid"]) == 2
    calls_again = Calls()
    _load({"seed": 1}, calls_again)
    assert calls_again.extended == []  # the rewritten file is sound


def test_a_file_larger_than_the_layout_allows_is_not_read(cache):
    path = states_path("toy", {"seed": 1})
    path.parent.mkdir(parents=True)
    path.write_bytes(_npz(_arrays(2)) + b"\0" * (LAYOUT.max_bytes() + 1))
    calls = Calls()
    _load({"seed": 1}, calls)
    assert calls.extended == [None]


def test_a_symlink_in_the_cache_is_not_followed(cache, tmp_path):
    elsewhere = tmp_path / "elsewhere.npz"
    elsewhere.write_bytes(_npz(_arrays(2, fill=99)))
    path = states_path("toy", {"seed": 1})
    path.parent.mkdir(parents=True)
    os.symlink(elsewhere, path)
    calls = Calls()
    saved = _load({"seed": 1}, calls)
    assert calls.extended == [None] and int(saved["states"][0, 0, 0]) == 7
    assert not path.is_symlink() and elsewhere.read_bytes() == _npz(_arrays(2, fill=99))  # replaced, not written through


@given(data=st.data())
def test_fuzzed_cache_files_are_either_sound_or_computed_again(cache, data):
    good = bytearray(_npz(_arrays(2)))
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), max_size=6))
    for at, value in edits:
        good[at] = value
    cut = data.draw(st.integers(0, len(good)))
    path = states_path("toy", {"seed": 1})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(good[:cut]))
    calls = Calls()
    saved = _load({"seed": 1}, calls)
    for name, (shape, dtype) in LAYOUT.expected(len(saved["valid"])).items():
        assert saved[name].shape == shape and saved[name].dtype == dtype
    assert 0 < len(saved["valid"]) <= LAYOUT.most
