"""A lean conditional-gradient (CG) solver for square-loss GW, step for step POT's.

POT's ``ot.gromov.gromov_wasserstein`` (0.9.x) with uniform weights, symmetric C1, C2 and
the square loss runs, from a start G:

    tens(G) = constC - 2 C1 G C2,  constC[i, j] = mean_k C1[i,k]^2 + mean_l C2[j,l]^2
    loss(G) = <tens(G), G>,        gradient 2 tens(G)
    each step: Gc = emd(p, q, 2 tens(G));  dG = Gc - G;  D = 2 C1 dG C2
               a = -<D, dG>,  b = -2 <D, G>;  alpha = argmin_[0,1] a t^2 + b t
               loss += a alpha^2 + b alpha;   G += alpha dG
    and stops after ``max_iter`` steps or when a step changes the loss by less than
    tol_rel (relative) or tol_abs.

This module runs the same iterates with less work, all of it exact:

- P = C1 G C2 is kept up to date by linearity (P += alpha (Q - P) with Q = C1 Gc C2), so
  a step costs one matrix product where POT's costs four (two for the gradient, two for
  the line search);
- with n1 == n2 and uniform weights the linear program's optimum is a vertex, a
  permutation sigma over n, so Gc C2 = C2[sigma] / n is a row gather, and the
  line search's inner products with Gc are gathers;
- at the product start P = (C1 p)(C2 q)^T has rank one, so the first linear program is
  solved in closed form: matching the samples of C1 p and C2 q in sorted order (the
  rearrangement inequality). Where two samples (not the same point) are too close in
  either vector for that order to be certain in floating point (symmetric data: points
  on a regular polygon, a representation equivariant to the modular-sum group, where
  every permutation may be optimal), the first step runs POT's network simplex on POT's
  own gradient, bit for bit, so it picks the vertex POT picks;
- a later step's linear program is an assignment problem, solved exactly by the compiled
  solvers of ``_lap``. First ``_lap.solve``, started from the previous step's vertex and
  column potentials: each row searches only its few cheapest columns under those
  potentials, and a check of every reduced cost proves the result optimal or sends the rows
  it refutes back with more columns. Where the start is far off (the second step, whose
  vertex moves most rows from the first's; a step whose searches outrun ``GIVE_UP``; a step
  after a simplex step that moved more than ``STAY_SHARE`` of the rows) the step runs on
  ``_lap.simplex``, a primal network simplex that keeps its basis (spanning tree) from one
  such step to the next, or starts from a tree built around the previous vertex: the
  previous optimal tree is feasible for the new costs, so the pivots start near the answer
  (18 ms a step on average on Model L's layers at n = 1000, where POT's network simplex
  from scratch takes 160-380).
  Only where ``_lap`` is not built, or its simplex reaches ``simplex_cap``, does a later
  step run POT's network simplex (``ot.lp.emd``, under POT's pivot cap, counted the same
  way). The pivot cap does not apply to ``_lap``'s steps: where POT's network simplex stops
  at the cap (n of about 2000 and more at the default cap), POT's steps are truncated and
  this solver's later steps are exact, so the values part.

The values equal POT's up to rounding (tests: 1e-9 relative, in practice ~1e-14), except
where a linear program has several optimal vertices, where either solver's choice is
arbitrary (the first step excepted, above). Anything outside this case (unequal n, a
non-symmetric matrix) is left to POT by the caller: ``applies`` says which.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

# built by the install; a checkout shipped as source (Ray py_modules) lacks them
try:
    from layergw.measures import _lap
except ImportError:
    _lap = None
try:
    from layergw.measures import _cg_step
except ImportError:
    _cg_step = None

log = logging.getLogger(__name__)
_warned = False  # whether the missing compiled parts were reported

#: the smallest swap cost, relative to the cost matrix's largest entry, that the closed-form
#: first step trusts. POT's entries carry ~1e-16 of it in rounding, and its network simplex
#: takes a vertex as optimal when no reduced cost is below -2.2e-16 (machine epsilon) of the
#: largest of the arc's cost and potentials: a swap of 1e-13 stands some 400x clear of both.
#: On 1,000 random pairs of Model L's grid POT's first vertex was the sorted matching on all
#: 575 whose smallest swap lay in [1e-14, 1e-12) of the scale (where it differed, on other
#: pairs, the swap was below 2e-16); at 1e-13, 58% of the pairs take the closed form (23% at 1e-12).
TIE_TOL = 1e-13


@dataclass(frozen=True)
class CGResult:
    """A solve's final plan, the loss after each step (the first entry is the start's) and
    how many steps' linear programs stopped at the pivot cap."""

    plan: np.ndarray
    losses: list[float]
    truncated: int


