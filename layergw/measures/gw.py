"""Gromov-Wasserstein (GW) distance between the intra-layer distance geometries of two layers.

For layers X (n, d1) and Y (n, d2) with Euclidean distance matrices C1 = (|x_i - x_k|),
C2 = (|y_j - y_l|) and uniform weights p = q = 1/n, the square-loss GW objective is

    GW(C1, C2) = min_{T in Pi(p, q)}  sum_{i,j,k,l} (C1[i,k] - C2[j,l])^2 T[i,j] T[k,l],

which compares the two layers only through their internal geometry: it is unchanged by
rotations, reflections, translations and feature permutations of either layer, and works
for different widths d1 != d2 (Gao et al., arXiv 2410.16484; Memoli 2011; Peyre et al. 2016).
The problem is a non-convex quadratic program; it is solved, as in the paper, by POT's
conditional gradient (``ot.gromov.gromov_wasserstein``), so the value is a local optimum
that depends on the start. The value returned is POT's GW loss (what
``ot.gromov.gromov_wasserstein2`` returns for the same start), not Memoli's
``0.5 * sqrt(GW)``. By default (solver="lean") layergw runs POT's iterates itself with a
fraction of the work (``_gw_cg``: 4-5x faster than POT at n = 1000, values equal to ~1e-13);
solver="pot" calls POT.

Each conditional-gradient step solves a linear program (an exact OT problem) with POT's
network simplex, capped at ``max_iter_emd`` pivots (POT's ``numItermaxEmd``, default 1e5).
POT does not stop when that cap is hit: it warns ("numItermax reached before optimality")
and uses the truncated, non-optimal direction. The default cap becomes too small for n of
a few thousand (a first step from the product start hit it at n = 2500, not at n = 1750,
on smooth synthetic layers). Those warnings are captured here: any truncated step makes
``converged`` False. The lean solver runs POT's network simplex, under the same cap, only
for a first step it cannot solve in closed form (any first step from a given start; from
the product start, one whose sorted matching is not certain) and solves the later steps'
linear programs exactly as assignment problems (its own compiled solvers, no cap), so where
POT's cap truncates its later steps the two solvers' values part (the lean one's exact).

init="best" runs several starts and keeps the lowest value. Besides the product and
identity starts it tries ``n_random`` seeded random permutation starts T0 = P / n, each P a
random *involution* (the samples are paired at random and each pair swapped; one fixed
point when n is odd). Deviation from a plain random permutation: an involution's P equals
P^T, so the start set is closed under transposition and GW(X, Y) = GW(Y, X) holds exactly,
as it does for the product and identity starts.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.distance import pdist, squareform

from layergw.measures import _gw_cg
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
SOLVER = ("lean", "pot")

# POT's defaults for ot.gromov.gromov_wasserstein (0.9.x): max_iter=1e4, tol_rel=tol_abs=1e-9,
# and of ot.optim.cg for the network simplex of each step: numItermaxEmd=1e5.
POT_MAX_ITER = 10_000
POT_MAX_ITER_EMD = 100_000
POT_TOL_REL = 1e-9
POT_TOL_ABS = 1e-9


def distance_matrix(X: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix of the rows of X: float64, symmetric, exact zero diagonal.

    Uses ``scipy.spatial.distance.pdist`` (differences, not the Gram expansion
    |x|^2 + |y|^2 - 2 x.y, so no cancellation for close points).
    """
    return squareform(pdist(X, metric="euclidean"))


def geometry(X: np.ndarray, normalize: str) -> np.ndarray:
    """The (n, n) Euclidean distance matrix of X after ``normalize`` (see GromovWasserstein)."""
    C = distance_matrix(X)
    if normalize == "none":
        return C
    n = C.shape[0]
    scale = C.max() if normalize == "max" else C.sum() / (n * (n - 1))
    if not scale > 0:
        raise ValueError(
            f"gw normalize={normalize!r}: the distance matrix is all zeros "
            f"(all {n} rows of the representation are identical), so it cannot be "
            "scaled; use normalize='none' or check the representation"
        )
    return C / scale


