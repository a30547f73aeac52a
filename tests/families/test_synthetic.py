"""The synthetic family: consistent rows for any subset of inputs, and the groups it is built with."""
from __future__ import annotations

import numpy as np
import pytest

from layergw import families, measures


def test_rows_do_not_depend_on_which_other_inputs_are_extracted() -> None:
    model = families.get("synthetic").load("random:3", points=12, groups=3)
    pts = model.points()
    whole = model.extract(np.arange(64), pts)
    part = model.extract(np.array([5, 40, 7]), pts[4:6])
    for p in pts[4:6]:
        np.testing.assert_array_equal(part[p.name], whole[p.name][[5, 40, 7]])
    assert whole[pts[0].name].dtype == np.float32 and whole[pts[0].name].shape == (64, 8)


def test_points_of_one_group_are_alike_and_of_different_groups_are_not() -> None:
    model = families.get("synthetic").load("random:0", points=12, groups=3, inputs=256)
    reps = model.extract(np.arange(256), model.points())
    cka = measures.get("cka")
    geo = [cka.prepare(reps[p.name]) for p in model.points()]
    same = [cka.compare(geo[i], geo[j]).value for i in range(12) for j in range(i + 1, 12) if i // 4 == j // 4]
    other = [cka.compare(geo[i], geo[j]).value for i in range(12) for j in range(i + 1, 12) if i // 4 != j // 4]
    assert min(same) > 0.95 and max(other) < 0.3
    assert [model.group_of(k) for k in range(12)] == [0] * 4 + [1] * 4 + [2] * 4
    assert model.n_blocks == 3 and model.depth(model.points()[5]) == 1.5


@pytest.mark.parametrize("checkpoint,params,match", [
    ("builtin:x", {}, "checkpoint"), ("random:0", {"points": 1}, "params.points"),
    ("random:0", {"groups": 20, "points": 10}, "params.groups"), ("random:0", {"noise": -1}, "params.noise")])
def test_bad_arguments_are_named(checkpoint: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        families.get("synthetic").load(checkpoint, **params)