def applies(C1: np.ndarray, C2: np.ndarray) -> bool:
    """Whether the lean solver reproduces POT's iterates here: equal n, exactly symmetric."""
    return C1.shape == C2.shape and np.array_equal(C1, C1.T) and np.array_equal(C2, C2.T)


def solve(C1: np.ndarray, C2: np.ndarray, start: np.ndarray | None, *, max_iter: int, tol_rel: float,
          tol_abs: float, max_iter_emd: int) -> CGResult:
    """Square-loss GW by conditional gradient from ``start`` (None: the product coupling).

    C1, C2: symmetric (n, n) float64 matrices (``applies``); start: an (n, n) coupling of
    uniform weights.
    """
    _warn_unbuilt()
    n = C1.shape[0]
    w = np.full(n, 1.0 / n)
    rows = np.arange(n)
    row_c, col_c = (C1 ** 2) @ w, (C2 ** 2) @ w  # constC = row_c[:, None] + col_c[None, :]
    C2n = C2 / n  # Gc C2 = C2n[sigma] for the plan Gc[i, sigma[i]] = 1/n
    if start is None:
        u, v = C1 @ w, C2 @ w
        G, P = np.outer(w, w), np.outer(u, v)
    else:
        G = np.array(start, dtype=float)
        P = C1 @ G @ C2
        u = v = None
    loss = float(np.vdot(row_c[:, None] + col_c[None, :] - 2.0 * P, G))
    losses, truncated = [loss], 0
    Q, last, changed = None, None, np.arange(0)
    basis, by_simplex = Basis.empty(n), False
    row2, col2 = 2.0 * row_c, 2.0 * col_c  # a step's cost: M = row2[i] + col2[j] - 4 P
    M = np.empty((n, n))  # written by each step for the next
    for it in range(1, max_iter + 1):
        old = loss
        if it == 1:
            sigma, duals, capped = _first_vertex(C1, C2, G, w, u, v, row_c, col_c, max_iter_emd)
        else:
            far = it == 2 or (by_simplex and changed.size > STAY_SHARE * n)
            found = None if far else _assignment(M, duals, last)
            by_simplex = found is None
            if found is None:
                found = _simplex(M, last, basis)
            if found is None:
                sigma, duals, capped = _lp(w, M, max_iter_emd, duals)
            else:
                (sigma, duals), capped = found, 0
        truncated += capped
        changed = np.arange(0) if last is None else np.flatnonzero(sigma != last)
        Q = _plan_product(C1, C2n, sigma, Q, last, changed)
        last = sigma
        on_gc = (Q[rows, sigma] - P[rows, sigma]).sum() / n  # <C1 (Gc - G) C2, Gc>
        on_g = float(np.vdot(Q, G)) - float(np.vdot(P, G))  # <C1 (Gc - G) C2, G>
        a = -2.0 * (on_gc - on_g)
        b = -4.0 * on_g
        alpha = _quad_step(a, b)
        loss = loss + a * alpha ** 2 + b * alpha
        step_update(P, G, Q, M, row2, col2, sigma, alpha)
        losses.append(loss)
        delta = abs(loss - old)
        if (delta / abs(loss) if loss != 0.0 else np.nan) < tol_rel or delta < tol_abs:
            break
    return CGResult(G, losses, truncated)


def _warn_unbuilt() -> None:
    """Say once per process which compiled parts the install did not build."""
    global _warned
    missing = [(name, instead) for name, module, instead in (("_lap.c", _lap, "POT's network simplex"),
                                                              ("_cg_step.c", _cg_step, "NumPy")) if module is None]
    if missing and not _warned:
        log.warning("layergw's compiled GW parts (layergw/measures/%s) are not built here, so GW's later steps "
                    "run %s: same values, slower. Reinstall layergw with a C compiler (pip install -e .) to "
                    "build them.", ", ".join(m[0] for m in missing), " and ".join(m[1] for m in missing))
        _warned = True


def step_update(P: np.ndarray, G: np.ndarray, Q: np.ndarray, M: np.ndarray, row2: np.ndarray,
                col2: np.ndarray, sigma: np.ndarray, alpha: float) -> None:
    """A step's end, in place: P += alpha (Q - P), G moves by alpha towards the vertex sigma,
    and M becomes the next step's cost row2[i] + col2[j] - 4 P. One compiled pass
    (``_cg_step``) where built, else the same operations in NumPy, bit for bit."""
    sigma = np.asarray(sigma, dtype=np.int64)
    if _cg_step is not None:
        _cg_step.update(P, G, Q, M, row2, col2, sigma, float(alpha))
        return
    R = Q - P
    R *= alpha
    P += R
    G *= 1.0 - alpha
    G[np.arange(sigma.size), sigma] += alpha / sigma.size
    np.multiply(P, -4.0, out=M)
    M += row2[:, None] + col2[None, :]


