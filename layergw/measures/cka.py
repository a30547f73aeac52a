"""Centred kernel alignment (CKA), Kornblith et al. 2019 ("Similarity of Neural Network
Representations Revisited"), with a linear or an RBF kernel and a biased or debiased
HSIC estimator.

With centred Gram matrices K~ = H K H, L~ = H L H (H = I - 11^T/n),

    CKA(X, Y) = <K~, L~>_F / (||K~||_F ||L~||_F).

kernel="linear" (K = X X^T): with column-centred X, Y this is
||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), computed in feature space.
kernel="rbf": K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2)) with
sigma^2 = sigma_scale^2 * median of the n x n matrix of squared distances (its zero
diagonal included, as the reference does), i.e. sigma = sigma_scale * sqrt(median).
debiased=True replaces both biased HSIC estimates by the unbiased U-statistic (Song et al.
2007, 2012; the U-centring of Szekely & Rizzo 2014: zero the diagonal, then
K~_ij = K_ij - r_i/(n-2) - r_j/(n-2) + s/((n-1)(n-2)) off the diagonal, 0 on it, with r
the row sums and s the total); for the linear kernel the equivalent feature-space form
||X^T Y||_F^2 - n/(n-2) a.b + |a|_1 |b|_1/((n-1)(n-2)) (a, b the squared row norms of the
centred features). Debiased CKA may be negative; it is less inflated than the
biased form at small n (biased CKA of independent layers grows as n shrinks).

Value: biased CKA lies in [0, 1]; debiased CKA in [-1, 1]; both are 1 for identical inputs.
Invariances: linear: rotation, feature permutation, isotropic scaling, translation (not
general invertible maps). rbf: the same, since the kernel depends only on distances and
the bandwidth scales with the median distance.

References: linear biased: Klabunde et al., llm_repsim,
``llmcomp/measures/cka.py::centered_kernel_alignment`` (commit 53b8a9b1). rbf and debiased:
google-research/google-research ``representation_similarity/Demo.ipynb`` (commit
10bf941a), ``cka(gram_rbf(X, threshold), gram_rbf(Y, threshold), debiased)`` and
``feature_space_linear_cka(X, Y, debiased)``; sigma_scale is its ``threshold``.
Deviation: squared distances come from ``pdist`` (differences), not from the reference's
Gram expansion |x|^2 + |y|^2 - 2 x.y, so they carry no cancellation error (values agree
to ~1e-12).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.distance import pdist, squareform

from layergw.measures.base import (
    Comparison,
    Measure,
    check_bool,
    check_choice,
    check_positive_float,
    check_same_n,
    register,
)

KERNELS = ("linear", "rbf")

# A centred representation whose norm is below this fraction of the raw norm is constant
# up to rounding (centring a constant column leaves ~1e-16 relative noise).
CONSTANT_RTOL = 1e-12
# A debiased self-HSIC below this fraction of the biased one is zero up to cancellation.
DEBIASED_RTOL = 1e-12


@dataclass(frozen=True)
class CKAGeometry:
    """Linear kernel: centred features F (n, r) with the same Gram matrix as the centred
    layer, r = min(d, n); ``norm`` = the layer's HSIC with itself, square-rooted (biased:
    ||F^T F||_F); for debiased, ``row_sq`` (n,) the squared row norms of F and
    ``total_sq`` their sum."""

    features: np.ndarray
    norm: float
    row_sq: np.ndarray | None = None
    total_sq: float = 0.0

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class GramCKAGeometry:
    """RBF kernel: the (U-)centred Gram matrix G as the vector v = [diag(G), sqrt(2) *
    upper triangle of G] / ||G||_F (so <G_x, G_y>_F / (||G_x|| ||G_y||) = v_x . v_y)."""

    packed: np.ndarray
    n: int


def _debiased_dot(xty: float, a: np.ndarray, b: np.ndarray, sa: float, sb: float, n: int) -> float:
    """Unbiased linear HSIC times n(n-3), from feature-space sufficient statistics."""
    return xty - n / (n - 2.0) * float(a @ b) + sa * sb / ((n - 1.0) * (n - 2.0))


@register("cka")
@dataclass(frozen=True)
class CKA(Measure):
    """CKA with kernel "linear" (default) or "rbf"; biased (default) or debiased HSIC.

    sigma_scale: the RBF bandwidth as a multiple of sqrt(median squared distance)
        (kernel="rbf" only; leave it at 1.0 for the linear kernel).
    debiased: use the unbiased HSIC estimator (needs n >= 4).

    Linear kernel: prepare centres the columns and keeps the centred features when d <= n;
    when d > n it replaces them with U S from the thin SVD (n columns, same Gram matrix,
    so the same CKA), so a pair costs O(n min(d1, n) min(d2, n)). RBF kernel: prepare
    builds, centres and normalises the n x n Gram matrix once; a pair is one dot product
    of length n(n+1)/2.
    """

    kind: ClassVar[str] = "similarity"
    invariances: ClassVar[frozenset[str]] = frozenset({"rotation", "permutation", "scaling", "translation"})

    kernel: str = "linear"
    sigma_scale: float = 1.0
    debiased: bool = False

    def __post_init__(self) -> None:
        check_choice("measure 'cka'", "kernel", self.kernel, KERNELS)
        scale = check_positive_float("measure 'cka'", "sigma_scale", self.sigma_scale)
        object.__setattr__(self, "sigma_scale", scale)
        object.__setattr__(self, "debiased", check_bool("measure 'cka'", "debiased", self.debiased))
        if self.kernel == "linear" and scale != 1.0:
            raise ValueError(
                f"measure 'cka' parameter 'sigma_scale' applies to kernel='rbf' only; got "
                f"sigma_scale={self.sigma_scale!r} with kernel='linear' (leave it at 1.0)"
            )

    def _check_n(self, n: int) -> None:
        if self.debiased and n < 4:
            raise ValueError(f"cka debiased=True needs n >= 4 rows (samples); got n={n}")

    def _prepare(self, X: np.ndarray) -> CKAGeometry | GramCKAGeometry:
        n = X.shape[0]
        self._check_n(n)
        Xc = X - X.mean(axis=0)
        raw = float(np.linalg.norm(X))
        centred = float(np.linalg.norm(Xc))
        if not centred > CONSTANT_RTOL * raw:
            raise ValueError(
                f"cka: the representation is constant (all {n} rows identical up to rounding: "
                f"centred norm {centred:.3g} vs norm {raw:.3g}); CKA is undefined (0/0)"
            )
        if self.kernel == "rbf":
            return self._prepare_rbf(Xc)
        if Xc.shape[1] > n:
            U, S, _ = np.linalg.svd(Xc, full_matrices=False)
            Xc = np.ascontiguousarray(U * S)
        biased = float(np.linalg.norm(Xc.T @ Xc))
        if not self.debiased:
            return CKAGeometry(features=Xc, norm=biased)
        row_sq = np.einsum("ij,ij->i", Xc, Xc)
        total = float(row_sq.sum())
        self_hsic = _debiased_dot(biased**2, row_sq, row_sq, total, total, n)
        if not self_hsic > DEBIASED_RTOL * biased**2:
            raise ValueError(
                f"cka debiased=True: the unbiased HSIC of the representation with itself is "
                f"{self_hsic:.3g} (<= 0 up to rounding); debiased CKA is undefined for it"
            )
        return CKAGeometry(features=Xc, norm=float(np.sqrt(self_hsic)), row_sq=row_sq, total_sq=total)

    def _prepare_rbf(self, Xc: np.ndarray) -> GramCKAGeometry:
        n = Xc.shape[0]
        sq = pdist(Xc, metric="sqeuclidean")
        # median over all n^2 entries: n zeros on the diagonal and each pair twice
        median = float(np.median(np.concatenate([np.zeros(n), sq, sq])))
        if not median > 0:
            raise ValueError(
                f"cka kernel='rbf': the median squared distance between rows is 0 (at least "
                f"half of the {n}x{n} pairs are duplicate rows), so the bandwidth is 0"
            )
        K = squareform(np.exp(-sq / (2.0 * self.sigma_scale**2 * median)))
        if self.debiased:
            # K's diagonal is 0 here (squareform), as the U-centring needs
            r = K.sum(axis=0) / (n - 2)
            r -= r.sum() / (2.0 * (n - 1))
            G = K - r[:, None] - r[None, :]
            np.fill_diagonal(G, 0.0)
        else:
            np.fill_diagonal(K, 1.0)
            r = K.mean(axis=0)
            G = K - r[:, None] - r[None, :] + r.mean()
        iu = np.triu_indices(n, 1)
        packed = np.concatenate([np.diag(G), np.sqrt(2.0) * G[iu]])
        norm = float(np.linalg.norm(packed))
        if not norm > 0:
            raise ValueError(
                f"cka kernel='rbf' debiased={self.debiased}: the centred Gram matrix is 0; "
                "CKA is undefined for this representation"
            )
        return GramCKAGeometry(packed=packed / norm, n=n)

    def _compare(self, gx: Any, gy: Any) -> Comparison:
        want = GramCKAGeometry if self.kernel == "rbf" else CKAGeometry
        for which, g in (("first", gx), ("second", gy)):
            if not isinstance(g, want) or (want is CKAGeometry and (g.row_sq is None) == self.debiased):
                raise ValueError(
                    f"cka: the {which} geometry must come from CKA.prepare with kernel={self.kernel!r}, "
                    f"debiased={self.debiased}, got {type(g).__name__}"
                )
        check_same_n(gx.n, gy.n, ("first geometry", "second geometry"))
        if want is GramCKAGeometry:
            value = float(gx.packed @ gy.packed)
        else:
            hsic = float(np.linalg.norm(gy.features.T @ gx.features)) ** 2
            if self.debiased:
                hsic = _debiased_dot(hsic, gx.row_sq, gy.row_sq, gx.total_sq, gy.total_sq, gx.n)
            value = hsic / (gx.norm * gy.norm)
        # Cauchy-Schwarz bounds the value; clip rounding (1 + 2e-16) only.
        lo = -1.0 if self.debiased else 0.0
        return Comparison(value=min(max(value, lo), 1.0), iterations=None, converged=True, seconds=0.0)
