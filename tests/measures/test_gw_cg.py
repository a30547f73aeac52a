"""The lean conditional gradient against POT's own solver, step for step, and its parts
against their definitions."""
from __future__ import annotations

import numpy as np
import ot
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import pdist, squareform

from layergw import measures
from layergw.measures import _gw_cg, _lap
from layergw.measures.gw import random_starts

POT_DEFAULTS = {"max_iter": 10_000, "tol_rel": 1e-9, "tol_abs": 1e-9, "max_iter_emd": 100_000}


def relu_layers(n: int, seed: int, widths=(24, 40)) -> tuple[np.ndarray, np.ndarray]:
    """Distance matrices of two successive layers of a random ReLU network on Gaussian inputs."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, 12))
    out = []
    for d in widths:
        h = np.maximum(h @ rng.standard_normal((h.shape[1], d)) / np.sqrt(h.shape[1]), 0.0)
        out.append(squareform(pdist(h)))
    return out[0], out[1]


def pot(C1, C2, G0=None):
    n = C1.shape[0]
    T, log = ot.gromov.gromov_wasserstein(C1, C2, ot.unif(n), ot.unif(n), "square_loss", log=True, G0=G0)
    return T, log


@pytest.mark.parametrize("n,seed", [(12, 0), (40, 1), (90, 2), (200, 3), (200, 4)])
def test_product_start_runs_pots_iterates(n, seed):
    C1, C2 = relu_layers(n, seed)
    T, log = pot(C1, C2)
    got = _gw_cg.solve(C1, C2, None, **POT_DEFAULTS)
    assert len(got.losses) == len(log["loss"])  # the same number of steps
    np.testing.assert_allclose(got.losses, np.asarray(log["loss"], dtype=float), rtol=1e-9, atol=0)
    np.testing.assert_allclose(got.plan, T, rtol=0, atol=1e-12)
    assert got.truncated == 0


@pytest.mark.parametrize("start", ["identity", "involution"])
def test_permutation_starts_run_pots_iterates(start):
    C1, C2 = relu_layers(120, 5)
    n = C1.shape[0]
    G0 = np.eye(n) / n if start == "identity" else np.eye(n)[random_starts(n, 1, 3)[0]] / n
    T, log = pot(C1, C2, G0)
    got = _gw_cg.solve(C1, C2, G0, **POT_DEFAULTS)
    np.testing.assert_allclose(got.losses, np.asarray(log["loss"], dtype=float), rtol=1e-9, atol=0)
    np.testing.assert_allclose(got.plan, T, rtol=0, atol=1e-12)


def test_paper_scale_n_1000_equals_pot():
    C1, C2 = relu_layers(1000, 0, widths=(32, 48))
    expected = ot.gromov.gromov_wasserstein2(C1, C2, ot.unif(1000), ot.unif(1000), "square_loss")
    got = measures.get("gw").compare(C1, C2)
    assert got.value == pytest.approx(float(expected), rel=1e-9, abs=0)
    assert got.converged


@pytest.mark.parametrize("normalize", ["mean", "max"])
def test_the_measure_with_either_solver_gives_the_same_value(normalize):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((80, 10))
    Y = np.tanh(X @ rng.standard_normal((10, 30)))
    lean = measures.get("gw", normalize=normalize, init="best", n_random=2)
    ref = measures.get("gw", normalize=normalize, init="best", n_random=2, solver="pot")
    a, b = lean.compare(lean.prepare(X), lean.prepare(Y)), ref.compare(ref.prepare(X), ref.prepare(Y))
    assert a.value == pytest.approx(b.value, rel=1e-9, abs=0)
    assert a.spread == pytest.approx(b.spread, rel=1e-6, abs=1e-12)
    assert (a.iterations, a.converged) == (b.iterations, b.converged)


def test_the_closed_form_first_step_is_the_linear_programs_optimum():
    C1, C2 = relu_layers(150, 8)
    n = C1.shape[0]
    w = np.full(n, 1.0 / n)
    const = ((C1 ** 2) @ w)[:, None] + ((C2 ** 2) @ w)[None, :]
    gradient = 2.0 * (const - 2.0 * C1 @ np.outer(w, w) @ C2)  # POT's at the product start
    sigma = _gw_cg._sorted_matching(C1 @ w, C2 @ w, float(np.abs(gradient).max()))
    plan = ot.emd(w, w, gradient)
    assert sigma is not None
    np.testing.assert_array_equal(sigma, plan.argmax(axis=1))


@pytest.mark.parametrize("ratio", [1e-9, 1e-11, 3e-13])
def test_a_swap_just_clear_of_tie_tol_is_pots_vertex(ratio):
    """Where the sorted matching's smallest swap is just above TIE_TOL of the scale, POT's
    network simplex on the same rank-one-plus-separable cost returns that matching."""
    rng = np.random.default_rng(17)
    n = 80
    u, v = np.linspace(0.0, 1.0, n), rng.permutation(np.linspace(0.0, 1.0, n))
    row, col = rng.random(n), rng.random(n)
    scale = float(np.abs(2 * (row[:, None] + col[None, :]) - 4 * np.outer(u, v)).max())
    u[41] = u[40] + ratio * scale * (n - 1) / 4  # its swap costs 4 (u41 - u40)(1 / (n - 1)) = ratio x scale
    M = 2 * (row[:, None] + col[None, :]) - 4 * np.outer(u, v)
    assert _gw_cg.TIE_TOL < ratio
    sigma = _gw_cg._sorted_matching(u, v, float(np.abs(M).max()))
    assert sigma is not None
    w = np.full(n, 1.0 / n)
    np.testing.assert_array_equal(sigma, ot.emd(w, w, M).argmax(axis=1))


def test_ties_leave_the_first_step_to_the_linear_program():
    u = np.array([0.3, 0.1, 0.3 + 1e-13, 0.7])
    assert _gw_cg._sorted_matching(u, np.array([1.0, 2.0, 3.0, 4.0]), scale=10.0) is None
    assert _gw_cg._sorted_matching(np.array([4.0, 2.0, 3.0, 1.0]), u, scale=10.0) is None
    # a near tie in one vector is safe where the other's gaps make the swap cost clear of rounding
    near = np.array([0.3, 0.1, 0.3 + 1e-9, 0.7])
    assert _gw_cg._sorted_matching(near, np.array([1.0, 2.0, 3.0, 4.0]), scale=10.0) is not None
    # distinct values: the largest goes with the largest (rearrangement inequality)
    sigma = _gw_cg._sorted_matching(np.array([4.0, 2.0, 3.0, 1.0]), np.array([10.0, 40.0, 30.0, 20.0]), scale=10.0)
    np.testing.assert_array_equal(sigma, [1, 3, 2, 0])


def test_evenly_spaced_points_on_a_circle_still_equal_pot():
    """Every point of a regular polygon has the same row mean: the first step has ties."""
    angles = 2 * np.pi * np.arange(16) / 16
    X = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    Y = np.random.default_rng(0).standard_normal((16, 3))
    C1, C2 = squareform(pdist(X)), squareform(pdist(Y))
    w = np.full(16, 1 / 16)
    scale = _gw_cg._first_step_scale((C1 ** 2) @ w, (C2 ** 2) @ w, C1 @ w, C2 @ w)
    assert _gw_cg._sorted_matching(C1 @ w, C2 @ w, scale, C1, C2) is None  # every permutation may be optimal
    T, log = pot(C1, C2)
    got = _gw_cg.solve(C1, C2, None, **POT_DEFAULTS)  # POT's own first gradient picks POT's vertex
    np.testing.assert_allclose(got.losses, np.asarray(log["loss"], dtype=float), rtol=1e-9, atol=0)
    np.testing.assert_allclose(got.plan, T, rtol=0, atol=1e-12)


def test_the_first_gradient_is_pots_bit_for_bit():
    C1, C2 = relu_layers(70, 6)
    n = C1.shape[0]
    w = np.full(n, 1.0 / n)
    constC, hC1, hC2 = ot.gromov.init_matrix(C1, C2, w, w, "square_loss")
    for G in (np.outer(w, w), np.eye(n) / n):
        np.testing.assert_array_equal(_gw_cg._pot_gradient(C1, C2, G, w), ot.gromov.gwggrad(constC, hC1, hC2, G))


def test_a_start_near_the_optimum_is_kept_and_one_far_off_goes_to_the_simplex(monkeypatch):
    rng = np.random.default_rng(7)
    n = 300
    M = rng.standard_normal((n, n))
    u, v = np.empty(n), np.zeros(n)
    sigma = np.full(n, -1)
    _lap.solve(M, u, v, sigma)
    near = M + 1e-3 * rng.standard_normal((n, n))
    monkeypatch.setattr(_gw_cg, "GIVE_UP", 1.0)
    sigma2, _ = _gw_cg._assignment(near, (u, v), sigma)  # a later CG step: well within budget
    np.testing.assert_array_equal(sigma2, linear_sum_assignment(near)[1])
    far = np.zeros(n)
    far[:16] = 1e3  # every row's cheapest columns under these potentials are the same 16
    assert _gw_cg._assignment(M, (u, far), rng.permutation(n)) is None


def test_the_plan_product_update_equals_the_full_product():
    C1, C2 = relu_layers(50, 9)
    n = C1.shape[0]
    C2n = C2 / n
    rng = np.random.default_rng(1)
    last = rng.permutation(n)
    sigma = last.copy()
    sigma[[3, 17]] = sigma[[17, 3]]  # two rows changed: a rank-2 update
    Q = _gw_cg._plan_product(C1, C2n, last, None, None, np.arange(0))
    updated = _gw_cg._plan_product(C1, C2n, sigma, Q, last, np.array([3, 17]))
    G = np.zeros((n, n))
    G[np.arange(n), sigma] = 1.0 / n
    np.testing.assert_allclose(updated, C1 @ G @ C2, rtol=1e-12, atol=1e-12)
    assert _gw_cg._plan_product(C1, C2n, sigma, updated, sigma, np.arange(0)) is updated  # nothing changed


def test_lean_applies_only_to_equal_n_and_exactly_symmetric_matrices():
    C1, C2 = relu_layers(20, 0)
    assert _gw_cg.applies(C1, C2)
    assert not _gw_cg.applies(C1, C2[:10, :10])
    skew = C2.copy()
    skew[0, 1] += 1e-9
    assert not _gw_cg.applies(C1, skew)


def test_unequal_n_runs_pots_solver():
    C1, C2 = relu_layers(40, 2)
    got = measures.get("gw").compare(C1, C2[:25, :25])
    expected = ot.gromov.gromov_wasserstein2(C1, C2[:25, :25], ot.unif(40), ot.unif(25), "square_loss")
    assert got.value == pytest.approx(float(expected), rel=1e-12)


def test_without_the_compiled_solver_every_step_runs_the_simplex_to_the_same_values(monkeypatch, caplog):
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((70, 4)), rng.standard_normal((70, 3)) ** 3
    C1, C2 = squareform(pdist(X)), squareform(pdist(Y))
    built = _gw_cg.solve(C1, C2, None, max_iter=1000, tol_rel=1e-9, tol_abs=1e-9, max_iter_emd=100000)
    monkeypatch.setattr(_gw_cg, "_lap", None)
    monkeypatch.setattr(_gw_cg, "_cg_step", None)
    monkeypatch.setattr(_gw_cg, "_warned", False)
    plain = _gw_cg.solve(C1, C2, None, max_iter=1000, tol_rel=1e-9, tol_abs=1e-9, max_iter_emd=100000)
    assert "not built here" in caplog.text and "_lap.c, _cg_step.c" in caplog.text
    assert plain.losses[-1] == pytest.approx(built.losses[-1], rel=1e-12)
    pot = ot.gromov.gromov_wasserstein2(C1, C2, ot.unif(70), ot.unif(70), "square_loss", max_iter=1000,
                                        tol_rel=1e-9, tol_abs=1e-9)
    assert plain.losses[-1] == pytest.approx(float(pot), rel=1e-9)


def count_calls(monkeypatch, owner, name):
    calls = []
    real = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


@pytest.mark.parametrize("n,seed", [(90, 2), (200, 3)])
def test_steps_on_the_warm_network_simplex_run_pots_iterates(monkeypatch, n, seed):
    """Every later step handed to the kept-basis simplex (the assignment solver gives up at once):
    the losses are POT's, step for step, and POT's own network simplex never runs."""
    C1, C2 = relu_layers(n, seed)
    _, log = pot(C1, C2)
    monkeypatch.setattr(_gw_cg, "GIVE_UP", 0.0)
    simplex_calls = count_calls(monkeypatch, _lap, "simplex")
    pot_calls = count_calls(monkeypatch, ot.lp, "emd")
    got = _gw_cg.solve(C1, C2, None, **POT_DEFAULTS)
    np.testing.assert_allclose(got.losses, np.asarray(log["loss"], dtype=float), rtol=1e-9, atol=0)
    assert len(simplex_calls) == len(got.losses) - 2 and not pot_calls  # every step after the closed-form first


def test_a_simplex_past_its_cap_hands_the_step_to_pots(monkeypatch, caplog):
    C1, C2 = relu_layers(90, 2)
    _, log = pot(C1, C2)
    monkeypatch.setattr(_gw_cg, "GIVE_UP", 0.0)
    monkeypatch.setattr(_gw_cg, "simplex_cap", lambda n: 0)
    pot_calls = count_calls(monkeypatch, ot.lp, "emd")
    got = _gw_cg.solve(C1, C2, None, **POT_DEFAULTS)
    np.testing.assert_allclose(got.losses, np.asarray(log["loss"], dtype=float), rtol=1e-9, atol=0)
    assert len(pot_calls) == len(got.losses) - 2 and "stopped at 0 pivots" in caplog.text


def test_a_far_off_step_after_a_simplex_step_skips_the_assignment_solver(monkeypatch):
    """STAY_SHARE routes a step whose predecessor the simplex solved, and moved many rows,
    straight to the simplex: with a share of 0 the assignment solver never runs after the
    first simplex step, and the losses are still POT's."""
    C1, C2 = relu_layers(120, 6)
    _, log = pot(C1, C2)
    monkeypatch.setattr(_gw_cg, "STAY_SHARE", 0.0)
    assignment_calls = count_calls(monkeypatch, _gw_cg, "_assignment")
    simplex_calls = count_calls(monkeypatch, _lap, "simplex")
    got = _gw_cg.solve(C1, C2, None, **POT_DEFAULTS)
    np.testing.assert_allclose(got.losses, np.asarray(log["loss"], dtype=float), rtol=1e-9, atol=0)
    # the step after the closed-form first has no potentials, so the simplex solves it; every
    # later step changes some row (the last may change none, and so goes back to the assignment solver)
    assert len(simplex_calls) >= len(got.losses) - 3 and len(assignment_calls) <= 1


