"""Properties every registered measure must have, checked against what each one declares.

Parametrised over ``measures.names()`` (each with its default parameters, or the
CONTRACT_PARAMS below) plus VARIANTS, so a new measure module is covered with no edit here.
Probe measures (``target = True``) read Y as a known one-hot target: for them the
transformations are applied to the representation X instead.
"""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from layergw import measures
from layergw.measures.base import INVARIANCES

NAMES = measures.names()

# Parameters under which a measure's self-comparison is exact. gw is non-convex: from the
# identity start GW(X, X) = 0, and the (X, Y) / (Y, X) problems are exact transposes.
CONTRACT_PARAMS: dict[str, dict] = {"gw": {"init": "identity"}, "agw": {"init": "identity"}}

# Further parameter settings whose declared properties differ from the defaults'.
VARIANTS: list[tuple[str, dict]] = [
    ("gw", {"init": "product"}),
    ("gw", {"init": "identity", "normalize": "mean"}),
    ("gw", {"init": "identity", "normalize": "max"}),
    ("rsm", {"inner": "cosine"}),
]
for _name, _params, _known in [
    ("cka", {"kernel": "rbf"}, "kernel"),
    ("cka", {"debiased": True}, "debiased"),
    ("rsa", {"inner": "euclidean", "outer": "spearman"}, "inner"),
    ("rsa", {"inner": "euclidean", "outer": "euclidean"}, "outer"),
    ("rsm", {"inner": "correlation"}, "inner"),
    ("cca", {"variance_kept": 0.99}, "variance_kept"),
    ("cca", {"weighting": "pwcca"}, "weighting"),
    ("msid", {"n_repeats": 3}, "n_repeats"),
    ("agw", {"init": "product"}, "init"),
    ("agw", {"init": "identity", "preprocess": "center"}, "preprocess"),
    ("agw", {"init": "identity", "preprocess": "l2"}, "preprocess"),
    ("gw", {"init": "best", "n_random": 2}, "n_random"),
]:
    if _name in NAMES and _known in measures.parameters(_name):
        VARIANTS.append((_name, _params))

CASES = [(n, CONTRACT_PARAMS.get(n, {})) for n in NAMES] + VARIANTS
IDS = [n + "".join(f"-{k}={v}" for k, v in p.items()) for n, p in CASES]
#: measures whose contract cases take seconds each (entropic GW's float64 Sinkhorn on the CPU)
LONG = {"gw_batch"}


def params_of(cases: list[tuple], ids: list[str]) -> list:
    """The cases as pytest params, the LONG measures' marked ``long`` (``make test-all`` runs them)."""
    return [pytest.param(*c, id=i, marks=[pytest.mark.long] if c[0] in LONG else []) for c, i in zip(cases, ids)]


def make(name: str, params: dict | None = None) -> measures.Measure:
    return measures.get(name, **(CONTRACT_PARAMS.get(name, {}) if params is None else params))


def exact_self(m: measures.Measure) -> bool:
    """gw and agw from the product start find a local optimum, not GW(X, X) = 0; entropic GW's
    plan is blurred, so its GW(X, X) is above 0 too."""
    return not ((m.name in ("gw", "agw") and m.params()["init"] == "product") or m.name == "gw_batch")


@pytest.fixture(scope="module")
def XY():
    rng = np.random.default_rng(42)
    X = rng.normal(size=(60, 6))
    Y = np.maximum(X @ rng.normal(size=(6, 6)), 0) + 0.1 * rng.normal(size=(60, 6))
    return X, Y


@pytest.fixture(scope="module")
def probe_XY():
    """A representation that partly encodes 4 classes, and the classes as one-hot."""
    rng = np.random.default_rng(7)
    labels = np.arange(60) % 4
    T = np.eye(4)[labels]
    X = T @ rng.normal(size=(4, 6)) + 0.8 * rng.normal(size=(60, 6))
    return X, T


def pair(m: measures.Measure, XY, probe_XY):
    return probe_XY if m.target else XY


def test_at_least_the_core_measures():
    assert {"cka", "euclidean", "gw", "rsm"} <= set(NAMES)


