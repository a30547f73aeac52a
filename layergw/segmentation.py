"""Grouping along depth: the layers cut into k contiguous segments by dynamic programming.

Spectral clustering may put far-apart layers in one group; a network's functional units,
and the cuts a user can act on (keep the first N blocks, freeze the first k), are runs of
consecutive layers. ``segment_depth`` finds, for each k, the k contiguous segments of the
layers in depth order that minimise the total within-segment cost

    cost(S) = (1 / |S|) * sum_{a < b in S} D[a, b],

the k-means objective when D holds squared Euclidean distances, with D the symmetrized
dissimilarity of the measure (distances as they are; similarities as 1 - affinity, as for
spectral grouping). It is solved exactly, in O(k_max L^2), from 2-D prefix sums.

k is chosen at the knee of the optimal cost curve c(1) >= c(2) >= ... >= c(k_max): the k
whose cost lies furthest below the straight line from (1, c(1)) to (k_max, c(k_max)), that
is, where adding segments stops paying. A curve with no point below that line (costs that
fall evenly, as for layers without structure) gives k = 1: no boundary. Each boundary gets
a strength, 1 - within / across: the mean dissimilarity of pairs inside the two segments it
separates against that of pairs across it (0: no contrast; 1: the segments are internally
identical).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from layergw.grouping import boundaries, dissimilarity, group_table_rows


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Contiguous layer groups of one L×L matrix and how their number was chosen."""

    labels: np.ndarray  # int, 0..k-1 along depth
    k: int
    selection: str  # "knee" | "fixed"
    k_knee: int
    costs: dict[int, float]  # k -> optimal total within-segment cost
    boundaries: list[int] = field(default_factory=list)
    strengths: list[float] = field(default_factory=list)  # one per boundary

    def to_rows(self, model: str, measure: str, layers: list[str], displays: list[str] | None = None,
                params: str | dict | None = None) -> list[dict]:
        """One GROUPS row per layer, method ``segment``; boundary rows carry their strength."""
        return group_table_rows(self.labels, model, measure, layers, displays, params, method="segment",
                                selection=self.selection, k=self.k,
                                strengths=dict(zip(self.boundaries, self.strengths)))


def _block_sums(D: np.ndarray) -> np.ndarray:
    P = np.zeros((D.shape[0] + 1, D.shape[0] + 1))
    P[1:, 1:] = D.cumsum(0).cumsum(1)
    return P


def segment_costs(D: np.ndarray) -> np.ndarray:
    """W[i, j] = cost of the segment of layers i..j (inclusive), i <= j; inf below the diagonal."""
    L = D.shape[0]
    P = _block_sums(D)
    i, j = np.triu_indices(L)
    W = np.full((L, L), np.inf)
    pair_sum = (P[j + 1, j + 1] - P[i, j + 1] - P[j + 1, i] + P[i, i]) / 2.0  # D symmetric, zero diagonal
    W[i, j] = pair_sum / (j - i + 1)
    return W


def optimal_segments(D: np.ndarray, k_max: int) -> dict[int, tuple[float, list[int]]]:
    """For k = 1..k_max: (optimal cost, first layer of each segment after the first)."""
    L = D.shape[0]
    W = segment_costs(D)
    best = np.full((k_max + 1, L), np.inf)  # best[k, j]: layers 0..j in k segments
    cut = np.zeros((k_max + 1, L), dtype=int)  # start of the last segment
    best[1] = W[0]
    for k in range(2, k_max + 1):
        for j in range(k - 1, L):
            starts = np.arange(k - 1, j + 1)
            totals = best[k - 1, starts - 1] + W[starts, j]
            m = int(np.argmin(totals))
            best[k, j], cut[k, j] = totals[m], starts[m]
    out = {}
    for k in range(1, k_max + 1):
        starts, j = [], L - 1
        for kk in range(k, 1, -1):
            starts.append(int(cut[kk, j]))
            j = starts[-1] - 1
        out[k] = (float(best[k, L - 1]), sorted(starts))
    return out


