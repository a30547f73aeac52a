"""RSA (Spearman correlation of RDMs) against llm_repsim and scipy; invariances; errors."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from layergw import measures


def standard_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 30))
    Y = np.tanh(X @ rng.standard_normal((30, 50))) + 0.1 * rng.standard_normal((200, 50))
    return X, Y


# Reference: mklabunde/llm_repsim @ 53b8a9b144980e2c1e73b1c20c02cba4465dc9c1,
# llmcomp/measures/rsa.py, representational_similarity_analysis(X, Y, inner=inner,
# outer="spearman") on standard_inputs(0) (run unmodified; only its utils import path fixed).
LLM_REPSIM_RSA_SPEARMAN = {
    "correlation": 0.6533453192633671,
    "euclidean": 0.5240294799276282,
}


@pytest.mark.parametrize("inner", sorted(LLM_REPSIM_RSA_SPEARMAN))
def test_matches_llm_repsim_reference(inner):
    X, Y = standard_inputs()
    m = measures.get("rsa", inner=inner)
    assert m.score(X, Y) == pytest.approx(LLM_REPSIM_RSA_SPEARMAN[inner], rel=1e-6)


@pytest.fixture(scope="module")
def XY():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 7))
    Y = np.tanh(X @ rng.normal(size=(7, 11))) + 0.2 * rng.normal(size=(40, 11))
    return X, Y


@pytest.mark.parametrize("inner", ["correlation", "euclidean"])
def test_is_spearman_of_the_condensed_rdms(XY, inner):
    X, Y = XY
    expected = spearmanr(pdist(X, inner), pdist(Y, inner)).statistic
    m = measures.get("rsa", inner=inner)
    assert m.score(X, Y) == pytest.approx(expected, rel=1e-12)
    assert m.score(X, X) == pytest.approx(1.0, abs=1e-12)
    assert m.score(X, Y) == pytest.approx(m.score(Y, X), rel=1e-12)


def test_defaults_kind_and_params():
    m = measures.get("rsa")
    assert m.kind == "similarity" and not m.unbounded and m.best == 1.0
    assert m.params() == {"inner": "correlation", "outer": "spearman"}


def test_ties_get_average_ranks():
    # a square's 6 distances: 4 sides and 2 equal diagonals
    X = np.array([[0.0, 0], [1, 0], [1, 1], [0, 1]])
    Y = np.array([[0.0, 0], [1, 0], [1, 2], [0, 1]])
    m = measures.get("rsa", inner="euclidean")
    assert m.score(X, Y) == pytest.approx(spearmanr(pdist(X), pdist(Y)).statistic, rel=1e-12)


def test_reversed_ranking_is_minus_one():
    x = np.arange(6.0)[:, None]
    m = measures.get("rsa", inner="euclidean")
    g = m.prepare(x)
    assert m.compare(g, -g).value == pytest.approx(-1.0, abs=1e-12)


def transforms(d: int, rng: np.random.Generator) -> dict:
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return {
        "rotation": lambda Z: Z @ Q,
        "permutation": lambda Z: Z[:, rng.permutation(d)],
        "scaling": lambda Z: 3.7 * Z,
        "translation": lambda Z: Z + 5.0 * rng.normal(size=d),
    }


@pytest.mark.parametrize("inner", ["correlation", "euclidean"])
def test_declared_invariances_hold_and_the_others_do_not(XY, inner):
    X, Y = XY
    m = measures.get("rsa", inner=inner)
    expected = {
        "correlation": {"permutation", "scaling"},
        "euclidean": {"rotation", "permutation", "scaling", "translation"},
    }[inner]
    assert m.invariant_to() == expected
    base = m.score(X, Y)
    for name, f in transforms(11, np.random.default_rng(1)).items():
        value = m.score(X, f(Y))
        if name in expected:
            assert value == pytest.approx(base, rel=1e-10), name
        else:
            assert value != pytest.approx(base, rel=1e-3), name


def test_correlation_inner_is_invariant_to_per_row_affine_maps(XY):
    X, Y = XY
    rng = np.random.default_rng(4)
    m = measures.get("rsa")
    Z = Y * rng.uniform(0.2, 5.0, (40, 1)) + rng.normal(size=(40, 1)) * 10
    assert m.score(X, Z) == pytest.approx(m.score(X, Y), rel=1e-10)


def test_euclidean_inner_is_not_invariant_to_anisotropic_scaling(XY):
    X, Y = XY
    m = measures.get("rsa", inner="euclidean")
    assert m.score(X, Y * np.arange(1, 12)) != pytest.approx(m.score(X, Y), rel=1e-3)


# Reference: llm_repsim @ 53b8a9b1, rsa.py representational_similarity_analysis(X, Y,
# inner=inner, outer="euclidean") on standard_inputs(0): the same values as its
# rsm_norm_difference (see LLM_REPSIM_RSM in test_rsm.py).
LLM_REPSIM_RSA_EUCLIDEAN = {"correlation": 21.829929816095106, "euclidean": 258.6416706648139}


@pytest.mark.parametrize("inner", sorted(LLM_REPSIM_RSA_EUCLIDEAN))
def test_outer_euclidean_matches_llm_repsim_and_is_a_distance(inner):
    X, Y = standard_inputs()
    m = measures.get("rsa", inner=inner, outer="euclidean")
    assert m.kind == "distance" and measures.get("rsa").kind == "similarity"
    assert m.score(X, Y) == pytest.approx(LLM_REPSIM_RSA_EUCLIDEAN[inner], rel=1e-6)
    assert m.score(X, X) == 0.0


def test_bad_parameters():
    with pytest.raises(ValueError, match="'inner' must be one of 'correlation', 'euclidean'; got 'cosine'"):
        measures.get("rsa", inner="cosine")
    with pytest.raises(ValueError, match="'outer' must be one of 'spearman', 'euclidean'; got 'pearson'"):
        measures.get("rsa", outer="pearson")


def test_zero_variance_row_and_equal_distances_are_clear_errors():
    X = np.random.default_rng(0).normal(size=(10, 4))
    X[[2, 7]] = 1.5
    with pytest.raises(ValueError, match=r"L3: rsa inner='correlation': 2 rows .* all features equal .*\[2, 7\]"):
        measures.get("rsa").prepare(X, label="L3")
    simplex = np.eye(4)  # all 6 distances equal
    with pytest.raises(ValueError, match="all 6 pairwise dissimilarities are equal"):
        measures.get("rsa", inner="euclidean").prepare(simplex)


def test_geometry_is_unit_rank_vector_and_checked(XY):
    X, Y = XY
    m = measures.get("rsa")
    g = m.prepare(X)
    assert g.shape == (40 * 39 // 2,) and abs(g.sum()) < 1e-10 and np.linalg.norm(g) == pytest.approx(1.0)
    g = pickle.loads(pickle.dumps(g))
    assert m.compare(g, m.prepare(Y)).value == m.score(X, Y)
    with pytest.raises(ValueError, match="first geometry has n=40 rows but second geometry has n=20"):
        m.compare(g, m.prepare(Y[:20]))
    with pytest.raises(ValueError, match="condensed rank vector from RSA.prepare"):
        m.compare(X, g)
