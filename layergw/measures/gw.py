"""Gromov-Wasserstein (GW) distance between the intra-layer distance geometries of two layers.

For layers X (n, d1) and Y (n, d2) with Euclidean distance matrices C1 = (|x_i - x_k|),
C2 = (|y_j - y_l|) and uniform weights p = q = 1/n, the square-loss GW objective is

    GW(C1, C2) = min_{T in Pi(p, q)}  sum_{i,j,k,l} (C1[i,k] - C2[j,l])^2 T[i,j] T[k,l],

which compares the two layers only through their internal geometry: it is unchanged by
rotations, reflections, translations and feature permutations of either layer, and works
for different widths d1 != d2 (Gao et al., arXiv 2410.16484; Memoli 2011; Peyre et al. 2016).
The problem is a non-convex quadratic program; it is solved, as in the paper, with POT's
conditional-gradient solver (``ot.gromov.gromov_wasserstein``), so the value is a local
optimum that depends on the start. The value returned is exactly POT's GW loss (what
``ot.gromov.gromov_wasserstein2`` returns for the same start), not Memoli's
``0.5 * sqrt(GW)``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.distance import pdist, squareform

from layergw.measures.base import (
    Comparison,
    Measure,
    check_bool,
    check_choice,
    check_positive_float,
    check_positive_int,
    check_same_n,
    register,
)

logger = logging.getLogger(__name__)

NORMALIZE = ("none", "max", "mean")
INIT = ("product", "identity", "best")

# POT's defaults for ot.gromov.gromov_wasserstein (0.9.x): max_iter=1e4, tol_rel=tol_abs=1e-9.
POT_MAX_ITER = 10_000
POT_TOL_REL = 1e-9
POT_TOL_ABS = 1e-9


def distance_matrix(X: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix of the rows of X: float64, symmetric, exact zero diagonal.

    Uses ``scipy.spatial.distance.pdist`` (differences, not the Gram expansion
    |x|^2 + |y|^2 - 2 x.y, so no cancellation for close points).
    """
    return squareform(pdist(X, metric="euclidean"))


