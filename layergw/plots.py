"""PNG figures for the report: L×L pair heatmaps with group boundaries, ranked bars.

Matplotlib runs headless (Agg canvas on an explicit Figure, no pyplot state), so this
works on cluster nodes without a display and never touches the global backend.
"""
from __future__ import annotations

import io
import logging
import math
from typing import IO, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

log = logging.getLogger(__name__)


def _save(fig: Figure, path_or_buffer: str | IO[bytes]) -> None:
    FigureCanvasAgg(fig)
    try:
        fig.savefig(path_or_buffer, format="png", dpi=100)
    finally:
        fig.clear()


def _tick_step(n: int, max_ticks: int) -> int:
    return max(1, math.ceil(n / max(1, max_ticks)))


def heatmap_png(
    M: np.ndarray,
    labels: Sequence[str],
    path_or_buffer: str | IO[bytes],
    *,
    title: str,
    boundaries: Sequence[int] = (),
    kind: str = "distance",
    max_ticks: int = 100,
    measure: str | None = None,
    col_labels: Sequence[str] | None = None,
) -> None:
    """Write an L×L matrix (or, with ``col_labels``, an L×K cross-model matrix) as a PNG heatmap.

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
    _save(fig, path_or_buffer)


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
) -> None:
    """Write one line per named curve over a shared x (training steps, accuracy, ...)."""
    xs = np.asarray(x, dtype=np.float64)
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for name, ys in curves.items():
        ys = np.asarray(ys, dtype=np.float64)
        if ys.size != xs.size:
            raise ValueError(f"curve {name!r} has {ys.size} values for {xs.size} x values")
        order = np.argsort(xs, kind="stable")
        ax.plot(xs[order], ys[order], marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(curves) > 1:
        ax.legend(fontsize=8)
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