def test_declarations_are_well_formed():
    for name in NAMES:
        m = measures.get(name)
        assert set(m.invariant_to()) <= set(INVARIANCES), name
        assert isinstance(m.symmetric, bool) and isinstance(m.equal_widths, bool), name
        assert m.best is None or m.best in (0.0, 1.0), name
        assert not (m.target and m.symmetric), f"{name}: a probe reads Y as the target, so it is not symmetric"


@pytest.mark.parametrize(("name", "params"), params_of(CASES, IDS))
def test_identity_of_the_measure(name, params):
    m = make(name, params)
    assert m.name == name
    assert m.kind in ("distance", "similarity")
    assert json.loads(json.dumps(m.params())) == m.params()
    assert measures.get(name, **m.params()) == m


@pytest.mark.parametrize(("name", "params"), params_of(CASES, IDS))
def test_self_comparison_is_the_best_value(name, params, XY, probe_XY):
    m = make(name, params)
    X, Y = pair(m, XY, probe_XY)
    own = m.score(Y, Y) if m.target else m.score(X, X)
    other = m.score(X, Y)
    if m.best is not None and exact_self(m):
        assert own == pytest.approx(m.best, abs=1e-8)
    if m.kind == "distance":
        assert other > own
    else:
        assert other < own


@pytest.mark.parametrize(("name", "params"), params_of(CASES, IDS))
def test_symmetric_when_declared(name, params, XY):
    m = make(name, params)
    if not m.symmetric:
        pytest.skip(f"{name} declares itself asymmetric")
    X, Y = XY
    assert m.score(X, Y) == pytest.approx(m.score(Y, X), rel=1e-6, abs=1e-12)


