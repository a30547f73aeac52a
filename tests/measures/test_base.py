"""The measure protocol: validation, Comparison, registry access, base-class behaviour."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

from layergw import measures
from layergw.measures.base import Measure, check_same_n, register


@pytest.fixture
def X() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(10, 4))


# ---- check_representation -------------------------------------------------------------


def test_returns_same_object_when_already_float64_c_contiguous(X):
    assert measures.check_representation(X) is X


@pytest.mark.parametrize(
    "make",
    [
        lambda X: X.astype(np.float32),
        lambda X: np.asfortranarray(X),
        lambda X: X[:, ::2],
        lambda X: (X * 10).astype(np.int64),
        lambda X: X > 0,
    ],
    ids=["float32", "fortran", "strided", "int", "bool"],
)
def test_converts_to_float64_c_contiguous(X, make):
    A = make(X)
    out = measures.check_representation(A)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, A.astype(np.float64))


def test_not_an_array_names_label_and_shape():
    with pytest.raises(ValueError, match=r"layer_7.*NumPy array of shape \(n, d\).*list"):
        measures.check_representation([[1.0, 2.0]] * 5, label="layer_7")


@pytest.mark.parametrize("shape", [(12,), (3, 4, 5), ()])
def test_wrong_ndim_names_label_expected_and_got(shape):
    with pytest.raises(ValueError, match=r"model_L blocks.0.hook_q.h1 must be a 2-D.*\(n, d\).*got"):
        measures.check_representation(np.zeros(shape), label="model_L blocks.0.hook_q.h1")


@pytest.mark.parametrize("dtype", [np.complex128, object, "U3"])
def test_non_numeric_dtype(dtype):
    A = np.zeros((5, 2), dtype=dtype)
    with pytest.raises(ValueError, match="numeric"):
        measures.check_representation(A, label="A")


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_rows(n):
    with pytest.raises(ValueError, match=rf"Z has n={n} rows.*at least 3"):
        measures.check_representation(np.zeros((n, 4)), label="Z")


def test_zero_columns():
    with pytest.raises(ValueError, match="d=0 columns"):
        measures.check_representation(np.zeros((5, 0)))


def test_non_finite_counts_entries(X):
    X = X.copy()
    X[0, 0] = np.nan
    X[3, 1] = np.inf
    X[4, 2] = -np.inf
    with pytest.raises(ValueError, match=r"layer contains NaN/Inf at 3 entries \(1 NaN, 2 Inf\)"):
        measures.check_representation(X, label="layer")


def test_check_same_n_message():
    with pytest.raises(
        ValueError, match="X has n=5 rows but Y has n=6; representations must be taken on the same inputs"
    ):
        check_same_n(5, 6)


# ---- Comparison -----------------------------------------------------------------------


def test_comparison_is_frozen_with_optional_coupling():
    c = measures.Comparison(value=1.0, iterations=None, converged=True, seconds=0.1)
    assert c.coupling is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.value = 2.0  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(c)] == ["value", "iterations", "converged", "seconds", "coupling", "spread"]
    # equality ignores the (array) coupling, so comparing Comparisons never errors
    a = measures.Comparison(1.0, 3, True, 0.0, coupling=np.eye(3))
    b = measures.Comparison(1.0, 3, True, 0.0, coupling=np.eye(3))
    assert a == b


# ---- registry access ------------------------------------------------------------------


def test_names_sorted_and_complete():
    names = measures.names()
    assert names == sorted(names)
    assert {"gw", "rsm", "rsa", "cka", "cca", "procrustes", "msid", "wasserstein", "agw", "euclidean",
            "cosine", "mi", "linear_probe", "mlp_probe"} <= set(names)


def test_unknown_name_lists_valid_names_and_hint():
    with pytest.raises(ValueError, match=r"unknown measure 'ckaa' \(did you mean 'cka'\?\); valid measures: "
                       + ", ".join(measures.names())):
        measures.get("ckaa")


def test_unknown_parameter_lists_valid_parameters():
    with pytest.raises(ValueError, match=r"no parameter 'normalise' \(did you mean 'normalize'\?\).*normalize, init"):
        measures.get("gw", normalise="max")


def test_parameters_are_dataclass_fields():
    for name in measures.names():
        m = measures.get(name)
        assert measures.parameters(name) == [f.name for f in dataclasses.fields(m)]


@pytest.mark.parametrize("name", ["cka", "euclidean", "gw", "rsm"])
def test_registered_measures_are_frozen_named_and_json_params(name):
    m = measures.get(name)
    assert isinstance(m, measures.Measure)
    assert m.name == name and m.kind in ("distance", "similarity")
    assert json.loads(json.dumps(m.params())) == m.params()
    assert measures.get(name, **m.params()) == m
    hash(m)
    if m.params():
        key = next(iter(m.params()))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(m, key, None)


# ---- base class behaviour ---------------------------------------------------------------


@dataclass(frozen=True)
class _Constant(Measure):
    """Unregistered toy measure returning a fixed value."""

    kind: ClassVar[str] = "distance"
    out: float = 0.5

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return X

    def _compare(self, gx: Any, gy: Any) -> measures.Comparison:
        return measures.Comparison(value=self.out, iterations=None, converged=True, seconds=-1.0)


def test_compare_records_seconds_and_score_equals_compare(X):
    m = _Constant()
    c = m.compare(m.prepare(X), m.prepare(X))
    assert c.seconds >= 0.0 and c.value == 0.5
    assert m.score(X, X) == 0.5


def test_score_validates_both_inputs_and_n(X):
    m = _Constant()
    with pytest.raises(ValueError, match="Y contains NaN/Inf"):
        m.score(X, np.full_like(X, np.nan))
    with pytest.raises(ValueError, match="X must be a 2-D"):
        m.score(X[:, 0], X)
    with pytest.raises(ValueError, match="X has n=10 rows but Y has n=9; representations must be taken on the same inputs"):
        m.score(X, X[:9])


def test_prepare_label_in_errors(X):
    with pytest.raises(ValueError, match="m1 L3 contains NaN/Inf"):
        _Constant().prepare(np.full_like(X, np.nan), label="m1 L3")


def test_non_finite_value_is_an_error_not_a_silent_nan(X):
    with pytest.raises(ValueError, match="non-finite value"):
        _Constant(out=float("nan")).score(X, X)


def test_register_rejects_bad_classes():
    with pytest.raises(TypeError):
        register("notameasure")(int)

    @dataclass(frozen=True)
    class NoKind(Measure):
        pass

    with pytest.raises(ValueError, match="kind"):
        register("nokind")(NoKind)

    class NotDataclass(Measure):
        kind: ClassVar[str] = "distance"

    with pytest.raises(TypeError, match="frozen dataclass"):
        register("notdataclass")(NotDataclass)
    assert "nokind" not in measures.names() and "notdataclass" not in measures.names()
