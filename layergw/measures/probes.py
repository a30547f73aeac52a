"""Probe measures (the paper's Appendix C): how well a known target can be read off a layer.

A probe compares a representation X (n, d) with a known target Y of the same n inputs;
``score(X, Y)`` takes the representation first and the target second, so probes are not
symmetric. Both are distances (0: the target is perfectly decodable).

linear_probe: least-squares regression, with intercept, of Y (n, k) on X. On the fit rows
F (X_F, Y_F centred by their means mu_X, mu_Y), B = pinv(X_F - mu_X) (Y_F - mu_Y) is the
minimum-norm solution, the prediction is Yhat = mu_Y + (X - mu_X) B and

    value = sum_ij (Y_ij - Yhat_ij)^2 / sum_ij (Y_ij - mean_i Y_ij)^2     (over the test rows),

i.e. 1 - R^2 with all target columns pooled (scikit-learn's ``r2_score(...,
multioutput="variance_weighted")``). With ``test_fraction > 0`` (the default, 0.2) the
test rows are a seeded random held-out subset and the fit rows the others; the value can
then exceed 1 (the fit predicts the held-out rows worse than their own mean) and is not
clipped. With ``test_fraction = 0`` the fit is in-sample: the value lies in [0, 1], and it
is 0 for every target once the centred X has rank n - 1 (e.g. d >= n - 1): a warning says
so. Any Y is accepted (one-hot or continuous). Invariant, X transformed, to rotations,
feature permutations, isotropic scaling and translations of X (any invertible linear map
of X leaves OLS predictions unchanged when X_F has full column rank; the minimum-norm
solution keeps the orthogonal and scaling ones).

mlp_probe: scikit-learn's MLPClassifier with its default parameters except
``random_state=seed`` (and ``max_iter``, default sklearn's 200), trained on the train rows
of a seeded stratified split of (standardized X, labels = argmax of the one-hot Y);

    value = 1 - accuracy on the held-out rows.

X is standardized with StandardScaler fitted on all n rows (it sees the held-out rows'
feature means and variances, never their labels). Declares no invariance: the network's
random initialisation is tied to the feature order, and standardization removes scaling
and translation of X only up to rounding, to which an accuracy may react.

Split: sklearn's stratified splitters need at least one held-out row per class, which the
paper's targets (59 classes at n = 160-256) cannot give. ``stratified_split`` is therefore
this module's own: round(test_fraction * n) held-out rows (at least 1), shared out over the
classes in proportion to their counts (largest remainders, ties broken at random), every
class keeping at least one training row, so a class with a single row is never held out.

Reference: scikit-learn 1.9.1 (the installed package): ``LinearRegression().fit`` +
``r2_score(..., multioutput="variance_weighted")`` for linear_probe, and
``StandardScaler`` + ``MLPClassifier(random_state=seed).fit(...).score(...)`` for mlp_probe
(tests/measures/test_probes.py runs both). Deviation: linear_probe prepares a thin SVD of
each layer once, so a comparison is one projection instead of a new least-squares solve.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from layergw.measures.base import (
    Comparison,
    Measure,
    check_positive_int,
    check_same_n,
    register,
)

logger = logging.getLogger(__name__)


def _check_fraction(owner: str, value: Any, allow_zero: bool) -> float:
    lo = "0 <= test_fraction < 1" if allow_zero else "0 < test_fraction < 1"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or not (0.0 <= value < 1.0 if allow_zero else 0.0 < value < 1.0)
    ):
        raise ValueError(f"{owner} parameter 'test_fraction' must be a number with {lo}; got {value!r}")
    return float(value)


def _check_seed(owner: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{owner} parameter 'seed' must be an integer >= 0; got {value!r}")
    return int(value)


def holdout_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """linear_probe's split: (fit rows, held-out rows), sorted; all rows fit when test_fraction=0.

    round(test_fraction * n) rows (at least 1) drawn by ``default_rng(seed).permutation(n)``;
    at least 2 rows must stay for the fit.
    """
    if test_fraction == 0:
        return np.arange(n), np.arange(0)
    n_test = max(1, round(test_fraction * n))
    if n - n_test < 2:
        raise ValueError(
            f"test_fraction={test_fraction} holds out {n_test} of n={n} rows, leaving fewer "
            "than 2 to fit; use a smaller test_fraction or more samples"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """mlp_probe's split: (train rows, held-out rows), sorted, stratified by ``labels``.

    round(test_fraction * n) held-out rows (at least 1): class c gets floor(test_fraction *
    n_c), then the remaining rows go one each to the classes with the largest remainders
    (ties in random order), never taking a class's last training row. Within each class
    the held-out rows are a random subset. All randomness from ``default_rng(seed)``.
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    cap = counts - 1
    if not cap.any():
        raise ValueError(
            f"every one of the {len(classes)} classes has a single sample (n={n}): no row can "
            "be held out without removing its class from training"
        )
    rng = np.random.default_rng(seed)
    n_test = max(1, round(test_fraction * n))
    quota = test_fraction * counts
    take = np.minimum(np.floor(quota).astype(np.int64), cap)
    tiebreak = rng.random(len(classes))
    while take.sum() < n_test:
        open_ = np.flatnonzero(take < cap)
        if open_.size == 0:
            break
        order = open_[np.lexsort((tiebreak[open_], -(quota[open_] - take[open_])))]
        take[order[: n_test - take.sum()]] += 1
    test = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        test.append(rng.permutation(members)[: take[c]])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(n), test_idx)
    return train_idx, test_idx


