"""The fuzzing harness: every stored JSON format (dataset manifest, recipe, publication index, category
manifest, loader state, sample record), mutated structurally by Hypothesis, read by every reader that
takes it, under a resource guard.

A case fails when a reader raises anything but the project's documented errors (``ConfigError`` and
its ``LimitError``, ``ShardIntegrityError`` and its ``StoredDataError``), takes more than a few seconds,
or grows the process by more than a few hundred MB. ``make test`` runs a fixed-seed budget (the
``ci`` profile of ``tests/conftest.py``); ``make fuzz`` runs the ``fuzz`` profile, longer and random.
"""

from __future__ import annotations

import contextlib
import copy
import json
import resource
import shutil
import time
from pathlib import Path

import pytest
from helpers import forge_shard
from hypothesis import given
from hypothesis import strategies as st

from fractalshards.catalog import read_index
from fractalshards.categories import CategoryManifest
from fractalshards.dataset import open_definition, open_manifest
from fractalshards.errors import ConfigError, ShardIntegrityError
from fractalshards.hashing import canonical_hash, version_id
from fractalshards.loader import FractalLoader
from fractalshards.mixspec import MixtureSpec
from fractalshards.mixture import MixedStream, make_spec
from fractalshards.preview import preview_from_dataset
from fractalshards.publisher import publish
from fractalshards.recipe import Recipe
from fractalshards.stream import FractalStream
from fractalshards.verifier import verify

#: What a reader may raise for bad input: one-line errors naming the field or the shard.
DOCUMENTED = (ConfigError, ShardIntegrityError)
SECONDS = 5.0
MEGABYTES = 300


