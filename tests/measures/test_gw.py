"""GW measure: agreement with POT, solver statistics, invariances, normalization, errors."""
from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import ot
import pytest

from layergw import measures
from layergw.measures.gw import _cg_stats, random_starts


def dist(A: np.ndarray) -> np.ndarray:
    """Independent Euclidean distance matrix (broadcasting, not scipy)."""
    return np.sqrt(((A[:, None, :] - A[None, :, :]) ** 2).sum(-1))


def rotation(d: int, seed: int) -> np.ndarray:
    Q, R = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return Q * np.sign(np.diag(R))


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(60, 5))


@pytest.fixture(scope="module")
def Y() -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.normal(size=(60, 9)) * rng.uniform(0.5, 2.0, size=9)


# ---- the contract: POT's value ----------------------------------------------------------


def test_equals_pot_gromov_wasserstein2_product_start(X, Y):
    p, q = ot.unif(60), ot.unif(60)
    expected = ot.gromov.gromov_wasserstein2(dist(X), dist(Y), p, q, "square_loss")
    got = measures.get("gw", normalize="none", init="product").score(X, Y)
    assert got == pytest.approx(float(expected), rel=1e-9, abs=0)
    assert got > 0


def test_equals_pot_with_identity_start(X, Y):
    n = X.shape[0]
    expected = ot.gromov.gromov_wasserstein2(
        dist(X), dist(Y), ot.unif(n), ot.unif(n), "square_loss", G0=np.eye(n) / n
    )
    got = measures.get("gw", init="identity").score(X, Y)
    assert got == pytest.approx(float(expected), rel=1e-9, abs=0)


def test_best_is_the_lower_start(X, Y):
    a = measures.get("gw", init="product").score(X, Y)
    b = measures.get("gw", init="identity").score(X, Y)
    assert measures.get("gw", init="best").score(X, Y) == min(a, b)


@pytest.mark.parametrize("normalize", ["max", "mean"])
def test_normalized_equals_pot_on_normalized_matrices(X, Y, normalize):
    def norm(C):
        n = C.shape[0]
        return C / (C.max() if normalize == "max" else C.sum() / (n * (n - 1)))

    n = X.shape[0]
    expected = ot.gromov.gromov_wasserstein2(norm(dist(X)), norm(dist(Y)), ot.unif(n), ot.unif(n), "square_loss")
    got = measures.get("gw", normalize=normalize).score(X, Y)
    assert got == pytest.approx(float(expected), rel=1e-9, abs=0)


# ---- iterations / converged / coupling ------------------------------------------------


def test_iterations_and_converged_from_pot_log(X, Y):
    n = X.shape[0]
    _, log = ot.gromov.gromov_wasserstein(dist(X), dist(Y), ot.unif(n), ot.unif(n), "square_loss", log=True)
    m = measures.get("gw")
    c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.iterations == len(log["loss"]) - 1 >= 2
    assert c.converged is True
    assert c.seconds > 0
    assert c.coupling is None


def test_iteration_cap_reports_not_converged(X, Y, caplog):
    m = measures.get("gw", max_iter=1)
    with caplog.at_level("WARNING", logger="layergw.measures.gw"):
        c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.iterations == 1 and c.converged is False
    assert "max_iter=1" in caplog.text


def test_cg_stats_replicates_pot_stopping_rule():
    assert _cg_stats([5.0, 4.0, 3.9], max_iter=100, tol_rel=1e-9, tol_abs=1e-9) == (2, True)
    assert _cg_stats([5.0, 4.0, 3.9], max_iter=2, tol_rel=1e-9, tol_abs=1e-9) == (2, False)
    # cap hit on the same step the tolerance is met: converged
    assert _cg_stats([5.0, 4.0, 4.0], max_iter=2, tol_rel=1e-9, tol_abs=1e-9) == (2, True)
    assert _cg_stats([5.0, 0.0, 0.0], max_iter=2, tol_rel=1e-9, tol_abs=1e-9) == (2, True)
    assert _cg_stats([1.0, 1.0 + 1e-8], max_iter=1, tol_rel=1e-7, tol_abs=1e-12) == (1, True)


