"""The measure protocol: validation, the result record, the base class and the registry.

A measure compares two representations of the same n inputs, X (n, d1) and Y (n, d2).
It works in two steps so that a pipeline over L layers does O(L) per-layer work once and
O(L^2) cheap pair work: ``prepare(X) -> geometry`` (a picklable value holding NumPy arrays,
e.g. a distance matrix) and ``compare(geometry_x, geometry_y) -> Comparison``.
``score(X, Y)`` does both for one pair.

Measures are frozen dataclasses whose fields are their hyperparameters, so ``params()`` is
the JSON-serialisable record stored next to every value, and equal parameters give equal
(and hashable) measures.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, TypeVar

import numpy as np

from layergw.registry import Registry

logger = logging.getLogger(__name__)

KINDS = ("distance", "similarity")
MIN_ROWS = 3

# What a measure may claim to be unchanged by. Each transformation is applied to ONE side
# (Y) only; the contract suite (tests/measures/test_contract.py) checks every claim.
INVARIANCES: dict[str, str] = {
    "rotation": "an orthogonal rotation of Y's features (Y @ Q)",
    "permutation": "a permutation of Y's features (columns)",
    "scaling": "multiplying Y by a positive scalar",
    "translation": "adding one constant vector to every row of Y",
    "sample_permutation": "permuting the rows (samples) of Y only, not those of X",
}

REGISTRY: Registry[Measure] = Registry("measure")

M = TypeVar("M", bound=type)


@dataclass(frozen=True)
class Comparison:
    """Result of comparing two prepared layers.

    value: the measure's value (a distance or a similarity, see ``Measure.kind``).
    iterations: solver iterations, or None for closed-form measures.
    converged: False when an iterative solver stopped at its iteration cap.
    seconds: wall-clock seconds spent in ``compare``.
    coupling: the transport plan (n, n) when a solver was asked to return it, else None.
    spread: for measures that take several starts or random repeats, how much the value
        varied over them (each measure documents which statistic), else None.
    """

    value: float
    iterations: int | None
    converged: bool
    seconds: float
    coupling: np.ndarray | None = field(default=None, compare=False, repr=False)
    spread: float | None = None


def check_shape(X: Any, label: str = "X") -> None:
    """The checks of :func:`check_representation` that need no copy of X (type, 2-D shape,
    numeric dtype, n >= 3, d >= 1): what streamed extraction checks on the whole array, its
    values being checked batch by batch with :func:`check_finite`."""
    if not isinstance(X, np.ndarray):
        raise ValueError(
            f"{label} must be a 2-D numeric NumPy array of shape (n, d), "
            f"got {type(X).__module__}.{type(X).__qualname__}"
        )
    if X.ndim != 2:
        raise ValueError(
            f"{label} must be a 2-D array of shape (n, d) (n samples, d features), "
            f"got {X.ndim}-D array of shape {X.shape}"
        )
    if X.dtype.kind not in "biuf":
        raise ValueError(
            f"{label} must be a numeric (bool, integer or real floating) array of shape (n, d), "
            f"got dtype {X.dtype} with shape {X.shape}"
        )
    n, d = X.shape
    if n < MIN_ROWS:
        raise ValueError(
            f"{label} has n={n} rows (samples); at least {MIN_ROWS} are needed, "
            f"shape (n, d) expected, got {X.shape}"
        )
    if d < 1:
        raise ValueError(f"{label} has d=0 columns (features); shape (n, d) with d >= 1 expected, got {X.shape}")


def check_finite(X: np.ndarray, label: str = "X") -> None:
    """Every entry of X is finite, or a ValueError counting the NaN and Inf entries."""
    finite = np.isfinite(X)
    if not finite.all():
        bad = int(X.size - np.count_nonzero(finite))
        n_nan = int(np.count_nonzero(np.isnan(X)))
        raise ValueError(
            f"{label} contains NaN/Inf at {bad} entries ({n_nan} NaN, {bad - n_nan} Inf) "
            f"of {X.size}, shape {X.shape}"
        )


def check_representation(X: Any, label: str = "X") -> np.ndarray:
    """Validate one layer's representation and return it as float64, C-contiguous.

    X must be a 2-D numeric NumPy array of shape (n, d) with n >= 3 samples (rows),
    d >= 1 features and only finite entries. The array is returned unchanged (not copied)
    when it already is float64 and C-contiguous. ``label`` names X in error messages,
    e.g. the model and representation point.
    """
    check_shape(X, label)
    out = np.ascontiguousarray(X, dtype=np.float64)
    check_finite(out, label)
    return out


def check_geometry(owner: str, which: str, g: Any, ndim: int, what: str) -> np.ndarray:
    """A prepared geometry must be the NumPy array ``prepare`` makes; name what came otherwise."""
    if not isinstance(g, np.ndarray) or g.ndim != ndim:
        raise ValueError(f"{owner}: the {which} geometry must be {what}, got {getattr(g, 'shape', type(g).__name__)}")
    return g


def check_same_n(n_x: int, n_y: int, labels: tuple[str, str] = ("X", "Y")) -> None:
    """Both representations must be taken on the same inputs, so have the same row count."""
    if n_x != n_y:
        a, b = labels
        raise ValueError(
            f"{a} has n={n_x} rows but {b} has n={n_y}; "
            "representations must be taken on the same inputs"
        )


def check_not_constant(X: np.ndarray, label: str, owner: str) -> None:
    """A representation whose rows are all identical carries no geometry; name it."""
    if X.shape[0] and np.all(X == X[0]):
        raise ValueError(
            f"{label} is constant: all {X.shape[0]} rows (samples) are identical, "
            f"so {owner} is undefined for it"
        )


def check_choice(owner: str, param: str, value: Any, choices: Iterable[Any]) -> None:
    """ValueError naming the parameter, the valid values and what came."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{owner} parameter {param!r} must be one of {', '.join(map(repr, choices))}; got {value!r}"
        )


