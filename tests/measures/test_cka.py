"""CKA (linear/rbf, biased/debiased) against llm_repsim, google-research's notebook and
independent formulas; invariances; degenerate input."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from layergw import measures


def direct_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X, Y."""
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    return np.linalg.norm(Y.T @ X) ** 2 / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y))


def gram_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Kernel form <HKH, HLH> / (||HKH|| ||HLH||), H the centring matrix."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = H @ X @ X.T @ H, H @ Y @ Y.T @ H
    return float((K * L).sum() / (np.linalg.norm(K) * np.linalg.norm(L)))


@pytest.fixture(scope="module")
def XY():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 5)) + 3.0
    Y = np.tanh(X @ rng.normal(size=(5, 9))) + 0.3 * rng.normal(size=(60, 9))
    return X, Y


def test_matches_direct_formula(XY):
    X, Y = XY
    got = measures.get("cka").score(X, Y)
    assert got == pytest.approx(direct_cka(X, Y), rel=1e-12)
    assert got == pytest.approx(gram_cka(X, Y), rel=1e-10)
    assert 0.05 < got < 0.999


@pytest.mark.parametrize("dx,dy", [(80, 5), (80, 120), (5, 80)])
def test_wide_layers_use_reduced_features_with_same_value(dx, dy):
    rng = np.random.default_rng(dx + dy)
    X = rng.normal(size=(30, dx))
    Y = X[:, :5] @ rng.normal(size=(5, dy)) + rng.normal(size=(30, dy))
    m = measures.get("cka")
    g = m.prepare(X)
    assert g.features.shape == (30, min(dx, 30))
    assert m.score(X, Y) == pytest.approx(direct_cka(X, Y), rel=1e-10)


def test_identical_is_one_and_kind_similarity(XY):
    X, _ = XY
    m = measures.get("cka")
    # params() grew with the kernel/sigma_scale/debiased parameters
    assert m.kind == "similarity" and m.params() == {"kernel": "linear", "sigma_scale": 1.0, "debiased": False}
    assert m.score(X, X) == pytest.approx(1.0, abs=1e-12)


def test_invariances(XY):
    X, Y = XY
    m = measures.get("cka")
    base = m.score(X, Y)
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(9, 9)))
    for what, Z in {
        "rotation": Y @ Q,
        "isotropic scaling": 1e3 * Y,
        "translation": Y - 50.0,
        "permutation": Y[:, ::-1],
    }.items():
        assert m.score(X, Z) == pytest.approx(base, rel=1e-10), what


def test_not_invariant_to_anisotropic_scaling(XY):
    X, Y = XY
    m = measures.get("cka")
    assert m.score(X, Y * np.arange(1, 10)) != pytest.approx(m.score(X, Y), rel=1e-3)


def test_in_unit_interval_for_independent_inputs():
    rng = np.random.default_rng(3)
    v = measures.get("cka").score(rng.normal(size=(50, 4)), rng.normal(size=(50, 7)))
    assert 0.0 <= v < 0.5


@pytest.mark.parametrize(
    "X",
    [np.ones((10, 4)), np.zeros((10, 4)), np.tile([0.1, 0.7, 1e5], (20, 1))],
    ids=["ones", "zeros", "rows-identical"],
)
def test_constant_representation_is_a_clear_error(X):
    with pytest.raises(ValueError, match="X is constant: all .* rows .* identical.*cka.*undefined"):
        measures.get("cka").prepare(X)


def test_one_constant_column_is_fine(XY):
    X, Y = XY
    X2 = np.hstack([X, np.full((60, 1), 4.2)])
    assert measures.get("cka").score(X2, Y) == pytest.approx(direct_cka(X, Y), rel=1e-10)


def test_geometry_picklable_and_n_checked(XY):
    X, Y = XY
    m = measures.get("cka")
    g = pickle.loads(pickle.dumps(m.prepare(X)))
    assert m.compare(g, m.prepare(Y)).value == m.score(X, Y)
    with pytest.raises(ValueError, match="n=60 rows but second geometry has n=30"):
        m.compare(g, m.prepare(Y[:30]))
    with pytest.raises(ValueError, match=r"CKA.prepare with kernel='linear'"):
        m.compare(X, g)


def standard_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 30))
    Y = np.tanh(X @ rng.standard_normal((30, 50))) + 0.1 * rng.standard_normal((200, 50))
    return X, Y