def test_return_coupling_is_a_transport_plan(X, Y):
    m = measures.get("gw", return_coupling=True)
    c = m.compare(m.prepare(X), m.prepare(Y))
    T = c.coupling
    assert T is not None and T.shape == (60, 60)
    assert np.all(T >= -1e-15)
    np.testing.assert_allclose(T.sum(1), np.full(60, 1 / 60), atol=1e-12)
    np.testing.assert_allclose(T.sum(0), np.full(60, 1 / 60), atol=1e-12)


def test_truncated_linear_program_reports_not_converged(X, Y, caplog):
    # a 10-pivot cap cannot solve a 60 x 60 OT problem: POT warns and goes on
    n = X.shape[0]
    with pytest.warns(UserWarning, match="numItermax reached before optimality"):
        _, log = ot.gromov.gromov_wasserstein(
            dist(X), dist(Y), ot.unif(n), ot.unif(n), "square_loss", log=True, numItermaxEmd=10
        )
    m = measures.get("gw", max_iter_emd=10, solver="pot")
    with caplog.at_level("WARNING", logger="layergw.measures.gw"), warnings.catch_warnings():
        warnings.simplefilter("error")  # POT's warning is consumed, not passed on
        c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.converged is False
    assert c.value == pytest.approx(float(log["gw_dist"]), rel=1e-12)  # the cap reaches POT
    assert "max_iter_emd=10" in caplog.text
    caplog.clear()
    # the lean solver runs POT's network simplex on a first step it cannot do in closed form
    # (any step from a given start): the cap binds there, and is reported the same way
    lean = measures.get("gw", max_iter_emd=10, init="identity")
    with caplog.at_level("WARNING", logger="layergw.measures.gw"), warnings.catch_warnings():
        warnings.simplefilter("error")
        capped = lean.compare(lean.prepare(X), lean.prepare(Y))
    assert capped.converged is False and "max_iter_emd=10" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="layergw.measures.gw"):
        full = measures.get("gw").compare(m.prepare(X), m.prepare(Y))
    assert full.converged is True and caplog.text == ""
    assert full.value < c.value


