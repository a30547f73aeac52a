"""Properties every registered measure must have (parametrised over measures.names())."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from layergw import measures

NAMES = measures.names()

# gw is a non-convex problem: from the identity start GW(X, X) = 0 and the
# (X, Y) / (Y, X) problems are exact transposes of each other.
CONTRACT_PARAMS: dict[str, dict] = {"gw": {"init": "identity"}}


def make(name: str) -> measures.Measure:
    return measures.get(name, **CONTRACT_PARAMS.get(name, {}))


def best(m: measures.Measure) -> float:
    return 0.0 if m.kind == "distance" else 1.0


@pytest.fixture(scope="module")
def XY():
    rng = np.random.default_rng(42)
    X = rng.normal(size=(30, 6))
    Y = np.maximum(X @ rng.normal(size=(6, 6)), 0) + 0.1 * rng.normal(size=(30, 6))
    return X, Y


def test_at_least_the_core_measures():
    assert {"cka", "euclidean", "gw", "rsm"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_identity_of_the_measure(name):
    m = make(name)
    assert m.name == name
    assert m.kind in ("distance", "similarity")
    assert json.loads(json.dumps(m.params())) == m.params()
    assert measures.get(name, **m.params()) == m


@pytest.mark.parametrize("name", NAMES)
def test_self_comparison_is_the_best_value(name, XY):
    X, Y = XY
    m = make(name)
    assert m.score(X, X) == pytest.approx(best(m), abs=1e-8)
    other = m.score(X, Y)
    if m.kind == "distance":
        assert other > m.score(X, X)
    else:
        assert other < m.score(X, X)


@pytest.mark.parametrize("name", NAMES)
def test_symmetric(name, XY):
    X, Y = XY
    m = make(name)
    assert m.score(X, Y) == pytest.approx(m.score(Y, X), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_comparison_record(name, XY):
    X, Y = XY
    m = make(name)
    c = m.compare(m.prepare(X), m.prepare(Y))
    assert isinstance(c, measures.Comparison)
    assert isinstance(c.value, float) and math.isfinite(c.value)
    assert c.iterations is None or (isinstance(c.iterations, int) and c.iterations >= 0)
    assert isinstance(c.converged, bool)
    assert c.seconds >= 0.0
    assert c.value == m.score(X, Y)


@pytest.mark.parametrize("name", NAMES)
def test_prepare_is_deterministic_picklable_and_leaves_input_alone(name, XY):
    X, Y = XY
    X0 = X.copy()
    m = make(name)
    g1, g2 = m.prepare(X), m.prepare(X)
    assert pickle.dumps(g1) == pickle.dumps(g2)
    g3 = pickle.loads(pickle.dumps(g1))
    assert m.compare(g3, m.prepare(Y)).value == m.score(X, Y)
    m.score(X, Y)
    assert np.array_equal(X, X0)


@pytest.mark.parametrize("name", NAMES)
def test_accepts_float32_and_int_inputs(name, XY):
    X, Y = XY
    m = make(name)
    assert math.isfinite(m.score(X.astype(np.float32), (Y * 10).astype(np.int32)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_input_is_a_value_error(name, bad, XY):
    X, Y = XY
    Z = Y.copy()
    Z[2, 3] = float(bad)
    m = make(name)
    with pytest.raises(ValueError, match=r"Y contains NaN/Inf at 1 entries"):
        m.score(X, Z)
    with pytest.raises(ValueError, match=r"L5 contains NaN/Inf"):
        m.prepare(Z, label="L5")


@pytest.mark.parametrize("name", NAMES)
def test_one_dimensional_input_is_a_value_error(name, XY):
    X, _ = XY
    with pytest.raises(ValueError, match=r"X must be a 2-D array of shape \(n, d\).*1-D"):
        make(name).score(X[:, 0], X)


@pytest.mark.parametrize("name", NAMES)
def test_too_few_rows_is_a_value_error(name, XY):
    X, Y = XY
    with pytest.raises(ValueError, match=r"X has n=2 rows.*at least 3"):
        make(name).score(X[:2], Y[:2])


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_n_is_a_value_error(name, XY):
    X, Y = XY
    with pytest.raises(ValueError, match="X has n=30 rows but Y has n=29; representations must be taken on the same inputs"):
        make(name).score(X, Y[:29])


@pytest.mark.parametrize("name", NAMES)
def test_unequal_widths_work_or_raise_value_error(name, XY):
    X, Y = XY
    W = np.hstack([Y, Y[:, :3] ** 2])
    m = make(name)
    try:
        v = m.score(X, W)
    except ValueError as e:
        assert "d=6" in str(e) and "d=9" in str(e)
    else:
        assert math.isfinite(v)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_names_valid_ones(name):
    valid = measures.parameters(name)
    with pytest.raises(ValueError, match="valid parameters: " + (", ".join(valid) or r"\(none\)")):
        measures.get(name, bogus=1)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="valid measures: " + ", ".join(NAMES)):
        measures.get("nope")


def test_gw_bogus_parameter():
    with pytest.raises(ValueError, match="no parameter 'bogus'.*normalize, init, max_iter, tol_rel, tol_abs, return_coupling"):
        measures.get("gw", bogus=1)
