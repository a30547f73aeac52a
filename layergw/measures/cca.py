"""Canonical correlation analysis (CCA), SVCCA and projection-weighted CCA (PWCCA).

With Xc, Yc the column-centred layers and Qx (n, rx), Qy (n, ry) orthonormal bases of their
column spaces, the canonical correlations rho_1 >= ... >= rho_k, k = min(rx, ry), are the
singular values of Qx^T Qy (equivalently of Sxx^{-1/2} Sxy Syy^{-1/2}). The value is

    weighting="mean":   (1/k) sum_i rho_i
    weighting="pwcca":  sum_i alpha_i rho_i,  alpha_i ∝ sum_j |<h_i, z_j>|,  sum_i alpha_i = 1,

where, for PWCCA (Morcos et al. 2018), h_i = Qa u_i are the unit-norm canonical variates and
z_j the centred neurons of the side a with fewer canonical directions (fewer neurons for
full-rank layers; the first argument X on a tie), u_i its canonical directions. With
``variance_kept`` = v (SVCCA, Raghu et al. 2017, v = 0.99) each side is first replaced by its
top k principal directions, k the smallest number whose variance (squared singular values of
the centred layer) reaches the fraction v of the total; PWCCA weights still use the layer's
own neurons (projected on the kept directions, which is all <h_i, z_j> sees).

Invariances: "mean" is invariant to any invertible linear map and translation of either
side, so to rotation, feature permutation, isotropic scaling and translation (with
``variance_kept``: to orthogonal maps, scaling and translation, as PCA is). "pwcca" weights
depend on the weighting side's neuron basis: invariant to permutation, scaling and
translation, not rotation. PWCCA is asymmetric when both sides have the same number of
canonical directions (the weights then come from X), as in the reference.

Reference: google/svcca @ 1f3fbf19bd31bd9b76e728ef75842aa1d9a4cd2b, ``cca_core.py``
``get_cca_similarity(acts1.T, acts2.T, epsilon=0)`` and ``np.mean(result["cca_coef1"])`` (the
mean of all min(d1, d2) coefficients, not the thresholded ``result["mean"]``); SVCCA by the
recipe of ``tutorials/001_Introduction.ipynb`` (centre, SVD, keep the top directions, then
get_cca_similarity); PWCCA ``pwcca.py compute_pwcca``. Deviations and reference bugs:

* Rank: canonical correlations are counted over k = min(rank_x, rank_y), the numerical ranks
  (singular values above s_max * max(n, d) * machine epsilon). The reference with epsilon=0
  counts min(d1, d2) and so scores a zero correlation for every dead (constant) unit; with a
  small epsilon (its tutorial uses 1e-10) it drops such units as we do.
* Degenerate layers: a side whose kept rank is n-1 spans every centred sample direction, so
  every canonical correlation with it is 1. Instead of the reference's assert (d < n) we
  raise a ValueError naming n and d; a wide layer (d >= n) of lower rank is fine, and
  ``variance_kept`` keeps fewer directions.
* ``pwcca.py compute_pwcca`` builds its "directions" as u^T (acts - mean) + mean: it omits
  the whitening Sxx^{-1/2} (so they are not the canonical variates h_i of the paper nor the
  ``cca_dirns`` of its own cca_core), adds per-neuron means to per-direction rows and projects
  uncentred activations. We use the paper's h_i; the two agree when the weighting side has
  zero mean and orthogonal equal-norm neurons. Its else branch (second side narrower) indexes
  ``acts1`` with ``acts2``'s mask and raises IndexError (google/svcca PR #9); we use that side.
* ``cca_core.robust_cca_similarity`` passes ``(threshold, compute_dirns)`` positionally into
  ``get_cca_similarity``'s ``(epsilon, threshold)``, so it regularises with epsilon=0.98
  (0.177 instead of 0.866 on our reference inputs); its retry loop never breaks on success
  and perturbs acts2 with noise of acts1's shape. Not used.
* mklabunde/resi ``repsim/measures/cca.py top_k_pca_comps`` compares the normalised cumulative
  variance with ``threshold * total_variance``, so for most layers it keeps 1 direction; we
  keep the 99% of variance the SVCCA paper describes. (The svcca tutorial's printed fraction
  sums singular values, not variances; we use variances.)
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from layergw.measures.base import (
    Comparison,
    Measure,
    check_choice,
    check_same_n,
    register,
)

logger = logging.getLogger(__name__)

WEIGHTINGS = ("mean", "pwcca")
# A centred layer whose norm is below this fraction of the raw norm is constant up to rounding.
CONSTANT_RTOL = 1e-12


@dataclass(frozen=True)
class CCAGeometry:
    """basis: (n, r) orthonormal basis of the centred (optionally reduced) layer;
    loadings: (r, d) = basis^T Xc, the centred neurons in that basis (pwcca only, else None);
    params: (variance_kept, weighting) of the measure that prepared it; d: the layer's width."""

    basis: np.ndarray
    loadings: np.ndarray | None
    params: tuple[float | None, str]
    d: int

    @property
    def n(self) -> int:
        return int(self.basis.shape[0])

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])


