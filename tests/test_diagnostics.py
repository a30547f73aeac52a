"""Diagnostic figures: distance histograms + KL, k-NN Jaccard, transport plans, consecutive distances."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import hypergeom
from sklearn.neighbors import NearestNeighbors

from layergw import diagnostics as dg
from layergw import measures, plot

PNG = b"\x89PNG"


def _rotation(d: int, seed: int) -> np.ndarray:
    Q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return Q


def _clusters(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = 8.0 * rng.normal(size=(4, d))
    return centres[np.arange(n) % 4] + rng.normal(size=(n, d))


# ------------------------------------------------------------------ distance histograms


def test_histogram_counts_sum_to_number_of_pairs_and_match_numpy():
    rng = np.random.default_rng(0)
    n = 80
    reps = [rng.normal(size=(n, d)) * s for d, s in [(3, 1.0), (10, 5.0), (1, 0.1)]]
    res = dg.distance_histograms(reps, bins=30)
    assert res["counts"].shape == (3, 30) and res["edges"].shape == (31,)
    assert (res["counts"].sum(axis=1) == n * (n - 1) // 2).all()
    assert len(res["kl_consecutive"]) == 2
    # independent reference: numpy's histogram of the mean-normalized pdist on the same edges
    d = pdist(reps[1])
    assert np.array_equal(res["counts"][1], np.histogram(d / d.mean(), bins=res["edges"])[0])
    assert res["scales"][1] == pytest.approx(d.mean())


def test_histogram_kl_of_identical_layers_is_zero():
    X = np.random.default_rng(1).normal(size=(60, 5))
    res = dg.distance_histograms([X, X.copy(), X.copy()])
    assert res["kl_consecutive"] == [0.0, 0.0]


def test_histogram_mean_normalization_removes_scale_but_none_keeps_it():
    X = np.random.default_rng(2).normal(size=(70, 4))
    Y = 4.0 * X @ _rotation(4, 0) + 3.0  # same geometry up to scale
    assert dg.distance_histograms([X, Y])["kl_consecutive"][0] < 1e-3
    assert dg.distance_histograms([X, Y], normalize="none")["kl_consecutive"][0] > 1.0


def test_histogram_kl_grows_as_a_layer_becomes_bimodal():
    rng = np.random.default_rng(0)
    n = 150
    X = rng.normal(size=(n, 6))
    kls = []
    for shift in [0.0, 2.0, 4.0, 8.0]:  # move half the samples away: two clusters of distances
        Y = X.copy()
        Y[: n // 2, 0] += shift
        kls.append(dg.distance_histograms([X, Y], bins=40)["kl_consecutive"][0])
    assert kls[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(kls)), kls


def test_histogram_kl_is_finite_on_disjoint_supports():
    X = np.random.default_rng(3).normal(size=(40, 3))
    far = X.copy()
    far[:20] += 1000.0  # almost all distances either ~0 or ~2 after mean normalization
    kl = dg.distance_histograms([X, far], epsilon=1e-6)["kl_consecutive"][0]
    assert np.isfinite(kl) and kl > 1.0


# ------------------------------------------------------------------- neighbour Jaccard


def test_nearest_neighbours_match_sklearn_and_break_ties_by_index():
    X = np.random.default_rng(4).normal(size=(90, 7))
    ours = dg.nearest_neighbours(X, 5)
    ref = NearestNeighbors(n_neighbors=6).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    assert np.array_equal(ours, ref)
    line = np.arange(10, dtype=float)[:, None]  # equal distances everywhere
    nb = dg.nearest_neighbours(line, 3)
    assert list(nb[5]) == [4, 6, 3]  # 3 and 7 tie at distance 2: the lower index wins
    assert list(nb[0]) == [1, 2, 3]
    dup = np.zeros((4, 2))  # all points coincide: self excluded, rest by index
    assert dg.nearest_neighbours(dup, 2).tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]


def test_jaccard_matches_a_set_based_reference():
    rng = np.random.default_rng(5)
    reps = [rng.normal(size=(40, d)) for d in (2, 3, 6)]
    k = 4
    J = dg.neighbour_jaccard(reps, k=k)
    sets = []
    for X in reps:
        D = np.linalg.norm(X[:, None] - X[None], axis=-1)
        np.fill_diagonal(D, np.inf)
        sets.append([set(np.argsort(D[i], kind="stable")[:k]) for i in range(len(X))])
    for a in range(3):
        for b in range(3):
            ref = np.mean([len(sa & sb) / len(sa | sb) for sa, sb in zip(sets[a], sets[b])])
            assert J[a, b] == pytest.approx(ref, abs=1e-12)


def test_jaccard_identical_layers_give_one_and_matrix_is_symmetric():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(100, 8))
    J = dg.neighbour_jaccard([X, X.copy(), rng.normal(size=(100, 3)), _clusters(100, 5, 0)])
    assert np.array_equal(J, J.T)
    assert np.array_equal(np.diag(J), np.ones(4))
    assert J[0, 1] == 1.0
    assert (J >= 0).all() and (J <= 1).all()


def test_jaccard_is_invariant_to_rotation_translation_and_scaling_of_a_layer():
    rng = np.random.default_rng(7)
    reps = [rng.normal(size=(120, 6)), _clusters(120, 6, 1), rng.normal(size=(120, 4))]
    moved = list(reps)
    moved[1] = 3.7 * reps[1] @ _rotation(6, 2) - 5.0
    np.testing.assert_allclose(dg.neighbour_jaccard(moved), dg.neighbour_jaccard(reps), atol=1e-12)


def test_jaccard_of_unrelated_layers_is_the_chance_overlap():
    # An i.i.d. random layer's k-NN set of sample i is a uniformly random k-subset of the
    # other n-1 samples, so with any fixed layer |N_a ∩ N_b| is hypergeometric(n-1, k, k).
    n, k = 150, 5
    overlap = np.arange(k + 1)
    expected = float(np.sum(hypergeom(n - 1, k, k).pmf(overlap) * overlap / (2 * k - overlap)))
    values = []
    for seed in range(5):
        S = _clusters(n, 4, seed)
        R = np.random.default_rng(100 + seed).normal(size=(n, 10))
        values.append(dg.neighbour_jaccard([S, R], k=k)[0, 1])
    # one run's standard deviation is about 0.0045 (30 seeds); 5 runs: about 0.002
    assert abs(np.mean(values) - expected) < 0.008, (np.mean(values), expected)
    assert expected == pytest.approx(k**2 / ((n - 1) * (2 * k - 1)), rel=0.05)  # the docstring's rule of thumb


# ---------------------------------------------------------------------- transport plans


def test_permutation_closeness_of_permutation_and_product_plans():
    n = 50
    perm = np.random.default_rng(8).permutation(n)
    P = np.zeros((n, n))
    P[np.arange(n), perm] = 1.0 / n
    c = dg.permutation_closeness(P)
    assert c["max_row_mass_fraction"] == pytest.approx(1.0)
    assert c["entropy_ratio"] == pytest.approx(0.0, abs=1e-12)
    assert c["argmax_distinct_fraction"] == 1.0
    prod = np.full((n, n), 1.0 / n**2)
    c = dg.permutation_closeness(prod)
    assert c["max_row_mass_fraction"] == pytest.approx(1.0 / n)
    assert c["entropy_ratio"] == pytest.approx(1.0)
    q = np.random.default_rng(9).dirichlet(np.ones(n))
    assert dg.permutation_closeness(np.outer(np.full(n, 1 / n), q))["max_row_mass_fraction"] == pytest.approx(q.max())


def test_gw_coupling_of_a_row_permuted_copy_is_that_permutation():
    rng = np.random.default_rng(10)
    n = 60
    X = rng.normal(size=(n, 8))
    perm = rng.permutation(n)
    m = measures.get("gw", init="product", return_coupling=True)
    T = m.compare(m.prepare(X), m.prepare(X[perm])).coupling
    P = np.zeros((n, n))
    P[perm, np.arange(n)] = 1.0 / n  # sample perm[j] of X is row j of the copy
    # observed: exactly P (max deviation 0.0) for n = 40, 60, 100 and 4 seeds each
    assert np.abs(T - P).max() <= 1e-12
    c = dg.permutation_closeness(T)
    assert c["max_row_mass_fraction"] == pytest.approx(1.0, abs=1e-9)
    assert c["entropy_ratio"] == pytest.approx(0.0, abs=1e-9)


# -------------------------------------------------------------- consecutive distances


def test_consecutive_distances_take_the_superdiagonal():
    M = np.arange(16, dtype=float).reshape(4, 4)
    assert dg.consecutive_distances(M).tolist() == [M[0, 1], M[1, 2], M[2, 3]]
    assert dg.consecutive_distances(np.array([[0, np.nan], [np.nan, 0]])).size == 1


# ---------------------------------------------------------------------------- figures


def test_figures_write_png(tmp_path):
    rng = np.random.default_rng(11)
    reps = [rng.normal(size=(30, 4)) for _ in range(4)]
    labels = [f"block {i}" for i in range(4)]
    res = dg.distance_histograms(reps, bins=10)
    plot.distance_histograms_png(res, labels, str(tmp_path / "h.png"), title="hist")
    assert (tmp_path / "h.png").read_bytes().startswith(PNG)
    assert plot.png_bytes(plot.jaccard_png, dg.neighbour_jaccard(reps), labels, title="J").startswith(PNG)
    T = np.full((30, 30), 1 / 900)
    assert plot.png_bytes(plot.transport_plan_png, T, title="T", order=rng.permutation(30)).startswith(PNG)
    M = rng.random((4, 4))
    buf = io.BytesIO()
    plot.line_png(dg.consecutive_distances(M), labels, buf, title="prev", ylabel="gw")
    assert buf.getvalue().startswith(PNG)
    assert plot.png_bytes(plot.line_png, [1.0, np.nan, 2.0], ["a", "b", "c"], title="t", ylabel="y").startswith(PNG)


def test_figures_handle_many_layers_and_large_plans():
    rng = np.random.default_rng(12)
    reps = [rng.normal(size=(20, 3)) for _ in range(30)]
    labels = [f"L{i}" for i in range(30)]
    assert plot.png_bytes(plot.distance_histograms_png, dg.distance_histograms(reps), labels,
                           title="many").startswith(PNG)
    assert plot.png_bytes(plot.jaccard_png, dg.neighbour_jaccard(reps, k=3), labels, title="J").startswith(PNG)
    n = 900  # drawn max-pooled
    P = np.zeros((n, n))
    P[np.arange(n), rng.permutation(n)] = 1 / n
    assert plot.png_bytes(plot.transport_plan_png, P, title="perm").startswith(PNG)


# ---------------------------------------------------------------------------- errors


def test_clear_errors_for_bad_inputs():
    rng = np.random.default_rng(13)
    X = rng.normal(size=(20, 3))
    for fn in (dg.distance_histograms, dg.neighbour_jaccard):
        with pytest.raises(ValueError, match="same inputs"):
            fn([X, rng.normal(size=(21, 3))])
        with pytest.raises(ValueError, match="at least 2 layers"):
            fn([X])
        with pytest.raises(ValueError, match="2-D"):
            fn([X, X[:, 0]])
        with pytest.raises(ValueError, match="list"):
            fn(np.stack([X, X]))
    with pytest.raises(ValueError, match="normalize"):
        dg.distance_histograms([X, X], normalize="median")
    with pytest.raises(ValueError, match="constant"):
        dg.distance_histograms([X, np.ones((20, 3))])
    with pytest.raises(ValueError, match="k must"):
        dg.neighbour_jaccard([X, X], k=20)
    with pytest.raises(ValueError, match="labels"):
        plot.distance_histograms_png(dg.distance_histograms([X, X]), ["a"], io.BytesIO(), title="t")
    with pytest.raises(ValueError, match="square"):
        plot.jaccard_png(np.ones((2, 3)), ["a", "b"], io.BytesIO(), title="t")
    with pytest.raises(ValueError, match="non-negative"):
        dg.permutation_closeness(-np.eye(3))
    with pytest.raises(ValueError, match="2-D"):
        dg.permutation_closeness(np.ones(3))
    with pytest.raises(ValueError, match="permutation of range"):
        plot.transport_plan_png(np.eye(3) / 3, io.BytesIO(), title="t", order=np.array([0, 0, 1]))
    with pytest.raises(ValueError, match="square"):
        dg.consecutive_distances(np.ones((3, 2)))
    with pytest.raises(ValueError, match="at least 2"):
        dg.consecutive_distances(np.ones((1, 1)))
    with pytest.raises(ValueError, match="labels"):
        plot.line_png([1.0, 2.0], ["a"], io.BytesIO(), title="t", ylabel="y")
