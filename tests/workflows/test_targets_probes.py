"""Targets stage rows without a cluster: probes read the layer first and the target second,
and rank 1 is the best value (lowest distance, highest similarity)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from layergw import layout, measures
from layergw.results import TARGETS, table
from layergw.store import ResultStore
from workflows.compare import PrepareFailed
from workflows.extract import PointRow
from workflows.targets import target_rows, target_task

N, K, EXACT = 60, 4, 2  # samples, classes, index of the layer that encodes the target


@pytest.fixture(scope="module")
def layers_and_target():
    """Five layers of one model; layer 2 is a linear image of the one-hot target."""
    rng = np.random.default_rng(0)
    T = np.eye(K)[np.arange(N) % K]
    reps = [rng.normal(size=(N, 8)) for _ in range(5)]
    reps[EXACT] = T @ rng.normal(size=(K, 8))
    reps[4] = T @ rng.normal(size=(K, 8)) + 1.5 * rng.normal(size=(N, 8))  # partly encodes it
    points = [PointRow("m", f"blocks.{i}.hook_resid_post", i, f"B{i}", i, "Resid-Post", 8) for i in range(5)]
    return reps, points, T


@pytest.fixture()
def store(tmp_path, layers_and_target):
    reps, _, T = layers_and_target
    s = ResultStore(str(tmp_path))
    s.write_array(layout.target_rep("m", "c"), T.astype(np.float32))  # as extraction stores it
    for i, X in enumerate(reps):
        s.write_array(layout.rep("m", i), X.astype(np.float32))
    return s


def rows_for(store, name: str, params: dict, reps, points, geoms=None) -> list[dict]:
    m = measures.get(name, **params)
    if geoms is None:
        geoms = [m.prepare(X, label=p.layer) for X, p in zip(reps, points)]
    return target_rows(store, "m", "c", name, params, points, geoms)


@pytest.mark.parametrize("name", ["linear_probe", "mlp_probe"])
def test_exact_encoding_ranks_first_for_probes(store, layers_and_target, name):
    reps, points, _ = layers_and_target
    rows = rows_for(store, name, {}, reps, points)
    assert [r["layer_index"] for r in rows] == list(range(5))
    by_rank = sorted(rows, key=lambda r: r["rank"])
    assert by_rank[0]["layer_index"] == EXACT
    assert abs(by_rank[0]["value"]) < 1e-12
    assert [r["rank"] for r in by_rank] == [1, 2, 3, 4, 5]
    values = [r["value"] for r in by_rank]
    assert values == sorted(values)  # distance: lower is better
    assert rows[4]["rank"] < max(r["rank"] for r in rows)  # the partial encoding beats some noise
    t = table(rows, TARGETS)
    assert t.num_rows == 5 and t.schema == TARGETS
    assert all(r["params"] == json.dumps(measures.get(name).params(), sort_keys=True) for r in rows)


def test_probe_sees_the_layer_first(store, layers_and_target):
    """compare(layer, target): swapping would regress each layer on the one-hot target."""
    reps, points, T = layers_and_target
    m = measures.get("linear_probe")
    rows = rows_for(store, "linear_probe", {}, reps, points)
    for X, r in zip(reps, rows):
        assert r["value"] == m.score(X, T.astype(np.float32))


def test_similarity_ranks_highest_first(store, layers_and_target):
    reps, points, _ = layers_and_target
    rows = rows_for(store, "cka", {}, reps, points)
    by_rank = sorted(rows, key=lambda r: r["rank"])
    assert by_rank[0]["layer_index"] == EXACT
    values = [r["value"] for r in by_rank]
    assert values == sorted(values, reverse=True)


def test_equal_values_share_the_better_rank(store, layers_and_target):
    """A point repeated under another name (Resid-Post of block l is Resid-Pre of block
    l+1) must not rank behind itself."""
    reps, points, _ = layers_and_target
    reps = reps + [reps[EXACT].copy(), reps[0].copy()]
    points = points + [PointRow("m", "copy.exact", 5, "C", 5, "copy", 8), PointRow("m", "copy.noise", 6, "N", 6, "copy", 8)]
    for i in (5, 6):
        store.write_array(layout.rep("m", i), reps[i].astype(np.float32))
    rows = rows_for(store, "gw", {"normalize": "mean"}, reps, points)
    rank = {r["layer_index"]: r["rank"] for r in rows}
    assert rows[5]["value"] == rows[EXACT]["value"] and rank[5] == rank[EXACT] == 1
    assert rows[6]["value"] == rows[0]["value"] and rank[6] == rank[0] > 1
    for r in rows:  # competition ranking: one more than the number of strictly better layers
        assert r["rank"] == 1 + sum(o["value"] < r["value"] for o in rows)


def test_failed_layers_and_bad_targets_get_no_rank(store, layers_and_target, caplog):
    reps, points, _ = layers_and_target
    m = measures.get("linear_probe")
    geoms = [m.prepare(X) for X in reps]
    geoms[1] = PrepareFailed("prepare: ValueError: boom")
    rows = rows_for(store, "linear_probe", {}, reps, points, geoms)
    assert rows[1]["value"] is None and rows[1]["rank"] is None
    assert sorted(r["rank"] for r in rows if r["rank"] is not None) == [1, 2, 3, 4]
    # a target that is not one-hot: mlp_probe has no value for any layer, and says why
    store.write_array(layout.target_rep("m", "c"), np.linspace(0, 1, N * 2).reshape(N, 2))
    with caplog.at_level(logging.WARNING, logger="workflows.targets"):
        rows = rows_for(store, "mlp_probe", {}, reps, points)
    assert all(r["value"] is None and r["rank"] is None for r in rows)
    assert "Y must be a one-hot target matrix" in caplog.text


def test_ray_task_runs_the_plain_function(store, layers_and_target):
    reps, points, _ = layers_and_target
    m = measures.get("linear_probe")
    geoms = [m.prepare(X) for X in reps]
    direct = target_rows(store, "m", "c", "linear_probe", {}, points, geoms)
    where = [(0, k) for k in range(len(geoms))]  # every layer in one chunk, as GeometryCache passes them
    assert target_task._function(store, "m", "c", "linear_probe", {}, points, where, geoms) == direct


def test_points_with_the_targets_class_structure_are_flagged_whatever_they_encode(tmp_path, layers_and_target):
    reps, points, T = layers_and_target
    shifted = np.eye(K)[(np.arange(N) // K) % K] @ np.random.default_rng(1).normal(size=(K, 8))  # another variable
    s = ResultStore(str(tmp_path))
    s.write_array(layout.target_rep("m", "c"), T.astype(np.float32))
    for i, X in enumerate([*reps[:4], shifted]):
        s.write_array(layout.rep("m", i), X.astype(np.float32))
    rows = rows_for(s, "gw", {"normalize": "mean"}, [*reps[:4], shifted], points)
    assert [r["same_classes"] for r in rows] == [False, False, True, False, True]
    table(rows, TARGETS)
