"""Cosine similarity of flattened representations: analytic cases, invariances, errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from layergw import measures


@pytest.fixture
def m():
    return measures.get("cosine")


@pytest.fixture(scope="module")
def XY():
    rng = np.random.default_rng(0)
    return rng.normal(size=(25, 6)), rng.normal(size=(25, 6))


def test_matches_flattened_cosine(m, XY):
    X, Y = XY
    x, y = X.ravel(), Y.ravel()
    assert m.score(X, Y) == pytest.approx(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)), rel=1e-12)
    assert m.score(X, Y) == pytest.approx(np.trace(X.T @ Y) / (np.linalg.norm(X) * np.linalg.norm(Y)), rel=1e-12)


def test_analytic_values(m, XY):
    X, _ = XY
    assert m.score(X, X) == pytest.approx(1.0, abs=1e-15)
    assert m.score(X, -2.0 * X) == pytest.approx(-1.0, abs=1e-15)
    A = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    B = np.array([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    assert m.score(A, B) == 0.0
    assert m.score(A, A + B) == pytest.approx(1 / np.sqrt(2), rel=1e-15)


def test_declarations(m):
    assert m.kind == "similarity" and m.best == 1.0 and m.params() == {}
    assert m.equal_widths and m.accepts_constant and m.symmetric
    assert m.invariant_to() == {"scaling"}


def test_scale_invariant_only(m, XY):
    X, Y = XY
    base = m.score(X, Y)
    assert m.score(X, 1e4 * Y) == pytest.approx(base, rel=1e-12)
    assert m.score(Y, X) == pytest.approx(base, rel=1e-12)
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    for what, Z in {"rotation": Y @ Q, "translation": Y + 1.0, "permutation": Y[:, ::-1]}.items():
        assert m.score(X, Z) != pytest.approx(base, rel=1e-3), what


def test_constant_nonzero_representation_is_fine(m):
    C = np.full((10, 3), 2.5)
    assert m.score(C, np.ones((10, 3))) == pytest.approx(1.0, abs=1e-15)


def test_all_zero_representation_is_a_clear_error(m):
    with pytest.raises(ValueError, match=r"layer7: cosine: the representation is all zeros .*undefined"):
        m.prepare(np.zeros((10, 3)), label="layer7")
    with pytest.raises(ValueError, match=r"^Y: cosine: the representation is all zeros"):
        m.score(np.ones((10, 3)), np.zeros((10, 3)))


def test_unequal_widths_error_names_both(m):
    with pytest.raises(ValueError, match=r"cosine needs equal widths: X has d=4 columns but Y has d=6"):
        m.score(np.ones((5, 4)), np.ones((5, 6)))


def test_geometry_is_unit_norm_and_checked(m, XY):
    X, Y = XY
    g = pickle.loads(pickle.dumps(m.prepare(X)))
    assert np.linalg.norm(g) == pytest.approx(1.0)
    assert m.compare(g, m.prepare(Y)).value == m.score(X, Y)
    with pytest.raises(ValueError, match="first geometry has n=25 rows but second geometry has n=5"):
        m.compare(g, m.prepare(Y[:5]))
    with pytest.raises(ValueError, match=r"\(n, d\) array from Cosine.prepare"):
        m.compare(g, g.ravel())


def test_docstring_says_it_is_the_projects_definition():
    import layergw.measures.cosine as module

    doc = " ".join(module.__doc__.split())
    assert "the project's choice: the paper gives no definition" in doc