@register("gw")
@dataclass(frozen=True)
class GromovWasserstein(Measure):
    """Square-loss GW between Euclidean distance matrices, uniform marginals (POT's CG solver).

    normalize: "none" (raw distances, the paper's and POT's reference), "max" (each
        matrix divided by its largest entry: GW becomes invariant to isotropic scaling),
        "mean" (divided by the mean of its off-diagonal entries).
    init: "product" (POT's default start p q^T, the paper's), "identity" (G0 = I/n: valid
        because both layers see the same inputs in the same order; gives GW(X, X) = 0),
        "best" (both starts, the lower value; ties go to "product").
    max_iter, tol_rel, tol_abs: POT's conditional-gradient stopping rule (POT defaults).
    return_coupling: put the transport plan into ``Comparison.coupling``.

    ``iterations`` is the number of conditional-gradient steps (POT logs the loss once at
    the start and once per step: ``len(log["loss"]) - 1``); ``converged`` is False when
    the solver stopped at ``max_iter`` without meeting the tol_rel/tol_abs test on its
    last step. With init="best" both are those of the chosen start.
    """

    kind: ClassVar[str] = "distance"
    invariances: ClassVar[frozenset[str]] = frozenset(
        {"rotation", "permutation", "translation", "sample_permutation"}
    )
    accepts_constant: ClassVar[bool] = True  # raw distances of a constant layer are all 0

    normalize: str = "none"
    init: str = "product"
    max_iter: int = POT_MAX_ITER
    tol_rel: float = POT_TOL_REL
    tol_abs: float = POT_TOL_ABS
    return_coupling: bool = False

    def __post_init__(self) -> None:
        owner = "measure 'gw'"
        check_choice(owner, "normalize", self.normalize, NORMALIZE)
        check_choice(owner, "init", self.init, INIT)
        object.__setattr__(self, "max_iter", check_positive_int(owner, "max_iter", self.max_iter))
        object.__setattr__(self, "tol_rel", check_positive_float(owner, "tol_rel", self.tol_rel))
        object.__setattr__(self, "tol_abs", check_positive_float(owner, "tol_abs", self.tol_abs))
        object.__setattr__(
            self, "return_coupling", check_bool(owner, "return_coupling", self.return_coupling)
        )

    def invariant_to(self) -> frozenset[str]:
        claims = set(self.invariances)
        if self.normalize != "none":
            claims.add("scaling")
        if self.init != "product":  # the identity start ties sample i of X to sample i of Y
            claims.discard("sample_permutation")
        return frozenset(claims)

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        """The (n, n) Euclidean distance matrix of X after ``normalize``."""
        C = distance_matrix(X)
        if self.normalize == "none":
            return C
        n = C.shape[0]
        scale = C.max() if self.normalize == "max" else C.sum() / (n * (n - 1))
        if not scale > 0:
            raise ValueError(
                f"gw normalize={self.normalize!r}: the distance matrix is all zeros "
                f"(all {n} rows of the representation are identical), so it cannot be "
                "scaled; use normalize='none' or check the representation"
            )
        return C / scale

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        C1 = _check_geometry(gx, "first")
        C2 = _check_geometry(gy, "second")
        if self.init != "product":
            check_same_n(C1.shape[0], C2.shape[0], ("first geometry", "second geometry"))
        if self.init == "best":
            a = self._solve(C1, C2, identity=False)
            b = self._solve(C1, C2, identity=True)
            return b if b.value < a.value else a
        return self._solve(C1, C2, identity=self.init == "identity")

    def compare(self, gx: Any, gy: Any) -> Comparison:
        _pot()  # the first `import ot` takes seconds: keep it out of the timed region
        return super().compare(gx, gy)

    def _solve(self, C1: np.ndarray, C2: np.ndarray, identity: bool) -> Comparison:
        ot = _pot()
        n1, n2 = C1.shape[0], C2.shape[0]
        p, q = ot.unif(n1), ot.unif(n2)
        G0 = np.eye(n1) / n1 if identity else None
        T, log = ot.gromov.gromov_wasserstein(
            C1,
            C2,
            p,
            q,
            loss_fun="square_loss",
            log=True,
            G0=G0,
            max_iter=self.max_iter,
            tol_rel=self.tol_rel,
            tol_abs=self.tol_abs,
        )
        value = float(log["gw_dist"])
        iterations, converged = _cg_stats(log["loss"], self.max_iter, self.tol_rel, self.tol_abs)
        if log.get("warning"):
            logger.warning("gw: POT's last linear program reported %r", log["warning"])
        if not converged:
            logger.warning(
                "gw: conditional gradient stopped at max_iter=%d before reaching "
                "tol_rel=%g/tol_abs=%g (n=%d, init=%s)",
                self.max_iter, self.tol_rel, self.tol_abs, n1, "identity" if identity else "product",
            )
        return Comparison(
            value=value,
            iterations=iterations,
            converged=converged,
            seconds=0.0,
            coupling=np.asarray(T) if self.return_coupling else None,
        )


def _pot() -> Any:
    """POT, imported on first use rather than at module level: `import ot` imports torch
    (and jax, cupy, tensorflow) when they are installed, and `import layergw` must import
    neither Ray nor torch. CPU-only workers can set POT_BACKEND_DISABLE_PYTORCH=1 (read by
    POT at import) to skip torch altogether."""
    import ot

    return ot


def _cg_stats(losses: list[Any], max_iter: int, tol_rel: float, tol_abs: float) -> tuple[int, bool]:
    """Iterations and convergence of ``ot.optim.generic_conditional_gradient`` from its log.

    POT appends the loss once before the loop and once per iteration, and stops when
    ``it >= numItermax`` or when the last step changed the loss by less than tol_rel
    (relative) or tol_abs (absolute). POT's log has no iteration count or stop reason, so
    both are recomputed here with POT's own test.
    """
    iterations = len(losses) - 1
    if iterations < max_iter:
        return iterations, True
    last, before = float(losses[-1]), float(losses[-2])
    delta = abs(last - before)
    relative = delta / abs(last) if last != 0.0 else float("nan")
    return iterations, bool(relative < tol_rel or delta < tol_abs)


def _check_geometry(g: Any, which: str) -> np.ndarray:
    if not isinstance(g, np.ndarray) or g.ndim != 2 or g.shape[0] != g.shape[1]:
        shape = getattr(g, "shape", type(g).__name__)
        raise ValueError(
            f"gw: the {which} geometry must be a square (n, n) distance matrix from "
            f"GromovWasserstein.prepare, got {shape}"
        )
    return g
