"""KSG mutual information: analytic Gaussian MI, scikit-learn in 1-D, invariances, ties, errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.special import digamma
from sklearn.feature_selection import mutual_info_regression

from layergw import measures


@pytest.fixture
def m():
    return measures.get("mi")


def gaussian_pairs(n: int, d: int, rho: float, seed: int):
    """d independent pairs (x_j, y_j), each standard bivariate normal with correlation rho."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = rho * X + np.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    return X, Y


@pytest.mark.parametrize(("d", "rho"), [(1, 0.6), (1, 0.9), (2, 0.6), (3, 0.5)])
def test_gaussian_matches_analytic_mi(m, d, rho):
    # MI = -d/2 log(1 - rho^2) nats; at n = 2000 the KSG estimate scatters by ~0.02 and its
    # downward bias grows with d (about -0.03 at d = 3, more at larger d)
    X, Y = gaussian_pairs(2000, d, rho, seed=0)
    assert m.score(X, Y) == pytest.approx(-d / 2 * np.log(1 - rho**2), abs=0.05)


def test_independent_is_near_zero_and_not_clipped(m):
    values = [m.score(*gaussian_pairs(1000, 2, 0.0, seed=s)) for s in range(4)]
    assert max(abs(v) for v in values) < 0.05
    assert min(values) < 0  # the raw estimate, not max(0, .)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_dimensional_equals_scikit_learn(m, seed):
    # scikit-learn 1.9 mutual_info_regression is KSG algorithm 1 too: unit-variance scaling,
    # 1e-10 jitter (its own draw), chebyshev k-NN radius nextafter(eps, 0), clipped at 0.
    # On continuous data neither jitter changes a neighbour count, so the values agree.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(300)
    y = np.exp(x) + 0.3 * rng.standard_normal(300)
    expected = mutual_info_regression(x[:, None], y, n_neighbors=3, random_state=0)[0]
    assert expected > 0.5
    assert m.score(x[:, None], y[:, None]) == pytest.approx(expected, rel=1e-9)
    expected5 = mutual_info_regression(x[:, None], y, n_neighbors=5, random_state=0)[0]
    assert measures.get("mi", k=5).score(x[:, None], y[:, None]) == pytest.approx(expected5, rel=1e-9)


def test_self_value_is_psi_n_minus_psi_k_and_the_maximum(m):
    X, Y = gaussian_pairs(500, 3, 0.8, seed=1)
    own = m.score(X, X)
    assert own == pytest.approx(digamma(500) - digamma(3), rel=1e-12)
    assert m.score(X, Y) < own
    assert measures.get("mi", k=7).score(X, X) == pytest.approx(digamma(500) - digamma(7), rel=1e-12)


def test_declarations(m):
    assert m.kind == "similarity" and m.unbounded and m.best is None
    assert m.equal_widths and m.symmetric and not m.accepts_constant
    assert m.invariant_to() == {"scaling", "translation", "permutation"}
    assert m.params() == {"k": 3}


def test_invariances_and_rotation_sensitivity(m):
    X, Y = gaussian_pairs(400, 3, 0.7, seed=2)
    Y = Y + 0.5 * Y**2
    base = m.score(X, Y)
    assert m.score(Y, X) == pytest.approx(base, rel=1e-12)
    rng = np.random.default_rng(3)
    for what, Z in {
        "scaling": 3.7 * Y,
        "translation": Y + 5.0 * rng.normal(size=3),
        "permutation": Y[:, [2, 0, 1]],
        "per-column affine": Y * [0.1, 2.0, 30.0] - 4.0,
    }.items():
        assert m.score(X, Z) == pytest.approx(base, rel=1e-9), what
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    assert m.score(X, Y @ Q) != pytest.approx(base, rel=1e-5)


def test_constant_columns_are_dropped(m):
    X, Y = gaussian_pairs(300, 2, 0.7, seed=4)
    pad = np.full((300, 1), 4.0)
    assert m.score(np.hstack([X, pad]), np.hstack([pad, Y])) == pytest.approx(m.score(X, Y), rel=1e-9)
    g = m.prepare(np.hstack([X, pad]))
    assert g.d == 3 and g.dist.shape == (300, 300)
    assert np.allclose(g.dist[0], np.abs((X - X.mean(0)) / X.std(0) - ((X - X.mean(0)) / X.std(0))[0]).max(1))


def test_duplicate_rows_are_jittered_deterministically(m):
    # every input repeated 4 times (more than k): without jitter eps would be 0
    X, Y = gaussian_pairs(100, 2, 0.7, seed=5)
    X4, Y4 = np.repeat(X, 4, axis=0), np.repeat(Y, 4, axis=0)
    g1, g2 = m.prepare(X4), m.prepare(X4)
    assert pickle.dumps(g1) == pickle.dumps(g2)
    off = g1.dist[~np.eye(400, dtype=bool)]
    assert off.min() > 0 and off.min() < 1e-8  # repeats are 1e-10-jittered apart
    value = m.score(X4, Y4)
    assert np.isfinite(value) and value < m.score(X4, X4)
    # a layer and its copy get the same jitter; different layers get independent jitter:
    # the jittered distances among the repeats of one input are unrelated in X and Y
    assert np.array_equal(m.prepare(X4.copy()).dist, g1.dist)
    gy = m.prepare(Y4)
    within = [(4 * i + a, 4 * i + b) for i in range(100) for a in range(4) for b in range(a + 1, 4)]
    rows, cols = np.array(within).T
    assert abs(np.corrcoef(g1.dist[rows, cols], gy.dist[rows, cols])[0, 1]) < 0.2


def test_unequal_widths_error_names_both(m):
    X, Y = gaussian_pairs(50, 4, 0.5, seed=6)
    with pytest.raises(ValueError, match=r"mi needs equal widths .*X has d=4 columns but Y has d=3"):
        m.score(X, Y[:, :3])


def test_parameter_and_size_errors():
    for bad in (0, -1, 2.5, "3", True):
        with pytest.raises(ValueError, match=r"measure 'mi' parameter 'k' must be a positive integer"):
            measures.get("mi", k=bad)
    with pytest.raises(ValueError, match=r"L1: mi with k=5 needs more than k rows \(samples\); got n=5"):
        measures.get("mi", k=5).prepare(np.random.default_rng(0).normal(size=(5, 2)), label="L1")


def test_geometry_checks(m):
    X, Y = gaussian_pairs(60, 2, 0.5, seed=7)
    g = pickle.loads(pickle.dumps(m.prepare(X)))
    assert m.compare(g, m.prepare(Y)).value == m.score(X, Y)
    with pytest.raises(ValueError, match="first geometry has n=60 rows but second geometry has n=30"):
        m.compare(g, m.prepare(Y[:30]))
    with pytest.raises(ValueError, match="MutualInformation.prepare, got ndarray"):
        m.compare(g, Y)
