"""CCA / SVCCA / PWCCA against google/svcca reference values, analytic cases, invariances, errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from layergw import measures

# Reference values: google/svcca @ 1f3fbf19bd31bd9b76e728ef75842aa1d9a4cd2b, cca_core.py and pwcca.py run
# unmodified by /tmp/helperA/ref_cca.py (acts passed transposed, (neurons, samples)):
#   np.mean(get_cca_similarity(X.T, Y.T, epsilon=0.)["cca_coef1"])                       (all 30 coefficients)
REF_MEAN = 0.8657176261531679
#   SVCCA, tutorials/001_Introduction.ipynb recipe: centre, SVD, svacts = diag(s[:k]) @ V[:k] with k the
#   smallest number of directions whose s**2 reach the fraction of the total, then
#   np.mean(get_cca_similarity(svacts1, svacts2, epsilon=0.)["cca_coef1"])
REF_SVCCA_99 = 0.8610790075229349  # k = 30 and 46
REF_SVCCA_90 = 0.8347244946007782  # k = 24 and 28
#   pwcca.compute_pwcca(A.T, B.T, epsilon=0.)[0] with Xw = whiten(X) (zero mean, orthogonal equal-norm
#   columns), where its directions u^T (acts - mean) + mean are the canonical variates (see cca.py):
REF_PWCCA_XW_Y = 0.8653319137824452  # compute_pwcca(Xw, Y): weights from Xw (30 < 50)
REF_PWCCA_YN_X = 0.7926926825535221  # compute_pwcca(Yn, X), Yn = whiten(Y[:, :20]): weights from Yn
REF_PWCCA_TIE = (0.7079237903842951, 0.7093041332450502)  # compute_pwcca(Xw, Z), (Zw, Xw); Z = Y[:, :30]
# On the raw standard inputs compute_pwcca(X.T, Y.T) gives 0.8763086995574529: it omits Sxx^{-1/2}
# in its directions (a reference bug, see cca.py); the paper's PWCCA is 0.87218964897...
REF_PWCCA_BUGGY_X_Y = 0.8763086995574529


def standard(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 30))
    Y = np.tanh(X @ rng.standard_normal((30, 50))) + 0.1 * rng.standard_normal((200, 50))
    return X, Y


def whiten(A: np.ndarray) -> np.ndarray:
    Q, _ = np.linalg.qr(A - A.mean(0))
    return 10.0 * Q


def covariance_ccas(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Singular values of Sxx^{-1/2} Sxy Syy^{-1/2} (full-rank inputs)."""
    def inv_sqrt(S):
        w, V = np.linalg.eigh(S)
        return V @ np.diag(w**-0.5) @ V.T

    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    n = X.shape[0]
    T = inv_sqrt(Xc.T @ Xc / n) @ (Xc.T @ Yc / n) @ inv_sqrt(Yc.T @ Yc / n)
    return np.linalg.svd(T, compute_uv=False)