def transformed(kind: str, Z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    d = Z.shape[1]
    if kind == "rotation":
        Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        return Z @ Q
    if kind == "permutation":
        return Z[:, rng.permutation(d)]
    if kind == "scaling":
        return 3.7 * Z
    if kind == "translation":
        return Z + rng.normal(size=d) * 5.0
    if kind == "sample_permutation":
        return Z[rng.permutation(Z.shape[0])]
    raise AssertionError(kind)


INVARIANCE_CASES = [(n, p, inv) for (n, p) in CASES for inv in INVARIANCES]
INVARIANCE_IDS = [f"{i}-{inv}" for i in IDS for inv in INVARIANCES]


@pytest.mark.parametrize(("name", "params", "invariance"), params_of(INVARIANCE_CASES, INVARIANCE_IDS))
def test_declared_invariances_hold(name, params, invariance, XY, probe_XY):
    m = make(name, params)
    if invariance not in m.invariant_to():
        pytest.skip(f"{name} {params} does not claim invariance to {invariance}")
    X, Y = pair(m, XY, probe_XY)
    rng = np.random.default_rng(3)
    base = m.score(X, Y)
    if m.target:  # the target is fixed; the representation is transformed
        value = m.score(transformed(invariance, X, rng), Y)
    else:
        value = m.score(X, transformed(invariance, Y, rng))
    assert value == pytest.approx(base, rel=1e-6, abs=1e-9), INVARIANCES[invariance]


def test_every_measure_claims_something_or_is_basis_bound():
    """Only measures tied to a shared basis (equal widths) or probes may claim no invariance."""
    for name in NAMES:
        m = measures.get(name)
        assert m.invariant_to() or m.equal_widths or m.target or name == "mlp_probe", name


@pytest.mark.parametrize(("name", "params"), params_of(CASES, IDS))
def test_comparison_record(name, params, XY, probe_XY):
    m = make(name, params)
    X, Y = pair(m, XY, probe_XY)
    c = m.compare(m.prepare(X), m.prepare(Y))
    assert isinstance(c, measures.Comparison)
    assert isinstance(c.value, float) and math.isfinite(c.value)
    assert c.iterations is None or (isinstance(c.iterations, int) and c.iterations >= 0)
    assert isinstance(c.converged, bool)
    assert c.seconds >= 0.0
    assert c.spread is None or (math.isfinite(c.spread) and c.spread >= 0)
    assert c.value == m.score(X, Y)


@pytest.mark.parametrize("name", NAMES)
def test_prepare_is_deterministic_picklable_and_leaves_input_alone(name, XY, probe_XY):
    m = make(name)
    X, Y = pair(m, XY, probe_XY)
    X0 = X.copy()
    g1, g2 = m.prepare(X), m.prepare(X)
    assert pickle.dumps(g1) == pickle.dumps(g2)
    g3 = pickle.loads(pickle.dumps(g1))
    assert m.compare(g3, m.prepare(Y)).value == m.score(X, Y)
    assert np.array_equal(X, X0)


@pytest.mark.parametrize("name", NAMES)
def test_accepts_float32_and_int_inputs(name, XY, probe_XY):
    m = make(name)
    X, Y = pair(m, XY, probe_XY)
    Yi = Y.astype(np.int32) if m.target else (Y * 10).astype(np.int32)
    assert math.isfinite(m.score(X.astype(np.float32), Yi))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_input_is_a_value_error(name, bad, XY, probe_XY):
    m = make(name)
    X, Y = pair(m, XY, probe_XY)
    Z = Y.copy()
    Z[2, 3] = float(bad)
    with pytest.raises(ValueError, match=r"Y contains NaN/Inf at 1 entries"):
        m.score(X, Z)
    with pytest.raises(ValueError, match=r"L5 contains NaN/Inf"):
        m.prepare(Z, label="L5")


@pytest.mark.parametrize("name", NAMES)
def test_constant_representation_is_rejected_or_defined(name, XY, probe_XY):
    m = make(name)
    X, Y = pair(m, XY, probe_XY)
    C = np.full_like(X, 2.5)
    if m.accepts_constant:
        assert math.isfinite(m.score(C, Y))
    else:
        with pytest.raises(ValueError, match=r"X is constant: all 60 rows \(samples\) are identical"):
            m.score(C, Y)
        with pytest.raises(ValueError, match=r"blocks\.3\.hook_z is constant"):
            m.prepare(C, label="blocks.3.hook_z")


@pytest.mark.parametrize("name", NAMES)
def test_one_dimensional_input_is_a_value_error(name, XY):
    X, _ = XY
    with pytest.raises(ValueError, match=r"X must be a 2-D array of shape \(n, d\).*1-D"):
        make(name).score(X[:, 0], X)


@pytest.mark.parametrize("name", NAMES)
def test_too_few_rows_is_a_value_error(name, XY, probe_XY):
    m = make(name)
    X, Y = pair(m, XY, probe_XY)
    with pytest.raises(ValueError, match=r"X has n=2 rows.*at least 3"):
        m.score(X[:2], Y[:2])


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_n_is_a_value_error(name, XY, probe_XY):
    m = make(name)
    X, Y = pair(m, XY, probe_XY)
    with pytest.raises(ValueError, match="X has n=60 rows but Y has n=59; representations must be taken on the same inputs"):
        m.score(X, Y[:59])


@pytest.mark.parametrize("name", NAMES)
def test_unequal_widths_work_unless_declared(name, XY, probe_XY):
    m = make(name)
    if m.target:
        X, Y = probe_XY
        W = np.hstack([X, X[:, :3] ** 2])
        assert math.isfinite(m.score(W, Y))
        return
    X, Y = XY
    W = np.hstack([Y, Y[:, :3] ** 2])
    if m.equal_widths:
        with pytest.raises(ValueError, match=r"d=6.*d=9|d=9.*d=6"):
            m.score(X, W)
    else:
        assert math.isfinite(m.score(X, W))


@pytest.mark.parametrize("name", NAMES)
def test_more_features_than_samples_works_or_says_so(name):
    """n < d: either a finite value or a ValueError that names n and d."""
    rng = np.random.default_rng(5)
    m = make(name)
    X = rng.normal(size=(20, 50))
    Y = np.eye(4)[np.arange(20) % 4] if m.target else np.tanh(X @ rng.normal(size=(50, 50)))
    try:
        v = m.score(X, Y)
    except ValueError as e:
        assert "n=20" in str(e) and "d=50" in str(e), str(e)
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