# ---- linear_probe ---------------------------------------------------------------------


@dataclass(frozen=True)
class LinearProbeGeometry:
    """What linear_probe.prepare keeps of one input, for either side of a comparison.

    values: the input (n, d), read when it is the target. fit/test: the split's rows.
    basis: (n_fit, r) orthonormal basis U_r of the centred fit rows' column space.
    predict: (n_test, r) the held-out rows, centred by the fit mean, times V_r S_r^-1, so
        that the held-out prediction is mu_Y + predict @ (basis.T @ (Y_fit - mu_Y)).
    """

    values: np.ndarray
    fit: np.ndarray
    test: np.ndarray
    basis: np.ndarray
    predict: np.ndarray
    test_fraction: float
    seed: int

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])


@register("linear_probe")
@dataclass(frozen=True)
class LinearProbe(Measure):
    """1 - R^2 of a least-squares regression (with intercept) of the target Y on X.

    test_fraction: share of the rows held out to score the fit (0: in-sample, see the
        module docstring); seed: seed of the held-out rows.
    """

    kind: ClassVar[str] = "distance"
    symmetric: ClassVar[bool] = False
    target: ClassVar[bool] = True
    invariances: ClassVar[frozenset[str]] = frozenset({"rotation", "permutation", "scaling", "translation"})

    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "measure 'linear_probe'"
        object.__setattr__(self, "test_fraction", _check_fraction(owner, self.test_fraction, allow_zero=True))
        object.__setattr__(self, "seed", _check_seed(owner, self.seed))

    def _prepare(self, X: np.ndarray) -> LinearProbeGeometry:
        n = X.shape[0]
        fit, test = holdout_split(n, self.test_fraction, self.seed)
        XF = X[fit]
        mu = XF.mean(axis=0)
        U, s, Vt = np.linalg.svd(XF - mu, full_matrices=False)
        tol = (s[0] if s.size else 0.0) * max(XF.shape) * np.finfo(np.float64).eps
        r = int(np.count_nonzero(s > tol))
        predict = ((X[test] - mu) @ Vt[:r].T) / s[:r]
        return LinearProbeGeometry(
            values=X.copy(), fit=fit, test=test, basis=np.ascontiguousarray(U[:, :r]),
            predict=np.ascontiguousarray(predict), test_fraction=self.test_fraction, seed=self.seed,
        )

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        gx = self._check(gx, "first (representation)")
        gy = self._check(gy, "second (target)")
        n = gx.values.shape[0]
        check_same_n(n, gy.values.shape[0], ("representation", "target"))
        Y = gy.values
        YF = Y[gx.fit]
        mu = YF.mean(axis=0)
        coords = gx.basis.T @ (YF - mu)
        if self.test_fraction == 0:
            if gx.rank >= n - 1:
                logger.warning(
                    "linear_probe: in-sample fit on a representation of rank %d with n=%d rows "
                    "fits any target exactly (value 0); use test_fraction > 0", gx.rank, n,
                )
            centred = YF - mu
            residual = centred - gx.basis @ coords
            total = float(np.sum(centred * centred))
        else:
            YT = Y[gx.test]
            residual = YT - (mu + gx.predict @ coords)
            spread = YT - YT.mean(axis=0)
            total = float(np.sum(spread * spread))
            if not total > 0:
                raise ValueError(
                    f"linear_probe: the target is constant on the {len(gx.test)} held-out rows "
                    f"(test_fraction={self.test_fraction}, seed={self.seed}, n={n}), so R^2 is "
                    "undefined; use a larger test_fraction, another seed or more samples"
                )
        value = float(np.sum(residual * residual)) / total
        return Comparison(value=value, iterations=None, converged=True, seconds=0.0)

    def _check(self, g: Any, which: str) -> LinearProbeGeometry:
        if not isinstance(g, LinearProbeGeometry):
            raise ValueError(  # noqa: TRY004 (the measure protocol's errors are ValueErrors)
                f"linear_probe: the {which} geometry must be a LinearProbeGeometry from "
                f"LinearProbe.prepare, got {type(g).__name__}"
            )
        if (g.test_fraction, g.seed) != (self.test_fraction, self.seed):
            raise ValueError(
                f"linear_probe: the {which} geometry was prepared with test_fraction="
                f"{g.test_fraction}, seed={g.seed}; this measure has test_fraction="
                f"{self.test_fraction}, seed={self.seed}"
            )
        return g


