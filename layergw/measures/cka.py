"""Linear centred kernel alignment (CKA), Kornblith et al. 2019 ("Similarity of Neural
Network Representations Revisited").

With column-centred X (n, d1), Y (n, d2) and the biased HSIC estimator,

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)  =  <K, L>_F / (||K||_F ||L||_F),

K = X X^T, L = Y Y^T the centred Gram matrices. It lies in [0, 1], is 1 for identical
inputs and is invariant to orthogonal transformations, isotropic scaling and
translation of either representation (not to general invertible linear maps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from layergw.measures.base import Comparison, Measure, check_same_n, register

# A centred representation whose norm is below this fraction of the raw norm is constant
# up to rounding (centring a constant column leaves ~1e-16 relative noise).
CONSTANT_RTOL = 1e-12


@dataclass(frozen=True)
class CKAGeometry:
    """Centred features F (n, r) with the same Gram matrix as the centred layer, r = min(d, n),
    and ``norm`` = ||F^T F||_F = ||centred Gram||_F."""

    features: np.ndarray
    norm: float

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


@register("cka")
@dataclass(frozen=True)
class LinearCKA(Measure):
    """Linear CKA (biased HSIC, centred features); a similarity in [0, 1].

    prepare centres the columns and keeps the centred features when d <= n; when d > n it
    replaces them with U S from the thin SVD (n columns, same Gram matrix, so the same CKA),
    so a pair costs O(n min(d1, n) min(d2, n)) and never more than an n x n product.
    The layer's self-norm ||X^T X||_F is computed once in prepare.
    """

    kind: ClassVar[str] = "similarity"
    invariances: ClassVar[frozenset[str]] = frozenset({"rotation", "permutation", "scaling", "translation"})

    def _prepare(self, X: np.ndarray) -> CKAGeometry:
        n, d = X.shape
        Xc = X - X.mean(axis=0)
        raw = float(np.linalg.norm(X))
        centred = float(np.linalg.norm(Xc))
        if not centred > CONSTANT_RTOL * raw:
            raise ValueError(
                f"cka: the representation is constant (all {n} rows identical up to rounding: "
                f"centred norm {centred:.3g} vs norm {raw:.3g}); CKA is undefined (0/0)"
            )
        if d > n:
            U, S, _ = np.linalg.svd(Xc, full_matrices=False)
            Xc = np.ascontiguousarray(U * S)
        norm = float(np.linalg.norm(Xc.T @ Xc))
        if not norm > 0:  # pragma: no cover - guarded above
            raise ValueError("cka: the centred representation has zero norm; CKA is undefined")
        return CKAGeometry(features=Xc, norm=norm)

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        for which, g in (("first", gx), ("second", gy)):
            if not isinstance(g, CKAGeometry):
                raise ValueError(
                    f"cka: the {which} geometry must come from LinearCKA.prepare, got {type(g).__name__}"
                )
        check_same_n(gx.n, gy.n, ("first geometry", "second geometry"))
        hsic = float(np.linalg.norm(gy.features.T @ gx.features)) ** 2
        value = hsic / (gx.norm * gy.norm)
        # Cauchy-Schwarz bounds CKA to [0, 1]; clip rounding (1 + 2e-16) only.
        return Comparison(value=min(max(value, 0.0), 1.0), iterations=None, converged=True, seconds=0.0)