#: work, in edges relaxed per n^2, after which ``_lap.solve`` gives a step up to the warm network
#: simplex (``_lap.simplex``): on the modular-sum models' layers at n = 1000 the warm simplex
#: takes tens of ms a far-off step and ``_lap.solve`` a few ms on most steps, but up to a second
#: on early steps whose start is far off; on random ReLU layers at n = 2000 giving up at 2
#: rather than 5 saved a tenth. A rule on the iterates, not on timings, so a solve
#: takes the same path on every machine.
GIVE_UP = 2.0

#: share of rows whose column changed, above which a step after one the simplex solved goes
#: straight to the simplex: its start is still far off, and ``_lap.solve`` would likely give up.
#: The second step always does: the first moves the plan from its start to a vertex, and on
#: Model L's layers the second step's vertex moved 80-95% of the rows from the first's.
STAY_SHARE = 0.5


@dataclass
class Basis:
    """The warm network simplex's spanning tree, kept from one CG step to the next (``_lap.simplex``'s
    parent and flow arrays, 2n each); ``warm`` once they hold one. Solver state, so mutable."""

    parent: np.ndarray
    flow: np.ndarray
    warm: bool = False

    @classmethod
    def empty(cls, n: int) -> "Basis":
        return cls(np.empty(2 * n, dtype=np.int64), np.empty(2 * n, dtype=np.int64))


def simplex_cap(n: int) -> int:
    """Pivots after which the warm network simplex hands a step to POT's: never reached on the
    layers measured (at most 25,000 at n = 1000), a guard against rounding cycling."""
    return max(100_000, n * n)


#: share of changed rows above which C1 Gc C2 is recomputed rather than updated: the update's
#: product is d/n of a full one, plus gathers, so it pays up to about 0.7 (Model L's layers at
#: n = 1000: the plan products' time falls by a sixth from 0.3)
REBUILD_SHARE = 0.7


def _plan_product(C1: np.ndarray, C2n: np.ndarray, sigma: np.ndarray, Q: np.ndarray | None,
                  last: np.ndarray | None, changed: np.ndarray) -> np.ndarray:
    """C1 Gc C2 = C1 C2n[sigma]: updated from the previous step's product where few rows of
    the permutation changed (``changed``: a rank-d update, d the rows changed), else one product."""
    if Q is not None:
        if changed.size == 0:
            return Q
        if changed.size <= REBUILD_SHARE * sigma.size:
            D = C2n[sigma[changed]]
            D -= C2n[last[changed]]
            update = C1[changed].T @ D  # C1[:, changed], C1 being symmetric: rows gather faster
            update += Q
            return update
    return C1 @ C2n[sigma]


def _first_vertex(C1, C2, G, w, u, v, row_c, col_c, max_iter_emd: int):
    """The first step's vertex, potentials and cap count: from the product start (``u``, ``v``
    its rank-one factors) the sorted matching where it is unambiguous; otherwise POT's own
    first gradient, bit for bit, so that where the LP has several optimal vertices (symmetric
    data) the network simplex picks POT's."""
    if u is not None:
        sigma = _sorted_matching(u, v, _first_step_scale(row_c, col_c, u, v), C1, C2)
        if sigma is not None:
            return sigma, None, 0
    return _lp(w, _pot_gradient(C1, C2, G, w, product_start=u is not None), max_iter_emd)


def _quad_step(a: float, b: float) -> float:
    """POT's ``solve_1d_linesearch_quad``: the minimiser of a t^2 + b t over [0, 1]."""
    if a > 0:
        return min(1.0, max(0.0, -b / (2.0 * a)))
    return 1.0 if a + b < 0 else 0.0


def _sorted_matching(u: np.ndarray, v: np.ndarray, scale: float, C1: np.ndarray | None = None,
                     C2: np.ndarray | None = None) -> np.ndarray | None:
    """The permutation maximising sum_i u_i v_sigma(i) (both sorted alike), or None when it
    may not be the unique optimum in floating point.

    Swapping the partners of two samples changes the step's cost (M = 2 constC - 4 u v^T)
    by 4 (u_i - u_k)(v_sigma(i) - v_sigma(k)), smallest for neighbours in the sorted order;
    it must stand clear of the rounding of M's entries, whose largest is ``scale``. Two
    neighbours that are the same point (distance 0 in C1, or their partners in C2) are
    exempt: swapping duplicates permutes every later iterate alike and changes no loss, so
    either solver's choice among them gives the same values.
    """
    iu, iv = np.argsort(u, kind="stable"), np.argsort(v, kind="stable")
    swaps = 4.0 * np.diff(u[iu]) * np.diff(v[iv])
    if C1 is not None and C2 is not None and swaps.size:
        same = (C1[iu[:-1], iu[1:]] == 0.0) | (C2[iv[:-1], iv[1:]] == 0.0)
        swaps = swaps[~same]
    if swaps.size and not swaps.min() > TIE_TOL * scale:
        return None
    sigma = np.empty_like(iu)
    sigma[iu] = iv
    return sigma


