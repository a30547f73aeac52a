"""Representational similarity analysis (RSA, Kriegeskorte et al. 2008).

Each layer's representational dissimilarity matrix (RDM) is the condensed vector
D_X = pdist(X, inner) of the n(n-1)/2 pairwise dissimilarities of its rows; two RDMs are
compared by Spearman's rank correlation,

    RSA(X, Y) = pearson(rank(D_X), rank(D_Y))   (average ranks for ties),

a similarity in [-1, 1] (1 best) that works for different widths. Reference: Klabunde et
al., llm_repsim, ``llmcomp/measures/rsa.py::representational_similarity_analysis``
(commit 53b8a9b1), defaults inner="correlation", outer="spearman", which ranks the
similarities 1 - D_X instead: reversing both rankings leaves the rank correlation unchanged.

The reference's other outer, "euclidean" (||(1 - D_X) - (1 - D_Y)||_2 = ||D_X - D_Y||_2), is
a distance (0 best), so with outer="euclidean" this measure's ``kind`` is "distance"; its
value equals measure ``rsm`` with the same inner.

inner:
  "correlation" (default; 1 - Pearson correlation of two rows over the features):
      invariant to feature permutation and isotropic scaling (indeed to any per-row affine
      map a*x + b*1, a > 0); NOT to rotation, nor to translation by one vector v (x + v is
      not a per-row constant shift unless v is constant). Zero-variance rows are an error.
  "euclidean": invariant to rotation, feature permutation, translation and, because ranks
      ignore the common factor, scaling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from layergw.measures.base import (
    Comparison,
    Measure,
    check_choice,
    check_geometry,
    check_same_n,
    register,
)
from layergw.measures.rsm import condensed_dissimilarities, n_from_condensed

INNER = ("correlation", "euclidean")
OUTER = ("spearman", "euclidean")


@register("rsa")
@dataclass(frozen=True)
class RSA(Measure):
    """Spearman correlation of the two condensed RDMs (a similarity in [-1, 1]), or with
    outer="euclidean" the 2-norm of their difference (a distance).

    inner: "correlation" (default) or "euclidean", the dissimilarity of two rows.
    outer: "spearman" (default) or "euclidean".
    prepare returns the centred, unit-norm average ranks of the condensed RDM
    (n(n-1)/2,), so a Spearman pair is one dot product; for outer="euclidean" the RDM itself.
    """

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "similarity" if self.outer == "spearman" else "distance"

    inner: str = "correlation"
    outer: str = "spearman"

    def invariant_to(self) -> frozenset[str]:
        if self.inner == "euclidean":
            if self.outer == "euclidean":  # the distances themselves scale
                return frozenset({"rotation", "permutation", "translation"})
            return frozenset({"rotation", "permutation", "scaling", "translation"})
        return frozenset({"permutation", "scaling"})

    def __post_init__(self) -> None:
        check_choice("measure 'rsa'", "inner", self.inner, INNER)
        check_choice("measure 'rsa'", "outer", self.outer, OUTER)

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        D = condensed_dissimilarities(X, self.inner, "rsa")
        if self.outer == "euclidean":
            return D
        r = rankdata(D)
        r -= r.mean()
        norm = float(np.linalg.norm(r))
        if not norm > 0:
            raise ValueError(
                f"rsa inner={self.inner!r}: all {D.size} pairwise dissimilarities are equal, "
                "so their rank correlation is undefined"
            )
        return r / norm

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        for which, g in (("first", gx), ("second", gy)):
            check_geometry("rsa", which, g, 1, "a condensed rank vector from RSA.prepare")
        if gx.size != gy.size:
            check_same_n(n_from_condensed(gx.size), n_from_condensed(gy.size),
                         ("first geometry", "second geometry"))
        if self.outer == "euclidean":
            return Comparison(value=float(np.linalg.norm(gx - gy)), iterations=None, converged=True, seconds=0.0)
        value = float(gx @ gy)
        return Comparison(value=min(max(value, -1.0), 1.0), iterations=None, converged=True, seconds=0.0)
