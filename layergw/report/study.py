"""The report's sections across models: cross-model heatmaps, the skip intervention,
training dynamics and seed agreement."""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import numpy as np

from layergw import layout, plot
from layergw.report.html import esc, html_table, opt_json, opt_table, slug
from layergw.report.variants import MeasureVariants, layer_names, with_pkey

log = logging.getLogger(__name__)


def cross_section(store: Any, cross: Any, points: Any, mv: MeasureVariants) -> tuple[list[str], int]:
    """One rectangular heatmap per (model a, model b, measure variant) of the cross tiles."""
    figs, n_png = [], 0
    for (a, b), rows_ab in cross.groupby(["model_a", "model_b"], sort=False):
        _, disp_a = layer_names(points, cross.iloc[:0], a)
        _, disp_b = layer_names(points, cross.iloc[:0], b)
        for measure, p in mv.ordered(list(zip(rows_ab["measure"], rows_ab["_p"]))):
            rows = rows_ab[(rows_ab["measure"] == measure) & (rows_ab["_p"] == p)]
            caption = f"{a} × {b} — {mv.label(measure, p)}"
            M = np.full((len(disp_a), len(disp_b)), np.nan)
            ok = rows["value"].notna()
            M[rows.loc[ok, "layer_a_index"].astype(int), rows.loc[ok, "layer_b_index"].astype(int)] = rows.loc[ok, "value"]
            kind = str(rows["kind"].iloc[0])
            png = f"cross-{slug(a)}-{slug(b)}-{mv.file_part(measure, p)}.png"
            try:
                data = plot.png_bytes(plot.heatmap_png, M, disp_a, title=caption, kind=kind, measure=measure,
                                       col_labels=disp_b)
            except ValueError as exc:
                log.warning("report: cross %s: %s", caption, exc)
                figs.append(f'<figure><figcaption class="warn">{esc(caption)}: {esc(exc)}</figcaption></figure>')
                continue
            store.write_bytes(layout.report_file(png), data)
            n_png += 1
            n_err = int(rows["error"].notna().sum())
            figs.append(f'<figure><img src="{esc(quote(png))}" alt="{esc(caption)} heatmap">'
                        f"<figcaption>{esc(caption)} ({esc(kind)}){f'; {n_err} failed pairs' if n_err else ''}"
                        "</figcaption></figure>")
    return figs, n_png


def skip_sections(store: Any, models: list[str], points: Any) -> tuple[list[str], int]:
    """The skip-intervention check: the KL matrix and each measure's row-wise Spearman with it."""
    out, n_png = [], 0
    for model in models:
        if not store.exists(layout.skip_agreement(model)):
            continue
        info = store.read_json(layout.skip_agreement(model))
        out.append(f'<h2 id="skip-{esc(slug(model))}">Skip intervention: {esc(model)}</h2>')
        out.append("<p class=\"muted\">KL(original ‖ skipped) of the next-token distribution when the residual "
                   "stream after layer i is fed into block j+1 (positions: "
                   f"{esc(info.get('positions'))}); each measure's layer matrix is compared with it row by row "
                   "(Spearman; similarities negated). Higher: the measure ranks layer pairs as their function does.</p>")
        if store.exists(layout.skip_kl(model)):
            _, displays = layer_names(points, None, model)
            K = store.read_array(layout.skip_kl(model))
            if len(displays) == K.shape[0]:
                png = f"skip-{slug(model)}-kl.png"
                store.write_bytes(layout.report_file(png), plot.png_bytes(
                    plot.heatmap_png, K, displays, title=f"{model}: skip KL", kind="distance", measure="KL"))
                n_png += 1
                out.append(f'<div class="figs"><figure><img src="{esc(quote(png))}" alt="skip KL">'
                           "<figcaption>skip KL (nats)</figcaption></figure></div>")
        rows = [[r["measure"], r["mean"], r["sem"], r["rows_used"], r["rows_nan"]] for r in info.get("rows", [])]
        out.append(html_table(["measure", "mean Spearman", "standard error", "rows used", "rows NaN"], rows, num={1, 2, 3, 4}))
    return out, n_png


