"""Grouping: pair rows to matrices, affinities, spectral clustering with k selection."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from layergw import results
from layergw.grouping import (
    Grouping,
    boundaries,
    contiguous_segments,
    group_layers,
    pair_kind,
    pair_matrix,
    symmetrize,
    to_affinity,
)


def block_distances(sizes: tuple[int, ...], noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distances small within consecutive blocks along depth, large across, plus seeded noise."""
    rng = np.random.default_rng(seed)
    lab = np.repeat(np.arange(len(sizes)), sizes)
    D = np.where(lab[:, None] == lab[None, :], 0.1, 1.0) + noise * rng.random((lab.size, lab.size))
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    return D, lab


def pair_rows(M: np.ndarray, model: str = "m", measure: str = "gw", kind: str = "distance",
              errors: set[tuple[int, int]] = frozenset(), **extra) -> list[dict]:
    L = M.shape[0]
    rows = []
    for i in range(L):
        for j in range(i + 1, L):
            err = (i, j) in errors
            rows.append({
                "study": "s", "run_id": "r", "model_a": model, "seed_a": 0, "checkpoint_a": "final",
                "layer_a": f"l{i}", "layer_a_index": i, "model_b": model, "seed_b": 0,
                "checkpoint_b": "final", "layer_b": f"l{j}", "layer_b_index": j, "measure": measure,
                "params": "{}", "kind": kind, "value": None if err else float(M[i, j]), "n_samples": 10,
                "iterations": 1, "converged": not err, "seconds": 0.01, "error": "boom" if err else None,
                "config_hash": "h", "code_version": "v", **extra,
            })
    return rows


@pytest.mark.parametrize("sizes", [(4, 5), (3, 4, 5), (4, 3, 5, 4)])
@pytest.mark.parametrize("select", ["eigengap", "silhouette"])
def test_recovers_depth_blocks(sizes, select):
    D, lab = block_distances(sizes, seed=len(sizes))
    g = group_layers(D, "distance", select=select, seed=0)
    assert isinstance(g, Grouping)
    assert g.k == len(sizes) and g.selection == select
    assert g.k_eigengap == len(sizes) and g.k_silhouette == len(sizes)
    np.testing.assert_array_equal(g.labels, lab)
    assert g.boundaries == list(np.cumsum(sizes)[:-1])
    assert g.method == "spectral" and g.affinity == "reverse" and g.seed == 0
    assert set(g.silhouette) == set(range(2, min(8, D.shape[0] - 1) + 1))
    assert np.all(np.diff(g.eigenvalues) >= -1e-12) and abs(g.eigenvalues[0]) < 1e-9


def test_labels_renumbered_in_depth_order_and_gaussian():
    # blocks out of "cluster id" order: the first layer's group must be 0
    D, lab = block_distances((3, 5, 4), seed=7)
    g = group_layers(D[::-1, ::-1], "distance", transform="gaussian")
    np.testing.assert_array_equal(g.labels, np.repeat([0, 1, 2], [4, 5, 3]))
    assert g.affinity == "gaussian"


def test_similarity_matrix_and_fixed_k():
    D, lab = block_distances((4, 4, 4), seed=3)
    S = 1.0 - D  # e.g. CKA in [0, 1]
    g = group_layers(S, "similarity")
    np.testing.assert_array_equal(g.labels, lab)
    assert g.affinity == "clip"
    fixed = group_layers(S, "similarity", k=2)
    assert fixed.k == 2 and fixed.selection == "fixed" and fixed.k_eigengap == 3
    assert len(set(fixed.labels.tolist())) == 2


def test_asymmetric_noise_is_symmetrized():
    D, lab = block_distances((5, 6), seed=1)
    D = D + np.triu(np.full_like(D, 0.01), 1)
    g = group_layers(D, "distance")
    np.testing.assert_array_equal(g.labels, lab)


def test_symmetrize_zero_diagonal():
    M = np.arange(9, dtype=float).reshape(3, 3)
    S = symmetrize(M)
    np.testing.assert_allclose(S, S.T)
    np.testing.assert_array_equal(np.diag(S), 0.0)
    assert S[0, 1] == pytest.approx((1 + 3) / 2)


def test_to_affinity_transforms():
    D = np.array([[0, 1, 2], [1, 0, 4], [2, 4, 0]], dtype=float)
    A = to_affinity(D, "distance")
    np.testing.assert_allclose(A, [[1, 0.75, 0.5], [0.75, 1, 0], [0.5, 0, 1]])
    G = to_affinity(D, "distance", "gaussian")  # sigma = median(1, 2, 4) = 2
    assert G[0, 1] == pytest.approx(np.exp(-1 / 8)) and np.all(np.diag(G) == 1)
    S = to_affinity(np.array([[0.2, -0.1, 0.5], [-0.1, 0.0, 0.3], [0.5, 0.3, 0.9]]), "similarity")
    assert S[0, 1] == 0 and S[0, 2] == 0.5 and np.all(np.diag(S) == 1)
    D[0, 2] = D[2, 0] = np.nan
    with pytest.raises(ValueError, match="1 of 3 layer pairs are missing"):
        to_affinity(D, "distance")


def test_boundaries_and_segments():
    labels = np.array([0, 0, 1, 1, 1, 0, 2])
    assert boundaries(labels) == [2, 5, 6]
    assert contiguous_segments(labels) == [(0, 1, 0), (2, 4, 1), (5, 5, 0), (6, 6, 2)]
    assert boundaries(np.array([3])) == []