def test_the_compiled_step_update_is_numpys_bit_for_bit(monkeypatch):
    from layergw.measures import _cg_step

    rng = np.random.default_rng(8)
    n = 37
    P, G, Q = rng.standard_normal((n, n)), rng.random((n, n)) / n ** 2, rng.standard_normal((n, n))
    row2, col2, sigma = rng.random(n), rng.random(n), rng.permutation(n)
    results = []
    for compiled in (_cg_step, None):
        monkeypatch.setattr(_gw_cg, "_cg_step", compiled)
        p, g, m = P.copy(), G.copy(), np.full((n, n), np.nan)
        _gw_cg.step_update(p, g, Q, m, row2, col2, sigma, 0.3712)
        results.append((p, g, m))
    for got, expected in zip(*results):
        np.testing.assert_array_equal(got, expected)
    p, g, m = results[1]
    np.testing.assert_allclose(p, P + 0.3712 * (Q - P), rtol=1e-14)
    np.testing.assert_allclose(m, row2[:, None] + col2[None, :] - 4 * p, rtol=1e-12)
    np.testing.assert_allclose(g.sum(), 0.6288 * G.sum() + 0.3712, rtol=1e-14)
    with pytest.raises(ValueError, match="sigma"):
        _cg_step.update(P.copy(), G.copy(), Q, m, row2, col2, np.full(n, n, dtype=np.int64), 0.5)
    with pytest.raises(ValueError, match="Q"):
        _cg_step.update(P.copy(), G.copy(), Q[:, :-1], m, row2, col2, sigma.astype(np.int64), 0.5)


