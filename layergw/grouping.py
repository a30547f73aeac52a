"""Layer grouping: pair rows to L×L matrices, matrices to affinities, spectral clustering
with the number of groups chosen by eigengap and by silhouette, and group boundaries.

The paper clusters a similarity made from the GW matrix (the "reverse" of the
distances) with spectral clustering; it does not say how k is chosen beyond mentioning
silhouette-type scores, so both the eigengap of the normalized Laplacian and the
silhouette are always computed and recorded, and ``select`` says which one decides.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from layergw.measures.base import KINDS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

TRANSFORMS = ("reverse", "gaussian")
SELECTIONS = ("eigengap", "silhouette")
ASSIGN_LABELS = ("kmeans", "cluster_qr", "discretize")


def _frame(pairs: Any) -> "pd.DataFrame":
    import pandas as pd

    if isinstance(pairs, pd.DataFrame):
        return pairs
    if hasattr(pairs, "to_pandas"):
        return pairs.to_pandas()
    raise ValueError(f"pairs must be a pyarrow.Table or pandas.DataFrame, got {type(pairs).__name__}")


def _select_rows(pairs: Any, model: str, measure: str) -> "pd.DataFrame":
    df = _frame(pairs)
    rows = df[(df["model_a"] == model) & (df["model_b"] == model) & (df["measure"] == measure)]
    if rows.empty:
        raise ValueError(f"no pair rows for model {model!r} and measure {measure!r}")
    return rows


def _isnull(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def pair_kind(pairs: "pa.Table | pd.DataFrame", model: str, measure: str) -> str:
    """The ``kind`` ("distance" or "similarity") of one model's rows for one measure."""
    kinds = sorted(set(_select_rows(pairs, model, measure)["kind"].dropna()))
    if len(kinds) != 1 or kinds[0] not in KINDS:
        raise ValueError(f"model {model!r} measure {measure!r}: expected one kind of {KINDS}, got {kinds}")
    return kinds[0]


def pair_matrix(pairs: "pa.Table | pd.DataFrame", model: str, measure: str, n_layers: int) -> np.ndarray:
    """The L×L matrix of one model's within-model pairs for one measure.

    Both triangles are filled from (layer_a_index, layer_b_index); every stored value of
    an unordered pair ((i, j), (j, i), or a rerun's duplicate) is averaged. The diagonal
    is 0 for distances and 1 for similarities (from the ``kind`` column); a pair with no
    row, or only rows whose value is null (failed pairs), is NaN. Rows of more than one
    (seed, checkpoint) combination are a ValueError: filter first, never mix them.
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    rows = _select_rows(pairs, model, measure)
    kind = pair_kind(rows, model, measure)
    variant_cols = [c for c in ("seed_a", "checkpoint_a", "seed_b", "checkpoint_b") if c in rows.columns]
    if variant_cols:
        variants = {tuple(None if _isnull(v) else v for v in t) for t in rows[variant_cols].itertuples(index=False)}
        if len(variants) > 1:
            raise ValueError(
                f"model {model!r} measure {measure!r}: rows span {len(variants)} (seed, checkpoint) "
                f"combinations {sorted(map(str, variants))[:4]}...; filter the rows to one before pair_matrix"
            )
    ia = rows["layer_a_index"].to_numpy(dtype=np.int64)
    ib = rows["layer_b_index"].to_numpy(dtype=np.int64)
    if ia.size and (min(ia.min(), ib.min()) < 0 or max(ia.max(), ib.max()) >= n_layers):
        raise ValueError(
            f"model {model!r} measure {measure!r}: layer indices span "
            f"{min(ia.min(), ib.min())}..{max(ia.max(), ib.max())}, outside n_layers={n_layers}"
        )
    values = rows["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(values) & (ia != ib)
    lo, hi = np.minimum(ia, ib)[ok], np.maximum(ia, ib)[ok]
    total = np.zeros((n_layers, n_layers))
    count = np.zeros((n_layers, n_layers))
    np.add.at(total, (lo, hi), values[ok])
    np.add.at(count, (lo, hi), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
    M = np.full((n_layers, n_layers), np.nan)
    iu = np.triu_indices(n_layers, 1)
    M[iu] = upper[iu]
    M.T[iu] = upper[iu]
    np.fill_diagonal(M, 0.0 if kind == "distance" else 1.0)
    missing = int(np.isnan(M[iu]).sum())
    if missing:
        log.info("model %s measure %s: %d of %d pairs missing or failed", model, measure, missing, iu[0].size)
    return M


def symmetrize(M: np.ndarray) -> np.ndarray:
    """(M + M.T) / 2 with a zero diagonal: solvers are not exactly symmetric."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be a square matrix, got shape {M.shape}")
    S = (M + M.T) / 2.0
    np.fill_diagonal(S, 0.0)
    return S


