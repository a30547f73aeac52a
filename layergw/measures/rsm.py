"""Norm of the difference of two representational similarity matrices (RSMs).

With S_X = pdist(X, inner) the condensed upper triangle of the pairwise dissimilarities of
the rows of X (n(n-1)/2 entries),

    RSM(X, Y) = ||S_X - S_Y||_2   (= ||full(S_X) - full(S_Y)||_F / sqrt(2)),

a distance that works for different widths. Reference: Klabunde et al., llm_repsim,
``llmcomp/measures/rsm_norm_difference.py::rsm_norm_diff`` (commit 53b8a9b1), which is
``np.linalg.norm(pdist(R, inner) - pdist(Rp, inner), ord=2)``; no deviation. It is also
llm_repsim's ``representational_similarity_analysis(..., outer="euclidean")``: the
reference turns both RDMs into similarities 1 - D first, which cancels in the difference.

inner (scipy's ``pdist`` metrics):
  "euclidean": invariant to rotation, translation and feature permutation; not to scaling.
  "cosine" (1 - cosine similarity of two rows): invariant to rotation, feature permutation
      and (per-row) scaling; not to translation. All-zero rows are an error.
  "correlation" (1 - Pearson correlation of two rows over the features): invariant to
      feature permutation and scaling (and to per-row affine maps); not to rotation or to
      translation by one vector (which is not a per-row constant). Rows whose features are
      all equal (zero variance) are an error.
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

INNER = ("euclidean", "cosine", "correlation")


def n_from_condensed(m: int) -> int:
    """Row count n of a condensed vector of m = n(n-1)/2 pairwise values."""
    return int(round((1 + np.sqrt(1 + 8 * m)) / 2))


def condensed_dissimilarities(X: np.ndarray, inner: str, owner: str) -> np.ndarray:
    """``pdist(X, inner)`` with a clear error for rows where the dissimilarity is undefined."""
    if inner == "cosine":
        bad = np.flatnonzero(~np.any(X != 0, axis=1))
        what, why = "are all zeros", "cosine dissimilarity is undefined for them"
    elif inner == "correlation":
        bad = np.flatnonzero(np.all(X == X[:, :1], axis=1))
        what = "have all features equal (zero variance across the features)"
        why = "correlation dissimilarity is undefined for them"
    else:
        bad, what, why = np.empty(0, dtype=np.intp), "", ""
    if bad.size:
        raise ValueError(
            f"{owner} inner={inner!r}: {bad.size} rows of the representation {what} "
            f"(first: {bad[:5].tolist()}); {why}"
        )
    S = pdist(X, metric=inner)
    if not np.all(np.isfinite(S)):
        raise ValueError(
            f"{owner} inner={inner!r}: {int(np.count_nonzero(~np.isfinite(S)))} pairwise "
            "dissimilarities are not finite (rows with (near-)zero norm or variance?)"
        )
    return S


@register("rsm")
@dataclass(frozen=True)
class RSMNormDifference(Measure):
    """2-norm of the difference of the condensed pairwise-dissimilarity vectors (a distance).

    inner: "euclidean" (default), "cosine" or "correlation", passed to
    ``scipy.spatial.distance.pdist``. prepare returns the condensed vector (n(n-1)/2,).
    """

    kind: ClassVar[str] = "distance"
    accepts_constant: ClassVar[bool] = True

    inner: str = "euclidean"

    def invariant_to(self) -> frozenset[str]:
        if self.inner == "euclidean":
            return frozenset({"rotation", "permutation", "translation"})
        if self.inner == "cosine":
            return frozenset({"rotation", "permutation", "scaling"})
        return frozenset({"permutation", "scaling"})

    def __post_init__(self) -> None:
        check_choice("measure 'rsm'", "inner", self.inner, INNER)

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return condensed_dissimilarities(X, self.inner, "rsm")

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        for which, g in (("first", gx), ("second", gy)):
            check_geometry("rsm", which, g, 1, "a condensed distance vector from RSMNormDifference.prepare")
        if gx.size != gy.size:
            check_same_n(n_from_condensed(gx.size), n_from_condensed(gy.size),
                         ("first geometry", "second geometry"))
        value = float(np.linalg.norm(gx - gy))
        return Comparison(value=value, iterations=None, converged=True, seconds=0.0)