# ---- mlp_probe ------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPProbeGeometry:
    """What mlp_probe.prepare keeps of one input, for either side of a comparison.

    standardized: the input after StandardScaler (fitted on all rows), used as features.
    labels, train, test: argmax labels and the stratified split when the input is a one-hot
        matrix (used as target), else None with ``not_target`` saying why.
    """

    standardized: np.ndarray
    labels: np.ndarray | None
    train: np.ndarray | None
    test: np.ndarray | None
    not_target: str | None
    test_fraction: float
    seed: int


def one_hot_problem(Y: np.ndarray) -> str | None:
    """Why Y is not a one-hot target matrix (every row one 1, zeros elsewhere), or None."""
    binary = (Y == 0) | (Y == 1)
    if not binary.all():
        i, j = np.argwhere(~binary)[0]
        return f"entry [{i}, {j}] is {float(Y[i, j])!r}, not 0 or 1"
    ones = np.count_nonzero(Y == 1, axis=1)
    bad = np.flatnonzero(ones != 1)
    if bad.size:
        return f"{bad.size} rows do not hold exactly one 1 (row {bad[0]} holds {ones[bad[0]]})"
    return None


@register("mlp_probe")
@dataclass(frozen=True)
class MLPProbe(Measure):
    """1 - held-out accuracy of scikit-learn's MLPClassifier predicting the one-hot target's class.

    seed: random_state of the classifier and seed of the stratified split.
    test_fraction: share of the rows held out (stratified by class).
    max_iter: the classifier's epoch cap (sklearn's default 200); reaching it is reported
        as ``converged=False`` with ``iterations = n_iter_``.
    """

    kind: ClassVar[str] = "distance"
    symmetric: ClassVar[bool] = False
    target: ClassVar[bool] = True

    seed: int = 0
    test_fraction: float = 0.2
    max_iter: int = 200

    def __post_init__(self) -> None:
        owner = "measure 'mlp_probe'"
        object.__setattr__(self, "seed", _check_seed(owner, self.seed))
        object.__setattr__(self, "test_fraction", _check_fraction(owner, self.test_fraction, allow_zero=False))
        object.__setattr__(self, "max_iter", check_positive_int(owner, "max_iter", self.max_iter))

    def _prepare(self, X: np.ndarray) -> MLPProbeGeometry:
        from sklearn.preprocessing import StandardScaler

        Z = StandardScaler().fit_transform(X)
        labels = train = test = None
        problem = one_hot_problem(X)
        if problem is None:
            labels = np.argmax(X, axis=1)
            try:
                train, test = stratified_split(labels, self.test_fraction, self.seed)
            except ValueError as e:
                labels, problem = None, str(e)
        return MLPProbeGeometry(
            standardized=Z, labels=labels, train=train, test=test, not_target=problem,
            test_fraction=self.test_fraction, seed=self.seed,
        )

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        gx = self._check(gx, "first (representation)")
        gy = self._check(gy, "second (target)")
        check_same_n(gx.standardized.shape[0], gy.standardized.shape[0], ("representation", "target"))
        if gy.labels is None:
            raise ValueError(
                "mlp_probe: Y must be a one-hot target matrix (n, k), every row exactly one 1 "
                f"and zeros elsewhere, with a class of at least 2 samples: {gy.not_target}"
            )
        Z, y = gx.standardized, gy.labels
        clf = MLPClassifier(random_state=self.seed, max_iter=self.max_iter)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf.fit(Z[gy.train], y[gy.train])
        converged = True
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                converged = False
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if not converged:
            logger.warning(
                "mlp_probe: MLPClassifier stopped at max_iter=%d epochs before converging "
                "(n_train=%d, d=%d)", self.max_iter, len(gy.train), Z.shape[1],
            )
        accuracy = float(np.mean(clf.predict(Z[gy.test]) == y[gy.test]))
        return Comparison(value=1.0 - accuracy, iterations=int(clf.n_iter_), converged=converged, seconds=0.0)

    def _check(self, g: Any, which: str) -> MLPProbeGeometry:
        if not isinstance(g, MLPProbeGeometry):
            raise ValueError(  # noqa: TRY004 (the measure protocol's errors are ValueErrors)
                f"mlp_probe: the {which} geometry must be an MLPProbeGeometry from "
                f"MLPProbe.prepare, got {type(g).__name__}"
            )
        if (g.test_fraction, g.seed) != (self.test_fraction, self.seed):
            raise ValueError(
                f"mlp_probe: the {which} geometry was prepared with test_fraction="
                f"{g.test_fraction}, seed={g.seed}; this measure has test_fraction="
                f"{self.test_fraction}, seed={self.seed}"
            )
        return g
