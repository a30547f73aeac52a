"""Entropic Gromov-Wasserstein for many layer pairs at once, on torch (GPU when there is one).

The exact GW of ``gw`` is a conditional gradient whose every step solves a linear program:
sequential, branchy work that does not map to GPU kernels. Entropic GW (Peyre, Cuturi and
Solomon 2016; POT's ``entropic_gromov_wasserstein`` with its default projected-gradient
solver) replaces each step's LP by a Sinkhorn projection of the same gradient,

    T <- argmin_{T in Pi(p, q)} <2 (constC - 2 C1 T C2), T> - epsilon H(T),

which is matrix products and elementwise maps only, so a whole tile of pairs of equal n
runs as one batch of (B, n, n) tensors (``compare_many``). The value is the square-loss
GW objective (no entropy term) at the final plan, what POT's
``entropic_gromov_wasserstein2`` returns. It is a different quantity from ``gw``: the
entropic plan is blurred, so GW(X, X) > 0, and how close the values come to the exact
solver's depends on epsilon. It is never substituted for ``gw``: a run asks for it by name,
and ``epsilon`` is recorded with every value. docs/performance.md compares the two over
a grid.

Deviations from POT, each numerically neutral: Sinkhorn runs in the log domain (POT's
Sinkhorn-Knopp underflows once epsilon is small against the gradient; both have the same
fixed point and stopping rule); each projection starts from the previous one's potentials
(POT starts every one from u = 1/n, so its projections take several times the
iterations to reach the same tolerance); and the distances are scaled by ``normalize`` before, so
one epsilon means the same blur for every layer (default: each matrix divided by its mean
off-diagonal entry, as ``gw``'s normalize="mean").

Stopping, as POT: Sinkhorn stops when the L2 error of the plan's column sums is below
``sinkhorn_tol`` (checked every 10 iterations) or after ``sinkhorn_max_iter``; the outer
loop when the plan moved less than ``tol`` (Frobenius, checked every 10 iterations) or after
``max_iter``, which makes ``converged`` False. ``iterations`` counts outer iterations.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from layergw.measures.base import (
    Comparison,
    Measure,
    check_choice,
    check_positive_float,
    check_positive_int,
    check_same_n,
    register,
)
from layergw.measures.gw import NORMALIZE, check_geometry, geometry

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float64", "float32")
#: default ``tol`` and ``sinkhorn_tol`` per dtype: in float32 at n = 64 the plans of Model L's
#: layer pairs never settled to 1e-7 in 1000 iterations and all settled to 1e-6, within 4e-6
#: of float64's values
TOLERANCES = {"float64": 1e-9, "float32": 1e-6}


@register("gw_batch")
@dataclass(frozen=True)
class BatchedEntropicGW(Measure):
    """Entropic square-loss GW, uniform marginals, batched over pairs on torch.

    normalize: as ``gw`` ("mean" by default here: epsilon is relative to the distances).
    epsilon: entropic regularization of each Sinkhorn projection.
    max_iter, tol: outer (projected-gradient) iterations and the plan-change tolerance.
    sinkhorn_max_iter, sinkhorn_tol: each projection's iterations and marginal tolerance.
    Both tolerances default to what the dtype can reach (:data:`TOLERANCES`: 1e-9 in
    float64, 1e-6 in float32, whose rounding keeps a plan from settling much below that).
    device: "auto" (a GPU when torch sees one), "cpu" or "cuda".
    dtype: "float64" (the reference) or "float32" (faster on GPUs; about 1e-6 relative).
    """

    kind: ClassVar[str] = "distance"
    invariances: ClassVar[frozenset[str]] = frozenset(
        {"rotation", "permutation", "translation", "sample_permutation"}
    )
    accepts_constant: ClassVar[bool] = False  # a constant layer has no scale to normalize by

    normalize: str = "mean"
    epsilon: float = 0.05
    max_iter: int = 1000
    tol: float | None = None
    sinkhorn_max_iter: int = 1000
    sinkhorn_tol: float | None = None
    device: str = "auto"
    dtype: str = "float64"

    def __post_init__(self) -> None:
        owner = "measure 'gw_batch'"
        check_choice(owner, "normalize", self.normalize, NORMALIZE)
        check_choice(owner, "device", self.device, DEVICES)
        check_choice(owner, "dtype", self.dtype, DTYPES)
        for name in ("tol", "sinkhorn_tol"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, TOLERANCES[self.dtype])
        for name in ("epsilon", "tol", "sinkhorn_tol"):
            object.__setattr__(self, name, check_positive_float(owner, name, getattr(self, name)))
        for name in ("max_iter", "sinkhorn_max_iter"):
            object.__setattr__(self, name, check_positive_int(owner, name, getattr(self, name)))

    def invariant_to(self) -> frozenset[str]:
        claims = set(self.invariances)
        if self.normalize != "none":
            claims.add("scaling")
        return frozenset(claims)

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return geometry(X, self.normalize)

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        return self.compare_many([(gx, gy)])[0]

    def compare_many(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[Comparison]:
        """Every pair's Comparison, the pairs of equal n solved as one batch; ``seconds`` is
        each pair's share of its batch's time."""
        import time

        out: list[Comparison | None] = [None] * len(pairs)
        by_n: dict[int, list[int]] = {}
        for k, (gx, gy) in enumerate(pairs):
            check_geometry(gx, f"first (pair {k})", "gw_batch")
            check_geometry(gy, f"second (pair {k})", "gw_batch")
            check_same_n(gx.shape[0], gy.shape[0], ("first geometry", "second geometry"))
            by_n.setdefault(gx.shape[0], []).append(k)
        for n, ks in by_n.items():
            t0 = time.perf_counter()
            values, iterations, converged = solve_batch(np.stack([pairs[k][0] for k in ks]),
                                                        np.stack([pairs[k][1] for k in ks]), self)
            share = (time.perf_counter() - t0) / len(ks)
            for k, v, it, ok in zip(ks, values, iterations, converged):
                out[k] = Comparison(value=float(v), iterations=int(it), converged=bool(ok), seconds=share)
        return out  # type: ignore[return-value]


def solve_batch(C1: np.ndarray, C2: np.ndarray, m: BatchedEntropicGW) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entropic GW of B pairs of (n, n) distance matrices (C1[b], C2[b]): each pair's value,
    outer iterations and whether it met ``tol``. Pairs that converge stop; the others go on."""
    import torch

    from layergw.torchkit.device import resolve_device

    device = resolve_device(m.device)
    dtype = torch.float64 if m.dtype == "float64" else torch.float32
    A = torch.as_tensor(C1, dtype=dtype, device=device)
    B = torch.as_tensor(C2, dtype=dtype, device=device)
    batch, n = A.shape[0], A.shape[1]
    w = torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    const = ((A ** 2) @ w)[:, :, None] + ((B ** 2) @ w)[:, None, :]  # constC per pair
    T = torch.full((batch, n, n), 1.0 / n ** 2, dtype=dtype, device=device)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    iterations = torch.zeros(batch, dtype=torch.long, device=device)
    log_w = torch.log(w)
    f = torch.zeros((batch, n), dtype=dtype, device=device) + log_w  # POT's first start: u = 1/n
    g = torch.zeros_like(f)
    for it in range(m.max_iter):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        Ta = T[idx]
        gradient = 2.0 * (const[idx] - 2.0 * A[idx] @ Ta @ B[idx])
        new, f[idx], g[idx] = _sinkhorn_log(gradient, log_w, m.epsilon, m.sinkhorn_max_iter, m.sinkhorn_tol,
                                            f[idx], g[idx])
        T[idx] = new
        iterations[idx] += 1
        if it % 10 == 0:
            moved = torch.linalg.matrix_norm(new - Ta)
            done = moved <= m.tol
            active[idx[done]] = False
    value = ((const - 2.0 * A @ T @ B) * T).sum(dim=(1, 2))
    converged = ~active
    if bool(active.any()):
        logger.warning("gw_batch: %d of %d pairs stopped at max_iter=%d before the plan settled (tol=%g)",
                       int(active.sum()), batch, m.max_iter, m.tol)
    return value.cpu().numpy(), iterations.cpu().numpy(), converged.cpu().numpy()


def _sinkhorn_log(M, log_w, epsilon: float, max_iter: int, tol: float, f, g):
    """Batched log-domain Sinkhorn for uniform marginals from row potentials ``f`` (log u;
    ``g`` is overwritten first), POT's update order and stopping rule (column-sum error every
    10 iterations); the plans and the potentials it ended with."""
    import torch

    K = -M / epsilon
    batch = M.shape[0]
    live = torch.ones(batch, dtype=torch.bool, device=M.device)
    for ii in range(max_iter):
        g = torch.where(live[:, None], log_w - torch.logsumexp(K + f[:, :, None], dim=1), g)
        f = torch.where(live[:, None], log_w - torch.logsumexp(K + g[:, None, :], dim=2), f)
        if ii % 10 == 0:
            cols = torch.exp(K + f[:, :, None] + g[:, None, :]).sum(dim=1)
            live = live & (torch.linalg.vector_norm(cols - torch.exp(log_w), dim=1) > tol)
            if not bool(live.any()):
                break
    return torch.exp(K + f[:, :, None] + g[:, None, :]), f, g