# Reference values on standard_inputs(0), all rows and the first 20 rows (d > n there).
# Linear biased: mklabunde/llm_repsim @ 53b8a9b144980e2c1e73b1c20c02cba4465dc9c1,
#   llmcomp/measures/cka.py, centered_kernel_alignment(X, Y) (run unmodified; only its utils
#   import path fixed); the 20-row value takes its Gram (N < D) branch.
# Others: google-research/google-research @ 10bf941a5a0625bf27bb8443aa849e9b48fdd5f9,
#   representation_similarity/Demo.ipynb, first code cell run unmodified:
#   debiased linear: feature_space_linear_cka(X, Y, debiased=True);
#   rbf: cka(gram_rbf(X, t), gram_rbf(Y, t), debiased=...) with threshold t = sigma_scale.
REFERENCE = [
    ({}, 0.7114648909677942, 0.845229512721994),
    ({"debiased": True}, 0.6730453347019695, 0.6380004329757678),
    ({"kernel": "rbf"}, 0.7397378708574216, 0.8984941722412163),
    ({"kernel": "rbf", "debiased": True}, 0.6804428754913128, 0.6431911565273245),
    ({"kernel": "rbf", "sigma_scale": 0.5}, 0.8438492845990763, None),
    ({"kernel": "rbf", "sigma_scale": 0.5, "debiased": True}, 0.6615443627055357, None),
]


@pytest.mark.parametrize(("params", "full", "first20"), REFERENCE, ids=[str(p) for p, _, _ in REFERENCE])
def test_matches_references(params, full, first20):
    X, Y = standard_inputs()
    m = measures.get("cka", **params)
    assert m.score(X, Y) == pytest.approx(full, rel=1e-6)
    if first20 is not None:
        assert m.score(X[:20], Y[:20]) == pytest.approx(first20, rel=1e-6)


def u_centred(K: np.ndarray) -> np.ndarray:
    """Szekely-Rizzo U-centring, written out entrywise."""
    n = K.shape[0]
    K = K - np.diag(np.diag(K))
    r = K.sum(1)
    G = K - r[:, None] / (n - 2) - r[None, :] / (n - 2) + K.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(G, 0.0)
    return G


def song_unbiased_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al.'s unbiased HSIC (times n(n-3)), with zeroed diagonals."""
    n = K.shape[0]
    K = K - np.diag(np.diag(K))
    L = L - np.diag(np.diag(L))
    one = np.ones(n)
    return float(
        np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ K @ L @ one)
    )


def test_debiased_matches_song_et_al_and_u_centring(XY):
    X, Y = XY
    Kx, Ky = X @ X.T, Y @ Y.T
    song = song_unbiased_hsic(Kx, Ky) / np.sqrt(song_unbiased_hsic(Kx, Kx) * song_unbiased_hsic(Ky, Ky))
    Gx, Gy = u_centred(Kx), u_centred(Ky)
    ucentred = (Gx * Gy).sum() / (np.linalg.norm(Gx) * np.linalg.norm(Gy))
    assert song == pytest.approx(ucentred, rel=1e-10)
    assert measures.get("cka", debiased=True).score(X, Y) == pytest.approx(song, rel=1e-10)


def test_rbf_matches_direct_formula(XY):
    X, Y = XY

    def gram(Z, scale):
        sq = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
        return np.exp(-sq / (2 * scale**2 * np.median(sq)))

    n = X.shape[0]
    H = np.eye(n) - 1.0 / n
    for scale in (0.3, 1.0, 2.0):
        K, L = H @ gram(X, scale) @ H, H @ gram(Y, scale) @ H
        expected = (K * L).sum() / (np.linalg.norm(K) * np.linalg.norm(L))
        got = measures.get("cka", kernel="rbf", sigma_scale=scale).score(X, Y)
        assert got == pytest.approx(expected, rel=1e-10), scale
        G, M = u_centred(gram(X, scale)), u_centred(gram(Y, scale))
        expected = (G * M).sum() / (np.linalg.norm(G) * np.linalg.norm(M))
        got = measures.get("cka", kernel="rbf", sigma_scale=scale, debiased=True).score(X, Y)
        assert got == pytest.approx(expected, rel=1e-10), scale


VARIANTS = [{}, {"debiased": True}, {"kernel": "rbf"}, {"kernel": "rbf", "debiased": True},
            {"kernel": "rbf", "sigma_scale": 0.4}]


