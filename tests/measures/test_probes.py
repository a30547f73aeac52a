"""linear_probe and mlp_probe against scikit-learn run directly; splits; properties; errors."""
from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from layergw import measures
from layergw.measures.probes import holdout_split, one_hot_problem, stratified_split


def standard_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 30))
    Y = np.tanh(X @ rng.standard_normal((30, 50))) + 0.1 * rng.standard_normal((200, 50))
    return X, Y


def one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[labels]


def sklearn_linear(X: np.ndarray, Y: np.ndarray, test_fraction: float, seed: int) -> float:
    """1 - pooled R^2 of sklearn's LinearRegression, on the held-out rows (in-sample when 0)."""
    fit, test = holdout_split(X.shape[0], test_fraction, seed)
    rows = test if test_fraction else fit
    pred = LinearRegression().fit(X[fit], Y[fit]).predict(X[rows])
    return 1.0 - r2_score(Y[rows], pred, multioutput="variance_weighted")


def sklearn_mlp(X: np.ndarray, T: np.ndarray, test_fraction: float, seed: int) -> tuple[float, int]:
    """1 - held-out accuracy of StandardScaler + MLPClassifier(random_state=seed), and n_iter_."""
    labels = T.argmax(1)
    train, test = stratified_split(labels, test_fraction, seed)
    Z = StandardScaler().fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(random_state=seed).fit(Z[train], labels[train])
    return 1.0 - clf.score(Z[test], labels[test]), clf.n_iter_


@pytest.fixture(scope="module")
def classes():
    """A representation that partly encodes 4 classes, and the classes as one-hot."""
    rng = np.random.default_rng(7)
    labels = np.arange(80) % 4
    X = one_hot(labels, 4) @ rng.normal(size=(4, 6)) + 0.8 * rng.normal(size=(80, 6))
    return X, one_hot(labels, 4)


# ---- linear_probe: reference --------------------------------------------------------


# Reference: scikit-learn 1.9.1 (installed), LinearRegression().fit(X[fit], Y[fit]) and
# 1 - r2_score(Y[rows], pred, multioutput="variance_weighted") on the standard inputs
# (SEED 0), fit/held-out rows from holdout_split(200, test_fraction, 0); script
# /tmp/helperD/ref_probes.py.
STORED_LINEAR = {0.0: 0.24320697255903145, 0.2: 0.36213330163617996}


@pytest.mark.parametrize("test_fraction", [0.0, 0.2])
def test_linear_probe_equals_sklearn_on_standard_inputs(test_fraction):
    X, Y = standard_inputs()
    got = measures.get("linear_probe", test_fraction=test_fraction).score(X, Y)
    assert got == pytest.approx(sklearn_linear(X, Y, test_fraction, 0), rel=1e-9)
    assert got == pytest.approx(STORED_LINEAR[test_fraction], rel=1e-6)


@pytest.mark.parametrize("test_fraction,seed", [(0.3, 4), (0.5, 1)])
def test_linear_probe_equals_sklearn_other_splits(test_fraction, seed):
    X, Y = standard_inputs(3)
    got = measures.get("linear_probe", test_fraction=test_fraction, seed=seed).score(X, Y[:, :7])
    assert got == pytest.approx(sklearn_linear(X, Y[:, :7], test_fraction, seed), rel=1e-9)


def test_linear_probe_more_features_than_fit_rows_is_the_minimum_norm_fit():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 100))
    Y = X[:, :3] @ rng.normal(size=(3, 5)) + 0.5 * rng.normal(size=(40, 5))
    got = measures.get("linear_probe").score(X, Y)
    assert got == pytest.approx(sklearn_linear(X, Y, 0.2, 0), rel=1e-9)
    assert got > 0


def test_linear_probe_one_hot_target_equals_sklearn(classes):
    X, T = classes
    got = measures.get("linear_probe").score(X, T)
    assert got == pytest.approx(sklearn_linear(X, T, 0.2, 0), rel=1e-9)
    assert 0 < got < 1


