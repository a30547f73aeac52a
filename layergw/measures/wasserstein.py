"""Exact Wasserstein-2 cost (squared) between the two layers' sample clouds.

For layers X (n1, d) and Y (n2, d) of the same width, uniform weights a = 1/n1, b = 1/n2
and the squared Euclidean cost M[i, j] = |x_i - y_j|^2,

    W(X, Y) = min_{T in Pi(a, b)} sum_{i,j} M[i, j] T[i, j]      (= W_2(mu_X, mu_Y)^2),

solved exactly by POT's network simplex (``ot.emd2``). It compares points in a shared
coordinate system, so both layers must have the same width and no rotation, scaling or
translation invariance holds (Y = X + t gives exactly |t|^2); it is unchanged by permuting
the rows of either side (the plan is re-indexed). A constant layer is a point mass, for
which W is defined (mean squared distance to that point).

Reference: POT 0.9.7, ``ot.emd2(ot.unif(n1), ot.unif(n2), ot.dist(X, Y))`` (``ot.dist``'s
default metric is "sqeuclidean"). Deviation: M is computed from differences
(``scipy.spatial.distance.cdist(X, Y, "sqeuclidean")``) instead of ``ot.dist``'s Gram
expansion |x|^2 + |y|^2 - 2 x.y, so W(X, X) is exactly 0 and no cancellation occurs; the
values agree to rounding.

Convergence: the network simplex stops after ``max_iter`` pivots (POT's numItermax, default
100000); POT then returns the cost of an intermediate plan (not optimal, and possibly
not yet a coupling: its marginals may be wrong) with result code 3 ("numItermax reached
before optimality"), which is reported as ``converged=False`` with a logger warning (POT's
own UserWarning is not re-emitted). ``iterations`` is None: POT does not report the
pivot count.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.distance import cdist

from layergw.measures.base import (
    Comparison,
    Measure,
    check_bool,
    check_geometry,
    check_positive_int,
    register,
)
from layergw.measures.gw import _pot

logger = logging.getLogger(__name__)

POT_MAX_ITER = 100_000  # ot.emd2's numItermax default
RESULT_OPTIMAL = 1  # POT's network-simplex result codes (ot.lp.emd_wrap.check_result)
RESULT_MAX_ITER = 3


@register("wasserstein")
@dataclass(frozen=True)
class Wasserstein(Measure):
    """Exact OT cost with uniform weights and squared Euclidean cost (POT's ``emd2``).

    max_iter: network-simplex iteration cap (POT's numItermax); hitting it gives
        ``converged=False``.
    return_coupling: put the optimal plan (n1, n2) into ``Comparison.coupling``.
    """

    kind: ClassVar[str] = "distance"
    invariances: ClassVar[frozenset[str]] = frozenset({"sample_permutation"})
    equal_widths: ClassVar[bool] = True
    accepts_constant: ClassVar[bool] = True

    max_iter: int = POT_MAX_ITER
    return_coupling: bool = False

    def __post_init__(self) -> None:
        owner = "measure 'wasserstein'"
        object.__setattr__(self, "max_iter", check_positive_int(owner, "max_iter", self.max_iter))
        object.__setattr__(self, "return_coupling", check_bool(owner, "return_coupling", self.return_coupling))

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        """The layer itself (a float64 copy): OT needs the points, not a per-layer summary."""
        return X.copy()

    def compare(self, gx: Any, gy: Any) -> Comparison:
        _pot()  # keep the first `import ot` out of the timed region
        return super().compare(gx, gy)

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        what = "a float64 (n, d) array from Wasserstein.prepare"
        X = check_geometry("wasserstein", "first", gx, 2, what)
        Y = check_geometry("wasserstein", "second", gy, 2, what)
        if X.shape[1] != Y.shape[1]:
            raise ValueError(
                f"wasserstein needs layers of equal width: the first has d={X.shape[1]} "
                f"features, the second d={Y.shape[1]}; the squared Euclidean cost between "
                "their samples is undefined"
            )
        ot = _pot()
        M = cdist(X, Y, metric="sqeuclidean")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="numItermax reached", category=UserWarning)
            value, log = ot.emd2(
                ot.unif(X.shape[0]), ot.unif(Y.shape[0]), M,
                numItermax=self.max_iter, log=True, return_matrix=self.return_coupling,
            )
        code = int(log["result_code"])
        converged = code == RESULT_OPTIMAL
        if code == RESULT_MAX_ITER:
            logger.warning(
                "wasserstein: network simplex stopped at max_iter=%d before optimality "
                "(n1=%d, n2=%d); the value is the cost of an intermediate plan (possibly not even "
                "a coupling), not the optimum",
                self.max_iter, X.shape[0], Y.shape[0],
            )
        elif not converged:
            logger.warning("wasserstein: POT's network simplex reported %r (code %d)", log.get("warning"), code)
        return Comparison(
            value=float(value),
            iterations=None,
            converged=converged,
            seconds=0.0,
            coupling=np.asarray(log["G"]) if self.return_coupling else None,
        )