@pytest.mark.parametrize("params", VARIANTS, ids=str)
def test_variants_self_one_symmetric_and_invariant(XY, params):
    X, Y = XY
    m = measures.get("cka", **params)
    assert m.invariant_to() == {"rotation", "permutation", "scaling", "translation"}
    assert m.score(X, X) == pytest.approx(1.0, abs=1e-12)
    base = m.score(X, Y)
    assert base == pytest.approx(m.score(Y, X), rel=1e-12)
    Q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(9, 9)))
    for what, Z in {"rotation": Y @ Q, "scaling": 1e3 * Y, "translation": Y - 50.0,
                    "permutation": Y[:, ::-1]}.items():
        assert m.score(X, Z) == pytest.approx(base, rel=1e-8), what
    assert m.score(X, Y * np.arange(1, 10)) != pytest.approx(base, rel=1e-3)


@pytest.mark.parametrize("dx", [5, 80])
def test_debiased_wide_layers_use_reduced_features_with_same_value(dx):
    rng = np.random.default_rng(dx)
    X = rng.normal(size=(30, dx))
    Y = X[:, :5] @ rng.normal(size=(5, 12)) + rng.normal(size=(30, 12))
    m = measures.get("cka", debiased=True)
    Gx, Gy = u_centred(X @ X.T), u_centred(Y @ Y.T)
    expected = (Gx * Gy).sum() / (np.linalg.norm(Gx) * np.linalg.norm(Gy))
    assert m.score(X, Y) == pytest.approx(expected, rel=1e-10)


def test_debiased_removes_small_n_inflation():
    # independent layers: biased CKA is far from 0 at small n, debiased is near 0
    biased, debiased = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        X, Y = rng.normal(size=(15, 10)), rng.normal(size=(15, 10))
        biased.append(measures.get("cka").score(X, Y))
        debiased.append(measures.get("cka", debiased=True).score(X, Y))
    assert np.mean(biased) > 0.4
    assert abs(np.mean(debiased)) < 0.1
    assert min(debiased) < 0  # the debiased estimate can be negative


def test_rbf_geometry_is_packed_unit_gram(XY):
    X, Y = XY
    m = measures.get("cka", kernel="rbf")
    g = pickle.loads(pickle.dumps(m.prepare(X)))
    assert g.n == 60 and g.packed.shape == (60 * 61 // 2,)
    assert np.linalg.norm(g.packed) == pytest.approx(1.0)
    assert m.compare(g, m.prepare(Y)).value == m.score(X, Y)
    with pytest.raises(ValueError, match="n=60 rows but second geometry has n=30"):
        m.compare(g, m.prepare(Y[:30]))
    with pytest.raises(ValueError, match=r"CKA.prepare with kernel='rbf', debiased=False, got CKAGeometry"):
        m.compare(g, measures.get("cka").prepare(Y))
    with pytest.raises(ValueError, match=r"kernel='linear', debiased=True, got CKAGeometry"):
        measures.get("cka", debiased=True).compare(measures.get("cka").prepare(X), measures.get("cka").prepare(Y))


def test_parameter_errors():
    with pytest.raises(ValueError, match="'kernel' must be one of 'linear', 'rbf'; got 'poly'"):
        measures.get("cka", kernel="poly")
    with pytest.raises(ValueError, match="'sigma_scale' must be a finite number > 0; got 0"):
        measures.get("cka", kernel="rbf", sigma_scale=0)
    with pytest.raises(ValueError, match="'sigma_scale' applies to kernel='rbf' only"):
        measures.get("cka", sigma_scale=2.0)
    with pytest.raises(ValueError, match="'debiased' must be True or False; got 1"):
        measures.get("cka", debiased=1)
    assert measures.get("cka", kernel="rbf", sigma_scale=2).params()["sigma_scale"] == 2.0


def test_degenerate_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"debiased=True needs n >= 4 rows.*n=3"):
        measures.get("cka", debiased=True).prepare(np.arange(6.0).reshape(3, 2))
    # 5 copies of one point and 2 others: 27 of the 49 squared distances are 0
    X = np.vstack([np.zeros((5, 2)), [[1.0, 0.0], [0.0, 1.0]]])
    with pytest.raises(ValueError, match=r"L2: cka kernel='rbf': the median squared distance .* is 0"):
        measures.get("cka", kernel="rbf").prepare(X, label="L2")
