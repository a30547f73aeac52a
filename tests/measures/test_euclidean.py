"""Euclidean measure: analytic cases and the equal-width requirement."""
from __future__ import annotations

import numpy as np
import pytest

from layergw import measures


@pytest.fixture
def m():
    return measures.get("euclidean")


def test_shift_by_a_vector_gives_its_norm(m):
    X = np.random.default_rng(0).normal(size=(25, 4))
    c = np.array([3.0, 0.0, 4.0, 0.0])
    assert m.score(X, X + c) == pytest.approx(5.0, rel=1e-12)


def test_zeros_against_ones_is_sqrt_d(m):
    assert m.score(np.zeros((7, 9)), np.ones((7, 9))) == pytest.approx(3.0, rel=1e-15)


def test_scaling_gives_rms_row_norm(m):
    X = np.random.default_rng(1).normal(size=(30, 5))
    expected = np.sqrt((X**2).sum() / 30)
    assert m.score(X, 2 * X) == pytest.approx(expected, rel=1e-12)


def test_does_not_grow_with_probe_size(m):
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    assert m.score(np.vstack([X] * 5), np.vstack([Y] * 5)) == pytest.approx(m.score(X, Y), rel=1e-12)


def test_self_zero_symmetric_and_not_rotation_invariant(m):
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    assert m.score(X, X) == 0.0
    assert m.score(X, Y) == m.score(Y, X)
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    assert m.score(X, X @ Q) > 0.1
    assert m.kind == "distance" and m.params() == {}


def test_unequal_widths_error_names_both_and_suggests_alternatives(m):
    assert m.equal_widths and m.invariant_to() == frozenset()
    with pytest.raises(ValueError, match=r"X has d=4 columns but Y has d=6.*gw, cka, rsa or rsm"):
        m.score(np.zeros((5, 4)), np.zeros((5, 6)))


def test_docstring_says_it_is_the_projects_definition():
    import layergw.measures.euclidean as module

    doc = " ".join(module.__doc__.split())
    assert "the project's choice: the paper gives no definition" in doc
