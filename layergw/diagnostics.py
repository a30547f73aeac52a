"""Diagnostics of one model's layer representations (the paper's experiment 2): compute only.

Pure functions over ``reps: list[np.ndarray]`` (each (n, d_l), the same n inputs, in depth
order); :mod:`layergw.plot` draws what they return.

- ``distance_histograms``: per layer, the histogram of its pairwise Euclidean distances on
  common bin edges, and the KL divergence between consecutive layers' histograms
  (the paper's Figure 2).
- ``neighbour_jaccard``: L×L mean Jaccard overlap of every sample's k nearest neighbours
  in two layers (the paper's Table 5, t-SNE neighbourhoods).
- ``permutation_closeness``: how close a GW coupling is to a permutation (the paper's
  Figure 11 draws the coupling).
- ``consecutive_distances``: the distance between each layer and the previous one from an
  L×L measure matrix (the paper's vision section).
- ``diagnostic_tables``: all of them as rows of ``layergw.results.DIAGNOSTICS``, with the
  GW transport plan across the largest step: what the diagnose stage stores.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist, pdist

from layergw.measures.base import Measure, check_representation

log = logging.getLogger(__name__)

HIST_NORMALIZE = ("mean", "max", "none")
KL_EPSILON = 1e-6
# Rows of the distance matrix computed at once by the neighbour search (bounds memory
# to about _KNN_CHUNK * n float64 values).
_KNN_CHUNK = 1024


# ---------------------------------------------------------------------------- validation


def _check_reps(reps: Any, *, min_layers: int = 2) -> list[np.ndarray]:
    """reps must be a sequence of >= ``min_layers`` finite (n, d_l) arrays sharing n."""
    if isinstance(reps, np.ndarray) or not isinstance(reps, Sequence):
        raise ValueError(
            "reps must be a list of (n, d_l) NumPy arrays, one per layer in depth order, "
            f"got {type(reps).__name__}"
        )
    if len(reps) < min_layers:
        raise ValueError(f"reps must hold at least {min_layers} layers, got {len(reps)}")
    out = [check_representation(X, f"reps[{i}]") for i, X in enumerate(reps)]
    n0 = out[0].shape[0]
    for i, X in enumerate(out):
        if X.shape[0] != n0:
            raise ValueError(
                f"reps[{i}] has n={X.shape[0]} rows but reps[0] has n={n0}; all layers must be "
                "taken on the same inputs"
            )
    return out


def _check_square(M: Any, name: str) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be a square L×L matrix, got shape {M.shape}")
    return M


# -------------------------------------------------------------- distance histograms + KL


def distance_histograms(
    reps: Sequence[np.ndarray],
    *,
    bins: int = 50,
    normalize: str = "mean",
    epsilon: float = KL_EPSILON,
) -> dict[str, Any]:
    """Histograms of each layer's pairwise distances and KL between consecutive layers.

    For each layer, the n(n-1)/2 Euclidean distances between its samples (upper triangle
    of the distance matrix) are divided by a per-layer scale, so that a layer's overall
    scale (width, activation magnitude) does not dominate the comparison of shapes:
    ``normalize="mean"`` (default) divides by the layer's mean pairwise distance,
    ``"max"`` by its largest one, ``"none"`` keeps raw distances. All layers share the
    same ``bins`` equal-width bins from 0 to the largest (scaled) distance over all
    layers, so histograms are directly comparable and counts sum to n(n-1)/2 per layer.

    KL(p_l || p_{l+1}) between consecutive layers uses the histograms as probability
    vectors smoothed with an additive ``epsilon`` (default 1e-6) per bin and renormalized,
    ``p = (c / sum(c) + epsilon) / (1 + bins * epsilon)``: without it KL is infinite
    whenever layer l has mass in a bin where layer l+1 has none. With the default, an
    empty bin weighs below one pair of any probe set up to ~1400 samples, so observed bins
    are barely changed; the KL of two identical histograms is exactly 0.

    Returns a dict with ``edges`` ((bins+1,) float), ``counts`` ((L, bins) int64),
    ``kl_consecutive`` (list of L-1 floats, entry l = KL(p_l || p_{l+1}) in nats),
    ``scales`` (list of L per-layer divisors, 1.0 with "none"), ``normalize``, ``epsilon``.
    """
    if normalize not in HIST_NORMALIZE:
        raise ValueError(f"normalize must be one of {HIST_NORMALIZE}, got {normalize!r}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    layers = _check_reps(reps)
    dists, scales = [], []
    for i, X in enumerate(layers):
        d = pdist(X, metric="euclidean")
        scale = 1.0 if normalize == "none" else float(d.mean() if normalize == "mean" else d.max())
        if not scale > 0:
            raise ValueError(
                f"reps[{i}] is constant (all {X.shape[0]} rows identical): its distances are all 0, "
                f"so normalize={normalize!r} cannot scale them; use normalize='none'"
            )
        dists.append(d / scale)
        scales.append(scale)
    top = max(float(d.max()) for d in dists)
    edges = np.linspace(0.0, top if top > 0 else 1.0, int(bins) + 1)
    counts = np.stack([np.histogram(d, bins=edges)[0] for d in dists]).astype(np.int64)
    probs = counts / counts.sum(axis=1, keepdims=True)
    smooth = (probs + epsilon) / (1.0 + int(bins) * epsilon)
    kl = [float(np.sum(smooth[l] * np.log(smooth[l] / smooth[l + 1]))) for l in range(len(layers) - 1)]
    log.debug("distance histograms: %d layers, %d bins, KL %s", len(layers), bins, kl)
    return {
        "edges": edges,
        "counts": counts,
        "kl_consecutive": kl,
        "scales": scales,
        "normalize": normalize,
        "epsilon": float(epsilon),
    }


# ---------------------------------------------------------------- neighbour Jaccard overlap


def nearest_neighbours(X: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each row's k nearest other rows (Euclidean), nearest first.

    The point itself is excluded (even when another row duplicates it); equal distances
    are broken by the lower sample index (a stable sort), so the result is deterministic.
    """
    n = X.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, _KNN_CHUNK):
        stop = min(start + _KNN_CHUNK, n)
        D = cdist(X[start:stop], X, metric="euclidean")
        D[np.arange(stop - start), np.arange(start, stop)] = np.inf
        out[start:stop] = np.argsort(D, axis=1, kind="stable")[:, :k]
    return out


