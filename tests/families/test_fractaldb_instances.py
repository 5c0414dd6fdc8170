"""The instance index mapping is a documented bijection onto (weight, flip, patch)."""

from __future__ import annotations

import pytest

from fractalshards.errors import ConfigError
from fractalshards.families.fractaldb.instances import INSTANCES_PER_CATEGORY, Instance, instance_from_index, official_filename


def test_round_trip_covers_every_variant_once():
    seen = set()
    for i in range(INSTANCES_PER_CATEGORY):
        inst = instance_from_index(i)
        assert inst.index == i
        seen.add((inst.weight, inst.flip, inst.patch))
    assert len(seen) == 1000 == 25 * 4 * 10


def test_documented_order_weight_fastest():
    assert instance_from_index(0) == Instance(0, 0, 0)
    assert instance_from_index(24) == Instance(24, 0, 0)
    assert instance_from_index(25) == Instance(0, 1, 0)
    assert instance_from_index(100) == Instance(0, 0, 1)
    assert instance_from_index(999) == Instance(24, 3, 9)


def test_official_filename():
    assert official_filename(7, Instance(weight=13, flip=2, patch=0)) == "00007_13_count_0_flip2.png"


@pytest.mark.parametrize("bad", [-1, 1000, 2.5])
def test_out_of_range_index_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match="instance"):
        instance_from_index(bad)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"weight": 25, "flip": 0, "patch": 0}, "weight"),
        ({"weight": 0, "flip": 4, "patch": 0}, "flip"),
        ({"weight": 0, "flip": 0, "patch": -1}, "patch"),
    ],
)
def test_out_of_range_variant_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        Instance(**kwargs)