def test_the_kept_first_product_gives_pots_gradient_and_never_a_stale_one():
    C1, C2 = relu_layers(60, 4)
    _, C3 = relu_layers(60, 5)
    n = C1.shape[0]
    w = np.full(n, 1.0 / n)
    G = np.outer(w, w)
    constC, hC1, hC2 = ot.gromov.init_matrix(C1, C2, w, w, "square_loss")
    first = _gw_cg._pot_gradient(C1, C2, G, w, product_start=True)
    again = _gw_cg._pot_gradient(C1, C2, G, w, product_start=True)  # served from the kept C1 G
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(again, ot.gromov.gwggrad(constC, hC1, hC2, G))
    other = _gw_cg._pot_gradient(C1, C3, G, w, product_start=True)  # the same first layer, another second
    constC3, hC1b, hC3 = ot.gromov.init_matrix(C1, C3, w, w, "square_loss")
    np.testing.assert_array_equal(other, ot.gromov.gwggrad(constC3, hC1b, hC3, G))
    C1[0, 1] = C1[1, 0] = C1[0, 1] * 1.5  # changed in place: the kept product must not be served
    constC, hC1, hC2 = ot.gromov.init_matrix(C1, C2, w, w, "square_loss")
    np.testing.assert_array_equal(_gw_cg._pot_gradient(C1, C2, G, w, product_start=True),
                                  ot.gromov.gwggrad(constC, hC1, hC2, G))
