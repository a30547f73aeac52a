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


KINDS = ["normal", "integers 0-2 (ties)", "rank one", "duplicate rows", "squared distances"]


def hard_costs(kind: str, n: int, seed: int) -> np.ndarray:
    """An (n, n) cost of a kind that stresses exact assignment solvers: ties, rank one (every
    permutation in sorted order ties: the GW solver's first step), duplicate rows, a geometric
    cost (every row's cheapest columns are nearly the same ones)."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal((n, n))
    if kind.startswith("integers"):
        return rng.integers(0, 3, (n, n)).astype(float)
    if kind == "rank one":
        return -np.outer(rng.random(n), rng.random(n))
    if kind == "duplicate rows":
        return rng.standard_normal((n // 10, n))[rng.integers(0, n // 10, n)]
    x, y = rng.random((n, 2)), rng.random((n, 2)) * 0.1
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


@pytest.mark.parametrize("kind", KINDS)
def test_optimal_with_feasible_potentials_on_hard_and_degenerate_costs(kind):
    M = hard_costs(kind, 150, 3)
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


# ---- simplex: the warm network simplex ---------------------------------------------------


def simplex(M, start=None, tree=None, max_pivots=10**9):
    """Run ``_lap.simplex`` from a start permutation (default: the identity) or a kept tree."""
    n = M.shape[0]
    u, v = np.empty(n), np.empty(n)
    sigma = np.arange(n, dtype=np.int64) if start is None else np.array(start, dtype=np.int64)
    parent, flow = (np.empty(2 * n, dtype=np.int64), np.empty(2 * n, dtype=np.int64)) if tree is None else tree
    pivots = _lap.simplex(M, u, v, sigma, parent, flow, tree is not None, max_pivots)
    return sigma, u, v, (parent, flow), pivots


def assert_strongly_feasible_tree(M, sigma, u, v, tree):
    """One spanning tree over rows 0..n-1 and columns n..2n-1 whose flow-1 arcs are the
    assignment, tight under the potentials, and whose zero-flow arcs all point to the root
    (a row below its column): Cunningham's strongly feasible basis."""
    parent, flow = tree
    n = M.shape[0]
    assert (parent < 0).sum() == 1
    for x in range(2 * n):  # every node reaches the root within 2n steps: no cycle
        for _ in range(2 * n):
            if parent[x] < 0:
                break
            x = parent[x]
        assert parent[x] < 0
    for x in np.flatnonzero(parent >= 0):
        p = parent[x]
        row, col = (x, p - n) if x < n else (p, x - n)
        assert (x < n) != (p < n)
        assert abs(M[row, col] - u[row] - v[col]) <= 1e-12 * max(1.0, np.abs(M).max())
        if flow[x]:
            assert sigma[row] == col
        else:
            assert x < n  # zero flow: the row hangs below the column, toward the root
    assert flow[parent >= 0].sum() == n


@pytest.mark.parametrize("kind", KINDS)
def test_simplex_is_optimal_and_returns_a_strongly_feasible_tree(kind):
    M = hard_costs(kind, 120, 4)
    sigma, u, v, tree, _ = simplex(M, start=np.random.default_rng(4).permutation(120))
    assert_optimal(M, sigma, u, v)
    assert_strongly_feasible_tree(M, sigma, u, v, tree)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_simplex_on_small_problems_equals_brute_force(n):
    rng = np.random.default_rng(10 + n)
    M = rng.standard_normal((n, n))
    sigma, u, v, tree, _ = simplex(M, start=rng.permutation(n))
    brute = min(itertools.permutations(range(n)), key=lambda p: M[np.arange(n), list(p)].sum())
    assert M[np.arange(n), sigma].sum() == pytest.approx(M[np.arange(n), list(brute)].sum(), abs=1e-12)
    assert_strongly_feasible_tree(M, sigma, u, v, tree)


