"""Orthogonal Procrustes distance against mklabunde/resi reference values, analytic cases, errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg

from layergw import measures

# Reference values: mklabunde/resi @ 24ab9e5055c71527445b0b196f5872f3cbe9a020,
# repsim/measures/procrustes.py orthogonal_procrustes_centered_and_normalized(A, B, "nd"), run with its
# helpers extracted unmodified by /tmp/helperA/ref_procrustes.py (it returns the square root of
# 2 - 2 ||A^T B||_*, clipped at 0).
REF_X_Y = 0.6234840894048498  # standard inputs, both orders
REF_A_B = 0.5996480574786479  # seed 1, equal widths 8, offset and scaled
REF_A_W = 0.6121611930872265  # seed 1, W of width 60 > n = 40


def standard(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 30))
    Y = np.tanh(X @ rng.standard_normal((30, 50))) + 0.1 * rng.standard_normal((200, 50))
    return X, Y


def second_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    A = rng.standard_normal((40, 8)) + 3.0
    B = 5.0 * (A @ rng.standard_normal((8, 8))) + rng.standard_normal((40, 8))
    W = np.tanh(A @ rng.standard_normal((8, 60)))
    return A, B, W


def normalised(A: np.ndarray) -> np.ndarray:
    A = A - A.mean(0)
    return A / np.linalg.norm(A)


def aligned_residual(X: np.ndarray, Y: np.ndarray) -> float:
    """min_R ||X R - Y||_F by scipy's Procrustes rotation, X and Y zero-padded to one width."""
    X, Y = normalised(X), normalised(Y)
    D = max(X.shape[1], Y.shape[1])
    X = np.pad(X, ((0, 0), (0, D - X.shape[1])))
    Y = np.pad(Y, ((0, 0), (0, D - Y.shape[1])))
    R, _ = scipy.linalg.orthogonal_procrustes(X, Y)
    return float(np.linalg.norm(X @ R - Y))


def test_matches_resi_reference():
    X, Y = standard()
    m = measures.get("procrustes")
    assert m.score(X, Y) == pytest.approx(REF_X_Y, rel=1e-6)
    assert m.score(Y, X) == pytest.approx(REF_X_Y, rel=1e-6)
    A, B, W = second_case()
    assert m.score(A, B) == pytest.approx(REF_A_B, rel=1e-6)
    assert m.score(A, W) == pytest.approx(REF_A_W, rel=1e-6)
    assert m.score(W, A) == pytest.approx(REF_A_W, rel=1e-6)
    assert m.prepare(W).features.shape == (40, 40)  # d > n: reduced to n columns, same value
    assert m.score(X, Y) == pytest.approx(aligned_residual(X, Y), rel=1e-10)


def test_identical_and_aligned_copies_are_zero():
    X, _ = standard()
    m = measures.get("procrustes")
    assert m.kind == "distance" and m.params() == {}
    assert m.score(X, X) < 1e-12
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((30, 30)))
    assert m.score(X, 3.0 * X[:, ::-1] @ Q - 4.0) < 1e-12
    # zero-padding: X next to [X, 0] is 0 too
    assert m.score(X, np.hstack([X, np.zeros((200, 5))])) < 1e-12


def test_small_distances_have_no_cancellation_error():
    X, _ = standard()
    rng = np.random.default_rng(4)
    m = measures.get("procrustes")
    for eps in (1e-3, 1e-6, 1e-9):
        Y = X + eps * rng.standard_normal(X.shape)
        got = m.score(X, Y)
        assert got == pytest.approx(aligned_residual(X, Y), rel=1e-6), eps
    Yw = np.hstack([X, 1e-7 * rng.standard_normal((200, 10))])  # wider second side
    assert m.score(X, Yw) == pytest.approx(aligned_residual(X, Yw), rel=1e-6)
    assert m.score(Yw, X) == pytest.approx(aligned_residual(X, Yw), rel=1e-6)


def test_orthogonal_column_spaces_give_sqrt2():
    rng = np.random.default_rng(2)
    G = rng.standard_normal((60, 7))
    Q, _ = np.linalg.qr(G - G.mean(0))
    assert measures.get("procrustes").score(Q[:, :3], Q[:, 3:]) == pytest.approx(np.sqrt(2.0), rel=1e-12)


def test_invariances_and_metric():
    X, Y = standard()
    m = measures.get("procrustes")
    assert m.invariant_to() == {"rotation", "permutation", "scaling", "translation"}
    base = m.score(X, Y)
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((50, 50)))
    for what, Z in {"rotation": Y @ Q, "permutation": Y[:, ::-1], "scaling": 1e-3 * Y, "translation": Y + 9.0}.items():
        assert m.score(X, Z) == pytest.approx(base, rel=1e-9), what
    assert m.score(X, Y * np.arange(1, 51)) != pytest.approx(base, rel=1e-3)
    A, B, W = second_case()
    d = {(i, j): m.score(P, R) for i, P in enumerate((A, B, W)) for j, R in enumerate((A, B, W))}
    assert d[0, 2] <= d[0, 1] + d[1, 2] + 1e-12
    assert d[0, 1] <= d[0, 2] + d[2, 1] + 1e-12


def test_constant_layer_rejected():
    with pytest.raises(ValueError, match="X is constant: all 10 rows"):
        measures.get("procrustes").prepare(np.full((10, 3), 2.0))


def test_geometry_picklable_and_checked():
    X, Y = standard()
    m = measures.get("procrustes")
    g = pickle.loads(pickle.dumps(m.prepare(X)))
    assert m.compare(g, m.prepare(Y)).value == m.score(X, Y)
    with pytest.raises(ValueError, match="n=200 rows but second geometry has n=50"):
        m.compare(g, m.prepare(Y[:50]))
    with pytest.raises(ValueError, match="must come from OrthogonalProcrustes.prepare, got ndarray"):
        m.compare(g, Y)