@register("gw")
@dataclass(frozen=True)
class GromovWasserstein(Measure):
    """Square-loss GW between Euclidean distance matrices, uniform marginals (POT's CG solver).

    normalize: "none" (raw distances, the paper's and POT's reference), "max" (each
        matrix divided by its largest entry: GW becomes invariant to isotropic scaling),
        "mean" (divided by the mean of its off-diagonal entries).
    init: "product" (POT's default start p q^T, the paper's), "identity" (G0 = I/n: valid
        because both layers see the same inputs in the same order; gives GW(X, X) = 0),
        "best" (the product start, the identity start and ``n_random`` random involution
        starts, in that order; the lowest value, ties go to the earlier start).
    max_iter, tol_rel, tol_abs: POT's conditional-gradient stopping rule (POT defaults).
    max_iter_emd: pivot cap of the network simplex (POT's ``numItermaxEmd``, default
        1e5: every step with solver="pot"; with "lean" only a first step it cannot
        solve in closed form); hitting it
        makes ``converged`` False.
    solver: "lean" (layergw's conditional gradient, ``_gw_cg``: POT's iterates with a
        fraction of the work, values equal to rounding) or "pot" (POT's own solver, the
        reference). "lean" runs where the two layers have the same n and exactly
        symmetric matrices, which Euclidean geometries always are; elsewhere POT runs.
    n_random: random involution starts added by init="best" (0 with any other init).
    seed: seed of ``numpy.random.default_rng`` drawing those starts; the same starts are
        used for every pair of the same n.
    return_coupling: put the transport plan into ``Comparison.coupling`` (with init="best"
        that of the chosen start).

    ``iterations`` is the number of conditional-gradient steps (POT logs the loss once at
    the start and once per step: ``len(log["loss"]) - 1``); ``converged`` is False when
    the solver stopped at ``max_iter`` without meeting the tol_rel/tol_abs test on its
    last step, or when a step's linear program stopped at ``max_iter_emd``. With
    init="best" both are those of the chosen start, and ``spread`` is the max - min of the
    values over all starts tried (None with a single start).
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
    max_iter_emd: int = POT_MAX_ITER_EMD
    solver: str = "lean"
    n_random: int = 0
    seed: int = 0
    return_coupling: bool = False

    def __post_init__(self) -> None:
        owner = "measure 'gw'"
        check_choice(owner, "normalize", self.normalize, NORMALIZE)
        check_choice(owner, "init", self.init, INIT)
        check_choice(owner, "solver", self.solver, SOLVER)
        object.__setattr__(self, "max_iter", check_positive_int(owner, "max_iter", self.max_iter))
        object.__setattr__(self, "tol_rel", check_positive_float(owner, "tol_rel", self.tol_rel))
        object.__setattr__(self, "tol_abs", check_positive_float(owner, "tol_abs", self.tol_abs))
        object.__setattr__(
            self, "max_iter_emd", check_positive_int(owner, "max_iter_emd", self.max_iter_emd)
        )
        object.__setattr__(self, "n_random", _check_nonnegative_int(owner, "n_random", self.n_random))
        object.__setattr__(self, "seed", _check_nonnegative_int(owner, "seed", self.seed))
        if self.n_random and self.init != "best":
            raise ValueError(
                f"{owner} parameter 'n_random' adds random starts to init='best' only; "
                f"got n_random={self.n_random} with init={self.init!r} "
                "(use init='best', or n_random=0)"
            )
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
        return geometry(X, self.normalize)

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        C1 = check_geometry(gx, "first")
        C2 = check_geometry(gy, "second")
        if self.init != "product":
            check_same_n(C1.shape[0], C2.shape[0], ("first geometry", "second geometry"))
        n = C1.shape[0]
        if self.init == "product":
            return self._solve(C1, C2, None, "product")
        if self.init == "identity":
            return self._solve(C1, C2, np.eye(n) / n, "identity")
        results = [self._solve(C1, C2, None, "product"), self._solve(C1, C2, np.eye(n) / n, "identity")]
        for k, sigma in enumerate(random_starts(n, self.n_random, self.seed)):
            G0 = np.zeros((n, n))
            G0[np.arange(n), sigma] = 1.0 / n
            results.append(self._solve(C1, C2, G0, f"random {k}"))
        values = [r.value for r in results]
        chosen = results[int(np.argmin(values))]  # the first of equal minima
        return replace(chosen, spread=float(max(values) - min(values)))

    def compare(self, gx: Any, gy: Any) -> Comparison:
        _pot()  # the first `import ot` takes seconds: keep it out of the timed region
        return super().compare(gx, gy)

    def _solve(self, C1: np.ndarray, C2: np.ndarray, G0: np.ndarray | None, start: str) -> Comparison:
        if self.solver == "lean" and _gw_cg.applies(C1, C2):
            result = _gw_cg.solve(C1, C2, G0, max_iter=self.max_iter, tol_rel=self.tol_rel,
                                  tol_abs=self.tol_abs, max_iter_emd=self.max_iter_emd)
            return self._outcome(result.losses[-1], result.losses, result.truncated, result.plan,
                                 C1.shape[0], start)
        ot = _pot()
        n1, n2 = C1.shape[0], C2.shape[0]
        p, q = ot.unif(n1), ot.unif(n2)
        # POT warns, once per truncated network simplex, and goes on: count those warnings.
        # (catch_warnings swaps process-global state: fine in single-threaded workers.)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
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
                numItermaxEmd=self.max_iter_emd,
            )
        truncated = 0
        for w in caught:
            if _EMD_CAP_MESSAGE in str(w.message):
                truncated += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if log.get("warning") and _EMD_CAP_MESSAGE not in str(log["warning"]):
            logger.warning("gw: POT's last linear program reported %r", log["warning"])
        return self._outcome(float(log["gw_dist"]), log["loss"], truncated, T, n1, start)

    def _outcome(self, value: float, losses: list[Any], truncated: int, T: np.ndarray, n1: int,
                 start: str) -> Comparison:
        """The Comparison of one solve from its loss log and its count of truncated LPs."""
        iterations, converged = _cg_stats(losses, self.max_iter, self.tol_rel, self.tol_abs)
        if not converged:
            logger.warning(
                "gw: conditional gradient stopped at max_iter=%d before reaching "
                "tol_rel=%g/tol_abs=%g (n=%d, init=%s)",
                self.max_iter, self.tol_rel, self.tol_abs, n1, start,
            )
        if truncated:
            converged = False
            logger.warning(
                "gw: the linear program of %d of %d conditional-gradient steps stopped at "
                "max_iter_emd=%d pivots before optimality, so the steps are not exact; "
                "raise max_iter_emd (n=%d, init=%s)",
                truncated, iterations, self.max_iter_emd, n1, start,
            )
        return Comparison(
            value=value,
            iterations=iterations,
            converged=converged,
            seconds=0.0,
            coupling=np.asarray(T) if self.return_coupling else None,
        )


# What POT 0.9's network simplex (ot.lp.emd, via check_result) warns when it hits numItermax.
_EMD_CAP_MESSAGE = "numItermax reached before optimality"


def random_starts(n: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` random involutions of range(n) (sigma[sigma[i]] == i), from default_rng(seed).

    Each is a random pairing of the samples, every pair swapped (one fixed point when n is
    odd); init="best" starts from the coupling with T0[i, sigma[i]] = 1/n.
    """
    rng = np.random.default_rng(seed)
    starts = []
    for _ in range(count):
        order = rng.permutation(n)
        pairs = order[: 2 * (n // 2)].reshape(-1, 2)
        sigma = np.arange(n)
        sigma[pairs[:, 0]] = pairs[:, 1]
        sigma[pairs[:, 1]] = pairs[:, 0]
        starts.append(sigma)
    return starts


def _check_nonnegative_int(owner: str, param: str, value: Any) -> int:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{owner} parameter {param!r} must be an integer >= 0; got {value!r}")
    return int(value)


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


def check_geometry(g: Any, which: str, owner: str = "gw") -> np.ndarray:
    """``g`` when it is a square (n, n) matrix, as ``prepare`` makes, else a ValueError."""
    if not isinstance(g, np.ndarray) or g.ndim != 2 or g.shape[0] != g.shape[1]:
        shape = getattr(g, "shape", type(g).__name__)
        raise ValueError(
            f"{owner}: the {which} geometry must be a square (n, n) distance matrix from "
            f"prepare, got {shape}"
        )
    return g
