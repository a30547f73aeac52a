"""AGW: agreement with the reference (pinardemetci/AGW-AISTATS24), starts, invariances, caps, errors."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from layergw import measures

# Reference: github.com/pinardemetci/AGW-AISTATS24, commit af0139f682531609d8eb3d6bd7e63fe38629ac23,
# src/agw_scootr.py::agw_scootr(X, Y, cdist(X, X), cdist(Y, Y), alpha=alpha, verbose=False)
# (defaults: niter=10, algo="cg", algo2="emd", product start), run with two minimal edits in
# src/optim.py: the import `from scipy.optimize._linesearch import scalar_search_armijo`
# (scipy >= 1.8), and its gradient bug fixed: `Mi = (1 - reg) * M + reg * gwggrad(...)` instead
# of `Mi = M + reg * gwggrad(...)`. The values are the full objective
# alpha * GW(Ts) + (1 - alpha) * COOT(Ts, Tv) at the returned (Ts, Tv) on the standard inputs
# (X 200x30, Y 200x50); preprocess "center"/"l2" = the reference run on X - X.mean(0) or
# sklearn.preprocessing.normalize(X) (and their cdist).
REF_FULL = {
    (0.5, "none"): 2.7669984939011747,  # reference's own returned cost (COOT term): 1.545644529487347
    (0.1, "none"): 1.5225147395889735,
    (1.0, "none"): 4.0468058411916275,
    (0.5, "center"): 2.763900964509883,
    (0.5, "l2"): 0.03861235519929955,
}
# The unmodified reference (gradient bug kept) on the same inputs: alpha=0 is unaffected by
# the bug and gives 1.2135349180015986; alpha=0.5 reaches another local optimum: full
# objective 2.715728318030072 (its returned COOT term 1.4802092690281614).
REF_UNMODIFIED_ALPHA0 = 1.2135349180015986


def standard(n: int, d1: int, d2: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d1))
    Y = np.tanh(X @ rng.standard_normal((d1, d2))) + 0.1 * rng.standard_normal((n, d2))
    return X, Y


@pytest.fixture(scope="module")
def XY() -> tuple[np.ndarray, np.ndarray]:
    return standard(200, 30, 50)


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    return standard(40, 6, 9)


def full_objective(X, Y, Ts, Tv, alpha):
    """alpha * sum (D1[i,k] - D2[j,l])^2 Ts Ts + (1 - alpha) * sum (X[i,k] - Y[j,l])^2 Ts Tv, by loops."""
    D1, D2 = cdist(X, X), cdist(Y, Y)
    gw = sum(Ts[i, j] * ((D1[i][:, None] - D2[j][None, :]) ** 2 * Ts).sum() for i, j in zip(*np.nonzero(Ts)))
    coot = sum(Ts[i, j] * ((X[i][:, None] - Y[j][None, :]) ** 2 * Tv).sum() for i, j in zip(*np.nonzero(Ts)))
    return alpha * gw + (1 - alpha) * coot


# ---- the reference ------------------------------------------------------------------------


@pytest.mark.parametrize("alpha,preprocess", [(0.5, "none"), (0.5, "l2")])
def test_equals_reference_with_gradient_fix(XY, alpha, preprocess):
    X, Y = XY
    m = measures.get("agw", alpha=alpha, preprocess=preprocess)
    c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.value == pytest.approx(REF_FULL[alpha, preprocess], rel=1e-9)
    assert c.converged and c.iterations == 2


def test_equals_unmodified_reference_where_the_bug_has_no_effect(XY):
    # alpha=0 (pure COOT sample step): the reference's wrong gradient M + 0 * grad GW is right
    X, Y = XY
    assert measures.get("agw", alpha=0.0).score(X, Y) == pytest.approx(REF_UNMODIFIED_ALPHA0, rel=1e-9)


def test_value_is_the_full_objective_of_the_couplings(small):
    """Recompute the objective by explicit sums from couplings found by the same BCD steps."""
    import ot

    X, Y = small
    alpha = 0.3
    n, d1, d2 = X.shape[0], X.shape[1], Y.shape[1]
    p, v1, v2 = ot.unif(n), ot.unif(d1), ot.unif(d2)
    D1, D2 = cdist(X, X), cdist(Y, Y)
    Ts, Tv = np.outer(p, p), np.outer(v1, v2)
    for _ in range(10):
        Ms = np.array([[((X[i][:, None] - Y[j][None, :]) ** 2 * Tv).sum() for j in range(n)] for i in range(n)])
        Ts = ot.gromov.fused_gromov_wasserstein(Ms, D1, D2, p, p, alpha=alpha, G0=Ts, max_iter=500)
        Mv = np.einsum("ij,ik,jl->kl", Ts, X**2, np.ones_like(Y)) + np.einsum(
            "ij,ik,jl->kl", Ts, np.ones_like(X), Y**2
        ) - 2 * X.T @ Ts @ Y
        Tv = ot.emd(v1, v2, Mv)
    expected = full_objective(X, Y, Ts, Tv, alpha)
    assert measures.get("agw", alpha=alpha).score(X, Y) == pytest.approx(expected, rel=1e-9)


# ---- starts, analytic cases ---------------------------------------------------------------


def test_identity_start_gives_zero_for_identical_and_feature_permuted_layers(small):
    X, _ = small
    m = measures.get("agw", init="identity")
    assert m.score(X, X) == pytest.approx(0.0, abs=1e-12)
    assert m.score(X, X[:, np.random.default_rng(1).permutation(X.shape[1])]) == pytest.approx(0.0, abs=1e-12)


def test_pure_gw_is_zero_for_a_rotated_copy_from_the_identity_start(small):
    X, _ = small
    Q = np.linalg.qr(np.random.default_rng(2).normal(size=(6, 6)))[0]
    assert measures.get("agw", alpha=1.0, init="identity").score(X, X @ Q) == pytest.approx(0.0, abs=1e-10)
    assert measures.get("agw", alpha=0.5, init="identity").score(X, X @ Q) > 0.01  # COOT sees rotations


def test_best_is_the_lower_start(small):
    X, Y = small
    a = measures.get("agw", init="product").score(X, Y)
    b = measures.get("agw", init="identity").score(X, Y)
    assert measures.get("agw", init="best").score(X, Y) == min(a, b)


def test_symmetric(small):
    X, Y = small
    for init in ("product", "identity"):
        m = measures.get("agw", init=init)
        assert m.score(X, Y) == pytest.approx(m.score(Y, X), rel=1e-9)


# ---- invariances --------------------------------------------------------------------------


def transforms(Y: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    n, d = Y.shape
    return {
        "rotation": Y @ np.linalg.qr(rng.normal(size=(d, d)))[0],
        "permutation": Y[:, rng.permutation(d)],
        "scaling": 2.5 * Y,
        "translation": Y + 3 * rng.normal(size=d),
        "sample_permutation": Y[rng.permutation(n)],
    }


@pytest.mark.parametrize(
    "params", [{}, {"init": "identity"}, {"preprocess": "center"}, {"preprocess": "l2", "alpha": 0.8}]
)
def test_declared_invariances_hold_and_rotation_does_not(small, params):
    X, Y = small
    m = measures.get("agw", **params)
    base = m.score(X, Y)
    claims = m.invariant_to()
    for name, Z in transforms(Y).items():
        if name in claims:
            assert m.score(X, Z) == pytest.approx(base, rel=1e-9), name
    assert "rotation" not in claims
    assert m.score(X, transforms(Y)["rotation"]) != pytest.approx(base, rel=1e-3)


def test_invariance_claims_follow_parameters():
    get = lambda **kw: measures.get("agw", **kw).invariant_to()
    assert get() == {"permutation", "sample_permutation"}
    assert get(init="identity") == {"permutation"}
    assert get(preprocess="center") == {"permutation", "sample_permutation", "translation"}
    assert get(preprocess="l2", init="best") == {"permutation", "scaling"}


# ---- caps and errors ----------------------------------------------------------------------


def test_round_cap_is_reported_not_raised(small, caplog):
    X, Y = small
    m = measures.get("agw", max_iter=1)
    with caplog.at_level(logging.WARNING, logger="layergw.measures.agw"):
        c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.iterations == 1 and not c.converged
    assert "max_iter=1 rounds" in caplog.text


def test_inner_caps_are_reported(small, caplog):
    X, Y = small
    with caplog.at_level(logging.WARNING, logger="layergw.measures.agw"):
        m = measures.get("agw", cg_max_iter=1)
        assert not m.compare(m.prepare(X), m.prepare(Y)).converged
        assert "cg_max_iter=1" in caplog.text
        m = measures.get("agw", lp_max_iter=2)
        assert not m.compare(m.prepare(X), m.prepare(Y)).converged
        assert "lp_max_iter=2" in caplog.text


@pytest.mark.parametrize(
    "params,match",
    [
        ({"alpha": 1.5}, r"'alpha' must be a number in \[0, 1\]; got 1.5"),
        ({"alpha": True}, "'alpha' must be a number"),
        ({"preprocess": "zscore"}, "'preprocess' must be one of 'none', 'center', 'l2'"),
        ({"init": "random"}, "'init' must be one of 'product', 'identity', 'best'"),
        ({"max_iter": 0}, "'max_iter' must be a positive integer"),
        ({"tol": -1.0}, "'tol' must be a finite number > 0"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        measures.get("agw", **params)


def test_bad_geometry_and_mismatched_n_for_identity(small):
    X, Y = small
    m = measures.get("agw", init="identity")
    with pytest.raises(ValueError, match="agw: the second geometry must come from AugmentedGW.prepare"):
        m.compare(m.prepare(X), Y)
    with pytest.raises(ValueError, match="first geometry has n=40 rows but second geometry has n=39"):
        m.compare(m.prepare(X), m.prepare(Y[:39]))
    p = measures.get("agw")
    assert p.compare(p.prepare(X), p.prepare(Y[:39])).value > 0  # the product start needs no pairing
