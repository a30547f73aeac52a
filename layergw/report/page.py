"""The report page: one self-contained HTML page plus PNG figures under ``report/``.

Everything is read from and written through the run's ResultStore, so a report can be
rebuilt from stored results anywhere (local folder, s3://, gs://) with
``layergw report RUN_URI``. It reads and draws only: no measure or solver runs here.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from layergw import layout
from layergw.report.ablations import ablation_sections
from layergw.report.html import CSS, esc, html_table, opt_json, opt_table, seconds, slug
from layergw.report.models import (
    diagnostics_section,
    groups_section,
    heatmaps_section,
    models_section,
    targets_section,
)
from layergw.report.study import agreement_section, cross_section, series_sections, skip_sections
from layergw.report.variants import MeasureVariants, layer_names, with_pkey

log = logging.getLogger(__name__)


def _title(config: Any, run: Any, pairs: Any) -> tuple[str, str]:
    def pick(*keys: str) -> str:
        for src in (run, config):
            if isinstance(src, dict):
                for k in keys:
                    if src.get(k):
                        return str(src[k])
        return ""

    study = pick("study", "name")
    run_id = pick("run_id", "id")
    if pairs is not None and len(pairs):
        if not study and pairs["study"].notna().any():
            study = str(pairs["study"].dropna().iloc[0])
        if not run_id and pairs["run_id"].notna().any():
            run_id = str(pairs["run_id"].dropna().iloc[0])
    return study or "study", run_id or "run"


def build_report(store: Any) -> str:
    """Build ``report/index.html`` and its figures from a run's stored results; the page's URL.

    Needs ``points.parquet`` and tiles under ``pairs/``; the config, run status, groups,
    targets, diagnostics, cross tiles, skip results and series are shown when present.
    """
    from layergw.results import PAIRS

    if not store.exists(layout.POINTS):
        raise FileNotFoundError(f"no {layout.POINTS} under {store.url('')}; extract first")
    points = store.read_table(layout.POINTS).to_pandas()
    pairs_tbl = store.read_tables(layout.PAIRS_DIR, schema=PAIRS)
    if pairs_tbl is None or pairs_tbl.num_rows == 0:
        raise FileNotFoundError(f"no pair tiles under {store.url(layout.PAIRS_DIR)}; compare first")
    pairs = pairs_tbl.to_pandas()
    cross_tbl = store.read_tables(layout.CROSS_DIR, schema=PAIRS)
    cross = with_pkey(cross_tbl.to_pandas()) if cross_tbl is not None and cross_tbl.num_rows else None
    config = opt_json(store, layout.CONFIG)
    run = opt_json(store, layout.RUN)
    groups = opt_table(store, layout.GROUPS)
    series = opt_json(store, layout.SERIES) or {}
    targets = opt_table(store, layout.TARGETS)
    bootstrap = opt_table(store, layout.BOOTSTRAP)
    study, run_id = _title(config, run, pairs)

    # a measure variant is (measure, params): label them over the pair rows plus the
    # variants that groups/targets rows name explicitly, then give rows without params
    # (older tables) the only variant of their measure
    pairs = with_pkey(pairs)
    groups, targets, bootstrap = with_pkey(groups), with_pkey(targets), with_pkey(bootstrap)
    seen = list(zip(pairs["measure"], pairs["_p"]))
    for extra in (groups, targets, cross):
        if extra is not None:
            seen += [(m, p) for m, p in zip(extra["measure"], extra["_p"]) if p]
    mv = MeasureVariants(seen)
    groups, targets, cross = with_pkey(groups, mv), with_pkey(targets, mv), with_pkey(cross, mv)

    within = pairs[pairs["model_a"] == pairs["model_b"]]
    models = list(dict.fromkeys([*points["model"].tolist(), *within["model_a"].tolist()]))
    body: list[str] = [f"<h1>{esc(study)} — run {esc(run_id)}</h1>", _summary(pairs, cross, models, mv)]
    body.extend(models_section(store, models))
    toc = "".join(f'<li><a href="#model-{esc(slug(m))}">{esc(m)}</a></li>' for m in models)
    if cross is not None:
        toc += '<li><a href="#cross">Cross-model comparisons</a></li>'
    body.append(f"<ul>{toc}</ul>")
    n_png = 0
    for model in models:
        layers, displays = layer_names(points, pairs, model)
        rows_m = within[within["model_a"] == model]
        heatmaps, n_heat = heatmaps_section(store, model, rows_m, groups, layers, displays, mv)
        diagnostics, n_diag = diagnostics_section(store, model, displays, mv)
        n_png += n_heat + n_diag
        parts = [f"<h2>Model {esc(model)}</h2>", *heatmaps, *groups_section(groups, model, displays, mv, bootstrap),
                 *targets_section(targets, model, mv), *diagnostics]
        body.append(f'<section class="model" id="model-{esc(slug(model))}">' + "\n".join(parts) + "</section>")
    if cross is not None:
        figs, n_cross_png = cross_section(store, cross, points, pairs, mv)
        body.append('<h2 id="cross">Cross-model comparisons</h2>')
        body.append('<p class="muted">Rows: layers of the first model; columns: layers of the second.</p>')
        body.append(f'<div class="figs">{"".join(figs)}</div>')
        n_png += n_cross_png
    for sections, n in (ablation_sections(store, points, groups, mv), skip_sections(store, models, points, pairs),
                        series_sections(store, series, within, mv), (agreement_section(store, mv), 0)):
        body.extend(sections)
        n_png += n
    body.extend(_run_sections(run, config))
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(study)} — {esc(run_id)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    store.write_bytes(layout.REPORT_PAGE, page.encode("utf-8"))
    url = store.url(layout.REPORT_PAGE)
    log.info("report: %d models, %d figures -> %s", len(models), n_png, url)
    return url


def _summary(pairs: Any, cross: Any, models: list[str], mv: MeasureVariants) -> str:
    n_cross = int((pairs["model_a"] != pairs["model_b"]).sum())
    summary = [
        ["models", len(models)],
        ["measures", ", ".join(mv.label(n, p) for n, p in mv.ordered(list(zip(pairs["measure"], pairs["_p"]))))],
        ["pair rows", len(pairs)],
        ["failed pairs (error set)", int(pairs["error"].notna().sum())],
        ["non-converged pairs", int((pairs["converged"] == False).sum())],  # noqa: E712 (null is not False)
    ]
    if n_cross:
        summary.append(["cross-model pair rows under pairs/ (not drawn)", n_cross])
    if cross is not None:
        summary.append(["cross-model pair rows", len(cross)])
    return html_table(["run", "value"], summary, num={1})


def _run_sections(run: Any, config: Any) -> list[str]:
    """Timings (the report's own time is left out: a rebuilt page equals the first), the run
    status and the config."""
    out = []
    if run and isinstance(run, dict):
        timings = {k: v for k, v in (run.get("timings") or {}).items() if k != "report"}
        if timings:
            out.append("<h2>Timings</h2>")
            out.append(html_table(["stage", "seconds"], [[k, seconds(v)] for k, v in timings.items()], num={1}))
        meta = {k: v for k, v in run.items() if k != "timings"}
        if meta:
            out.append("<h2>Run</h2>")
            out.append(f"<pre>{esc(json.dumps(meta, indent=2, sort_keys=True, default=str))}</pre>")
    if config is not None:
        out.append("<h2>Config</h2>")
        out.append(f"<pre>{esc(json.dumps(config, indent=2, sort_keys=True, default=str))}</pre>")
    return out
