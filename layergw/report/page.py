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
from layergw.report.html import CSS, esc, html_table, null, opt_json, opt_table, seconds, slug
from layergw.report.models import (
    diagnostics_section,
    groups_section,
    heatmaps_section,
    models_section,
    targets_section,
)
from layergw.report.study import (
    agreement_section,
    cross_section,
    series_sections,
    skip_sections,
)
from layergw.report.variants import MeasureVariants, layer_names, with_pkey

log = logging.getLogger(__name__)


def _title(config: Any, run: Any, row: Any) -> tuple[str, str]:
    """The study and run id: from run.json or config.json, else from a pair row."""
    def pick(*keys: str) -> str:
        for src in (run, config):
            if isinstance(src, dict):
                for k in keys:
                    if src.get(k):
                        return str(src[k])
        return ""

    study = pick("study", "name")
    run_id = pick("run_id", "id")
    if row is not None:
        study = study or ("" if null(row["study"]) else str(row["study"]))
        run_id = run_id or ("" if null(row["run_id"]) else str(row["run_id"]))
    return study or "study", run_id or "run"


def _model_pairs(store: Any, prefix: str, mv: MeasureVariants | None = None) -> Any:
    """One model's (or one cross pair's) stored pair rows with their variant key, or None."""
    from layergw.results import PAIRS

    table = store.read_tables(prefix, schema=PAIRS)
    if table is None or table.num_rows == 0:
        return None
    return with_pkey(table.to_pandas(), mv)


def _cross_prefixes(store: Any) -> list[str]:
    """``cross/<a>/<b>`` of every cross pair with stored tiles."""
    return sorted({"/".join(p.split("/")[:3]) for p in store.list_files(layout.CROSS_DIR, ".parquet")})


def build_report(store: Any) -> str:
    """Build ``report/index.html`` and its figures from a run's stored results; the page's URL.

    Needs ``points.parquet`` and tiles under ``pairs/``; the config, run status, groups,
    targets, diagnostics, cross tiles, skip results, ablations and series are shown when
    present. Pair tables are read one model at a time, so the driver's memory does not grow
    with the number of models.
    """
    if not store.exists(layout.POINTS):
        raise FileNotFoundError(f"no {layout.POINTS} under {store.url('')}; extract first")
    points = store.read_table(layout.POINTS).to_pandas()
    models = list(dict.fromkeys(points["model"].tolist()))
    config = opt_json(store, layout.CONFIG)
    run = opt_json(store, layout.RUN)
    groups = with_pkey(opt_table(store, layout.GROUPS))
    targets = with_pkey(opt_table(store, layout.TARGETS))
    bootstrap = with_pkey(opt_table(store, layout.BOOTSTRAP))

    # pass 1, model by model: the measure variants (labels depend on every variant of a name),
    # the counts of the summary, the study and run id
    seen, counts, first = [], {"rows": 0, "errors": 0, "not_converged": 0, "cross": 0}, None
    for prefix in [f"{layout.PAIRS_DIR}/{m}" for m in models] + _cross_prefixes(store):
        rows = _model_pairs(store, prefix)
        if rows is None:
            continue
        first = rows.iloc[0] if first is None else first
        seen += list(dict.fromkeys(zip(rows["measure"], rows["_p"])))
        if prefix.startswith(layout.CROSS_DIR):
            counts["cross"] += len(rows)
            continue
        counts["rows"] += len(rows)
        counts["errors"] += int(rows["error"].notna().sum())
        counts["not_converged"] += int((rows["converged"] == False).sum())  # noqa: E712 (null is not False)
    if first is None:
        raise FileNotFoundError(f"no pair tiles under {store.url(layout.PAIRS_DIR)}; compare first")
    for extra in (groups, targets):
        if extra is not None:
            seen += [(m, p) for m, p in zip(extra["measure"], extra["_p"]) if p]
    mv = MeasureVariants(seen)
    groups, targets, bootstrap = with_pkey(groups, mv), with_pkey(targets, mv), with_pkey(bootstrap, mv)
    study, run_id = _title(config, run, first)

    body: list[str] = [f"<h1>{esc(study)} — run {esc(run_id)}</h1>", _summary(counts, models, mv, seen)]
    body.extend(models_section(store, models))
    crosses = _cross_prefixes(store)
    toc = "".join(f'<li><a href="#model-{esc(slug(m))}">{esc(m)}</a></li>' for m in models)
    if crosses:
        toc += '<li><a href="#cross">Cross-model comparisons</a></li>'
    body.append(f"<ul>{toc}</ul>")
    n_png = 0
    # pass 2, model by model: heatmaps, groups, targets, diagnostics
    for model in models:
        rows_m = _model_pairs(store, f"{layout.PAIRS_DIR}/{model}", mv)
        if rows_m is None:
            rows_m = with_pkey(_empty_pairs())
        rows_m = rows_m[rows_m["model_a"] == rows_m["model_b"]]
        layers, displays = layer_names(points, rows_m, model)
        heatmaps, n_heat = heatmaps_section(store, model, rows_m, groups, layers, displays, mv)
        diagnostics, n_diag = diagnostics_section(store, model, displays, mv)
        n_png += n_heat + n_diag
        parts = [f"<h2>Model {esc(model)}</h2>", *heatmaps, *groups_section(groups, model, displays, mv, bootstrap),
                 *targets_section(targets, model, mv), *diagnostics]
        body.append(f'<section class="model" id="model-{esc(slug(model))}">' + "\n".join(parts) + "</section>")
    if crosses:
        figs = []
        for prefix in crosses:
            f, n = cross_section(store, _model_pairs(store, prefix, mv), points, mv)
            figs += f
            n_png += n
        body.append('<h2 id="cross">Cross-model comparisons</h2>')
        body.append('<p class="muted">Rows: layers of the first model; columns: layers of the second.</p>')
        body.append(f'<div class="figs">{"".join(figs)}</div>')
    for sections, n in (ablation_sections(store, mv), skip_sections(store, models, points),
                        series_sections(store, mv), (agreement_section(store, mv), 0)):
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


def _empty_pairs() -> Any:
    from layergw.results import PAIRS

    return PAIRS.empty_table().to_pandas()


def _summary(counts: dict, models: list[str], mv: MeasureVariants, seen: list[tuple[str, str]]) -> str:
    summary = [
        ["models", len(models)],
        ["measures", ", ".join(mv.label(n, p) for n, p in mv.ordered(seen))],
        ["pair rows", counts["rows"]],
        ["failed pairs (error set)", counts["errors"]],
        ["non-converged pairs", counts["not_converged"]],
    ]
    if counts["cross"]:
        summary.append(["cross-model pair rows", counts["cross"]])
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