# ---- linear_probe: properties -------------------------------------------------------


@pytest.mark.parametrize("test_fraction", [0.0, 0.2])
def test_linear_probe_exactly_decodable_target_is_zero(test_fraction):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 8))
    Y = X @ rng.normal(size=(8, 3)) + rng.normal(size=3)
    assert abs(measures.get("linear_probe", test_fraction=test_fraction).score(X, Y)) < 1e-20


def test_linear_probe_in_sample_is_in_unit_interval_and_warns_when_trivial(caplog):
    rng = np.random.default_rng(5)
    m = measures.get("linear_probe", test_fraction=0.0)
    Y = rng.normal(size=(30, 4))
    v = m.score(rng.normal(size=(30, 5)), Y)
    assert 0 < v < 1
    with caplog.at_level("WARNING", logger="layergw.measures.probes"):
        trivial = m.score(rng.normal(size=(30, 29)), Y)
    assert abs(trivial) < 1e-20
    assert "rank 29 with n=30" in caplog.text and "test_fraction > 0" in caplog.text


def test_linear_probe_held_out_value_can_exceed_one():
    rng = np.random.default_rng(6)
    X, Y = rng.normal(size=(30, 20)), rng.normal(size=(30, 2))
    assert measures.get("linear_probe").score(X, Y) > 1


def test_linear_probe_invariances_of_the_representation():
    # the contract suite transforms X (the representation) for probes; so do we
    X, Y = standard_inputs()
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    moved = {
        "rotation": X @ Q,
        "permutation": X[:, rng.permutation(30)],
        "scaling": 3.7 * X,
        "translation": X + 5.0 * rng.normal(size=30),
    }
    m = measures.get("linear_probe")
    assert m.invariant_to() == set(moved)
    base = m.score(X, Y)
    for what, Z in moved.items():
        assert m.score(Z, Y) == pytest.approx(base, rel=1e-9), what
    assert m.score(X[rng.permutation(200)], Y) != pytest.approx(base, rel=1e-3)


def test_linear_probe_is_not_symmetric():
    X, Y = standard_inputs()
    m = measures.get("linear_probe")
    assert m.symmetric is False and m.target is True and m.kind == "distance" and m.best == 0.0
    assert m.score(X, Y) != pytest.approx(m.score(Y, X), rel=1e-3)


def test_linear_probe_geometry_is_prepared_once_and_picklable():
    X, Y = standard_inputs()
    m = measures.get("linear_probe")
    g = m.prepare(X)
    assert g.basis.shape == (160, 30) and g.predict.shape == (40, 30)
    np.testing.assert_allclose(g.basis.T @ g.basis, np.eye(30), atol=1e-12)
    g2 = pickle.loads(pickle.dumps(g))
    assert m.compare(g2, m.prepare(Y)).value == m.score(X, Y)
    X[0, 0] += 1.0  # the geometry holds its own copy
    assert g.values[0, 0] != X[0, 0]


def test_linear_probe_target_constant_on_held_out_rows():
    X = np.random.default_rng(1).normal(size=(20, 3))
    fit, _ = holdout_split(20, 0.2, 0)
    Y = np.zeros((20, 1))
    Y[fit[0]] = 1.0
    with pytest.raises(ValueError, match="target is constant on the 4 held-out rows"):
        measures.get("linear_probe").score(X, Y)


def test_linear_probe_rejects_foreign_or_mismatched_geometry():
    X, Y = standard_inputs()
    m = measures.get("linear_probe")
    with pytest.raises(ValueError, match="LinearProbeGeometry from LinearProbe.prepare, got ndarray"):
        m.compare(X, m.prepare(Y))
    other = measures.get("linear_probe", seed=1)
    with pytest.raises(ValueError, match="prepared with test_fraction=0.2, seed=1; this measure has test_fraction=0.2, seed=0"):
        m.compare(other.prepare(X), m.prepare(Y))
    with pytest.raises(ValueError, match="representation has n=200 rows but target has n=199"):
        m.compare(m.prepare(X), m.prepare(Y[:199]))