def paper_pwcca(X: np.ndarray, Y: np.ndarray) -> float:
    """Morcos et al. 2018 with weights from X: canonical variates h_i = Xc Sxx^{-1/2} u_i, normalised."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    w, V = np.linalg.eigh(Xc.T @ Xc)
    Wx = V @ np.diag(w**-0.5) @ V.T
    w, V = np.linalg.eigh(Yc.T @ Yc)
    Wy = V @ np.diag(w**-0.5) @ V.T
    U, rho, _ = np.linalg.svd(Wx @ Xc.T @ Yc @ Wy, full_matrices=False)
    H = Xc @ Wx @ U
    H /= np.linalg.norm(H, axis=0)
    alpha = np.abs(H.T @ Xc).sum(1)
    return float(alpha @ rho / alpha.sum())


@pytest.fixture(scope="module")
def XY():
    return standard()


def test_mean_matches_svcca_reference(XY):
    X, Y = XY
    m = measures.get("cca")
    assert m.score(X, Y) == pytest.approx(REF_MEAN, rel=1e-6)
    assert m.score(Y, X) == pytest.approx(REF_MEAN, rel=1e-6)
    assert m.score(X, Y) == pytest.approx(covariance_ccas(X, Y).mean(), rel=1e-10)


@pytest.mark.parametrize("keep,ref", [(0.99, REF_SVCCA_99), (0.9, REF_SVCCA_90)])
def test_svcca_matches_reference_recipe(XY, keep, ref):
    X, Y = XY
    m = measures.get("cca", variance_kept=keep)
    assert m.score(X, Y) == pytest.approx(ref, rel=1e-6)
    assert m.score(Y, X) == pytest.approx(ref, rel=1e-6)
    assert m.prepare(X).rank == {0.99: 30, 0.9: 24}[keep]
    assert m.prepare(Y).rank == {0.99: 46, 0.9: 28}[keep]


def test_pwcca_matches_reference_where_its_directions_are_canonical(XY):
    X, Y = XY
    m = measures.get("cca", weighting="pwcca")
    Xw, Yn = whiten(X), whiten(Y[:, :20])
    assert m.score(Xw, Y) == pytest.approx(REF_PWCCA_XW_Y, rel=1e-6)
    # weights come from the side with fewer canonical directions, whichever argument it is
    assert m.score(Yn, X) == pytest.approx(REF_PWCCA_YN_X, rel=1e-6)
    assert m.score(X, Yn) == pytest.approx(REF_PWCCA_YN_X, rel=1e-6)
    # equal widths: weights from the first argument, so the value depends on the order
    Z = Y[:, :30]
    assert m.score(Xw, Z) == pytest.approx(REF_PWCCA_TIE[0], rel=1e-6)
    assert m.score(whiten(Z), Xw) == pytest.approx(REF_PWCCA_TIE[1], rel=1e-6)


def test_pwcca_follows_the_paper_not_the_reference_bug(XY):
    X, Y = XY
    got = measures.get("cca", weighting="pwcca").score(X, Y)
    assert got == pytest.approx(paper_pwcca(X, Y), rel=1e-10)
    assert abs(got - REF_PWCCA_BUGGY_X_Y) > 1e-3


def test_analytic_canonical_correlations():
    rng = np.random.default_rng(5)
    G = rng.standard_normal((100, 6))
    Q, _ = np.linalg.qr(G - G.mean(0))  # orthonormal, centred columns
    a, b, c, e, f, g = Q.T
    X = np.column_stack([a, b, c])
    theta = np.array([0.0, 0.7, np.pi / 2])
    Y = np.column_stack([np.cos(t) * x + np.sin(t) * z for t, x, z in zip(theta, (a, b, c), (e, f, g))])
    m = measures.get("cca")
    assert m.score(X, Y) == pytest.approx(np.cos(theta).mean(), abs=1e-12)
    assert m.score(X, X @ rng.standard_normal((3, 3)) + 7.0) == pytest.approx(1.0, abs=1e-12)
    # all correlations equal: weighting makes no difference
    Y2 = 0.6 * X + 0.8 * np.column_stack([e, f, g])
    assert measures.get("cca", weighting="pwcca").score(X, Y2) == pytest.approx(0.6, abs=1e-12)


def test_identical_is_one_for_every_setting(XY):
    X, _ = XY
    for p in ({}, {"variance_kept": 0.99}, {"weighting": "pwcca"}, {"variance_kept": 0.5, "weighting": "pwcca"}):
        assert measures.get("cca", **p).score(X, X) == pytest.approx(1.0, abs=1e-12), p


def test_invariances(XY):
    X, Y = XY
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((50, 50)))
    A = rng.standard_normal((50, 50))
    Xn, Yn = X[:, :20], Y[:, :20]  # Yn narrower than X: pwcca weights come from Yn
    Qn, _ = np.linalg.qr(rng.standard_normal((20, 20)))
    transforms = {
        "rotation": (Q, Qn),
        "invertible linear": (A, rng.standard_normal((20, 20))),
        "permutation": (np.eye(50)[::-1], np.eye(20)[::-1]),
        "scaling": (1e3 * np.eye(50), 1e-3 * np.eye(20)),
    }
    mean, svcca, pw = (measures.get("cca", **p) for p in ({}, {"variance_kept": 0.99}, {"weighting": "pwcca"}))
    assert mean.invariant_to() == svcca.invariant_to() == {"rotation", "permutation", "scaling", "translation"}
    assert pw.invariant_to() == {"permutation", "scaling", "translation"}
    for what, (T, Tn) in transforms.items():
        assert mean.score(X, Y @ T - 3.0) == pytest.approx(mean.score(X, Y), rel=1e-9), what
        if what != "invertible linear":
            assert svcca.score(X, Y @ T - 3.0) == pytest.approx(svcca.score(X, Y), rel=1e-9), what
        pw_same = pw.score(X, Yn @ Tn - 3.0) == pytest.approx(pw.score(X, Yn), rel=1e-9)
        assert pw_same == (what in ("permutation", "scaling")), what
    assert svcca.score(X, Y @ A) != pytest.approx(svcca.score(X, Y), rel=1e-3)
    # the non-weighting side of pwcca is free to any invertible map
    assert pw.score(Xn, Y @ A) == pytest.approx(pw.score(Xn, Y), rel=1e-9)


def test_dead_unit_is_ignored(XY):
    X, Y = XY
    Xd = np.hstack([X, np.full((200, 1), 0.5), X[:, :1] * 2.0])  # a constant and a duplicated unit
    m = measures.get("cca")
    assert m.prepare(Xd).rank == 30
    assert m.score(Xd, Y) == pytest.approx(REF_MEAN, rel=1e-9)


@pytest.mark.parametrize("d", [49, 50, 80])
def test_full_rank_wide_layer_is_a_clear_error(d):
    rng = np.random.default_rng(d)
    X = rng.standard_normal((50, d))
    with pytest.raises(ValueError, match=rf"L3: cca: CCA is degenerate for n=50 samples and d={d} features.*rank 49"):
        measures.get("cca").prepare(X, label="L3")


def test_wide_low_rank_layer_and_svcca_reduction_work():
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((50, 5))
    W = Z @ rng.standard_normal((5, 80))  # d=80 > n=50, rank 5
    Y = Z @ rng.standard_normal((5, 7)) + 0.5 * rng.standard_normal((50, 7))
    assert measures.get("cca").prepare(W).rank == 5
    ref = measures.get("cca").score(Z, Y)
    assert measures.get("cca").score(W, Y) == pytest.approx(ref, rel=1e-9)
    noisy = W + 1e-5 * rng.standard_normal(W.shape)  # full rank, 5 dominant directions
    with pytest.raises(ValueError, match="n=50 samples and d=80"):
        measures.get("cca").prepare(noisy)
    m = measures.get("cca", variance_kept=0.99)
    assert m.prepare(noisy).rank == 5
    assert m.score(noisy, Y) == pytest.approx(m.score(Z, Y), rel=1e-4)  # Y is reduced too
    with pytest.raises(ValueError, match="after keeping variance_kept=1.0"):
        measures.get("cca", variance_kept=1.0).prepare(noisy)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), True, "0.99"])
def test_variance_kept_validated(bad):
    with pytest.raises(ValueError, match=r"'cca' parameter 'variance_kept' must be None or a number in \(0, 1\]"):
        measures.get("cca", variance_kept=bad)


def test_weighting_validated_and_params():
    with pytest.raises(ValueError, match="parameter 'weighting' must be one of 'mean', 'pwcca'; got 'max'"):
        measures.get("cca", weighting="max")
    m = measures.get("cca", variance_kept=1)
    assert m.params() == {"variance_kept": 1.0, "weighting": "mean"}
    assert measures.get("cca", **m.params()) == m


def test_constant_layer_rejected():
    with pytest.raises(ValueError, match="X is constant: all 10 rows"):
        measures.get("cca").prepare(np.ones((10, 3)))


def test_geometry_checks_and_pickle(XY):
    X, Y = XY
    m = measures.get("cca", weighting="pwcca")
    g = pickle.loads(pickle.dumps(m.prepare(X)))
    assert m.compare(g, m.prepare(Y)).value == m.score(X, Y)
    with pytest.raises(ValueError, match="n=200 rows but second geometry has n=100"):
        m.compare(g, m.prepare(Y[:100]))
    with pytest.raises(ValueError, match="must come from CCA.prepare, got ndarray"):
        m.compare(X, g)
    with pytest.raises(ValueError, match=r"first geometry was prepared with \(variance_kept, weighting\)=\(None, 'mean'\)"):
        m.compare(measures.get("cca").prepare(X), g)