def series_sections(store: Any, mv: MeasureVariants) -> tuple[list[str], int]:
    """Training dynamics from ``dynamics.parquet``: a model at several checkpoints, its mean
    pairwise value against step and accuracy (the paper's Figures 6 and 7)."""
    table = with_pkey(opt_table(store, layout.DYNAMICS), mv)
    if table is None or not len(table):
        series = opt_json(store, layout.SERIES) or {}
        if table is None and any(len([m for m in ms if m.get("step") is not None]) >= 2 for ms in series.values()):
            return [f'<p class="warn">{layout.SERIES} holds training series but {layout.DYNAMICS} is not here: run '
                    f'the study again to write it (its finished work is reused).</p>'], 0
        return [], 0
    out: list[str] = []
    n_png = 0
    for entry, rows in table.groupby("series", sort=False):
        out.append(f'<h2 id="dynamics-{esc(slug(entry))}">Training dynamics: {esc(entry)}</h2>')
        table_rows, figs = [], []
        for measure, p in mv.ordered(list(dict.fromkeys(zip(rows["measure"], rows["_p"])))):
            sel = rows[(rows["measure"] == measure) & (rows["_p"] == p)]
            label = mv.label(measure, p)
            table_rows += [[label, r.model, int(r.step), r.accuracy, r.f1, r.mean_value] for r in sel.itertuples()]
            for xkey, xlabel in (("step", "training step"), ("accuracy", "evaluation accuracy")):
                if sel[xkey].isna().any():
                    continue
                png = f"dynamics-{slug(entry)}-{mv.file_part(measure, p)}-{xkey}.png"
                data = plot.png_bytes(plot.curves_png, sel[xkey].tolist(), {label: sel["mean_value"].tolist()},
                                       title=f"{entry}: mean pairwise {label}", xlabel=xlabel,
                                       ylabel=f"mean {label} over layer pairs")
                store.write_bytes(layout.report_file(png), data)
                n_png += 1
                figs.append(f'<figure><img src="{esc(quote(png))}" alt="{esc(entry)} dynamics">'
                            f"<figcaption>{esc(label)} against {esc(xlabel)}</figcaption></figure>")
        out.append(f'<div class="figs">{"".join(figs)}</div>')
        out.append(html_table(["measure", "model", "step", "accuracy", "F1", "mean pairwise value"], table_rows,
                              num={2, 3, 4, 5}))
    return out, n_png


def agreement_section(store: Any, mv: MeasureVariants) -> list[str]:
    """Seed agreement from the stored summary: per seed set and grouping, how alike the seeds'
    groups are (adjusted Rand index) and where the boundaries lie across them."""
    summary = opt_table(store, layout.AGREEMENT_SUMMARY)
    if summary is None or not len(summary):
        return []
    out = []
    for name, rows in summary.groupby("seed_set", sort=False):
        out.append(f'<h2 id="seeds-{esc(slug(name))}">Seed agreement: {esc(name)}</h2>')
        out.append('<p class="muted">Adjusted Rand index between the groups of each pair of seeds (1: the same '
                   "grouping, about 0: chance); each boundary's mean layer index and spread over the seeds that "
                   "chose the most common k.</p>")
        table_rows = [[mv.label(r.measure, r.params if isinstance(r.params, str) else ""), r.method, r.seeds,
                       r.mean_ari, r.min_ari, r.modal_k, r.boundary_mean, r.boundary_spread]
                      for r in rows.itertuples()]
        out.append(html_table(["measure", "grouping", "seeds", "mean ARI", "min ARI", "most common k",
                               "boundaries (mean layer)", "spread"], table_rows, num={2, 3, 4, 5}))
    return out