def neighbour_jaccard(reps: Sequence[np.ndarray], *, k: int = 5) -> np.ndarray:
    """L×L mean Jaccard overlap of every sample's k nearest neighbours in two layers.

    For each layer, N_l(i) is the set of the k nearest other samples of sample i
    (Euclidean distance in that layer's representation, the sample itself excluded, ties
    broken by the lower sample index). Entry [a, b] is the mean over the n samples of
    |N_a(i) ∩ N_b(i)| / |N_a(i) ∪ N_b(i)|. The matrix is symmetric with a unit diagonal,
    and each layer's entries are unchanged by rotating, translating or uniformly scaling
    that layer. For two unrelated layers the expected value is that of two random
    k-subsets of the n-1 other samples: the shared count I is hypergeometric with mean
    k^2/(n-1) (a fraction k/(n-1) of the neighbours), and E[I / (2k - I)] is about
    k^2 / ((n-1)(2k-1)) for k << n (0.019 for n = 150, k = 5).
    """
    layers = _check_reps(reps)
    n = layers[0].shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n - 1:
        raise ValueError(f"k must be an integer in [1, n-1] = [1, {n - 1}], got {k!r}")
    k = int(k)
    nbrs = [nearest_neighbours(X, k) for X in layers]
    L = len(layers)
    J = np.eye(L)
    for a in range(L):
        for b in range(a + 1, L):
            inter = (nbrs[a][:, :, None] == nbrs[b][:, None, :]).sum(axis=(1, 2))
            J[a, b] = J[b, a] = float(np.mean(inter / (2 * k - inter)))
    return J


# ---------------------------------------------------------------------- transport plans