def _first_step_scale(row_c: np.ndarray, col_c: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    """The largest entry of the product start's cost matrix, up to a factor of 2."""
    return 2.0 * (float(row_c.max()) + float(col_c.max())) + 4.0 * float(np.abs(u).max() * np.abs(v).max())


#: the last product start's (C1, C1 @ G): a tile's pairs share their first layer in runs, and
#: the product start G = p q^T is the same for every pair of one n, so the next pair reuses it
_kept_c1g: tuple | None = None


def _pot_gradient(C1: np.ndarray, C2: np.ndarray, G: np.ndarray, w: np.ndarray, product_start: bool = False) -> np.ndarray:
    """The gradient POT's ``gromov_wasserstein`` hands its first linear program, computed
    with POT's operations in POT's order (``init_matrix``, ``gwggrad``) so it is the same
    matrix to the last bit. From the product start (``G`` = p q^T, the same for every pair of
    one n) C1 G is kept for the next call with an equal C1 (compared in full, a pass, where
    the product is n^3): the same product, the same bits."""
    global _kept_c1g
    ones = np.ones((1, w.size))
    const_c = np.dot(np.dot(C1 ** 2, w.reshape(-1, 1)), ones) + np.dot(ones.T, np.dot(w.reshape(1, -1), (C2 ** 2).T))
    if product_start and _kept_c1g is not None and np.array_equal(_kept_c1g[0], C1):
        c1g = _kept_c1g[1]
    else:
        c1g = np.dot(C1, G)
        if product_start:
            _kept_c1g = (C1.copy(), c1g)
    return 2 * (const_c + -np.dot(c1g, (2 * C2).T))


def _lp(w: np.ndarray, M: np.ndarray, max_iter_emd: int, potentials: tuple | None = None):
    """A step's linear program by POT's network simplex (from ``potentials`` when given): the
    permutation of its optimal plan, its dual potentials and whether it stopped at the cap."""
    import ot

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Gc, log = ot.lp.emd(w, w, M, max_iter_emd, log=True, potentials_init=potentials)
    for seen in caught:  # the cap is counted through the result code; anything else passes on
        if "numItermax" not in str(seen.message):
            warnings.warn_explicit(seen.message, seen.category, seen.filename, seen.lineno)
    capped = int(log.get("result_code", 1) != 1)
    sigma = np.argmax(Gc, axis=1)
    return sigma, (log["u"], log["v"]), capped


def _assignment(M: np.ndarray, duals: tuple, last: np.ndarray) -> tuple[np.ndarray, tuple] | None:
    """A later step's linear program, cost M, as an assignment problem solved exactly by
    ``_lap`` from the previous step's vertex ``last`` and column potentials: the
    permutation and its potentials, or None where its searches outran ``GIVE_UP`` (the start
    too far off) or ``_lap`` is not built. The start only ever affects the speed, never
    the answer."""
    if _lap is None:
        return None
    n = M.shape[0]
    sigma = np.array(last, dtype=np.int64)
    u, v = np.empty(n), np.array(duals[1], dtype=float)
    if _lap.solve(M, u, v, sigma, GIVE_UP) is None:
        return None
    return sigma, (u, v)


def _simplex(M: np.ndarray, last: np.ndarray, basis: Basis) -> tuple[np.ndarray, tuple] | None:
    """A later step's linear program, cost M, by ``_lap.simplex``: the network simplex from the
    previous simplex step's tree (``basis``, updated in place) or, before the first, from a tree
    built around the previous vertex ``last``. The permutation and its potentials, or None where
    ``_lap`` is not built or the pivots reached ``simplex_cap`` (the step then runs POT's)."""
    if _lap is None:
        return None
    n = M.shape[0]
    sigma = np.array(last, dtype=np.int64)
    u, v = np.empty(n), np.empty(n)
    if _lap.simplex(M, u, v, sigma, basis.parent, basis.flow, basis.warm, simplex_cap(n)) is None:
        basis.warm = False
        log.warning("gw: the warm network simplex stopped at %d pivots (n=%d); the step runs POT's", simplex_cap(n), n)
        return None
    basis.warm = True
    return sigma, (u, v)