def check_positive_int(owner: str, param: str, value: Any) -> int:
    """A positive integer; integral floats such as POT's own default 1e4 are accepted."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{owner} parameter {param!r} must be a positive integer; got {value!r}")
    return int(value)


def check_positive_float(owner: str, param: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{owner} parameter {param!r} must be a finite number > 0; got {value!r}")
    return float(value)


def check_bool(owner: str, param: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner} parameter {param!r} must be True or False; got {value!r}")
    return bool(value)


@dataclass(frozen=True)
class Measure:
    """Base class: subclasses are frozen dataclasses, fields are hyperparameters.

    Subclasses set ``kind`` ("distance": 0 is best; "similarity": larger is better),
    implement ``_prepare(X)`` on a validated float64 array and ``_compare(gx, gy)``
    returning a Comparison (its ``seconds`` is filled in here), validate their fields in
    ``__post_init__`` and register with ``@register("name")``, which sets ``name``.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""  # a property instead when a parameter decides it
    # Declared properties, checked for every measure by the contract suite.
    symmetric: ClassVar[bool] = True
    invariances: ClassVar[frozenset[str]] = frozenset()  # keys of INVARIANCES
    equal_widths: ClassVar[bool] = False  # True: only layers of equal width compare
    accepts_constant: ClassVar[bool] = False  # False: a constant layer is a ValueError
    target: ClassVar[bool] = False  # True: a probe; Y is a known target (one-hot (n, k))
    unbounded: ClassVar[bool] = False  # True: no fixed best value (e.g. mutual information)

    def invariant_to(self) -> frozenset[str]:
        """What this measure, with these parameters, is unchanged by (keys of INVARIANCES).

        Defaults to the class's ``invariances``; override when parameters change it.
        """
        return frozenset(self.invariances)

    @property
    def best(self) -> float | None:
        """The best possible value (distance 0, similarity 1), None when unbounded."""
        if self.unbounded:
            return None
        return 0.0 if self.kind == "distance" else 1.0

    def params(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-serialisable dict (recorded with every value)."""
        return dataclasses.asdict(self)

    @property
    def params_json(self) -> str:
        """The full parameters as sorted JSON: a variant's identity in every result row."""
        return json.dumps(self.params(), sort_keys=True)

    @property
    def key(self) -> str:
        """Folder-safe identity of this variant: the name and a hash of the full parameters, so
        ``gw`` and ``gw`` with its default parameters spelled out are one variant."""
        return f"{self.name}-{hashlib.sha256(self.params_json.encode()).hexdigest()[:8]}"

    def prepare(self, X: Any, label: str = "X") -> Any:
        """Per-layer geometry of X (validated with ``check_representation``); picklable.

        ``label`` names X (say, the model and representation point) in every error.
        """
        X = check_representation(X, label)
        if not self.accepts_constant:
            check_not_constant(X, label, f"measure {self.name!r}")
        try:
            return self._prepare(X)
        except ValueError as e:
            raise ValueError(f"{label}: {e}") from e

    def compare(self, gx: Any, gy: Any) -> Comparison:
        """Compare two prepared geometries; records wall seconds; never returns a NaN value."""
        t0 = time.perf_counter()
        result = self._compare(gx, gy)
        seconds = time.perf_counter() - t0
        value = float(result.value)
        if not math.isfinite(value):
            raise ValueError(
                f"measure {self.name!r} {self.params()} produced a non-finite value {value}; "
                "the inputs are degenerate for this measure"
            )
        return dataclasses.replace(result, value=value, seconds=seconds)

    def score(self, X: Any, Y: Any) -> float:
        """Value for one pair: ``compare(prepare(X), prepare(Y)).value``; X, Y share n."""
        X = check_representation(X, "X")
        Y = check_representation(Y, "Y")
        check_same_n(X.shape[0], Y.shape[0])
        return self.compare(self.prepare(X, "X"), self.prepare(Y, "Y")).value

    # to implement
    def _prepare(self, X: np.ndarray) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _compare(self, gx: Any, gy: Any) -> Comparison:  # pragma: no cover - abstract
        raise NotImplementedError


def register(name: str) -> Callable[[M], M]:
    """Class decorator: register a Measure subclass under ``name`` and set its ``name``."""

    def deco(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Measure)):
            raise TypeError(f"@register({name!r}) expects a Measure subclass, got {cls!r}")
        if not isinstance(vars(cls).get("kind"), property) and cls.kind not in KINDS:
            raise ValueError(f"measure {name!r} must set kind to one of {KINDS}, got {cls.kind!r}")
        unknown = set(cls.invariances) - set(INVARIANCES)
        if unknown:
            raise ValueError(
                f"measure {name!r} claims unknown invariances {sorted(unknown)}; valid: {', '.join(INVARIANCES)}"
            )
        params = vars(cls).get("__dataclass_params__")  # set on the class itself by @dataclass
        if params is None or not params.frozen:
            raise TypeError(f"measure {name!r} must be a frozen dataclass (decorate it with @dataclass(frozen=True))")
        REGISTRY.register(name)(cls)
        cls.name = name
        return cls

    return deco


def get(name: str, **params: Any) -> Measure:
    """The measure registered as ``name`` with hyperparameters ``params``.

    Unknown names or parameters give a ValueError naming the valid ones.
    """
    return REGISTRY.get(name, **params)


def names() -> list[str]:
    """Sorted names of all registered measures."""
    return REGISTRY.names()


def parameters(name: str) -> list[str]:
    """Hyperparameter names of the measure registered as ``name``."""
    return REGISTRY.parameters(name)