@register("cca")
@dataclass(frozen=True)
class CCA(Measure):
    """Mean (or projection-weighted) canonical correlation; a similarity in [0, 1].

    variance_kept: None (plain CCA) or a fraction in (0, 1]: first keep the top principal
        directions of each centred layer that explain this fraction of its variance (SVCCA: 0.99).
    weighting: "mean" (default) or "pwcca" (projection weighting, Morcos et al. 2018).

    prepare centres the layer and keeps an orthonormal basis of its column space (thin SVD,
    numerical rank); a pair is one (rx, ry) product and its SVD.
    """

    kind: ClassVar[str] = "similarity"
    invariances: ClassVar[frozenset[str]] = frozenset({"rotation", "permutation", "scaling", "translation"})

    variance_kept: float | None = None
    weighting: str = "mean"

    def __post_init__(self) -> None:
        v = self.variance_kept
        if v is not None:
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float, np.integer, np.floating))
                or not math.isfinite(v)
                or not 0 < v <= 1
            ):
                raise ValueError(
                    f"measure 'cca' parameter 'variance_kept' must be None or a number in (0, 1] "
                    f"(the fraction of variance kept, e.g. 0.99); got {v!r}"
                )
            object.__setattr__(self, "variance_kept", float(v))
        check_choice("measure 'cca'", "weighting", self.weighting, WEIGHTINGS)

    @property
    def symmetric(self) -> bool:  # type: ignore[override]
        """PWCCA weights by one side's projections, so it is not symmetric."""
        return self.weighting != "pwcca"

    def invariant_to(self) -> frozenset[str]:
        if self.weighting == "pwcca":
            return frozenset({"permutation", "scaling", "translation"})
        return frozenset(self.invariances)

    def _prepare(self, X: np.ndarray) -> CCAGeometry:
        n, d = X.shape
        Xc = X - X.mean(axis=0)
        U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
        raw = float(np.linalg.norm(X))
        if not s[0] > CONSTANT_RTOL * raw:
            raise ValueError(
                f"cca: the representation is constant (all {n} rows identical up to rounding: "
                f"centred norm {s[0]:.3g} vs norm {raw:.3g}); CCA is undefined"
            )
        rank = int(np.count_nonzero(s > s[0] * max(n, d) * np.finfo(np.float64).eps))
        k = rank
        if self.variance_kept is not None:
            cumulative = np.cumsum(s[:rank] ** 2)
            k = min(rank, int(np.searchsorted(cumulative, self.variance_kept * cumulative[-1])) + 1)
        if k >= n - 1:
            kept = "" if self.variance_kept is None else f" after keeping variance_kept={self.variance_kept} of its variance"
            raise ValueError(
                f"cca: CCA is degenerate for n={n} samples and d={d} features: the centred layer "
                f"has rank {k}{kept}, and rank n-1={n - 1} spans every centred sample direction, "
                "so every canonical correlation would be 1; use more samples than features "
                "(rank < n-1) or a smaller variance_kept (SVCCA, e.g. 0.99)"
            )
        logger.debug("cca: n=%d d=%d rank=%d kept=%d", n, d, rank, k)
        loadings = np.ascontiguousarray(s[:k, None] * Vt[:k]) if self.weighting == "pwcca" else None
        return CCAGeometry(
            basis=np.ascontiguousarray(U[:, :k]),
            loadings=loadings,
            params=(self.variance_kept, self.weighting),
            d=d,
        )

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        params = (self.variance_kept, self.weighting)
        for which, g in (("first", gx), ("second", gy)):
            if not isinstance(g, CCAGeometry):
                raise ValueError(f"cca: the {which} geometry must come from CCA.prepare, got {type(g).__name__}")
            if g.params != params:
                raise ValueError(
                    f"cca: the {which} geometry was prepared with (variance_kept, weighting)={g.params}, "
                    f"this measure has {params}; prepare it with this measure"
                )
        check_same_n(gx.n, gy.n, ("first geometry", "second geometry"))
        M = gx.basis.T @ gy.basis
        if self.weighting == "mean":
            rho = np.clip(np.linalg.svd(M, compute_uv=False), 0.0, 1.0)
            value = float(rho.mean())
        else:
            U, rho, Vt = np.linalg.svd(M, full_matrices=False)
            rho = np.clip(rho, 0.0, 1.0)
            directions, loadings = (U, gx.loadings) if gx.rank <= gy.rank else (Vt.T, gy.loadings)
            weights = np.abs(directions.T @ loadings).sum(axis=1)
            value = float(weights @ rho / weights.sum())
        return Comparison(value=min(max(value, 0.0), 1.0), iterations=None, converged=True, seconds=0.0)
