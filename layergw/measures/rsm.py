"""Norm of the difference of two representational similarity matrices (RSMs).

With S_X = pdist(X, inner) the condensed upper triangle of the pairwise dissimilarities of
the rows of X (n(n-1)/2 entries),

    RSM(X, Y) = ||S_X - S_Y||_2,

as ``rsm_norm_difference`` in Klabunde et al.'s llm_repsim / ReSi benchmark
(``np.linalg.norm(pdist(R) - pdist(Rp), ord=2)``). Works for different widths. With
inner="euclidean" it is invariant to rotations, translations and feature permutations but
not to scaling; inner="cosine" (1 - cosine similarity) is scale invariant per row but
not translation invariant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.distance import pdist

from layergw.measures.base import (
    Comparison,
    Measure,
    check_choice,
    check_geometry,
    check_same_n,
    register,
)

INNER = ("euclidean", "cosine")


def _n_from_condensed(m: int) -> int:
    return int(round((1 + np.sqrt(1 + 8 * m)) / 2))


@register("rsm")
@dataclass(frozen=True)
class RSMNormDifference(Measure):
    """2-norm of the difference of the condensed pairwise-dissimilarity vectors (a distance).

    inner: "euclidean" (default) or "cosine", passed to ``scipy.spatial.distance.pdist``.
    prepare returns the condensed vector (n(n-1)/2,).
    """

    kind: ClassVar[str] = "distance"
    accepts_constant: ClassVar[bool] = True

    inner: str = "euclidean"

    def invariant_to(self) -> frozenset[str]:
        if self.inner == "euclidean":
            return frozenset({"rotation", "permutation", "translation"})
        return frozenset({"rotation", "permutation", "scaling"})

    def __post_init__(self) -> None:
        check_choice("measure 'rsm'", "inner", self.inner, INNER)

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        if self.inner == "cosine":
            zero = np.flatnonzero(~np.any(X != 0, axis=1))
            if zero.size:
                raise ValueError(
                    f"rsm inner='cosine': {zero.size} rows of the representation are all zeros "
                    f"(first: {zero[:5].tolist()}); cosine dissimilarity is undefined for them"
                )
        S = pdist(X, metric=self.inner)
        if not np.all(np.isfinite(S)):
            raise ValueError(
                f"rsm inner={self.inner!r}: {int(np.count_nonzero(~np.isfinite(S)))} pairwise "
                "dissimilarities are not finite (rows with (near-)zero norm?)"
            )
        return S

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        for which, g in (("first", gx), ("second", gy)):
            check_geometry("rsm", which, g, 1, "a condensed distance vector from RSMNormDifference.prepare")
        if gx.size != gy.size:
            check_same_n(_n_from_condensed(gx.size), _n_from_condensed(gy.size),
                         ("first geometry", "second geometry"))
        value = float(np.linalg.norm(gx - gy))
        return Comparison(value=value, iterations=None, converged=True, seconds=0.0)
