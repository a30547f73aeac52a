"""PNG figures for the report: L×L pair heatmaps with group boundaries, curves, ranked bars,
and the diagnostics (distance histograms, neighbour overlap, transport plans, steps).

Matplotlib runs headless (Agg canvas on an explicit Figure, no pyplot state), so this
works on cluster nodes without a display and never touches the global backend. Each
``*_png(..., path_or_buffer, ...)`` draws one figure; :func:`png_bytes` runs one into memory.
"""
from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from typing import IO, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from layergw.diagnostics import KL_EPSILON, _check_plan, _check_square, permutation_closeness

log = logging.getLogger(__name__)


def _save(fig: Figure, path_or_buffer: str | IO[bytes]) -> None:
    FigureCanvasAgg(fig)
    try:
        fig.savefig(path_or_buffer, format="png", dpi=100)
    finally:
        fig.clear()


def _tick_step(n: int, max_ticks: int) -> int:
    return max(1, math.ceil(n / max(1, max_ticks)))


def heatmap_png(M: np.ndarray, labels: Sequence[str], path_or_buffer: str | IO[bytes], **kwargs: Any) -> None:
    """Write :func:`heatmap_figure` as a PNG."""
    _save(heatmap_figure(M, labels, **kwargs), path_or_buffer)


def heatmap_figure(
    M: np.ndarray,
    labels: Sequence[str],
    *,
    title: str,
    boundaries: Sequence[int] = (),
    kind: str = "distance",
    max_ticks: int = 100,
    measure: str | None = None,
    col_labels: Sequence[str] | None = None,
) -> Figure:
    """An L×L matrix (or, with ``col_labels``, an L×K cross-model matrix) as a heatmap figure.

    Layer names label both axes (every k-th when L > ``max_ticks``), the colorbar names
    the measure and kind, group boundaries are lines at i - 0.5 on both axes, and NaN
    (missing or failed pairs) shows grey. Non-negative values spanning more than three
    orders of magnitude (raw GW, say) are drawn as log10, so the small ones stay visible.
    """
    M = np.asarray(M, dtype=np.float64)
    if col_labels is None and (M.ndim != 2 or M.shape[0] != M.shape[1]):
        raise ValueError(f"M must be a square matrix, got shape {M.shape}")
    if M.ndim != 2:
        raise ValueError(f"M must be a 2-D matrix, got shape {M.shape}")
    L, K = M.shape
    cols = list(labels) if col_labels is None else list(col_labels)
    original, M, log_scale = M, *_log_if_wide(M)
    if len(labels) != L or len(cols) != K:
        raise ValueError(f"labels has {len(labels)} row and {len(cols)} column names for a {L}×{K} matrix")
    side = float(np.clip(3.0 + 0.11 * max(L, K), 5.0, 16.0))
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot(1, 1, 1)
    masked = np.ma.masked_invalid(M)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#bbbbbb")
    finite = M[np.isfinite(M)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmax = vmin + 1.0
    im = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    step = _tick_step(max(L, K), max_ticks)
    row_pt = side * 0.8 * 72.0 / max(L, K) * step  # height of one labelled row, in points
    fontsize = float(np.clip(0.7 * row_pt, 3.0, 9.0))
    ax.set_xticks(list(range(0, K, step)))
    ax.set_yticks(list(range(0, L, step)))
    ax.set_xticklabels([str(cols[i]) for i in range(0, K, step)], rotation=90, fontsize=fontsize)
    ax.set_yticklabels([str(labels[i]) for i in range(0, L, step)], fontsize=fontsize)
    for b in boundaries:
        if 0 < b < L:
            ax.axhline(b - 0.5, color="red", linewidth=1.0)
            ax.axvline(b - 0.5, color="red", linewidth=1.0)
    ax.set_title(title, fontsize=10)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    label = f"{measure} ({kind})" if measure else kind
    cbar.set_label(f"log10 of {label}" if log_scale else label)
    if np.isnan(original).any():
        n_missing = int(np.isnan(original[np.triu_indices(L, 1)] if col_labels is None else original).sum())
        ax.set_xlabel(f"grey: {n_missing} missing or failed pairs", fontsize=8)
    fig.tight_layout()
    return fig


def _log_if_wide(M: np.ndarray, ratio: float = 1e3, zero: float = 1e-9) -> tuple[np.ndarray, bool]:
    """log10 of M (zeros at the smallest positive value) when its positive values span > ratio.

    Values below ``zero`` times the largest are rounding noise of identical layers (GW of
    two copies of a tensor is ~1e-16, not 0) and count as zero.
    """
    off = M[~np.eye(*M.shape, dtype=bool)]
    off = off[np.isfinite(off)]
    positive = off[off > zero * off.max()] if off.size else off
    if off.size == 0 or (off < 0).any() or positive.size == 0 or positive.max() / positive.min() <= ratio:
        return M, False
    with np.errstate(invalid="ignore"):
        return np.log10(np.where(np.isfinite(M), np.maximum(M, positive.min()), np.nan)), True


def curves_png(
    x: Sequence[float],
    curves: dict[str, Sequence[float]],
    path_or_buffer: str | IO[bytes],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    marks: dict[str, Sequence[float]] | None = None,
    log_scale: bool = False,
) -> None:
    """Write one line per named curve over a shared x (training steps, accuracy, ...); ``marks``
    draws each named set of x positions as dashed vertical lines (group boundaries, say);
    ``log_scale`` puts both axes on a log scale (times against sizes)."""
    xs = np.asarray(x, dtype=np.float64)
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in curves.items():
        ys = np.asarray(ys, dtype=np.float64)
        if ys.size != xs.size:
            raise ValueError(f"curve {name!r} has {ys.size} values for {xs.size} x values")
        order = np.argsort(xs, kind="stable")
        ax.plot(xs[order], ys[order], marker="o", label=name)
    import matplotlib

    colors = matplotlib.colormaps["tab10"]
    for i, (name, at) in enumerate((marks or {}).items()):
        for j, v in enumerate(at):
            ax.axvline(float(v), color=colors(i % 10), linestyle="--", linewidth=1.0, alpha=0.7,
                       label=name if j == 0 else None)
    if log_scale:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(curves) > 1 or marks:
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path_or_buffer)