def _check_plan(T: Any) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 2 or T.size == 0:
        raise ValueError(f"T must be a non-empty 2-D coupling matrix (n_a, n_b), got shape {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError(f"T must be finite, got {int((~np.isfinite(T)).sum())} NaN/Inf entries")
    if (T < 0).any():
        raise ValueError(f"T must be non-negative, got a smallest entry {T.min():g}")
    if not T.sum() > 0:
        raise ValueError("T has zero total mass")
    return T


def permutation_closeness(T: np.ndarray) -> dict[str, float]:
    """How close a coupling T (rows: samples of layer A, columns: of layer B) is to a permutation.

    - ``max_row_mass_fraction``: sum_i max_j T_ij / sum_ij T_ij, i.e. the mean over rows of
      max_j T_ij / sum_j T_ij weighted by row mass (the plain mean for uniform marginals).
      1 for a (scaled) permutation, 1/m for the product plan p q^T with uniform q of m columns.
    - ``entropy_ratio``: the conditional entropy H(B | A) = H(T) - H(row marginal) of the
      plan normalized by log m (m columns): 0 for a permutation (every row sends all its
      mass to one column), 1 for the product plan with uniform q.
    - ``argmax_distinct_fraction``: distinct columns among the row argmaxes / number of
      rows with mass; 1 when the rows' argmaxes form a one-to-one map.
    """
    T = _check_plan(T)
    total = T.sum()
    P = T / total
    row = P.sum(axis=1)
    live = row > 0
    m = T.shape[1]
    h_joint = -float(np.sum(P[P > 0] * np.log(P[P > 0])))
    h_row = -float(np.sum(row[live] * np.log(row[live])))
    entropy_ratio = (h_joint - h_row) / math.log(m) if m > 1 else 0.0
    argmax = T[live].argmax(axis=1)
    return {
        "max_row_mass_fraction": float(T.max(axis=1).sum() / total),
        "entropy_ratio": float(max(entropy_ratio, 0.0)),
        "argmax_distinct_fraction": float(np.unique(argmax).size / max(int(live.sum()), 1)),
    }


# ------------------------------------------------------------ consecutive-layer distances


def consecutive_distances(matrix: np.ndarray) -> np.ndarray:
    """Distance between each layer and the previous one: (M[0, 1], M[1, 2], ..., M[L-2, L-1]).

    ``matrix`` is an L×L measure matrix in depth order (L >= 2); values are taken as they
    are (NaN for failed pairs stays NaN), so pass a symmetrized matrix to ignore direction.
    """
    M = _check_square(matrix, "matrix")
    if M.shape[0] < 2:
        raise ValueError(f"matrix must have at least 2 layers, got shape {M.shape}")
    return np.diagonal(M, offset=1).copy()


def diagnostic_tables(reps: Sequence[np.ndarray], steps: np.ndarray | None = None,
                      measure: Measure | None = None, *, k: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Rows of the four diagnostic tables of one model (``layergw.results.DIAGNOSTICS``).

    ``steps`` is the model's L×L matrix of the GW variant ``measure`` (from its stored pairs);
    with it, ``steps`` rows carry each layer's value against the previous one and ``plan``
    holds the non-zero entries of that variant's transport plan across the largest step.
    A diagnostic that does not apply (a constant layer for the histograms, n <= k for the
    neighbours) leaves its table empty, with a log line saying why.
    """
    layers = _check_reps(reps)
    L = len(layers)
    out: dict[str, list[dict[str, Any]]] = {"histograms": [], "steps": [], "jaccard": [], "plan": []}
    kl: list[float | None] = [None] * (L - 1)
    try:
        h = distance_histograms(layers)
        edges = h["edges"]
        for layer, (counts, scale) in enumerate(zip(h["counts"], h["scales"])):
            out["histograms"] += [{"layer_index": layer, "bin": b, "lo": float(edges[b]), "hi": float(edges[b + 1]),
                                   "count": int(c), "scale": float(scale), "normalize": h["normalize"],
                                   "epsilon": h["epsilon"]} for b, c in enumerate(counts)]
        kl = list(h["kl_consecutive"])
    except ValueError as e:
        log.warning("diagnostics: no distance histograms: %s", e)
    try:
        J = neighbour_jaccard(layers, k=k)
        out["jaccard"] = [{"layer_a_index": a, "layer_b_index": b, "value": float(J[a, b]), "k": k}
                          for a in range(L) for b in range(a + 1, L)]
    except ValueError as e:
        log.warning("diagnostics: no neighbour overlap: %s", e)
    values = consecutive_distances(steps) if steps is not None else np.full(L - 1, np.nan)
    name = measure.name if measure is not None and steps is not None else None
    params = measure.params_json if name else None
    out["steps"] = [{"layer_index": i + 1, "kl": kl[i], "measure": name, "params": params,
                     "value": None if not np.isfinite(values[i]) else float(values[i])} for i in range(L - 1)]
    if name and np.isfinite(values).any():
        i = int(np.nanargmax(values)) + 1
        solver = dataclasses.replace(measure, return_coupling=True)
        plan = solver.compare(solver.prepare(layers[i - 1]), solver.prepare(layers[i])).coupling
        rows, cols = np.nonzero(plan)
        out["plan"] = [{"layer_a_index": i - 1, "layer_b_index": i, "row": int(r), "col": int(c),
                        "mass": float(plan[r, c]), "measure": name, "params": params} for r, c in zip(rows, cols)]
    return out
