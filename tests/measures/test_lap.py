"""The compiled warm-started assignment solver against brute force and scipy's solver."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from layergw.measures import _lap


def solve(M, v=None, start=None, budget=float("inf")):
    n = M.shape[0]
    u = np.empty(n)
    v = np.zeros(n) if v is None else np.array(v, dtype=float)
    sigma = np.full(n, -1, dtype=np.int64) if start is None else np.array(start, dtype=np.int64)
    searches = _lap.solve(M, u, v, sigma, budget)
    return sigma, u, v, searches


def assert_optimal(M, sigma, u, v):
    n = M.shape[0]
    assert sorted(sigma) == list(range(n))  # a permutation
    _, best = linear_sum_assignment(M)
    scale = max(1.0, np.abs(M).max())
    assert M[np.arange(n), sigma].sum() == pytest.approx(M[np.arange(n), best].sum(), rel=1e-12, abs=1e-12 * scale)
    reduced = M - u[:, None] - v[None, :]
    assert reduced.min() >= -1e-12 * scale  # feasible potentials: a certificate of optimality
    np.testing.assert_allclose(reduced[np.arange(n), sigma], 0.0, atol=1e-12 * scale)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_small_problems_equal_brute_force(n):
    rng = np.random.default_rng(n)
    M = rng.standard_normal((n, n))
    sigma, u, v, _ = solve(M)
    brute = min(itertools.permutations(range(n)), key=lambda p: M[np.arange(n), list(p)].sum())
    assert M[np.arange(n), sigma].sum() == pytest.approx(M[np.arange(n), list(brute)].sum(), abs=1e-12)
    assert_optimal(M, sigma, u, v)


@pytest.mark.parametrize("kind", ["normal", "integers 0-2 (ties)", "rank one", "duplicate rows", "squared distances"])
def test_optimal_with_feasible_potentials_on_hard_and_degenerate_costs(kind):
    rng = np.random.default_rng(3)
    n = 150
    if kind == "normal":
        M = rng.standard_normal((n, n))
    elif kind.startswith("integers"):
        M = rng.integers(0, 3, (n, n)).astype(float)
    elif kind == "rank one":  # every permutation in sorted order ties: the GW solver's first step
        M = -np.outer(rng.random(n), rng.random(n))
    elif kind == "duplicate rows":
        M = rng.standard_normal((n // 10, n))[rng.integers(0, n // 10, n)]
    else:  # a geometric cost: every row's cheapest columns are nearly the same ones
        x, y = rng.random((n, 2)), rng.random((n, 2)) * 0.1
        M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    sigma, u, v, _ = solve(M)
    assert_optimal(M, sigma, u, v)


def test_a_start_changes_only_the_work_not_the_answer():
    rng = np.random.default_rng(11)
    n = 400
    M = rng.standard_normal((n, n))
    cold, u, v, cold_searches = solve(M)
    assert_optimal(M, cold, u, v)
    moved = M + 1e-4 * rng.standard_normal((n, n))  # a later CG step: the costs move a little
    warm, u2, v2, warm_searches = solve(moved, v=v, start=cold)
    assert_optimal(moved, warm, u2, v2)
    far, u3, v3, _ = solve(moved, v=rng.standard_normal(n) * 100, start=rng.permutation(n))
    assert_optimal(moved, far, u3, v3)
    np.testing.assert_array_equal(warm, far)
    assert warm_searches < cold_searches / 2  # most rows keep their column: fewer searches


def test_gives_up_only_past_its_work_budget():
    rng = np.random.default_rng(5)
    n = 200
    M = rng.standard_normal((n, n))
    far = np.zeros(n)
    far[:16] = 1e3  # every row's list holds the same cheapest columns, and a random start column
    start = rng.permutation(n)
    sigma, u, v, searches = solve(M, v=far, start=start)
    assert_optimal(M, sigma, u, v)
    assert solve(M, v=far, start=start, budget=0.5)[3] is None
    _, u0, v0, _ = solve(M)
    assert solve(M + 1e-6, v=v0, start=sigma, budget=0.5)[3] is not None  # a close start stays in budget


def test_bad_buffers_and_costs_are_refused_by_name():
    M = np.zeros((3, 3))
    ok = dict(cost=M, u=np.empty(3), v=np.zeros(3), col4row=np.full(3, -1, dtype=np.int64))
    for name, bad in [("cost", M.astype(np.float32)), ("cost", np.zeros((3, 4))), ("u", np.empty(2)),
                      ("col4row", np.full(3, -1, dtype=np.int32)), ("cost", np.asfortranarray(np.eye(3)[:, ::-1]))]:
        args = {**ok, name: bad}
        with pytest.raises(ValueError, match=name):
            _lap.solve(*args.values())
    with pytest.raises(ValueError, match="finite"):
        _lap.solve(np.full((3, 3), np.inf), np.empty(3), np.zeros(3), np.full(3, -1, dtype=np.int64))
    with pytest.raises(ValueError, match="finite"):
        _lap.solve(np.full((3, 3), np.nan), np.empty(3), np.zeros(3), np.full(3, -1, dtype=np.int64))
