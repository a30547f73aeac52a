"""RSM norm difference against llm_repsim and a direct computation."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from layergw import measures


def direct_rsm(X: np.ndarray, Y: np.ndarray, inner: str = "euclidean") -> float:
    def d(a, b):
        if inner == "euclidean":
            return np.sqrt(((a - b) ** 2).sum())
        if inner == "correlation":
            a, b = a - a.mean(), b - b.mean()
        return 1.0 - a @ b / (np.sqrt(a @ a) * np.sqrt(b @ b))

    n = X.shape[0]
    diffs = [d(X[i], X[j]) - d(Y[i], Y[j]) for i, j in itertools.combinations(range(n), 2)]
    return float(np.sqrt(np.sum(np.square(diffs))))


@pytest.fixture(scope="module")
def XY():
    rng = np.random.default_rng(11)
    return rng.normal(size=(40, 6)), rng.normal(size=(40, 13))


def standard_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 30))
    Y = np.tanh(X @ rng.standard_normal((30, 50))) + 0.1 * rng.standard_normal((200, 50))
    return X, Y


# Reference: mklabunde/llm_repsim @ 53b8a9b144980e2c1e73b1c20c02cba4465dc9c1,
# llmcomp/measures/rsm_norm_difference.py, rsm_norm_diff(X, Y, inner=inner) on
# standard_inputs(0) (run unmodified; only its utils import path fixed).
# The same values come from llmcomp/measures/rsa.py,
# representational_similarity_analysis(X, Y, inner=inner, outer="euclidean").
LLM_REPSIM_RSM = {
    "euclidean": 258.6416706648139,
    "cosine": 21.131302834579003,
    "correlation": 21.829929816095106,
}


@pytest.mark.parametrize("inner", sorted(LLM_REPSIM_RSM))
def test_matches_llm_repsim_reference(inner):
    X, Y = standard_inputs()
    assert measures.get("rsm", inner=inner).score(X, Y) == pytest.approx(LLM_REPSIM_RSM[inner], rel=1e-6)


@pytest.mark.parametrize("inner", ["euclidean", "cosine", "correlation"])
def test_matches_direct_computation_with_different_widths(XY, inner):
    X, Y = XY
    m = measures.get("rsm", inner=inner)
    assert m.score(X, Y) == pytest.approx(direct_rsm(X, Y, inner), rel=1e-10)
    assert m.score(X, X) == 0.0
    assert m.score(X, Y) == m.score(Y, X)


def test_condensed_is_full_matrix_norm_over_sqrt2(XY):
    X, Y = XY
    from scipy.spatial.distance import cdist

    full = np.linalg.norm(cdist(X, X) - cdist(Y, Y))
    assert measures.get("rsm").score(X, Y) == pytest.approx(full / np.sqrt(2), rel=1e-10)


def test_euclidean_invariances_and_scale_sensitivity(XY):
    X, Y = XY
    m = measures.get("rsm")
    base = m.score(X, Y)
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(13, 13)))
    assert m.score(X, Y @ Q + 5.0) == pytest.approx(base, rel=1e-10)
    assert m.score(X, 2 * Y) != pytest.approx(base, rel=1e-3)


def test_cosine_is_row_scale_invariant(XY):
    X, Y = XY
    m = measures.get("rsm", inner="cosine")
    scales = np.random.default_rng(1).uniform(0.1, 10, size=(40, 1))
    assert m.score(X, Y * scales) == pytest.approx(m.score(X, Y), rel=1e-9)


def test_correlation_invariances_and_translation_sensitivity(XY):
    X, Y = XY
    m = measures.get("rsm", inner="correlation")
    base = m.score(X, Y)
    assert m.invariant_to() == {"permutation", "scaling"}
    assert m.score(X, 7.0 * Y[:, ::-1]) == pytest.approx(base, rel=1e-10)
    # per-row affine maps keep every row's correlations; one vector added to all rows does not
    rng = np.random.default_rng(2)
    assert m.score(X, Y * rng.uniform(0.5, 2, (40, 1)) + rng.normal(size=(40, 1))) == pytest.approx(base, rel=1e-9)
    assert m.score(X, Y + rng.normal(size=13)) != pytest.approx(base, rel=1e-3)
    Q, _ = np.linalg.qr(rng.normal(size=(13, 13)))
    assert m.score(X, Y @ Q) != pytest.approx(base, rel=1e-3)


def test_correlation_zero_variance_row_is_a_clear_error(XY):
    X, _ = XY
    X = X.copy()
    X[5] = 2.0
    with pytest.raises(ValueError, match=r"1 rows .* all features equal .*\(first: \[5\]\).*correlation"):
        measures.get("rsm", inner="correlation").prepare(X)


def test_prepare_is_condensed_vector(XY):
    X, _ = XY
    g = measures.get("rsm").prepare(X)
    assert g.shape == (40 * 39 // 2,) and g.dtype == np.float64


def test_cosine_zero_row_is_a_clear_error(XY):
    X, _ = XY
    X = X.copy()
    X[[3, 8]] = 0.0
    with pytest.raises(ValueError, match=r"2 rows .* all zeros \(first: \[3, 8\]\).*cosine"):
        measures.get("rsm", inner="cosine").prepare(X)
    measures.get("rsm").prepare(X)  # fine for euclidean


def test_bad_inner_and_mismatched_geometries(XY):
    X, Y = XY
    # "correlation" became valid (it is the RSA default inner); any other pdist metric is not
    with pytest.raises(ValueError, match="'inner' must be one of 'euclidean', 'cosine', 'correlation'; got 'cityblock'"):
        measures.get("rsm", inner="cityblock")
    m = measures.get("rsm")
    with pytest.raises(ValueError, match="first geometry has n=40 rows but second geometry has n=20"):
        m.compare(m.prepare(X), m.prepare(Y[:20]))
    with pytest.raises(ValueError, match="condensed distance vector"):
        m.compare(X, m.prepare(X))
