"""Cosine similarity of two representations of equal width, flattened.

    cosine(X, Y) = <X, Y>_F / (||X||_F ||Y||_F) = sum_ij X_ij Y_ij / (||X||_F ||Y||_F)

A similarity in [-1, 1], 1 for Y = c X with c > 0. This definition is the project's
choice: the paper gives no definition, and there is no reference implementation. No
centring, no alignment: it depends on each layer's basis and origin, so it is meaningful
only between layers of equal width that share a coordinate system (e.g. residual-stream
points of one transformer). Invariant to isotropic scaling only (not to translation,
rotation or feature permutation of one side). An all-zero representation has no
direction and is an error; a constant non-zero one is fine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from layergw.measures.base import (
    Comparison,
    Measure,
    check_geometry,
    check_same_n,
    register,
)


@register("cosine")
@dataclass(frozen=True)
class Cosine(Measure):
    """Cosine of the angle between the flattened X and Y (a similarity; equal widths only).

    prepare returns X / ||X||_F, so a pair is one dot product.
    """

    kind: ClassVar[str] = "similarity"
    invariances: ClassVar[frozenset[str]] = frozenset({"scaling"})
    equal_widths: ClassVar[bool] = True
    accepts_constant: ClassVar[bool] = True

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        norm = float(np.linalg.norm(X))
        if not norm > 0:
            raise ValueError(
                f"cosine: the representation is all zeros (shape {X.shape}, Frobenius norm 0); "
                "its cosine similarity with anything is undefined"
            )
        return X / norm

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        for which, g in (("first", gx), ("second", gy)):
            check_geometry("cosine", which, g, 2, "an (n, d) array from Cosine.prepare")
        check_same_n(gx.shape[0], gy.shape[0], ("first geometry", "second geometry"))
        if gx.shape[1] != gy.shape[1]:
            raise ValueError(
                f"cosine needs equal widths: X has d={gx.shape[1]} columns but Y has "
                f"d={gy.shape[1]}; use gw, cka, rsa or rsm to compare layers of different widths"
            )
        value = float(np.vdot(gx, gy))
        return Comparison(value=min(max(value, -1.0), 1.0), iterations=None, converged=True, seconds=0.0)
