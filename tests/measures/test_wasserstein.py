"""Exact Wasserstein (squared Euclidean cost): agreement with POT, analytic cases, LP cap, errors."""
from __future__ import annotations

import logging

import numpy as np
import ot
import pytest

from layergw import measures

# Reference: POT 0.9.7 (github.com/PythonOT/POT), ot.emd2(ot.unif(200), ot.unif(200), ot.dist(X, Y))
# on the standard inputs with equal widths (30, 30) below.
REF_EMD2 = 31.45956586587446


@pytest.fixture(scope="module")
def XY() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 30))
    Y = np.tanh(X @ rng.standard_normal((30, 30))) + 0.1 * rng.standard_normal((200, 30))
    return X, Y


def test_equals_stored_pot_value(XY):
    X, Y = XY
    assert measures.get("wasserstein").score(X, Y) == pytest.approx(REF_EMD2, rel=1e-9)


def test_equals_pot_emd2_directly():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) * 2 + 1
    expected = ot.emd2(ot.unif(40), ot.unif(40), ot.dist(X, Y))
    m = measures.get("wasserstein", return_coupling=True)
    c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.value == pytest.approx(float(expected), rel=1e-9)
    assert c.converged and c.iterations is None
    assert c.coupling.shape == (40, 40)
    assert np.allclose(c.coupling.sum(0), 1 / 40) and np.allclose(c.coupling.sum(1), 1 / 40)
    assert float((c.coupling * ot.dist(X, Y)).sum()) == pytest.approx(c.value, rel=1e-9)


def test_translation_costs_the_squared_shift(XY):
    X, _ = XY
    t = np.random.default_rng(1).normal(size=X.shape[1])
    m = measures.get("wasserstein")
    assert m.score(X, X + t) == pytest.approx(float(t @ t), rel=1e-9)
    assert m.score(X, X) == 0.0


def test_point_mass_is_the_mean_squared_distance(XY):
    X, _ = XY
    y = np.full((1, X.shape[1]), 0.5)
    P = np.repeat(y, X.shape[0], axis=0)  # a constant layer is accepted: a point mass
    expected = float(((X - y) ** 2).sum(1).mean())
    m = measures.get("wasserstein")
    assert m.accepts_constant
    assert m.score(X, P) == pytest.approx(expected, rel=1e-12)
    assert m.score(P, X) == pytest.approx(expected, rel=1e-12)


def test_sample_permutation_and_symmetry(XY):
    X, Y = XY
    m = measures.get("wasserstein")
    assert m.invariant_to() == {"sample_permutation"}
    base = m.score(X, Y)
    assert m.score(X, Y[np.random.default_rng(2).permutation(200)]) == pytest.approx(base, rel=1e-12)
    assert m.score(Y, X) == pytest.approx(base, rel=1e-12)
    assert m.score(X, 2 * Y) != pytest.approx(base, rel=1e-3)


def test_unequal_widths_are_an_error(XY):
    X, Y = XY
    with pytest.raises(ValueError, match=r"d=30.*d=7"):
        measures.get("wasserstein").score(X, Y[:, :7])


def test_iteration_cap_is_reported_not_raised(XY, caplog):
    X, Y = XY
    m = measures.get("wasserstein", max_iter=10)
    with caplog.at_level(logging.WARNING, logger="layergw.measures.wasserstein"):
        c = m.compare(m.prepare(X), m.prepare(Y))
    assert not c.converged
    assert "max_iter=10" in caplog.text
    assert measures.get("wasserstein", max_iter=1e6).max_iter == 1_000_000


@pytest.mark.parametrize(
    "params,match",
    [({"max_iter": 0}, "'max_iter' must be a positive integer"), ({"return_coupling": "yes"}, "True or False")],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        measures.get("wasserstein", **params)


def test_bad_geometry(XY):
    X, _ = XY
    m = measures.get("wasserstein")
    with pytest.raises(ValueError, match="wasserstein: the second geometry must be"):
        m.compare(m.prepare(X), X[:, 0])