def test_pair_matrix_fills_both_triangles_and_nan_for_errors():
    D, _ = block_distances((3, 3), seed=2)
    rows = pair_rows(D, errors={(0, 4)}) + pair_rows(1 - D, measure="cka", kind="similarity")
    rows += pair_rows(D, model="other")
    for tbl in (results.table(rows, results.PAIRS), pd.DataFrame(rows)):
        M = pair_matrix(tbl, "m", "gw", 6)
        assert np.isnan(M[0, 4]) and np.isnan(M[4, 0])
        ok = ~np.isnan(M)
        np.testing.assert_allclose(M[ok], D[ok])
        np.testing.assert_array_equal(np.diag(M), 0.0)
        C = pair_matrix(tbl, "m", "cka", 6)
        np.testing.assert_array_equal(np.diag(C), 1.0)
        np.testing.assert_allclose(C, (1 - D) * (1 - np.eye(6)) + np.eye(6))
    assert pair_kind(pd.DataFrame(rows), "m", "cka") == "similarity"


def test_pair_matrix_averages_both_orders_and_missing_is_nan():
    rows = pair_rows(np.zeros((3, 3)))
    rows[0]["value"] = 1.0  # (0, 1)
    rev = dict(rows[0], layer_a_index=1, layer_b_index=0, value=3.0)
    rows = [rows[0], rows[1], rev]  # (1, 2) missing
    M = pair_matrix(pd.DataFrame(rows), "m", "gw", 3)
    assert M[0, 1] == M[1, 0] == 2.0
    assert np.isnan(M[1, 2]) and np.isnan(M[2, 1])
    with pytest.raises(ValueError, match="pairs are missing"):
        group_layers(M, "distance")


def test_pair_matrix_errors():
    rows = pair_rows(np.ones((3, 3)))
    with pytest.raises(ValueError, match="'nope'.*'gw'"):
        pair_matrix(pd.DataFrame(rows), "nope", "gw", 3)
    with pytest.raises(ValueError, match="'m'.*'cka'"):
        pair_matrix(pd.DataFrame(rows), "m", "cka", 3)
    with pytest.raises(ValueError, match="n_layers"):
        pair_matrix(pd.DataFrame(rows), "m", "gw", 2)
    mixed = rows + [dict(r, seed_a=1, seed_b=1) for r in rows]
    with pytest.raises(ValueError, match="seed, checkpoint"):
        pair_matrix(pa.Table.from_pylist(mixed, schema=results.PAIRS), "m", "gw", 3)


def test_invalid_arguments_name_the_argument():
    D, _ = block_distances((3, 3))
    for kwargs, name in [
        ({"select": "best"}, "select"),
        ({"transform": "log"}, "transform"),
        ({"k_max": 1}, "k_max"),
        ({"k": 0}, "k"),
        ({"k": 7}, "k"),
        ({"assign_labels": "x"}, "assign_labels"),
    ]:
        with pytest.raises(ValueError, match=name):
            group_layers(D, "distance", **kwargs)
    with pytest.raises(ValueError, match="kind"):
        group_layers(D, "distanse")
    with pytest.raises(ValueError, match="L=2"):
        group_layers(D[:2, :2], "distance")
    with pytest.raises(ValueError, match="square"):
        group_layers(D[:3], "distance")
    with pytest.raises(ValueError, match="transform"):
        to_affinity(D, "distance", "exp")


def test_to_rows_match_groups_schema():
    D, lab = block_distances((3, 4))
    g = group_layers(D, "distance")
    params = json.dumps({"normalize": "max", "init": "product"}, sort_keys=True)
    rows = g.to_rows("m", "gw", [f"l{i}" for i in range(7)], [f"L{i}" for i in range(7)], params=params)
    tbl = results.table(rows, results.GROUPS)
    assert tbl.num_rows == 7
    assert tbl.column("params").to_pylist() == [params] * 7
    assert [r["boundary"] for r in rows] == [False, False, False, True, False, False, False]
    assert [r["group"] for r in rows] == lab.tolist()
    # a dict is stored in the pair rows' form (sorted keys); no params is null
    as_dict = g.to_rows("m", "gw", [f"l{i}" for i in range(7)], params={"normalize": "max", "init": "product"})
    assert {r["params"] for r in as_dict} == {params}
    assert {r["params"] for r in g.to_rows("m", "gw", [f"l{i}" for i in range(7)])} == {None}
    with pytest.raises(ValueError, match="params"):
        g.to_rows("m", "gw", [f"l{i}" for i in range(7)], params=3)


def test_unbounded_similarities_are_scaled_into_an_affinity_and_grouped():
    from layergw.grouping import group_layers, to_affinity

    S = np.array([[9.0, 4.0, 0.2, 0.1], [4.0, 9.0, 0.3, 0.2], [0.2, 0.3, 9.0, 5.0], [0.1, 0.2, 5.0, 9.0]])
    A = to_affinity(S, "similarity")
    assert A.max() == 1.0 and A.min() >= 0.0 and A[2, 3] == 1.0 and A[0, 1] == pytest.approx(0.8)
    g = group_layers(S, "similarity", k_max=3)
    assert g.labels.tolist() in ([0, 0, 1, 1], [1, 1, 0, 0])
