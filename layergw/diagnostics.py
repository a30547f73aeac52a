"""Diagnostic figures of one model's layer representations (the paper's experiment 2).

Pure functions over ``reps: list[np.ndarray]`` (each (n, d_l), the same n inputs, in depth
order) and display ``labels``:

- ``distance_histograms``: per layer, the histogram of its pairwise Euclidean distances on
  common bin edges, and the KL divergence between consecutive layers' histograms
  (the paper's Figure 2); drawn by ``distance_histograms_png``.
- ``neighbour_jaccard``: L×L mean Jaccard overlap of every sample's k nearest neighbours
  in two layers (the paper's Table 5, t-SNE neighbourhoods); drawn by ``jaccard_png``.
- ``permutation_closeness`` and ``transport_plan_png``: how close a GW coupling is to a
  permutation, and the coupling as an image (the paper's Figure 11). The caller gets the
  coupling from ``measures.get("gw", return_coupling=True).compare(...).coupling``.
- ``consecutive_distances`` and ``line_png``: the distance between each layer and the
  previous one from an L×L measure matrix (the paper's vision section).

NumPy and SciPy only; figures are drawn like ``layergw.plots`` (an explicit matplotlib
``Figure`` on an Agg canvas, no pyplot), so ``plots.png_bytes(fn, ...)`` works for each
``*_png`` function.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy.spatial.distance import cdist, pdist

from layergw.measures.base import check_representation
from layergw.plots import _save, _tick_step

log = logging.getLogger(__name__)

HIST_NORMALIZE = ("mean", "max", "none")
KL_EPSILON = 1e-6
# Rows of the distance matrix computed at once by the neighbour search (bounds memory
# to about _KNN_CHUNK * n float64 values).
_KNN_CHUNK = 1024
# Largest image side (cells) of a drawn transport plan; bigger plans are max-pooled.
_PLAN_CELLS = 400


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


def _check_labels(labels: Any, count: int, what: str) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ValueError(f"labels must be a list of {count} display names, got {type(labels).__name__}")
    if len(labels) != count:
        raise ValueError(f"labels has {len(labels)} names for {count} {what}")
    return [str(s) for s in labels]


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


def distance_histograms_png(
    result: dict[str, Any],
    labels: Sequence[str],
    path_or_buffer: str | IO[bytes],
    *,
    title: str,
) -> None:
    """Draw ``distance_histograms`` output: densities per layer and consecutive KL.

    Left panel: each layer's histogram as a density line over the common bins, coloured
    by depth (viridis, shallow dark to deep yellow; a legend when L <= 12, else a depth
    colorbar). Right panel: KL(p_l || p_{l+1}) at each layer l+1, i.e. how much the
    distance distribution changed from the previous layer.
    """
    try:
        edges = np.asarray(result["edges"], dtype=np.float64)
        counts = np.asarray(result["counts"], dtype=np.float64)
        kl = np.asarray(result["kl_consecutive"], dtype=np.float64)
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"result must be the dict distance_histograms returns (edges, counts, kl_consecutive); got {e!r}"
        ) from e
    if counts.ndim != 2 or edges.shape != (counts.shape[1] + 1,) or kl.shape != (counts.shape[0] - 1,):
        raise ValueError(
            f"result has inconsistent shapes: edges {edges.shape}, counts {counts.shape}, "
            f"kl_consecutive {kl.shape} (expected (bins+1,), (L, bins), (L-1,))"
        )
    L = counts.shape[0]
    names = _check_labels(labels, L, "layers")
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    widths = np.diff(edges)
    centres = (edges[:-1] + edges[1:]) / 2
    density = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) / widths
    fig = Figure(figsize=(12.0, 4.8))
    ax, ax_kl = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for l in range(L):
        ax.plot(centres, density[l], color=cmap(l / max(L - 1, 1)), linewidth=1.0, label=names[l])
    scale = {"mean": "/ mean distance", "max": "/ max distance"}.get(str(result.get("normalize")), "")
    ax.set_xlabel(f"pairwise distance {scale}".strip())
    ax.set_ylabel("density")
    ax.set_title("intra-layer distance distributions", fontsize=9)
    if L <= 12:
        ax.legend(fontsize=7)
    else:
        sm = ScalarMappable(cmap=cmap, norm=Normalize(0, L - 1))
        fig.colorbar(sm, ax=ax, fraction=0.046, pad=0.04).set_label("layer index (depth)")
    x = np.arange(1, L)
    ax_kl.plot(x, kl, marker="o", color="#3b6ea5")
    step = _tick_step(L - 1, 40)
    ax_kl.set_xticks(list(x[::step]))
    fontsize = 8 if L <= 25 else 6
    ax_kl.set_xticklabels([names[i] for i in x[::step]], rotation=90, fontsize=fontsize)
    ax_kl.set_ylabel("KL(previous || this) [nats]")
    ax_kl.set_title(f"KL between consecutive layers (epsilon={result.get('epsilon', KL_EPSILON):g})", fontsize=9)
    if L - 1 <= 12:
        for xi, v in zip(x, kl):
            ax_kl.annotate(f"{v:.3g}", (xi, v), textcoords="offset points", xytext=(0, 4),
                           ha="center", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path_or_buffer)


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


def jaccard_png(
    J: np.ndarray,
    labels: Sequence[str],
    path_or_buffer: str | IO[bytes],
    *,
    title: str,
) -> None:
    """Heatmap of a ``neighbour_jaccard`` matrix on a fixed 0..1 colour scale.

    Values are written in the cells when L <= 16 (as in the paper's Table 5).
    """
    J = _check_square(J, "J")
    L = J.shape[0]
    names = _check_labels(labels, L, "rows of J")
    side = float(np.clip(3.0 + 0.11 * L, 5.0, 16.0))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(J, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    step = _tick_step(L, 60)
    fontsize = 8 if L <= 25 else 5
    ax.set_xticks(list(range(0, L, step)))
    ax.set_yticks(list(range(0, L, step)))
    ax.set_xticklabels(names[::step], rotation=90, fontsize=fontsize)
    ax.set_yticklabels(names[::step], fontsize=fontsize)
    if L <= 16:
        for a in range(L):
            for b in range(L):
                ax.text(b, a, f"{J[a, b]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if J[a, b] > 0.6 else "white")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label("mean Jaccard of k-NN sets")
    _save(fig, path_or_buffer)


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


def _max_pool(T: np.ndarray, cells: int) -> tuple[np.ndarray, int]:
    """Max over b×b blocks so that no side exceeds ``cells`` (keeps single entries visible)."""
    b = max(1, math.ceil(max(T.shape) / cells))
    if b == 1:
        return T, 1
    r, c = math.ceil(T.shape[0] / b) * b, math.ceil(T.shape[1] / b) * b
    padded = np.zeros((r, c))
    padded[: T.shape[0], : T.shape[1]] = T
    return padded.reshape(r // b, b, c // b, b).max(axis=(1, 3)), b


def transport_plan_png(
    T: np.ndarray,
    path_or_buffer: str | IO[bytes],
    *,
    title: str,
    order: np.ndarray | None = None,
) -> None:
    """Draw a coupling T (rows: samples in layer A, columns: the same samples in layer B).

    Each entry is shown as T_ij / (row mass of i), so 1 means row i sends all its mass
    to column j; a permutation shows one bright cell per row, the identity a diagonal.
    ``order`` (a permutation of range(n), square T only) reorders rows and columns alike,
    e.g. samples sorted by class so that blocks show. Plans larger than 400 cells a side
    are max-pooled over b×b blocks (said in the axis label) so single entries stay
    visible. The x label gives ``permutation_closeness``.
    """
    T = _check_plan(T)
    if order is not None:
        order = np.asarray(order)
        n = T.shape[0]
        if T.shape[0] != T.shape[1]:
            raise ValueError(f"order needs a square T (the same samples on both axes), got shape {T.shape}")
        if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
            raise ValueError(f"order must be a permutation of range({n}), got shape {order.shape}")
        T = T[np.ix_(order, order)]
    close = permutation_closeness(T)
    row = T.sum(axis=1, keepdims=True)
    R = np.divide(T, row, out=np.zeros_like(T), where=row > 0)
    img, b = _max_pool(R, _PLAN_CELLS)
    fig = Figure(figsize=(6.6, 6.0))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(img, cmap="magma", vmin=0.0, vmax=1.0, interpolation="nearest",
                   extent=(-0.5, T.shape[1] - 0.5, T.shape[0] - 0.5, -0.5))
    pooled = f" (max over {b}×{b} blocks)" if b > 1 else ""
    ax.set_ylabel("sample in layer A" + (" (reordered)" if order is not None else ""))
    ax.set_xlabel(
        f"sample in layer B{pooled}\nmax row mass fraction {close['max_row_mass_fraction']:.3f}"
        f" (1 = permutation, {1 / T.shape[1]:.3g} = product), "
        f"conditional entropy ratio {close['entropy_ratio']:.3f}",
        fontsize=8,
    )
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label("T_ij / row mass")
    fig.tight_layout()
    _save(fig, path_or_buffer)


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


def line_png(
    values: Sequence[float],
    labels: Sequence[str],
    path_or_buffer: str | IO[bytes],
    *,
    title: str,
    ylabel: str,
) -> None:
    """Line plot of one value per position (NaN leaves a gap).

    ``labels`` has one name per value, or one more (the L layer names behind
    ``consecutive_distances``): then value i is drawn at labels[i + 1], the layer
    compared with its previous one.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D sequence, got shape {v.shape}")
    if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) not in (v.size, v.size + 1):
        got = len(labels) if isinstance(labels, Sequence) else type(labels).__name__
        raise ValueError(f"labels must have {v.size} or {v.size + 1} names for {v.size} values, got {got}")
    names = [str(s) for s in labels][len(labels) - v.size :]
    fig = Figure(figsize=(float(np.clip(2.0 + 0.15 * v.size, 6.0, 16.0)), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(v.size)
    ax.plot(x, v, marker="o", markersize=3, color="#3b6ea5")
    step = _tick_step(v.size, 60)
    ax.set_xticks(list(x[::step]))
    ax.set_xticklabels(names[::step], rotation=90, fontsize=8 if v.size <= 25 else 5)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path_or_buffer)