def test_other_pot_warnings_are_passed_on(monkeypatch, X, Y):
    real = ot.gromov.gromov_wasserstein

    def noisy(*args, **kwargs):
        warnings.warn("something else", RuntimeWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(ot.gromov, "gromov_wasserstein", noisy)
    m = measures.get("gw", solver="pot")
    with pytest.warns(RuntimeWarning, match="something else"):
        c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.converged is True
    real_emd = ot.lp.emd

    def noisy_emd(*args, **kwargs):
        warnings.warn("something else from the LP", RuntimeWarning)
        return real_emd(*args, **kwargs)

    monkeypatch.setattr(ot.lp, "emd", noisy_emd)
    lean = measures.get("gw", init="identity")  # its first step runs POT's network simplex
    with pytest.warns(RuntimeWarning, match="something else from the LP"):
        assert lean.compare(lean.prepare(X), lean.prepare(Y)).converged is True


# ---- init="best" -----------------------------------------------------------------------


def starts(n: int, n_random: int, seed: int) -> list:
    """The starts of init="best", in order: product, identity, random involutions."""
    return [None, np.eye(n) / n] + [np.eye(n)[s] / n for s in random_starts(n, n_random, seed)]


def test_best_with_random_starts_is_the_lowest_pot_value(X, Y):
    n = X.shape[0]
    runs = [
        ot.gromov.gromov_wasserstein(dist(X), dist(Y), ot.unif(n), ot.unif(n), "square_loss", G0=G0, log=True)
        for G0 in starts(n, 4, 0)
    ]
    values = [float(log["gw_dist"]) for _, log in runs]
    k = int(np.argmin(values))
    assert k >= 2  # on these inputs a random start wins: the coupling must be that start's
    m = measures.get("gw", init="best", n_random=4, seed=0, return_coupling=True)
    c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.value == pytest.approx(values[k], rel=1e-12)
    assert c.spread == pytest.approx(max(values) - min(values), rel=1e-9)
    assert c.iterations == len(runs[k][1]["loss"]) - 1
    np.testing.assert_allclose(c.coupling, runs[k][0], atol=1e-15)
    assert measures.get("gw", init="best", n_random=4).score(X, Y) <= measures.get("gw", init="best").score(X, Y)


def test_best_without_random_starts_spread_is_the_gap(X, Y):
    a = measures.get("gw", init="product").score(X, Y)
    b = measures.get("gw", init="identity").score(X, Y)
    m = measures.get("gw", init="best")
    c = m.compare(m.prepare(X), m.prepare(Y))
    assert c.value == min(a, b)
    assert c.spread == pytest.approx(abs(a - b), rel=1e-9)
    for init in ("product", "identity"):
        m = measures.get("gw", init=init)
        assert m.compare(m.prepare(X), m.prepare(Y)).spread is None


def test_best_coupling_is_the_identity_start_when_it_wins(X):
    Z = X + 1e-3 * np.random.default_rng(9).normal(size=X.shape)
    m = measures.get("gw", init="best", n_random=2, return_coupling=True)
    c = m.compare(m.prepare(X), m.prepare(Z))
    np.testing.assert_allclose(c.coupling, np.eye(60) / 60, atol=1e-12)
    assert c.spread > 0


def test_random_starts_are_seeded_involutions():
    a = random_starts(61, 3, seed=5)
    assert len(a) == 3
    for s in a:
        assert sorted(s) == list(range(61))
        assert np.array_equal(s[s], np.arange(61))
        assert np.count_nonzero(s == np.arange(61)) == 1  # odd n: one fixed point
    assert all(np.array_equal(u, v) for u, v in zip(a, random_starts(61, 3, seed=5)))
    assert not np.array_equal(a[0], random_starts(61, 1, seed=6)[0])
    assert not np.array_equal(a[0], a[1])
    assert random_starts(10, 0, 0) == []


def test_best_with_random_starts_is_exactly_symmetric(X, Y):
    # involution starts equal their transposes, so (Y, X) runs the transposed problems
    m = measures.get("gw", init="best", n_random=3, seed=1)
    assert m.score(X, Y) == pytest.approx(m.score(Y, X), rel=1e-10)


def test_seed_changes_only_the_random_starts(X, Y):
    v = [measures.get("gw", init="best", n_random=3, seed=s).score(X, Y) for s in (0, 1, 2)]
    assert len(set(v)) > 1
    assert measures.get("gw", init="best", n_random=3, seed=1).score(X, Y) == v[1]


@pytest.mark.parametrize("init", ["product", "identity"])
def test_random_starts_need_init_best(init):
    with pytest.raises(ValueError, match=rf"'n_random'.*init='best' only; got n_random=2 with init='{init}'"):
        measures.get("gw", init=init, n_random=2)


def test_best_invariances():
    assert measures.get("gw", init="best", n_random=2).invariant_to() == {"rotation", "permutation", "translation"}
    assert "sample_permutation" in measures.get("gw").invariant_to()


# ---- geometry --------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["none", "max", "mean"])
def test_prepare_is_a_symmetric_distance_matrix(X, normalize):
    C = measures.get("gw", normalize=normalize).prepare(X)
    assert C.shape == (60, 60) and C.dtype == np.float64
    assert np.all(np.diag(C) == 0) and np.array_equal(C, C.T)
    D = dist(X)
    if normalize == "max":
        assert C.max() == pytest.approx(1.0, abs=1e-15)
        D = D / D.max()
    elif normalize == "mean":
        assert C.sum() / (60 * 59) == pytest.approx(1.0, rel=1e-12)
        D = D / (D.sum() / (60 * 59))
    np.testing.assert_allclose(C, D, rtol=1e-12, atol=1e-12)
    assert np.array_equal(pickle.loads(pickle.dumps(C)), C)


def test_distance_matrix_is_accurate_for_close_points():
    # Gram-expansion formulas lose all digits here; differences do not.
    base = np.full((4, 3), 1e8)
    base[1, 0] += 1e-4
    C = measures.get("gw").prepare(base)
    gap = base[1, 0] - base[0, 0]  # exact (Sterbenz), ~1e-4 after rounding 1e8 + 1e-4
    assert C[0, 1] == gap
    B = base @ base.T
    sq = np.diag(B)[:, None] + np.diag(B)[None, :] - 2 * B
    assert abs(np.sqrt(max(sq[0, 1], 0.0)) - gap) > 1e-6  # the Gram expansion is wrong here
    assert C[0, 2] == 0.0


@pytest.mark.parametrize("normalize", ["max", "mean"])
def test_constant_representation_cannot_be_normalized(normalize):
    with pytest.raises(ValueError, match=rf"normalize='{normalize}'.*all zeros.*identical"):
        measures.get("gw", normalize=normalize).prepare(np.ones((10, 3)))


def test_constant_representation_without_normalization_is_fine(Y):
    X0 = np.ones((60, 3))
    v = measures.get("gw").score(X0, Y)
    # against a point mass the coupling is irrelevant: sum_jl C2[j,l]^2 / n^2
    assert v == pytest.approx(float((dist(Y) ** 2).mean()), rel=1e-12)


# ---- properties ------------------------------------------------------------------------


def test_self_distance_is_zero_with_identity_start(X):
    m = measures.get("gw", init="identity")
    assert abs(m.score(X, X)) < 1e-12


@pytest.mark.parametrize("init", ["product", "identity"])
def test_invariant_to_rotation_translation_feature_permutation(X, Y, init):
    m = measures.get("gw", init=init)
    base = m.score(X, Y)
    rng = np.random.default_rng(5)
    moved = {
        "rotation": Y @ rotation(Y.shape[1], 3),
        "translation": Y + rng.normal(size=Y.shape[1]) * 10,
        "permutation": Y[:, rng.permutation(Y.shape[1])],
    }
    for what, Z in moved.items():
        assert m.score(X, Z) == pytest.approx(base, rel=1e-8), what


def test_symmetric(X, Y):
    for init in ("product", "identity"):
        m = measures.get("gw", init=init)
        assert m.score(X, Y) == pytest.approx(m.score(Y, X), rel=1e-6), init


def test_max_normalization_gives_scale_invariance(X, Y):
    for normalize in ("max", "mean"):
        m = measures.get("gw", normalize=normalize)
        assert m.score(X, 3.7 * Y) == pytest.approx(m.score(X, Y), rel=1e-9)
    raw = measures.get("gw")
    assert raw.score(X, 3.7 * Y) != pytest.approx(raw.score(X, Y), rel=1e-3)


def test_different_n_product_start_allowed_identity_not(X, Y):
    m = measures.get("gw")
    v = m.compare(m.prepare(X), m.prepare(Y[:40])).value
    expected = ot.gromov.gromov_wasserstein2(dist(X), dist(Y[:40]), ot.unif(60), ot.unif(40), "square_loss")
    assert v == pytest.approx(float(expected), rel=1e-9)
    mi = measures.get("gw", init="identity")
    with pytest.raises(ValueError, match="n=60 rows but second geometry has n=40"):
        mi.compare(mi.prepare(X), mi.prepare(Y[:40]))


def test_compare_rejects_non_square_geometry(X):
    m = measures.get("gw")
    with pytest.raises(ValueError, match=r"square \(n, n\) distance matrix"):
        m.compare(X, m.prepare(X))


# ---- parameters ------------------------------------------------------------------------


def test_defaults_are_pots():
    m = measures.get("gw")
    assert m.params() == {
        "normalize": "none",
        "init": "product",
        "max_iter": 10000,
        "tol_rel": 1e-9,
        "tol_abs": 1e-9,
        "max_iter_emd": 100000,
        "solver": "lean",
        "n_random": 0,
        "seed": 0,
        "return_coupling": False,
    }
    assert m.kind == "distance" and m.name == "gw"
    assert json.loads(json.dumps(m.params())) == m.params()


@pytest.mark.parametrize(
    "param,value",
    [
        ("normalize", "l2"),
        ("normalize", None),
        ("init", "random"),
        ("max_iter", 0),
        ("max_iter", 1.5),
        ("max_iter", True),
        ("tol_rel", -1.0),
        ("tol_abs", float("nan")),
        ("tol_rel", "1e-9"),
        ("return_coupling", "yes"),
        ("max_iter_emd", 0),
        ("max_iter_emd", 2.5),
        ("n_random", -1),
        ("n_random", 1.5),
        ("seed", -3),
        ("seed", "0"),
    ],
)
def test_bad_parameters(param, value):
    with pytest.raises(ValueError, match=rf"'{param}'.*got {value!r}".replace("(", r"\(").replace(")", r"\)")):
        measures.get("gw", **{param: value})


def test_integral_float_max_iter_is_an_int():
    m = measures.get("gw", max_iter=1e4)
    assert m.max_iter == 10000 and isinstance(m.max_iter, int)
    assert m == measures.get("gw")


def test_choice_errors_list_valid_values():
    with pytest.raises(ValueError, match="'none', 'max', 'mean'; got 'l2'"):
        measures.get("gw", normalize="l2")
    with pytest.raises(ValueError, match="'product', 'identity', 'best'; got 'random'"):
        measures.get("gw", init="random")


# -- analytic cases: values known in closed form, not from POT --------------------------------

@pytest.mark.parametrize("a, b", [(1.0, 3.0), (2.0, 0.5), (5.0, 5.0), (0.25, 7.0)])
def test_two_point_spaces_have_the_closed_form(a, b):
    """Two points at distance a against two at distance b, uniform weights (each point doubled,
    since a layer needs 3 rows): a coupling keeping mass t on the matched pairs costs
    (a - b)^2 / 2 + 8 a b t (1/2 - t), so GW = (a - b)^2 / 2 at t = 1/2. The product coupling
    (t = 1/4) is a stationary point of that objective: conditional gradient started there stays,
    at (a^2 + b^2) / 4 + (a - b)^2 / 4 -- the non-convexity the paper's single start hides."""
    X, Y = np.array([[0.0], [0.0], [a], [a]]), np.array([[0.0], [0.0], [b], [b]])
    for init in ("identity", "best"):
        assert measures.get("gw", init=init).score(X, Y) == pytest.approx((a - b) ** 2 / 2, rel=1e-12, abs=1e-12)
    product = measures.get("gw", init="product").score(X, Y)
    assert product == pytest.approx((a * a + b * b) / 4 + (a - b) ** 2 / 4, rel=1e-12)
    assert product >= (a - b) ** 2 / 2


@pytest.mark.parametrize("init", ["product", "identity", "best"])
def test_an_isometric_copy_is_at_distance_zero(init):
    """GW is 0 exactly for an isometric copy: rotated, reflected and translated, other width."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(9, 9)))
    Y = np.hstack([X, np.zeros((40, 3))]) @ Q + 5.0  # embedded in 9 dimensions, then rotated
    assert abs(measures.get("gw", init=init).score(X, Y)) < 1e-12
    assert measures.get("gw", init=init).score(X, 1.5 * Y) > 1e-3  # not for a rescaled copy (raw GW)
