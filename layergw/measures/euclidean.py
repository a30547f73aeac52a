"""Plain Euclidean distance between two representations of equal width.

    euclidean(X, Y) = ||X - Y||_F / sqrt(n)

i.e. the root of the mean over samples of |x_i - y_i|^2, so it does not grow with the
probe size n. This definition is the project's choice: the paper gives no definition and
there is no reference implementation to follow. No centring, no alignment: it depends on
the basis and origin of each layer, so it is only meaningful between layers of equal
width that share a coordinate system (e.g. residual-stream points of one transformer);
it claims no invariance. Layers of different widths need gw, cka, rsa or rsm.
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


@register("euclidean")
@dataclass(frozen=True)
class Euclidean(Measure):
    """Frobenius norm of X - Y divided by sqrt(n) (a distance; equal widths only).

    prepare returns the validated float64 representation itself (not copied).
    """

    kind: ClassVar[str] = "distance"
    equal_widths: ClassVar[bool] = True
    accepts_constant: ClassVar[bool] = True

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return X

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        for which, g in (("first", gx), ("second", gy)):
            check_geometry("euclidean", which, g, 2, "an (n, d) array from Euclidean.prepare")
        check_same_n(gx.shape[0], gy.shape[0], ("first geometry", "second geometry"))
        if gx.shape[1] != gy.shape[1]:
            raise ValueError(
                f"euclidean needs equal widths: X has d={gx.shape[1]} columns but Y has "
                f"d={gy.shape[1]}; use gw, cka, rsa or rsm to compare layers of different widths"
            )
        value = float(np.linalg.norm(gx - gy) / np.sqrt(gx.shape[0]))
        return Comparison(value=value, iterations=None, converged=True, seconds=0.0)