# ---- splits ---------------------------------------------------------------------------


def test_holdout_split():
    fit, test = holdout_split(50, 0.2, 3)
    assert len(test) == 10 and len(fit) == 40
    assert np.array_equal(np.sort(np.concatenate([fit, test])), np.arange(50))
    assert np.array_equal(test, holdout_split(50, 0.2, 3)[1])
    assert not np.array_equal(test, holdout_split(50, 0.2, 4)[1])
    fit, test = holdout_split(7, 0.0, 3)
    assert np.array_equal(fit, np.arange(7)) and test.size == 0
    assert len(holdout_split(3, 0.01, 0)[1]) == 1  # at least one held-out row
    with pytest.raises(ValueError, match="holds out 3 of n=4 rows, leaving fewer than 2"):
        holdout_split(4, 0.7, 0)


def test_stratified_split_is_proportional_and_keeps_every_class():
    labels = np.repeat(np.arange(4), [40, 20, 12, 8])
    train, test = stratified_split(labels, 0.25, 0)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(80))
    assert np.bincount(labels[test], minlength=4).tolist() == [10, 5, 3, 2]
    assert np.array_equal(test, stratified_split(labels, 0.25, 0)[1])
    assert not np.array_equal(test, stratified_split(labels, 0.25, 1)[1])


def test_stratified_split_with_more_classes_than_held_out_rows():
    # the paper's case: 59 classes at n = 160; sklearn's stratified splitters refuse it
    labels = np.random.default_rng(0).integers(0, 59, size=160)
    train, test = stratified_split(labels, 0.2, 0)
    assert len(test) == 32
    counts = np.bincount(labels, minlength=59)
    assert set(labels[train]) == set(labels)  # every class keeps a training row
    assert not set(np.flatnonzero(counts == 1)) & set(labels[test])  # singletons stay in train
    held = np.bincount(labels[test], minlength=59)
    assert np.all(held <= np.maximum(np.ceil(0.2 * counts), 1))


def test_stratified_split_needs_a_class_with_two_samples():
    with pytest.raises(ValueError, match="every one of the 5 classes has a single sample"):
        stratified_split(np.arange(5), 0.2, 0)
    # 2 rows asked for, but only class 2 can spare one
    _, test = stratified_split(np.array([0, 1, 2, 2]), 0.5, 0)
    assert len(test) == 1 and test[0] in (2, 3)


# ---- mlp_probe ------------------------------------------------------------------------


def test_mlp_probe_equals_sklearn_pipeline(classes, caplog):
    X, T = classes
    expected, n_iter = sklearn_mlp(X, T, 0.2, 0)
    m = measures.get("mlp_probe")
    with caplog.at_level("WARNING", logger="layergw.measures.probes"):
        c = m.compare(m.prepare(X), m.prepare(T))
    assert c.value == expected
    assert c.iterations == n_iter
    assert 0 < c.value < 0.75


def test_mlp_probe_other_seed_and_fraction_equal_sklearn(classes):
    X, T = classes
    m = measures.get("mlp_probe", seed=3, test_fraction=0.3)
    assert m.score(X, T) == sklearn_mlp(X, T, 0.3, 3)[0]


def test_mlp_probe_separable_representation_is_zero():
    rng = np.random.default_rng(1)
    labels = np.arange(60) % 3
    T = one_hot(labels, 3)
    X = 5.0 * T @ rng.normal(size=(3, 4)) + 0.01 * rng.normal(size=(60, 4))
    assert measures.get("mlp_probe").score(X, T) == 0.0
    assert measures.get("mlp_probe").score(T, T) == 0.0


