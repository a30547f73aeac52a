"""Orthogonal Procrustes distance between centred, unit-norm representations.

With X, Y column-centred and scaled to ||X||_F = ||Y||_F = 1 (the narrower zero-padded to
the wider width, which changes nothing below),

    procrustes(X, Y) = min_{R orthogonal} ||X R - Y||_F = sqrt(2 - 2 ||X^T Y||_*),

||.||_* the nuclear norm (sum of singular values). It lies in [0, sqrt(2)], is 0 for
identical inputs, is a metric, and is invariant to rotation, feature permutation, isotropic
scaling and translation of either side (not to general linear maps).

Reference: mklabunde/resi @ 24ab9e5055c71527445b0b196f5872f3cbe9a020,
``repsim/measures/procrustes.py orthogonal_procrustes_centered_and_normalized(R, Rp, "nd")``
("same setup as Ding et al. 2021"): centre, divide by the Frobenius norm, zero-pad, take
the nuclear norm from ``scipy.linalg.orthogonal_procrustes`` and return the square root of
the squared distance ||R||^2 + ||Rp||^2 - 2 ||R^T Rp||_* clipped at 0. We return the same
square root. Deviation (rounding only): when the squared distance from that formula is
below 1e-4, where cancellation in 2 - 2 ||X^T Y||_* loses digits, it is recomputed as
||A Q - B||_F^2 with A the side with fewer columns and Q = U V^T its optimal partial isometry,
so identical inputs give ~1e-16, not sqrt(rounding) ~1e-8.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from layergw.measures.base import Comparison, Measure, check_same_n, register

# A centred representation whose norm is below this fraction of the raw norm is constant
# up to rounding.
CONSTANT_RTOL = 1e-12
# Below this squared distance 2 - 2 ||X^T Y||_* is recomputed without cancellation.
DIRECT_BELOW = 1e-4


@dataclass(frozen=True)
class ProcrustesGeometry:
    """Centred features of unit Frobenius norm, (n, min(d, n)): the layer itself when d <= n,
    else U S / ||S|| from its thin SVD (same Gram matrix, so the same distance)."""

    features: np.ndarray

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


@register("procrustes")
@dataclass(frozen=True)
class OrthogonalProcrustes(Measure):
    """Orthogonal Procrustes distance of centred unit-norm layers, in [0, sqrt(2)] (a distance).

    Layers of different widths compare directly (zero-padding the narrower does not change
    the nuclear norm). A pair costs O(n min(d1, n) min(d2, n)) plus a small SVD.
    """

    kind: ClassVar[str] = "distance"
    invariances: ClassVar[frozenset[str]] = frozenset({"rotation", "permutation", "scaling", "translation"})

    def _prepare(self, X: np.ndarray) -> ProcrustesGeometry:
        n, d = X.shape
        Xc = X - X.mean(axis=0)
        raw = float(np.linalg.norm(X))
        centred = float(np.linalg.norm(Xc))
        if not centred > CONSTANT_RTOL * raw:
            raise ValueError(
                f"procrustes: the representation is constant (all {n} rows identical up to rounding: "
                f"centred norm {centred:.3g} vs norm {raw:.3g}); it cannot be scaled to unit norm"
            )
        if d > n:
            U, S, _ = np.linalg.svd(Xc, full_matrices=False)
            Xc = U * S
        return ProcrustesGeometry(features=np.ascontiguousarray(Xc / np.linalg.norm(Xc)))

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        for which, g in (("first", gx), ("second", gy)):
            if not isinstance(g, ProcrustesGeometry):
                raise ValueError(
                    f"procrustes: the {which} geometry must come from OrthogonalProcrustes.prepare, "
                    f"got {type(g).__name__}"
                )
        check_same_n(gx.n, gy.n, ("first geometry", "second geometry"))
        X, Y = gx.features, gy.features
        U, s, Vt = np.linalg.svd(X.T @ Y, full_matrices=False)
        squared = 2.0 - 2.0 * float(s.sum())
        if squared < DIRECT_BELOW:
            # U (or Vt) is square for the narrower side, so U Vt is a partial isometry Q with
            # ||A Q||_F = ||A||_F = 1 and ||A Q - B||_F^2 = 2 - 2 sum(s) exactly.
            if X.shape[1] <= Y.shape[1]:
                residual = X @ (U @ Vt) - Y
            else:
                residual = Y @ (Vt.T @ U.T) - X
            squared = float(np.linalg.norm(residual)) ** 2
        return Comparison(value=float(np.sqrt(max(squared, 0.0))), iterations=None, converged=True, seconds=0.0)