def test_a_kept_tree_starts_any_later_problem_and_saves_pivots_on_a_near_one():
    rng = np.random.default_rng(12)
    n = 300
    M = rng.standard_normal((n, n))
    sigma, u, v, tree, _ = simplex(M, start=rng.permutation(n))
    near = M + 1e-3 * rng.standard_normal((n, n))  # a later CG step: the costs move a little
    kept = (tree[0].copy(), tree[1].copy())
    warm, u2, v2, tree2, warm_pivots = simplex(near, tree=kept)
    assert_optimal(near, warm, u2, v2)
    assert_strongly_feasible_tree(near, warm, u2, v2, tree2)
    cold, _, _, _, cold_pivots = simplex(near, start=rng.permutation(n))
    np.testing.assert_array_equal(warm, cold)  # the start changes the work, not the answer
    assert warm_pivots < cold_pivots / 3
    other = rng.integers(0, 3, (n, n)).astype(float)  # any costs of the same n: still a feasible basis
    far, u3, v3, tree3, _ = simplex(other, tree=(tree[0].copy(), tree[1].copy()))
    assert_optimal(other, far, u3, v3)
    assert_strongly_feasible_tree(other, far, u3, v3, tree3)


def test_simplex_gives_up_past_its_pivot_cap():
    rng = np.random.default_rng(13)
    M = rng.standard_normal((50, 50))
    assert simplex(M, start=rng.permutation(50), max_pivots=3)[4] is None
    assert simplex(M, start=rng.permutation(50))[4] > 3


def test_simplex_refuses_bad_starts_trees_and_costs_by_name():
    n = 4
    M = np.arange(16.0).reshape(4, 4)
    u, v = np.empty(n), np.empty(n)
    tree = lambda: (np.empty(2 * n, dtype=np.int64), np.empty(2 * n, dtype=np.int64))  # noqa: E731
    with pytest.raises(ValueError, match="permutation"):
        _lap.simplex(M, u, v, np.array([0, 0, 1, 2]), *tree(), False, 100)
    with pytest.raises(ValueError, match="finite"):
        _lap.simplex(np.full((n, n), np.nan), u, v, np.arange(n), *tree(), False, 100)
    for name, bad in [("cost", np.zeros((4, 5))), ("v", np.empty(3)), ("parent", np.empty(2 * n, dtype=np.int32)),
                      ("flow", np.empty(n, dtype=np.int64)), ("col4row", np.arange(n, dtype=np.float64))]:
        args = dict(cost=M, u=u, v=v, col4row=np.arange(n), parent=tree()[0], flow=tree()[1])
        args[name] = bad
        with pytest.raises(ValueError, match=name):
            _lap.simplex(*args.values(), False, 100)
    _, _, _, (parent, flow), _ = simplex(M)
    for broken in ("two roots", "a cycle", "flows"):
        p, f = parent.copy(), flow.copy()
        if broken == "two roots":
            p[np.flatnonzero(p >= 0)[0]] = -1
        elif broken == "a cycle":
            depth = lambda x: 0 if p[x] < 0 else 1 + depth(p[x])  # noqa: E731
            a = next(x for x in range(2 * n) if depth(x) >= 2)
            p[p[a]] = a  # a node and its parent, each below the other
        else:
            f[np.flatnonzero(f == 1)[0]] = 0
        with pytest.raises(ValueError, match="basis tree"):
            _lap.simplex(M, u, v, np.arange(n), p, f, True, 100)


@pytest.mark.parametrize("kind", ["normal", "integers 0-2 (ties)", "rank one"])
def test_the_vector_scan_changes_no_answer_bit(kind):
    """Both solvers' scans run four entries a compare where the CPU has AVX2: the outputs
    (assignment, potentials, tree) must equal the plain loop's exactly."""
    n = 203  # not a multiple of 4: the scalar tails run too
    M = hard_costs(kind, n, 21)
    start = np.random.default_rng(21).permutation(n)
    outputs = []
    try:
        for on in (True, False):
            _lap.simd(on)
            outputs.append(solve(M, start=start)[:3] + simplex(M, start=start)[:3] + simplex(M, start=start)[3])
    finally:
        _lap.simd(True)
    for got, expected in zip(*outputs):
        np.testing.assert_array_equal(got, expected)
    assert _lap.simd(False) is False
    _lap.simd(True)