def test_mlp_probe_random_representation_is_about_chance():
    rng = np.random.default_rng(2)
    k = 4
    T = one_hot(np.arange(400) % k, k)
    v = measures.get("mlp_probe").score(rng.normal(size=(400, 5)), T)
    assert abs(v - (1 - 1 / k)) < 0.12


def test_mlp_probe_non_convergence_is_reported(classes, caplog):
    X, T = classes
    m = measures.get("mlp_probe", max_iter=3)
    with caplog.at_level("WARNING", logger="layergw.measures.probes"), warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's ConvergenceWarning is consumed
        c = m.compare(m.prepare(X), m.prepare(T))
    assert c.converged is False and c.iterations == 3
    assert "max_iter=3" in caplog.text


@pytest.mark.parametrize(
    "Y,why",
    [
        (np.linspace(0, 1, 30).reshape(10, 3), r"entry \[0, 1\] is 0.034\d*, not 0 or 1"),
        (np.eye(10)[:, :3], r"7 rows do not hold exactly one 1 \(row 3 holds 0\)"),
        (np.hstack([np.eye(10)[np.arange(10) % 2], np.ones((10, 1))]), r"10 rows do not hold exactly one 1 \(row 0 holds 2\)"),
        (np.eye(10), "every one of the 10 classes has a single sample"),
    ],
)
def test_mlp_probe_target_must_be_one_hot(Y, why):
    X = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ValueError, match=rf"Y must be a one-hot target matrix.*{why}"):
        measures.get("mlp_probe").score(X, Y)


def test_one_hot_problem():
    assert one_hot_problem(np.eye(3)) is None
    assert one_hot_problem(np.eye(3)[[0, 0, 1]].astype(np.float32)) is None
    assert "not 0 or 1" in one_hot_problem(2 * np.eye(3))


def test_mlp_probe_declarations():
    m = measures.get("mlp_probe")
    assert m.symmetric is False and m.target is True and m.kind == "distance"
    assert m.invariant_to() == frozenset() and m.best == 0.0


def test_mlp_probe_rejects_foreign_geometry(classes):
    X, T = classes
    m = measures.get("mlp_probe")
    with pytest.raises(ValueError, match="MLPProbeGeometry from MLPProbe.prepare, got LinearProbeGeometry"):
        m.compare(measures.get("linear_probe").prepare(X), m.prepare(T))
    with pytest.raises(ValueError, match="representation has n=80 rows but target has n=79"):
        m.compare(m.prepare(X), m.prepare(T[:79]))


# ---- parameters -----------------------------------------------------------------------


def test_defaults():
    assert measures.get("linear_probe").params() == {"test_fraction": 0.2, "seed": 0}
    assert measures.get("mlp_probe").params() == {"seed": 0, "test_fraction": 0.2, "max_iter": 200}
    for name in ("linear_probe", "mlp_probe"):
        p = measures.get(name).params()
        assert json.loads(json.dumps(p)) == p


@pytest.mark.parametrize(
    "name,param,value",
    [
        ("linear_probe", "test_fraction", 1.0),
        ("linear_probe", "test_fraction", -0.1),
        ("linear_probe", "test_fraction", "0.2"),
        ("linear_probe", "seed", -1),
        ("linear_probe", "seed", 1.5),
        ("mlp_probe", "test_fraction", 0.0),
        ("mlp_probe", "test_fraction", float("nan")),
        ("mlp_probe", "seed", True),
        ("mlp_probe", "max_iter", 0),
    ],
)
def test_bad_parameters(name, param, value):
    with pytest.raises(ValueError, match=rf"'{param}'.*got {value!r}"):
        measures.get(name, **{param: value})


def test_in_sample_allowed_for_linear_only():
    assert measures.get("linear_probe", test_fraction=0).test_fraction == 0.0
    with pytest.raises(ValueError, match="0 < test_fraction < 1"):
        measures.get("mlp_probe", test_fraction=0)