def _symmetric(M: np.ndarray, kind: str) -> np.ndarray:
    S = symmetrize(M)
    if kind == "similarity":
        np.fill_diagonal(S, 1.0)  # symmetrize zeroes the diagonal; a similarity's self-similarity is 1
    return S


def dissimilarity(M: np.ndarray, kind: str) -> np.ndarray:
    """A symmetric, non-negative, zero-diagonal dissimilarity of layers: distances as they are
    (negatives clipped), similarities as 1 - their affinity (``to_affinity``). Missing pairs are
    a ValueError, as for grouping."""
    _check_kind(kind)
    S = _symmetric(M, kind)
    D = np.clip(S, 0.0, None) if kind == "distance" else 1.0 - to_affinity(S, kind)
    if kind == "distance" and not np.isfinite(D).all():
        to_affinity(S, kind)  # raises, counting the missing pairs
    np.fill_diagonal(D, 0.0)
    return D


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def _check_transform(transform: str) -> None:
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")


def to_affinity(M: np.ndarray, kind: str, transform: str = "reverse") -> np.ndarray:
    """An affinity in [0, 1] with unit diagonal, for spectral clustering.

    Distances (``kind="distance"``), off-diagonal entries only, negatives clipped to 0:
      - ``"reverse"`` (the paper's "reverse" of the distances, default):
        A = 1 - D / max(D); the farthest pair gets 0. All-zero D gives A = 1.
      - ``"gaussian"``: A = exp(-D^2 / (2 sigma^2)), sigma = median off-diagonal
        distance (the largest one if the median is 0; A = 1 if all are 0).
    Similarities (``kind="similarity"``, e.g. CKA in [0, 1]): A = clip(S, 0, None), divided
    by its largest off-diagonal entry when that exceeds 1 (unbounded similarities such as
    mutual information); ``transform`` is not used. The diagonal is set to 1. Any NaN off the diagonal (a
    missing or failed pair) is a ValueError saying how many pairs are missing.
    """
    _check_kind(kind)
    _check_transform(transform)
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be a square matrix, got shape {M.shape}")
    L = M.shape[0]
    off = ~np.eye(L, dtype=bool)
    bad = ~np.isfinite(M) & off
    if bad.any():
        n_missing = int((bad | bad.T)[np.triu_indices(L, 1)].sum())
        raise ValueError(
            f"{n_missing} of {L * (L - 1) // 2} layer pairs are missing or not finite (NaN); "
            "spectral grouping needs every pair (a rerun computes missing pairs; a pair that failed "
            "needs another measure or other layers)"
        )
    if kind == "similarity":
        A = np.clip(M, 0.0, None)
        top = A[off].max() if L > 1 else 0.0
        if top > 1.0:
            A = np.clip(A / top, 0.0, 1.0)
    else:
        D = np.clip(M, 0.0, None)
        d = D[off]
        if transform == "reverse":
            top = d.max() if d.size else 0.0
            A = 1.0 - D / top if top > 0 else np.ones_like(D)
        else:
            sigma = float(np.median(d)) if d.size else 0.0
            if sigma <= 0:
                sigma = float(d.max()) if d.size else 0.0
            A = np.exp(-(D**2) / (2.0 * sigma**2)) if sigma > 0 else np.ones_like(D)
        A = np.clip(A, 0.0, 1.0)
    A = A.copy()
    np.fill_diagonal(A, 1.0)
    return A


def boundaries(labels: np.ndarray) -> list[int]:
    """Depth indices i > 0 where a new group starts (labels[i] != labels[i-1])."""
    labels = np.asarray(labels)
    return [int(i) for i in np.flatnonzero(labels[1:] != labels[:-1]) + 1]


def contiguous_segments(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal labels along depth as (first, last, label), last inclusive.

    A group that comes back after another one appears as several segments.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return []
    starts = [0, *boundaries(labels)]
    ends = [s - 1 for s in starts[1:]] + [labels.size - 1]
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends)]