def series_png(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path_or_buffer: str | IO[bytes],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> None:
    """Write one line per named (x, y) series, each on its own x (training runs of different
    lengths, say)."""
    import matplotlib

    colors = matplotlib.colormaps["tab10" if len(series) <= 10 else "tab20"]
    fig = Figure(figsize=(7.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, (x, y)) in enumerate(series.items()):
        xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if xs.shape != ys.shape or xs.ndim != 1:
            raise ValueError(f"series {name!r} needs as many y as x values (1-D), got {ys.shape} and {xs.shape}")
        ax.plot(xs, ys, linewidth=1.0, label=name, color=colors(i % colors.N))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path_or_buffer)


def bars_png(
    values: Sequence[float],
    labels: Sequence[str],
    path_or_buffer: str | IO[bytes],
    *,
    title: str,
    xlabel: str = "value",
    top: int = 15,
    ascending: bool = True,
) -> None:
    """Write a horizontal bar chart of the ``top`` best-ranked layers (smallest value
    first when ``ascending``, as for distances; NaN values are left out)."""
    v = np.asarray(values, dtype=np.float64)
    if len(labels) != v.size:
        raise ValueError(f"labels has {len(labels)} names for {v.size} values")
    keep = np.flatnonzero(np.isfinite(v))
    order = keep[np.argsort(v[keep], kind="stable")]
    if not ascending:
        order = order[::-1]
    order = order[:top]
    fig = Figure(figsize=(6.0, 1.0 + 0.3 * max(len(order), 1)))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(order))
    ax.barh(y, v[order], color="#3b6ea5")
    ax.set_yticks(y)
    ax.set_yticklabels([str(labels[i]) for i in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path_or_buffer)


def png_bytes(draw, *args, **kwargs) -> bytes:
    """Run a ``*_png`` function into memory and return the PNG bytes (for object stores)."""
    buf = io.BytesIO()
    draw(*args, buf, **kwargs)
    return buf.getvalue()


# ------------------------------------------------------------------------------ diagnostics

# Largest image side (cells) of a drawn transport plan; bigger plans are max-pooled.
_PLAN_CELLS = 400


def _check_labels(labels: Any, count: int, what: str) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ValueError(f"labels must be a list of {count} display names, got {type(labels).__name__}")
    if len(labels) != count:
        raise ValueError(f"labels has {len(labels)} names for {count} {what}")
    return [str(s) for s in labels]


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


def heatmap(run: Any, model: str, measure: str, *, method: str | None = None, max_ticks: int = 100) -> Figure:
    """A run's L×L matrix of one model under one measure (a name, or a key where the run has
    several variants of it) as a figure, with the boundaries of its grouping by ``method``
    (``segment`` or ``spectral``; default: the first the run made) drawn as lines.

    ``run``: a :class:`layergw.api.Run`."""
    key = run.key(model, measure)
    M = run.matrix(model, key)
    pairs = run.pairs(model, key)
    name, params = str(pairs["measure"].iloc[0]), str(pairs["params"].iloc[0])
    groups = run.groups()
    bounds: list[int] = []
    if len(groups):
        sel = groups[(groups["model"] == model) & (groups["measure"] == name)
                     & (groups["params"].isna() | (groups["params"] == params))]
        methods = list(dict.fromkeys(sel["method"]))
        if method is not None and method not in methods:
            raise ValueError(f"method must be one of the run's groupings of {model!r} {key} {methods}, got {method!r}")
        if methods:
            sel = sel[sel["method"] == (method or methods[0])]
            bounds = sorted(int(i) for i in sel.loc[sel["boundary"] == True, "layer_index"])  # noqa: E712
    displays = run.points(model).sort_values("layer_index")["display"].fillna("").tolist()
    labels = [d or str(layer) for d, layer in zip(displays, M.index)]
    return heatmap_figure(M.to_numpy(), labels, title=f"{model} — {key}", boundaries=bounds,
                          kind=str(pairs["kind"].iloc[0]), max_ticks=max_ticks, measure=name)