@contextlib.contextmanager
def guard():
    """Time and memory of one case: at most SECONDS, and no new peak above MEGABYTES more."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    yield
    assert time.perf_counter() - start < SECONDS, f"took {time.perf_counter() - start:.1f} s"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    assert grown < MEGABYTES, f"the process grew by {grown:.0f} MB"


def read(reader, *args, **kwargs) -> None:
    """Run ``reader`` under the guard: it succeeds or raises a documented error."""
    with guard():
        try:
            reader(*args, **kwargs)
        except DOCUMENTED:
            pass


# -- structural mutations of a JSON document ------------------------------------------------------
EXTREME = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 2**31, 2**63, 10**29, -(10**29), 1e308, -1e308, 5e-324, "", "x" * 5000]),
    st.sampled_from([[], {}, [[[[[[[[[[[]]]]]]]]]]], {"a": {"b": {"c": {}}}}, "../../x", "shard-000000.tar", "\n"]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc[:8]):  # a few elements of long lists
            yield from _paths(value, (*prefix, i))


def _set(doc, path, value):
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw, genuine: dict) -> str:
    """``genuine`` with a few structural mutations, as text (some at the text level: duplicated keys,
    deep nesting, truncation)."""
    doc = copy.deepcopy(genuine)
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(doc))
        path = draw(st.sampled_from(paths))
        target = _get(doc, path)
        how = draw(st.sampled_from(["replace", "delete", "duplicate", "extend", "swap_type"]))
        if how == "replace" or not path:
            doc = _set(doc, path, copy.deepcopy(draw(EXTREME))) if path else doc
        elif how == "delete":
            parent = _get(doc, path[:-1])
            if isinstance(parent, dict):
                del parent[path[-1]]
            elif isinstance(parent, list) and parent:
                parent.pop(path[-1])
        elif how == "duplicate" and isinstance(target, list):
            target.extend(copy.deepcopy(target[:3]))
        elif how == "extend" and isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=12))] = copy.deepcopy(draw(EXTREME))  # no shared constants
        elif how == "swap_type":
            doc = _set(doc, path, [target] if not isinstance(target, list) else {"0": target})
    text = json.dumps(doc)
    tail = draw(st.sampled_from(["", "dup", "deep", "cut"]))
    if tail == "dup" and text.startswith("{") and len(text) > 2:
        first = next(iter(doc)) if isinstance(doc, dict) and doc else "x"
        text = "{" + json.dumps(first) + ": 1, " + text[1:]
    elif tail == "deep":
        text = "[" * 40 + text + "]" * 40
    elif tail == "cut":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    return text


# -- the genuine documents -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def genuine(built_dataset, tmp_path_factory):
    """The built dataset, its recipe and a publication of it: the documents every case starts from."""
    root = tmp_path_factory.mktemp("fuzz")
    pub = root / "pub"
    publish(str(built_dataset), str(pub), tags=["v1"], card=False)
    manifest, _ = open_manifest(str(built_dataset))
    recipe = Recipe(manifest.definition())
    stream = FractalStream(str(built_dataset), seed=1)
    loader = FractalLoader(stream, batch_size=4)
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    del it
    recipe_path = root / "recipe.json"
    recipe_path.write_text(recipe.to_json())
    spec = make_spec([str(built_dataset), str(recipe_path)], [3, 1], seed=2)
    mixed = MixedStream([FractalStream(str(built_dataset), seed=1), FractalStream(str(recipe_path), seed=1)], [3, 1])
    mixture = FractalLoader(mixed, batch_size=2)
    it = iter(mixture)
    next(it)
    mixture_state = mixture.state_dict()
    del it
    return {
        "dataset": built_dataset,
        "manifest": json.loads((built_dataset / "manifest.json").read_text()),
        "recipe": json.loads(recipe.to_json()),
        "index": json.loads((pub / "index.json").read_text()),
        "categories": json.loads((built_dataset / "manifest.json").read_text())["categories"],
        "state": state,
        "pub": pub,
        "spec": json.loads(spec.to_json()),
        "recipe_path": recipe_path,
        "mixture_state": mixture_state,
    }


def _copy(genuine, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("case") / "ds"
    shutil.copytree(genuine["dataset"], folder)
    return folder


# The genuine documents are built once per module; each case works on a fresh copy.
@given(data=st.data())
def test_a_mutated_dataset_manifest_is_read_or_refused_by_every_reader(genuine, tmp_path_factory, data):
    folder = _copy(genuine, tmp_path_factory)
    (folder / "manifest.json").write_text(data.draw(mutated(genuine["manifest"])))
    read(open_manifest, str(folder))
    read(lambda: list(FractalStream(str(folder), shuffle=False, decode="raw")))
    read(lambda: verify(str(folder)))
    read(lambda: preview_from_dataset(str(folder), 2, 2))
    read(lambda: publish(str(folder), str(folder.parent / "pub")))  # the card and its preview too
    shutil.rmtree(folder.parent)


@given(data=st.data())
def test_a_mutated_recipe_is_read_or_refused(genuine, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("recipe") / "recipe.json"
    text = data.draw(mutated(genuine["recipe"]))
    path.write_text(text)
    read(Recipe.from_json, text.encode(), "recipe.json")
    read(open_definition, str(path))
    read(lambda: next(iter(FractalStream(str(path), shuffle=False, decode="raw")), None))


@given(data=st.data())
def test_a_mutated_publication_index_is_read_or_refused(genuine, tmp_path_factory, data):
    pub = tmp_path_factory.mktemp("pub") / "pub"
    shutil.copytree(genuine["pub"], pub)
    (pub / "index.json").write_text(data.draw(mutated(genuine["index"])))
    read(read_index, str(pub))
    read(open_definition, f"{pub}@v1")
    read(open_definition, f"{pub}@latest")
    shutil.rmtree(pub.parent)


@given(data=st.data())
def test_a_mutated_sample_record_is_read_or_refused_by_verify_and_preview(genuine, tmp_path_factory, data):
    folder = _copy(genuine, tmp_path_factory)
    record = json.loads(next(m for n, m in _members(folder / "shard-000000.tar") if n.endswith(".json")))
    text = data.draw(mutated(record)).encode()
    first = True

    def mutate(members):
        nonlocal first
        out = []
        for name, body in members:
            if first and name.endswith(".json"):
                body, first = text, False
            out.append((name, body))
        return out

    forge_shard(folder, "shard-000000.tar", mutate)
    read(lambda: verify(str(folder), render_sample=12))
    read(lambda: preview_from_dataset(str(folder), 4, 3))
    read(lambda: publish(str(folder), str(folder.parent / "pub")))
    shutil.rmtree(folder.parent)


def _members(path: Path) -> list[tuple[str, bytes]]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(path.read_bytes())) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]


@given(data=st.data())
def test_a_mutated_category_manifest_is_read_or_refused(genuine, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cats") / "m.json"
    path.write_text(data.draw(mutated(genuine["categories"])))
    read(CategoryManifest.load, path)


@given(data=st.data())
def test_a_mutated_loader_state_is_loaded_or_refused(genuine, data):
    text = data.draw(mutated(json.loads(json.dumps(genuine["state"]))))
    try:
        state = json.loads(text)
    except ValueError:
        return  # not JSON at all: a state reaches the loader parsed (from a checkpoint), never as text
    loader = FractalLoader(FractalStream(str(genuine["dataset"]), seed=1), batch_size=4)
    read(loader.load_state_dict, state)


def _resealed(text: str) -> str | None:
    """A mutated spec signed again (as a bucket owner could): its fields must be checked, not just its hash."""
    try:
        doc = json.loads(text)
        body = {k: doc.get(k) for k in ("name", "seed", "epoch_size", "labels", "batching", "sources")}
        fingerprint = canonical_hash(body)
    except Exception:  # noqa: BLE001 - not JSON, or not hashable: the plain mutation covers it
        return None
    if not isinstance(doc, dict):
        return None
    return json.dumps({**doc, "fingerprint": fingerprint, "version": version_id(fingerprint)})


@given(data=st.data())
def test_a_mutated_mixture_spec_is_read_or_refused(genuine, tmp_path_factory, data):
    path = tmp_path_factory.mktemp("mixture") / "mixture.json"
    text = data.draw(mutated(genuine["spec"]))
    for variant in (text, _resealed(text)):
        if variant is None:
            continue
        path.write_text(variant)
        read(MixtureSpec.from_json, variant.encode(), "mixture.json")
        read(lambda: next(iter(MixedStream.from_spec(str(path), shuffle=False, decode="raw")), None))


@given(data=st.data())
def test_a_mutated_mixture_state_is_loaded_or_refused(genuine, data):
    text = data.draw(mutated(json.loads(json.dumps(genuine["mixture_state"]))))
    try:
        state = json.loads(text)
    except ValueError:
        return  # a state reaches the loader parsed, never as text
    sources = [FractalStream(str(genuine["dataset"]), seed=1), FractalStream(str(genuine["recipe_path"]), seed=1)]
    loader = FractalLoader(MixedStream(sources, [3, 1]), batch_size=2)
    read(loader.load_state_dict, state)
