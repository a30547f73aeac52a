"""Contiguous segmentation along depth: exact, and finding the structure it should."""
from itertools import combinations

import numpy as np
import pytest

from layergw.segmentation import knee, optimal_segments, segment_costs, segment_depth


def blocks(sizes, within=0.1, across=1.0, noise=0.0, seed=0):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    D = np.where(labels[:, None] == labels[None, :], within, across).astype(float)
    if noise:
        R = np.random.default_rng(seed).uniform(0, noise, D.shape)
        D += (R + R.T) / 2
    np.fill_diagonal(D, 0.0)
    return D, labels


def brute_force(D, k):
    L = D.shape[0]
    best = (np.inf, None)
    for starts in combinations(range(1, L), k - 1):
        edges = [0, *starts, L]
        cost = sum(D[a:b, a:b].sum() / 2 / (b - a) for a, b in zip(edges, edges[1:]))
        best = min(best, (cost, list(starts)))
    return best


def test_dynamic_programming_equals_brute_force():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(9, 3)).cumsum(0)
    D = ((X[:, None] - X[None]) ** 2).sum(-1)
    solutions = optimal_segments(D, 5)
    for k in range(1, 6):
        cost, starts = brute_force(D, k)
        assert solutions[k][0] == pytest.approx(cost, rel=1e-12)
        assert solutions[k][1] == starts


def test_segment_cost_is_the_centroid_sum_of_squares_for_squared_distances():
    X = np.random.default_rng(2).normal(size=(7, 4))
    D = ((X[:, None] - X[None]) ** 2).sum(-1)
    W = segment_costs(D)
    seg = X[2:6]
    assert W[2, 5] == pytest.approx(((seg - seg.mean(0)) ** 2).sum(), rel=1e-12)
    assert np.isinf(W[3, 1])


def test_three_blocks_are_found_with_strong_boundaries():
    D, labels = blocks([5, 3, 6], noise=0.05)
    s = segment_depth(D, "distance", k_max=6)
    assert s.k == s.k_knee == 3 and s.selection == "knee"
    np.testing.assert_array_equal(s.labels, labels)
    assert s.boundaries == [5, 8]
    assert all(0.7 < x <= 1.0 for x in s.strengths)
    assert list(s.costs) == [1, 2, 3, 4, 5, 6] and s.costs[1] > s.costs[2] > s.costs[3]


def test_layers_without_structure_give_one_segment():
    D = np.ones((10, 10)) - np.eye(10)
    s = segment_depth(D, "distance")
    assert s.k == 1 and s.boundaries == [] and s.strengths == []
    fixed = segment_depth(D, "distance", k=2)
    assert fixed.k == 2 and fixed.selection == "fixed" and fixed.k_knee == 1
    assert len(fixed.strengths) == 1 and abs(fixed.strengths[0]) < 1e-12  # no contrast across the cut


def test_similarities_segment_like_distances():
    D, labels = blocks([4, 4], within=0.05, across=0.9)
    s = segment_depth(1.0 - D, "similarity")
    np.testing.assert_array_equal(s.labels, labels)


def test_knee_of_a_curve_that_bends_once():
    assert knee({1: 10.0, 2: 4.0, 3: 3.5, 4: 3.2, 5: 3.0}) == 2
    assert knee({1: 4.0, 2: 3.0, 3: 2.0, 4: 1.0}) == 1  # a straight line: no knee
    assert knee({1: 5.0, 2: 5.0}) == 1


def test_bad_arguments_name_themselves():
    D, _ = blocks([2, 2])
    with pytest.raises(ValueError, match="k must be an integer in 1..4"):
        segment_depth(D, "distance", k=5)
    with pytest.raises(ValueError, match="k_max must be an integer >= 2"):
        segment_depth(D, "distance", k_max=1)
    D[0, 1] = D[1, 0] = np.nan
    with pytest.raises(ValueError, match="1 of 6 layer pairs are missing"):
        segment_depth(D, "distance")


def test_bootstrap_finds_a_planted_cut_every_time_and_no_cut_in_noise():
    from layergw import measures
    from layergw.segmentation import bootstrap_cuts

    rng = np.random.default_rng(0)
    Z1, Z2 = rng.normal(size=(60, 5)), rng.normal(size=(60, 5))
    # points 0-2 (blocks 0..1) carry one signal, points 3-5 (blocks 2..3) an unrelated one
    reps = [Z1 + 0.05 * rng.normal(size=Z1.shape) for _ in range(3)] + [Z2 + 0.05 * rng.normal(size=Z2.shape)
                                                                           for _ in range(3)]
    depths = [0.0, 1.0, 1.5, 2.0, 3.0, 4.0]
    cka = measures.get("cka")
    assert bootstrap_cuts(reps, depths, cka, replicates=8, seed=1) == {2: 1.0}
    again = bootstrap_cuts(reps, depths, cka, replicates=8, seed=1)
    assert again == {2: 1.0}
    noise = [rng.normal(size=(60, 5)) for _ in range(6)]
    shares = bootstrap_cuts(noise, depths, cka, replicates=8, seed=1)
    assert all(v < 1.0 for v in shares.values())
    with pytest.raises(ValueError, match="replicates must be >= 1"):
        bootstrap_cuts(reps, depths, cka, replicates=0)