def knee(costs: dict[int, float]) -> int:
    """The k furthest below the chord from the first to the last point of the cost curve; 1 when none is below."""
    ks = sorted(costs)
    if len(ks) < 3:
        return ks[0]
    k0, k1 = ks[0], ks[-1]
    c0, c1 = costs[k0], costs[k1]
    if not c0 > c1:
        return k0
    gaps = {k: c0 + (c1 - c0) * (k - k0) / (k1 - k0) - costs[k] for k in ks}
    top = max(gaps, key=lambda k: (gaps[k], -k))
    return top if gaps[top] > 1e-12 * (c0 - c1) else k0


def boundary_strength(D: np.ndarray, left: range, right: range) -> float:
    """1 - (mean dissimilarity within the two segments) / (mean across them)."""
    across = float(D[np.ix_(left, right)].mean())
    within = [D[a, b] for seg in (left, right) for a in seg for b in seg if a < b]
    inside = float(np.mean(within)) if within else 0.0
    return 1.0 - inside / across if across > 0 else 0.0


def segment_depth(M: np.ndarray, kind: str, *, k: int | None = None, k_max: int = 8) -> Segmentation:
    """Contiguous groups along depth (see the module docstring); ``k`` fixes their number."""
    D = dissimilarity(M, kind)
    L = D.shape[0]
    if L < 2:
        raise ValueError(f"M must have at least 2 layers to segment, got L={L}")
    if not isinstance(k_max, (int, np.integer)) or k_max < 2:
        raise ValueError(f"k_max must be an integer >= 2, got {k_max!r}")
    if k is not None and (not isinstance(k, (int, np.integer)) or not 1 <= k <= L):
        raise ValueError(f"k must be an integer in 1..{L} (the number of layers), got {k!r}")
    top = min(max(k_max, k or 1), L)
    solutions = optimal_segments(D, top)
    costs = {kk: c for kk, (c, _) in solutions.items() if kk <= min(k_max, L)}
    k_knee = knee(costs)
    chosen, selection = (int(k), "fixed") if k is not None else (k_knee, "knee")
    starts = solutions[chosen][1]
    labels = np.zeros(L, dtype=int)
    for s in starts:
        labels[s:] += 1
    edges = [0, *starts, L]
    strengths = [boundary_strength(D, range(edges[i], edges[i + 1]), range(edges[i + 1], edges[i + 2]))
                 for i in range(len(starts))]
    return Segmentation(labels, chosen, selection, k_knee, costs, boundaries(labels), strengths)


def bootstrap_cuts(reps: list[np.ndarray], depths: list[float], measure, *, replicates: int, seed: int = 0,
                   k: int | None = None, k_max: int = 8) -> dict[int, float]:
    """How often each block cut recurs when the inputs are resampled.

    ``reps`` are the representations of points in depth order (block-level points, say) and
    ``depths`` where each sits in blocks. Each of ``replicates`` seeded bootstrap samples draws
    n of the n inputs with replacement, compares every pair of points on them with ``measure``
    (a :class:`~layergw.measures.Measure`), segments the matrix along depth and records the
    whole blocks before each boundary. Returns cut -> share of the replicates that had it.
    """
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    if len(reps) != len(depths) or len(reps) < 2:
        raise ValueError(f"need one depth per representation and at least 2 of them, got {len(reps)} and {len(depths)}")
    n = reps[0].shape[0]
    rng = np.random.default_rng(seed)
    counts: dict[int, int] = {}
    for _ in range(replicates):
        rows = rng.choice(n, size=n, replace=True)
        geoms = [measure.prepare(X[rows], label=f"point {i}") for i, X in enumerate(reps)]
        L = len(reps)
        M = np.zeros((L, L))
        for a in range(L):
            for b in range(a + 1, L):
                M[a, b] = M[b, a] = measure.compare(geoms[a], geoms[b]).value
        if measure.kind == "similarity":
            np.fill_diagonal(M, 1.0)
        seg = segment_depth(M, measure.kind, k=k, k_max=min(k_max, L))
        for cut in {int(np.floor(depths[i])) for i in seg.boundaries}:
            counts[cut] = counts.get(cut, 0) + 1
    return {cut: c / replicates for cut, c in sorted(counts.items())}
