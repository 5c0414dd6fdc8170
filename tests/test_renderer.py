"""Bound renderers and frozen manifests: what renders need is derived once, held by the renderer, and
never by the family singletons; a manifest cannot change under what was derived from it."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from helpers import tiny_definition

from fractalshards.definition import DatasetDefinition
from fractalshards.families import Renderer, family_names, get_family
from fractalshards.presets import load_preset

#: A small definition of every shipped family (official streams where the family has them).
SMALL = {
    "fractaldb": ("fractaldb-100", {"size": 48, "points": 2_000}),
    "1p-frac": ("1p-frac", {"size": 48, "points": 2_000}),
    "visualatom": ("visualatom-1k", {"mode": "official"}),
    "rcdb": ("rcdb-1k", {"mode": "official"}),
    "segrcdb": ("segrcdb", {"mode": "official", "size": 64, "instances_per_image": 3}),
    "exfractaldb": ("mv-fractaldb-1k", {"mode": "official", "size": 48}),
    "pc-fractaldb": ("pc-fractaldb-1k", {"main_points": 300, "other_points": 100}),
}


def _held(obj: object) -> dict:
    # What an object holds, by attribute: the size of each container (a cache fills one), else its type.
    return {k: len(v) if hasattr(v, "__len__") else type(v).__name__ for k, v in vars(obj).items()}


def _definition(family: str) -> DatasetDefinition:
    preset, render = SMALL[family]
    instances = min(3, get_family(family).instances_per_category)  # 1p-frac: one image per category
    return DatasetDefinition.from_preset(preset, categories=2, instances=instances, render=render)


def test_every_shipped_family_has_a_small_definition_here():
    assert set(SMALL) == set(family_names())


@pytest.mark.parametrize("family", sorted(SMALL))
def test_a_renderer_renders_as_the_family_and_leaves_the_family_as_it_was(family):
    fam = get_family(family)
    before = _held(fam)
    d = _definition(family)
    renderer = d.renderer
    assert isinstance(renderer, Renderer) and d.renderer is renderer  # made once per definition
    assert renderer.manifest_hash == d.categories.content_hash
    last = d.instances - 1
    pairs = [(0, 0), (1, last)] if d.num_groups > 1 else [(0, 0), (0, last)]
    for c, i in pairs:
        bound = renderer.render(c, i)
        once = fam.render(d.categories, c, i, d.render)  # a renderer made for one sample
        for name in ("image", "mask", "points"):
            a, b = getattr(bound, name), getattr(once, name)
            assert (a is None and b is None) or np.array_equal(a, b), (family, c, i, name)
        assert renderer.record(c, i, bound) == fam.record(d.categories, c, i, d.render, once)
        shape = (bound.points if bound.points is not None else bound.image).shape
        assert tuple(shape[: len(renderer.image_shape)]) == renderer.image_shape
    # Nothing of this manifest stays on the family (no id()- or hash-keyed caches on the singleton).
    assert _held(fam) == before


def test_a_definition_pickles_without_its_renderer_and_makes_a_new_one():
    d = tiny_definition(2, 3)
    first = d.renderer.render(1, 2).image
    again = pickle.loads(pickle.dumps(d))
    assert "renderer" not in again.__dict__ and again.fingerprint == d.fingerprint
    assert np.array_equal(again.renderer.render(1, 2).image, first) and again.renderer is not d.renderer
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(d.renderer)


def test_manifests_are_frozen():
    m = load_preset("fractaldb-100", categories=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.search["points"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        m.generator["version"] = "0"  # type: ignore[index]
    with pytest.raises((TypeError, AttributeError)):
        m.categories.append(m.categories[0])  # type: ignore[attr-defined]
    renamed = m.with_names(name="renamed", render_mode="native")
    assert (renamed.name, renamed.render_mode, m.name) == ("renamed", "native", "fractaldb-100[:3]")
    assert renamed.content_hash != m.content_hash  # the name is part of the body
    back = pickle.loads(pickle.dumps(m))
    assert back.body() == m.body() and back.content_hash == m.content_hash and isinstance(back.search, type(m.search))


def test_loading_a_preset_leaves_the_manifest_it_is_cut_from_as_it_was():
    base = load_preset("mv-fractaldb-1k")  # exfractaldb-1k is its categories under another name and render mode
    name, mode, digest = base.name, base.render_mode, base.content_hash
    derived = load_preset("exfractaldb-1k")
    assert (derived.name, derived.render_mode) == ("exfractaldb-1k", "native")
    assert (base.name, base.render_mode, base.content_hash) == (name, mode, digest)
    assert base.content_hash == base.with_names().content_hash  # the hash is of the content, not cached stale
