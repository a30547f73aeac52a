"""Linear CKA against an independent formula; invariances; degenerate input."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from layergw import measures


def direct_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X, Y."""
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    return np.linalg.norm(Y.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def gram_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Kernel form <HKH, HLH> / (||HKH|| ||HLH||), H the centring matrix."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return float((K * L).sum() / (np.linalg.norm(K) * np.linalg.norm(L)))


@pytest.fixture(scope="module")
def XY():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 5)) + 3.0
    Y = np.tanh(X @ rng.normal(size=(5, 9))) + 0.3 * rng.normal(size=(60, 9))
    return X, Y


def test_matches_direct_formula(XY):
    X, Y = XY
    got = measures.get("cka").score(X, Y)
    assert got == pytest.approx(direct_cka(X, Y), rel=1e-12)
    assert got == pytest.approx(gram_cka(X, Y), rel=1e-10)
    assert 0.05 < got < 0.999


@pytest.mark.parametrize("dx,dy", [(80, 5), (80, 120), (5, 80)])
def test_wide_layers_use_reduced_features_with_same_value(dx, dy):
    rng = np.random.default_rng(dx + dy)
    X = rng.normal(size=(30, dx))
    Y = X[:, :5] @ rng.normal(size=(5, dy)) + rng.normal(size=(30, dy))
    m = measures.get("cka")
    g = m.prepare(X)
    assert g.features.shape == (30, min(dx, 30))
    assert m.score(X, Y) == pytest.approx(direct_cka(X, Y), rel=1e-10)


def test_identical_is_one_and_kind_similarity(XY):
    X, _ = XY
    m = measures.get("cka")
    assert m.kind == "similarity" and m.params() == {}
    assert m.score(X, X) == pytest.approx(1.0, abs=1e-12)


def test_invariances(XY):
    X, Y = XY
    m = measures.get("cka")
    base = m.score(X, Y)
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(9, 9)))
    for what, Z in {
        "rotation": Y @ Q,
        "isotropic scaling": 1e3 * Y,
        "translation": Y - 50.0,
        "permutation": Y[:, ::-1],
    }.items():
        assert m.score(X, Z) == pytest.approx(base, rel=1e-10), what


def test_not_invariant_to_anisotropic_scaling(XY):
    X, Y = XY
    m = measures.get("cka")
    assert m.score(X, Y * np.arange(1, 10)) != pytest.approx(m.score(X, Y), rel=1e-3)


def test_in_unit_interval_for_independent_inputs():
    rng = np.random.default_rng(3)
    v = measures.get("cka").score(rng.normal(size=(50, 4)), rng.normal(size=(50, 7)))
    assert 0.0 <= v < 0.5


@pytest.mark.parametrize(
    "X",
    [np.ones((10, 4)), np.zeros((10, 4)), np.tile([0.1, 0.7, 1e5], (20, 1))],
    ids=["ones", "zeros", "rows-identical"],
)
def test_constant_representation_is_a_clear_error(X):
    with pytest.raises(ValueError, match="X is constant: all .* rows .* identical.*cka.*undefined"):
        measures.get("cka").prepare(X)


def test_one_constant_column_is_fine(XY):
    X, Y = XY
    X2 = np.hstack([X, np.full((60, 1), 4.2)])
    assert measures.get("cka").score(X2, Y) == pytest.approx(direct_cka(X, Y), rel=1e-10)


def test_geometry_picklable_and_n_checked(XY):
    X, Y = XY
    m = measures.get("cka")
    g = pickle.loads(pickle.dumps(m.prepare(X)))
    assert m.compare(g, m.prepare(Y)).value == m.score(X, Y)
    with pytest.raises(ValueError, match="n=60 rows but second geometry has n=30"):
        m.compare(g, m.prepare(Y[:30]))
    with pytest.raises(ValueError, match="LinearCKA.prepare"):
        m.compare(X, g)