def renumber(labels: np.ndarray) -> np.ndarray:
    """Relabel groups 0, 1, ... in order of first appearance along depth."""
    labels = np.asarray(labels)
    mapping: dict[Any, int] = {}
    for x in labels.tolist():
        mapping.setdefault(x, len(mapping))
    return np.array([mapping[x] for x in labels.tolist()], dtype=np.int64)


def normalized_laplacian_eigenvalues(A: np.ndarray) -> np.ndarray:
    """Ascending eigenvalues of I - D^-1/2 W D^-1/2, W = A without self-loops.

    Self-loops are dropped as in scipy's ``csgraph.laplacian`` (and so scikit-learn's
    spectral embedding); an isolated node gets degree 1 to stay finite.
    """
    W = np.array(A, dtype=np.float64)
    np.fill_diagonal(W, 0.0)
    deg = W.sum(axis=1)
    inv = 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0))
    Lap = np.eye(W.shape[0]) - inv[:, None] * W * inv[None, :]
    return np.sort(np.linalg.eigvalsh((Lap + Lap.T) / 2.0))


def _eigengap_k(eigenvalues: np.ndarray, ks: list[int]) -> int:
    """k whose gap lambda_k - lambda_{k-1} (0-based, ascending) is largest among ks."""
    gaps = [eigenvalues[k] - eigenvalues[k - 1] for k in ks]
    return ks[int(np.argmax(gaps))]


def _spectral(A: np.ndarray, k: int, seed: int, assign_labels: str) -> np.ndarray:
    L = A.shape[0]
    if k == 1:
        return np.zeros(L, dtype=np.int64)
    if k >= L:
        return np.arange(L, dtype=np.int64)
    from sklearn.cluster import SpectralClustering
    from threadpoolctl import threadpool_limits

    kw: dict[str, Any] = {"n_init": 10} if assign_labels == "kmeans" else {}
    sc = SpectralClustering(
        n_clusters=k, affinity="precomputed", random_state=seed, assign_labels=assign_labels, **kw
    )
    # L is small (tens to a few hundred layers): threads only add contention
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # "Graph is not fully connected": the embedding is still usable, k just follows the components
        warnings.filterwarnings("ignore", message=".*not fully connected.*")
        return renumber(sc.fit_predict(A))


