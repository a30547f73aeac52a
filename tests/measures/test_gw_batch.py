"""gw_batch against POT's entropic GW, batch against one by one, and against the exact gw."""
from __future__ import annotations

import numpy as np
import ot
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import adjusted_rand_score

from layergw import measures
from layergw.grouping import group_layers


def network_layers(n: int, depth: int, seed: int) -> list[np.ndarray]:
    """The layers of a random tanh network on Gaussian inputs, widths varying."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, 8))
    out = [h]
    for k in range(depth):
        d = 12 + 4 * (k % 3)
        h = np.tanh(h @ rng.standard_normal((h.shape[1], d)) / np.sqrt(h.shape[1]) * 1.5)
        out.append(h)
    return out


@pytest.mark.parametrize("epsilon", [0.05, 0.2])
def test_equals_pots_entropic_gromov_wasserstein(epsilon):
    layers = network_layers(40, 3, 0)
    m = measures.get("gw_batch", epsilon=epsilon, device="cpu")
    for X, Y in ((layers[0], layers[1]), (layers[1], layers[3])):
        C1, C2 = m.prepare(X), m.prepare(Y)
        expected = ot.gromov.entropic_gromov_wasserstein2(C1, C2, ot.unif(40), ot.unif(40), "square_loss",
                                                          epsilon=epsilon)
        assert m.compare(C1, C2).value == pytest.approx(float(expected), rel=1e-7)


def test_a_batch_equals_its_pairs_one_by_one():
    layers = network_layers(30, 4, 1)
    m = measures.get("gw_batch", device="cpu")
    geoms = [m.prepare(X) for X in layers]
    pairs = [(geoms[i], geoms[j]) for i in range(len(geoms)) for j in range(i + 1, len(geoms))]
    together = m.compare_many(pairs)
    alone = [m.compare(a, b) for a, b in pairs]
    np.testing.assert_allclose([c.value for c in together], [c.value for c in alone], rtol=1e-10)
    assert [c.iterations for c in together] == [c.iterations for c in alone]
    assert all(c.converged for c in together)


def test_pairs_of_different_n_are_batched_apart():
    m = measures.get("gw_batch", device="cpu")
    small, large = network_layers(20, 1, 2), network_layers(26, 1, 3)
    pairs = [(m.prepare(small[0]), m.prepare(small[1])), (m.prepare(large[0]), m.prepare(large[1]))]
    got = m.compare_many(pairs)
    assert [c.value for c in got] == pytest.approx([m.compare(*p).value for p in pairs], rel=1e-10)
    with pytest.raises(ValueError, match="n"):
        m.compare_many([(pairs[0][0], pairs[1][1])])


def planted_layers(n: int, seed: int) -> list[np.ndarray]:
    """Eight layers in three planted groups (3, 3, 2): within a group each layer is the
    group's representation, rotated into another width, with a little noise."""
    rng = np.random.default_rng(seed)
    base = [rng.standard_normal((n, 6)), np.tanh(rng.standard_normal((n, 3)) * 2), rng.random((n, 10)) ** 3]
    layers = []
    for g, size in enumerate((3, 3, 2)):
        for _ in range(size):
            d = 12 + size
            Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
            Z = np.hstack([base[g], np.zeros((n, d - base[g].shape[1]))]) @ Q
            layers.append(Z + 0.05 * rng.standard_normal(Z.shape))
    return layers


def test_ranks_and_groups_like_the_exact_solver_on_a_grid():
    """Over the 28 pairs of eight layers in three planted groups, the entropic values order
    the pairs as the exact CG does and both matrices give the planted groups."""
    layers = planted_layers(40, 4)
    exact, entropic = measures.get("gw", normalize="mean"), measures.get("gw_batch", device="cpu")
    ge, gb = [exact.prepare(X) for X in layers], [entropic.prepare(X) for X in layers]
    L = len(layers)
    iu = np.triu_indices(L, 1)
    batch = entropic.compare_many([(gb[i], gb[j]) for i, j in zip(*iu)])
    A, B = np.zeros((L, L)), np.zeros((L, L))
    A[iu] = [exact.compare(ge[i], ge[j]).value for i, j in zip(*iu)]
    B[iu] = [c.value for c in batch]
    assert spearmanr(A[iu], B[iu]).statistic > 0.6  # within-group pairs first in both; the between-group ones are close
    planted = [0, 0, 0, 1, 1, 1, 2, 2]
    for M in (A, B):
        assert adjusted_rand_score(group_layers(M + M.T, kind="distance", k=3).labels, planted) == 1.0


def test_stopping_at_max_iter_is_not_converged(caplog):
    layers = network_layers(24, 1, 5)
    m = measures.get("gw_batch", max_iter=1, device="cpu", epsilon=0.01)
    with caplog.at_level("WARNING", logger="layergw.measures.gw_batch"):
        c = m.compare(m.prepare(layers[0]), m.prepare(layers[1]))
    assert c.converged is False and c.iterations == 1 and "max_iter=1" in caplog.text


@pytest.mark.parametrize(("param", "value", "expected"), [
    ("epsilon", 0.0, "epsilon"), ("device", "tpu", "device"), ("dtype", "float16", "dtype"),
    ("max_iter", 0, "max_iter"), ("normalize", "l2", "normalize")])
def test_bad_parameters_name_themselves(param, value, expected):
    with pytest.raises(ValueError, match=expected):
        measures.get("gw_batch", **{param: value})


def test_asking_for_a_gpu_where_there_is_none_says_so(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answer on a GPU machine
    m = measures.get("gw_batch", device="cuda")
    X = network_layers(12, 1, 6)
    with pytest.raises(ValueError, match="sees no GPU"):
        m.compare(m.prepare(X[0]), m.prepare(X[1]))


@pytest.mark.gpu
def test_on_a_gpu_in_float32_the_values_are_the_cpus():
    layers = network_layers(200, 3, 7)
    cpu, gpu = measures.get("gw_batch", device="cpu"), measures.get("gw_batch", device="cuda", dtype="float32")
    geoms = [cpu.prepare(X) for X in layers]
    pairs = [(geoms[i], geoms[j]) for i in range(4) for j in range(i + 1, 4)]
    np.testing.assert_allclose([c.value for c in gpu.compare_many(pairs)], [c.value for c in cpu.compare_many(pairs)],
                               rtol=1e-4)


def test_float32_defaults_to_a_tolerance_it_can_reach_and_lands_near_float64():
    layers = network_layers(64, 3, 8)
    f64, f32 = measures.get("gw_batch", device="cpu"), measures.get("gw_batch", device="cpu", dtype="float32")
    assert (f64.tol, f64.sinkhorn_tol, f32.tol, f32.sinkhorn_tol) == (1e-9, 1e-9, 1e-6, 1e-6)
    assert f64.key == measures.get("gw_batch", device="cpu", tol=1e-9, sinkhorn_tol=1e-9).key  # resolved, recorded
    geoms = [f64.prepare(X) for X in layers]
    pairs = [(geoms[i], geoms[j]) for i in range(4) for j in range(i + 1, 4)]
    low = f32.compare_many(pairs)
    assert all(c.converged for c in low)
    np.testing.assert_allclose([c.value for c in low], [c.value for c in f64.compare_many(pairs)], rtol=1e-5)