def _silhouette(dist: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    n = len(set(labels.tolist()))
    if n < 2 or n > len(labels) - 1:
        return float("nan")
    return float(silhouette_score(dist, labels, metric="precomputed"))


@dataclass(frozen=True, eq=False)
class Grouping:
    """Layer groups of one L×L matrix and how their number was chosen."""

    labels: np.ndarray  # int, 0.. in order of first appearance along depth
    k: int
    method: str  # "spectral"
    selection: str  # "eigengap" | "silhouette" | "fixed"
    k_eigengap: int
    k_silhouette: int
    silhouette: dict[int, float]  # k -> silhouette score (NaN where undefined)
    eigenvalues: np.ndarray  # normalized Laplacian, ascending
    affinity: str  # transform name ("reverse", "gaussian"; "clip" for similarities)
    seed: int
    boundaries: list[int] = field(default_factory=list)

    def segments(self) -> list[tuple[int, int, int]]:
        """Contiguous runs along depth as (first, last, group)."""
        return contiguous_segments(self.labels)

    def to_rows(self, model: str, measure: str, layers: list[str], displays: list[str] | None = None,
                params: str | dict | None = None) -> list[dict]:
        """One GROUPS row per layer (see ``layergw.results.GROUPS``).

        ``params`` tells apart variants of one measure: the same string as the pair rows'
        ``params``, ``json.dumps(m.params(), sort_keys=True)`` of the measure object (a
        dict is dumped that way). None (the default) stores null, read as "the only
        variant of ``measure``".
        """
        return group_table_rows(self.labels, model, measure, layers, displays, params, method=self.method,
                                selection=self.selection, k=self.k, k_eigengap=self.k_eigengap,
                                k_silhouette=self.k_silhouette, seed=self.seed)


def group_table_rows(labels: np.ndarray, model: str, measure: str, layers: list[str], displays: list[str] | None,
                     params: str | dict | None, *, method: str, selection: str, k: int,
                     k_eigengap: int | None = None, k_silhouette: int | None = None, seed: int | None = None,
                     strengths: dict[int, float] | None = None) -> list[dict]:
    """One GROUPS row per layer of one grouping; ``strengths`` maps boundary layers to their
    strength (contiguous segmentation)."""
    if len(layers) != len(labels):
        raise ValueError(f"layers has {len(layers)} names for {len(labels)} labels")
    if isinstance(params, dict):
        params = json.dumps(params, sort_keys=True)
    elif params is not None and not isinstance(params, str):
        raise ValueError(f"params must be a JSON string, a dict or None, got {type(params).__name__}")
    displays = list(layers) if displays is None else list(displays)
    starts = set(boundaries(labels))
    strengths = strengths or {}
    as_int = lambda v: None if v is None else int(v)  # noqa: E731
    return [
        {
            "model": model, "measure": measure, "params": params, "method": method, "selection": selection,
            "k": int(k), "k_eigengap": as_int(k_eigengap), "k_silhouette": as_int(k_silhouette),
            "layer": layers[i], "layer_index": i, "display": displays[i], "group": int(labels[i]),
            "boundary": i in starts, "seed": as_int(seed), "strength": strengths.get(i),
        }
        for i in range(len(layers))
    ]


def group_layers(
    M: np.ndarray,
    kind: str,
    *,
    k: int | None = None,
    k_max: int = 8,
    select: str = "eigengap",
    transform: str = "reverse",
    seed: int = 0,
    assign_labels: str = "kmeans",
) -> Grouping:
    """Spectral clustering of layers on ``to_affinity(symmetrize(M))``.

    For every k in 2..min(k_max, L-1) both the eigengap of the symmetric normalized
    Laplacian (k = the largest gap lambda_k - lambda_{k-1}) and the silhouette of the
    clustering (on the symmetrized distance matrix; on 1 - A for similarities) are
    computed; ``select`` picks which decides, or ``k`` fixes it ("fixed"). Labels are
    renumbered in depth order. ``assign_labels`` is scikit-learn's (k-means with 10
    starts by default), seeded by ``seed``.
    """
    _check_kind(kind)
    _check_transform(transform)
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    if assign_labels not in ASSIGN_LABELS:
        raise ValueError(f"assign_labels must be one of {ASSIGN_LABELS}, got {assign_labels!r}")
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be a square matrix, got shape {M.shape}")
    L = M.shape[0]
    if L < 3:
        raise ValueError(f"M must have at least 3 layers to group, got L={L}")
    if not isinstance(k_max, (int, np.integer)) or k_max < 2:
        raise ValueError(f"k_max must be an integer >= 2, got {k_max!r}")
    if k is not None and (not isinstance(k, (int, np.integer)) or not 1 <= k <= L):
        raise ValueError(f"k must be an integer in 1..{L} (the number of layers), got {k!r}")

    A = to_affinity(_symmetric(M, kind), kind, transform)
    dist = dissimilarity(M, kind)

    ks = list(range(2, min(k_max, L - 1) + 1))
    eigenvalues = normalized_laplacian_eigenvalues(A)
    k_eig = _eigengap_k(eigenvalues, ks)
    runs = {kk: _spectral(A, kk, seed, assign_labels) for kk in ks}
    sil = {kk: _silhouette(dist, lab) for kk, lab in runs.items()}
    finite = {kk: s for kk, s in sil.items() if np.isfinite(s)}
    k_sil = max(finite, key=lambda kk: (finite[kk], -kk)) if finite else k_eig

    if k is not None:
        chosen, selection = int(k), "fixed"
    else:
        chosen, selection = (k_eig if select == "eigengap" else k_sil), select
    labels = runs[chosen] if chosen in runs else _spectral(A, chosen, seed, assign_labels)
    log.debug("grouping: L=%d k=%d (%s) eigengap=%d silhouette=%d", L, chosen, selection, k_eig, k_sil)
    return Grouping(
        labels=labels,
        k=chosen,
        method="spectral",
        selection=selection,
        k_eigengap=int(k_eig),
        k_silhouette=int(k_sil),
        silhouette=sil,
        eigenvalues=eigenvalues,
        affinity=transform if kind == "distance" else "clip",
        seed=int(seed),
        boundaries=boundaries(labels),
    )
