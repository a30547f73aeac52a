"""The run report: one self-contained HTML page plus PNG heatmaps under ``report/``.

Everything is read from and written through the run's ResultStore, so a report can be
rebuilt from stored results anywhere (local folder, s3://, gs://) with
``layergw report RUN_URI``.
"""
from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import re
from typing import Any
from urllib.parse import quote

import numpy as np

from layergw import grouping, plots

log = logging.getLogger(__name__)

TOP_TARGETS = 10

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.4em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; max-width: 640px; } figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .85em; }
.warn { color: #a33; } .muted { color: #777; }
"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _slug(s: str) -> str:
    """A file-name-safe form of a model or measure name ("google/gemma-2b" -> "google_gemma-2b")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_") or "x"


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def _null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _table(header: list[str], rows: list[list[Any]], num: set[int] = frozenset()) -> str:
    out = ["<table><thead><tr>", *(f"<th>{_e(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>")
        for i, v in enumerate(r):
            cls = ' class="num"' if i in num and isinstance(v, (int, float, np.number)) else ""
            out.append(f"<td{cls}>{_e(_fmt(v))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _opt_table(store: Any, path: str) -> Any:
    return store.read_table(path).to_pandas() if store.exists(path) else None


def _opt_json(store: Any, path: str) -> Any:
    return store.read_json(path) if store.exists(path) else None


def _ordered(values: list[str], first: tuple[str, ...] = ("gw",)) -> list[str]:
    uniq = list(dict.fromkeys(v for v in values if not _null(v)))
    return [v for v in first if v in uniq] + sorted(v for v in uniq if v not in first)


def _pkey(v: Any) -> str:
    """A ``params`` cell as a string key; "" for null (a table written before it had params)."""
    return "" if _null(v) else str(v)


def _pvalue(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


class _MeasureVariants:
    """The run's measure variants, (name, params JSON): their labels, file names and order.

    A name with a single variant is labelled by the name alone; otherwise by the name plus
    the parameters that differ between its variants, e.g. ``gw (normalize=max)``. Rows of
    groups/targets tables with no params ("") are taken as the only variant of their name.
    """

    def __init__(self, variants: list[tuple[str, str]]):
        self.by_name: dict[str, list[str]] = {}
        for name, p in variants:
            if _null(name):
                continue
            known = self.by_name.setdefault(str(name), [])
            if p not in known:
                known.append(p)
        for known in self.by_name.values():
            known.sort()

    def resolve(self, name: str, p: str) -> str:
        """``p``, or for a row without params the name's only variant (else "")."""
        known = self.by_name.get(name, [])
        return known[0] if not p and len(known) == 1 else p

    def ordered(self, variants: list[tuple[str, str]]) -> list[tuple[str, str]]:
        present = set(variants)
        names = _ordered([n for n, _ in variants])
        return [(n, p) for n in names for p in sorted({p for m, p in present if m == n})]

    def unique(self, name: str) -> bool:
        return len(self.by_name.get(name, [])) <= 1

    def label(self, name: str, p: str) -> str:
        if self.unique(name):
            return name
        if not p:
            return f"{name} (params not recorded)"
        parsed = {q: self._parse(q) for q in self.by_name[name] if q}
        mine = parsed.get(p, self._parse(p))
        if mine is None:
            return f"{name} (params {self._hash(p)})"
        keys = set().union(*(d.keys() for d in parsed.values() if d is not None))
        differ = sorted(
            k for k in keys
            if len({json.dumps(d.get(k, None), sort_keys=True) if d is not None else None
                    for d in parsed.values()}) > 1
        )
        shown = [f"{k}={_pvalue(mine[k])}" for k in differ if k in mine]
        return f"{name} ({', '.join(shown)})" if shown else f"{name} (params {self._hash(p)})"

    def file_part(self, name: str, p: str) -> str:
        """``name``, plus a short hash of the params where the name has several variants."""
        return _slug(name) if self.unique(name) else f"{_slug(name)}-{self._hash(p)}"

    @staticmethod
    def _parse(p: str) -> dict | None:
        try:
            d = json.loads(p)
        except ValueError:
            return None
        return d if isinstance(d, dict) else None

    @staticmethod
    def _hash(p: str) -> str:
        return hashlib.sha256(p.encode("utf-8")).hexdigest()[:8]


def _with_pkey(df: Any, variants: "_MeasureVariants | None" = None) -> Any:
    """``df`` with a ``_p`` column: its params as a key, resolved to the only variant if null."""
    if df is None:
        return None
    raw = df["params"] if "params" in df.columns else [None] * len(df)
    keys = [_pkey(v) for v in raw]
    if variants is not None:
        keys = [variants.resolve(str(m), k) for m, k in zip(df["measure"], keys)]
    return df.assign(_p=keys)


def _layer_names(points: Any, pairs: Any, model: str) -> tuple[list[str], list[str]]:
    """(layer names, display names) of one model in layer_index order."""
    pts = points[points["model"] == model].sort_values("layer_index") if points is not None else None
    if pts is not None and len(pts):
        n = int(pts["layer_index"].max()) + 1
        layers = [f"#{i}" for i in range(n)]
        displays = list(layers)
        for r in pts.itertuples(index=False):
            layers[int(r.layer_index)] = str(r.layer)
            displays[int(r.layer_index)] = str(r.display) if not _null(r.display) else str(r.layer)
        return layers, displays
    # no points for this model: fall back to the names carried by the pair rows
    rows = pairs[(pairs["model_a"] == model) & (pairs["model_b"] == model)]
    names: dict[int, str] = {}
    for side in ("a", "b"):
        for i, name in zip(rows[f"layer_{side}_index"], rows[f"layer_{side}"]):
            names.setdefault(int(i), str(name))
    n = max(names) + 1 if names else 0
    layers = [names.get(i, f"#{i}") for i in range(n)]
    return layers, list(layers)


def _variants(rows: Any) -> list[tuple[Any, ...]]:
    """The (seed, checkpoint) combinations of within-model pair rows."""
    cols = ["seed_a", "checkpoint_a", "seed_b", "checkpoint_b"]
    seen = dict.fromkeys(
        tuple(None if _null(v) else v for v in t) for t in rows[cols].itertuples(index=False)
    )
    return list(seen)


def _variant_rows(rows: Any, v: tuple[Any, ...]) -> Any:
    mask = np.ones(len(rows), dtype=bool)
    for col, val in zip(["seed_a", "checkpoint_a", "seed_b", "checkpoint_b"], v):
        mask &= rows[col].isna().to_numpy() if val is None else (rows[col] == val).to_numpy()
    return rows[mask]


def _variant_label(v: tuple[Any, ...]) -> str:
    sa, ca, sb, cb = v
    a = f"seed {sa}, checkpoint {ca}"
    return a if (sa, ca) == (sb, cb) else f"{a} vs seed {sb}, checkpoint {cb}"


def _group_ranges(rows: Any, displays: list[str]) -> list[tuple[int, str]]:
    """(group, "first … last") for each contiguous run of layers along depth."""
    rows = rows.sort_values("layer_index")
    labels = rows["group"].to_numpy()
    idx = rows["layer_index"].to_numpy()
    names = [
        (str(d) if not _null(d) else (displays[i] if i < len(displays) else str(ly)))
        for i, d, ly in zip(idx, rows["display"], rows["layer"])
    ]
    out = []
    for first, last, g in grouping.contiguous_segments(labels):
        out.append((int(g), names[first] if first == last else f"{names[first]} … {names[last]}"))
    return out


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
    """Build ``report/index.html`` and its heatmaps from a run's stored results.

    Needs ``points.parquet`` and tiles under ``pairs/``; ``config.json``, ``run.json``,
    ``groups.parquet`` and ``targets.parquet`` are shown when present. Returns the URL
    of the page.
    """
    from layergw.results import PAIRS

    if not store.exists("points.parquet"):
        raise FileNotFoundError(f"no points.parquet under {store.url('')}; extract first")
    points = store.read_table("points.parquet").to_pandas()
    pairs_tbl = store.read_tables("pairs", schema=PAIRS)
    if pairs_tbl is None or pairs_tbl.num_rows == 0:
        raise FileNotFoundError(f"no pair tiles under {store.url('pairs')}; compare first")
    pairs = pairs_tbl.to_pandas()
    cross_tbl = store.read_tables("cross", schema=PAIRS)
    cross = _with_pkey(cross_tbl.to_pandas()) if cross_tbl is not None and cross_tbl.num_rows else None
    config = _opt_json(store, "config.json")
    run = _opt_json(store, "run.json")
    groups = _opt_table(store, "groups.parquet")
    series = _opt_json(store, "series.json") or {}
    targets = _opt_table(store, "targets.parquet")
    study, run_id = _title(config, run, pairs)

    # a measure variant is (measure, params): label them over the pair rows plus the
    # variants that groups/targets rows name explicitly, then give rows without params
    # (older tables) the only variant of their measure
    pairs = _with_pkey(pairs)
    groups, targets = _with_pkey(groups), _with_pkey(targets)
    seen = list(zip(pairs["measure"], pairs["_p"]))
    for extra in (groups, targets, cross):
        if extra is not None:
            seen += [(m, p) for m, p in zip(extra["measure"], extra["_p"]) if p]
    mv = _MeasureVariants(seen)
    groups, targets, cross = _with_pkey(groups, mv), _with_pkey(targets, mv), _with_pkey(cross, mv)

    within = pairs[pairs["model_a"] == pairs["model_b"]]
    models = list(dict.fromkeys([*points["model"].tolist(), *within["model_a"].tolist()]))
    body: list[str] = [f"<h1>{_e(study)} — run {_e(run_id)}</h1>"]
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
    body.append(_table(["run", "value"], summary, num={1}))
    body.extend(_models_section(store, models))
    toc = "".join(f'<li><a href="#model-{_e(_slug(m))}">{_e(m)}</a></li>' for m in models)
    if cross is not None:
        toc += '<li><a href="#cross">Cross-model comparisons</a></li>'
    body.append(f"<ul>{toc}</ul>")
    n_png = 0

    for model in models:
        body.append(f'<h2 id="model-{_e(_slug(model))}">Model {_e(model)}</h2>')
        layers, displays = _layer_names(points, pairs, model)
        rows_m = within[within["model_a"] == model]
        measures = mv.ordered(list(zip(rows_m["measure"], rows_m["_p"])))
        if not measures:
            body.append('<p class="muted">No pair results for this model.</p>')
        figs: list[str] = []
        health: list[list[Any]] = []
        for measure, p in measures:
            label = mv.label(measure, p)
            rows = rows_m[(rows_m["measure"] == measure) & (rows_m["_p"] == p)]
            n_err = int(rows["error"].notna().sum())
            n_nc = int((rows["converged"] == False).sum())  # noqa: E712
            if n_err or n_nc:
                health.append([label, n_err, n_nc, len(rows)])
            gsel = None
            if groups is not None:
                gsel = groups[(groups["model"] == model) & (groups["measure"] == measure) & (groups["_p"] == p)]
                if len(gsel):
                    first = gsel.iloc[0]
                    gsel = gsel[(gsel["method"] == first["method"]) & (gsel["selection"] == first["selection"])
                                & (gsel["seed"] == first["seed"])]
            bounds = sorted(int(i) for i in gsel.loc[gsel["boundary"] == True, "layer_index"]) if gsel is not None else []  # noqa: E712
            variants = _variants(rows)
            for v in variants:
                vrows = _variant_rows(rows, v) if len(variants) > 1 else rows
                name = f"heatmap-{_slug(model)}-{mv.file_part(measure, p)}"
                caption = label
                if len(variants) > 1:
                    name += "-" + _slug(f"s{v[0]}-{v[1]}-s{v[2]}-{v[3]}")
                    caption += f" ({_variant_label(v)})"
                png = f"{name}.png"
                try:
                    kind = grouping.pair_kind(vrows, model, measure)
                    M = grouping.pair_matrix(vrows, model, measure, len(layers))
                    data = plots.png_bytes(
                        plots.heatmap_png, M, displays,
                        title=f"{model} — {caption}", boundaries=bounds if len(variants) == 1 else (),
                        kind=kind, measure=measure,
                    )
                except ValueError as exc:
                    log.warning("report: model %s measure %s: %s", model, caption, exc)
                    figs.append(f'<figure><figcaption class="warn">{_e(caption)}: {_e(exc)}</figcaption></figure>')
                    continue
                store.write_bytes(f"report/{png}", data)
                n_png += 1
                figs.append(
                    f'<figure><img src="{_e(quote(png))}" alt="{_e(model)} {_e(caption)} heatmap">'
                    f"<figcaption>{_e(caption)} ({_e(kind)})"
                    f"{'; red lines: group boundaries' if bounds and len(variants) == 1 else ''}</figcaption></figure>"
                )
        if figs:
            body.append(f'<div class="figs">{"".join(figs)}</div>')
        if health:
            body.append("<h3>Failed and non-converged pairs</h3>")
            body.append(_table(["measure", "failed (error)", "not converged", "rows"], health, num={1, 2, 3}))
        body.extend(_groups_section(groups, model, displays, mv))
        body.extend(_targets_section(targets, model, mv))
        diag, n_diag = _diagnostics_section(store, model, displays, rows_m, mv)
        body.extend(diag)
        n_png += n_diag

    if cross is not None:
        figs, n_cross_png = _cross_section(store, cross, points, pairs, mv)
        body.append('<h2 id="cross">Cross-model comparisons</h2>')
        body.append('<p class="muted">Rows: layers of the first model; columns: layers of the second.</p>')
        body.append(f'<div class="figs">{"".join(figs)}</div>')
        n_png += n_cross_png

    skip_sections, n_skip_png = _skip_sections(store, models, points, pairs)
    body.extend(skip_sections)
    n_png += n_skip_png
    sections, n_series_png = _series_sections(store, series, within, groups, mv)
    body.extend(sections)
    n_png += n_series_png

    if run and isinstance(run, dict):
        timings = run.get("timings") or {}
        if isinstance(timings, dict) and timings:
            body.append("<h2>Timings</h2>")
            trows = [[k, _seconds(v)] for k, v in timings.items()]
            body.append(_table(["stage", "seconds"], trows, num={1}))
        meta = {k: v for k, v in run.items() if k != "timings"}
        if meta:
            body.append("<h2>Run</h2>")
            body.append(f"<pre>{_e(json.dumps(meta, indent=2, sort_keys=True, default=str))}</pre>")
    if config is not None:
        body.append("<h2>Config</h2>")
        body.append(f"<pre>{_e(json.dumps(config, indent=2, sort_keys=True, default=str))}</pre>")

    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(study)} — {_e(run_id)}</title><style>{CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    store.write_bytes("report/index.html", page.encode("utf-8"))
    url = store.url("report/index.html")
    log.info("report: %d models, %d heatmaps -> %s", len(models), n_png, url)
    return url


def _cross_section(store: Any, cross: Any, points: Any, pairs: Any, mv: _MeasureVariants) -> tuple[list[str], int]:
    """One rectangular heatmap per (model a, model b, measure variant) of the cross tiles."""
    import numpy as np

    figs, n_png = [], 0
    for (a, b), rows_ab in cross.groupby(["model_a", "model_b"], sort=False):
        _, disp_a = _layer_names(points, pairs, a)
        _, disp_b = _layer_names(points, pairs, b)
        for measure, p in mv.ordered(list(zip(rows_ab["measure"], rows_ab["_p"]))):
            rows = rows_ab[(rows_ab["measure"] == measure) & (rows_ab["_p"] == p)]
            caption = f"{a} × {b} — {mv.label(measure, p)}"
            M = np.full((len(disp_a), len(disp_b)), np.nan)
            ok = rows["value"].notna()
            M[rows.loc[ok, "layer_a_index"].astype(int), rows.loc[ok, "layer_b_index"].astype(int)] = rows.loc[ok, "value"]
            kind = str(rows["kind"].iloc[0])
            png = f"cross-{_slug(a)}-{_slug(b)}-{mv.file_part(measure, p)}.png"
            try:
                data = plots.png_bytes(plots.heatmap_png, M, disp_a, title=caption, kind=kind, measure=measure,
                                       col_labels=disp_b)
            except ValueError as exc:
                log.warning("report: cross %s: %s", caption, exc)
                figs.append(f'<figure><figcaption class="warn">{_e(caption)}: {_e(exc)}</figcaption></figure>')
                continue
            store.write_bytes(f"report/{png}", data)
            n_png += 1
            n_err = int(rows["error"].notna().sum())
            figs.append(f'<figure><img src="{_e(quote(png))}" alt="{_e(caption)} heatmap">'
                        f"<figcaption>{_e(caption)} ({_e(kind)}){f'; {n_err} failed pairs' if n_err else ''}"
                        "</figcaption></figure>")
    return figs, n_png


def _diagnostics_section(store: Any, model: str, displays: list[str], rows_m: Any,
                         mv: _MeasureVariants) -> tuple[list[str], int]:
    """The paper's diagnostics from the stored representations: intra-layer distance
    histograms with KL between consecutive layers (Figure 2), top-5-neighbour Jaccard
    overlap (Table 5), the distance of each layer to the previous one, and the GW transport
    plan across the sharpest step (Figure 11)."""
    import numpy as np

    from layergw import diagnostics, grouping, measures

    n_layers = len(displays)
    paths = [f"reps/{model}/{k}.npy" for k in range(n_layers)]
    if n_layers < 2 or not all(store.exists(p) for p in paths):
        return [], 0
    reps = [store.read_array(p).astype(np.float64) for p in paths]
    figs, n_png = [], 0

    def add(png: str, data: bytes, caption: str) -> None:
        nonlocal n_png
        store.write_bytes(f"report/{png}", data)
        n_png += 1
        figs.append(f'<figure><img src="{_e(quote(png))}" alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>')

    slug = _slug(model)
    try:
        hist = diagnostics.distance_histograms(reps)
        add(f"diag-{slug}-histograms.png",
            plots.png_bytes(diagnostics.distance_histograms_png, hist, displays, title=f"{model}: intra-layer distances"),
            "intra-layer pairwise distances (each layer divided by its mean) and KL between consecutive layers")
    except ValueError as exc:
        log.warning("report: %s histograms: %s", model, exc)
    try:
        J = diagnostics.neighbour_jaccard(reps, k=5)
        add(f"diag-{slug}-jaccard.png",
            plots.png_bytes(diagnostics.jaccard_png, J, displays, title=f"{model}: top-5-neighbour Jaccard overlap"),
            "top-5-neighbour Jaccard overlap between layers")
    except ValueError as exc:
        log.warning("report: %s Jaccard: %s", model, exc)
    gw_variants = [(m, p) for m, p in mv.ordered(list(zip(rows_m["measure"], rows_m["_p"]))) if m == "gw"]
    if gw_variants:
        measure, p = gw_variants[-1]
        sel = rows_m[(rows_m["measure"] == measure) & (rows_m["_p"] == p)]
        M = grouping.pair_matrix(sel, model, measure, n_layers)
        steps = diagnostics.consecutive_distances(M)
        label = mv.label(measure, p)
        add(f"diag-{slug}-consecutive.png",
            plots.png_bytes(diagnostics.line_png, steps, displays, title=f"{model}: {label} to the previous layer",
                            ylabel=label),
            f"{label} between each layer and the previous one")
        if np.isfinite(steps).any():
            i = int(np.nanargmax(steps)) + 1
            params = json.loads(p) if p else {}
            params = {k: v for k, v in params.items() if k in measures.parameters("gw")}
            comp = measures.get("gw", **{**params, "return_coupling": True}).compare(
                measures.get("gw", **params).prepare(reps[i - 1]), measures.get("gw", **params).prepare(reps[i]))
            add(f"diag-{slug}-plan.png",
                plots.png_bytes(diagnostics.transport_plan_png, comp.coupling,
                                title=f"{model}: GW plan {displays[i - 1]} → {displays[i]}"),
                f"GW transport plan across the largest step ({displays[i - 1]} → {displays[i]}, {label})")
    if not figs:
        return [], 0
    return ["<h3>Diagnostics</h3>", f'<div class="figs">{"".join(figs)}</div>'], n_png


def _skip_sections(store: Any, models: list[str], points: Any, pairs: Any) -> tuple[list[str], int]:
    """The skip-intervention check: the KL matrix and each measure's row-wise Spearman with it."""
    out, n_png = [], 0
    for model in models:
        if not store.exists(f"skip/{model}/agreement.json"):
            continue
        info = store.read_json(f"skip/{model}/agreement.json")
        out.append(f'<h2 id="skip-{_e(_slug(model))}">Skip intervention: {_e(model)}</h2>')
        out.append("<p class=\"muted\">KL(original ‖ skipped) of the next-token distribution when the residual "
                   "stream after layer i is fed into block j+1 (positions: "
                   f"{_e(info.get('positions'))}); each measure's layer matrix is compared with it row by row "
                   "(Spearman; similarities negated). Higher: the measure ranks layer pairs as their function does.</p>")
        if store.exists(f"skip/{model}/kl.npy"):
            _, displays = _layer_names(points, pairs, model)
            K = store.read_array(f"skip/{model}/kl.npy")
            if len(displays) == K.shape[0]:
                png = f"skip-{_slug(model)}-kl.png"
                store.write_bytes(f"report/{png}", plots.png_bytes(
                    plots.heatmap_png, K, displays, title=f"{model}: skip KL", kind="distance", measure="KL"))
                n_png += 1
                out.append(f'<div class="figs"><figure><img src="{_e(quote(png))}" alt="skip KL">'
                           "<figcaption>skip KL (nats)</figcaption></figure></div>")
        rows = [[r["measure"], r["mean"], r["sem"], r["rows_used"], r["rows_nan"]] for r in info.get("rows", [])]
        out.append(_table(["measure", "mean Spearman", "standard error", "rows used", "rows NaN"], rows, num={1, 2, 3, 4}))
    return out, n_png


def mean_offdiagonal(rows: Any) -> float:
    """Mean value over a model's stored pairs (i < j) with a value: how far apart its layers are."""
    vals = rows["value"].dropna()
    return float(vals.mean()) if len(vals) else float("nan")


def _series_sections(store: Any, series: dict, within: Any, groups: Any, mv: _MeasureVariants) -> tuple[list[str], int]:
    """Training dynamics (a model at several checkpoints: mean pairwise value against step and
    accuracy, the paper's Figures 6 and 7) and seed agreement (adjusted Rand index of the
    groups of the same model trained with different seeds)."""
    out: list[str] = []
    n_png = 0
    for entry, members in series.items():
        steps = [m for m in members if m.get("step") is not None]
        labels = {m["label"] for m in members}
        if len(steps) >= 2 and len(labels) >= 2:
            out.append(f'<h2 id="dynamics-{_e(_slug(entry))}">Training dynamics: {_e(entry)}</h2>')
            rows_e = within[within["model_a"].isin([m["model"] for m in steps])]
            table_rows = []
            figs = []
            for measure, p in mv.ordered(list(zip(rows_e["measure"], rows_e["_p"]))):
                label = mv.label(measure, p)
                sel = rows_e[(rows_e["measure"] == measure) & (rows_e["_p"] == p)]
                values = [mean_offdiagonal(sel[sel["model_a"] == m["model"]]) for m in steps]
                for m, v in zip(steps, values):
                    table_rows.append([label, m["model"], m["step"], m["metrics"].get("accuracy"),
                                       m["metrics"].get("f1"), v])
                for xkey, xlabel in (("step", "training step"), ("accuracy", "evaluation accuracy")):
                    xs = [m["step"] if xkey == "step" else m["metrics"].get("accuracy") for m in steps]
                    if any(x is None for x in xs):
                        continue
                    png = f"dynamics-{_slug(entry)}-{mv.file_part(measure, p)}-{xkey}.png"
                    data = plots.png_bytes(plots.curves_png, xs, {label: values}, title=f"{entry}: mean pairwise {label}",
                                           xlabel=xlabel, ylabel=f"mean {label} over layer pairs")
                    store.write_bytes(f"report/{png}", data)
                    n_png += 1
                    figs.append(f'<figure><img src="{_e(quote(png))}" alt="{_e(entry)} dynamics">'
                                f"<figcaption>{_e(label)} against {_e(xlabel)}</figcaption></figure>")
            out.append(f'<div class="figs">{"".join(figs)}</div>')
            out.append(_table(["measure", "model", "step", "accuracy", "F1", "mean pairwise value"], table_rows,
                              num={2, 3, 4, 5}))
        seeds = {}
        for m in members:
            seeds.setdefault(m["label"], []).append(m)
        agree = [ms for ms in seeds.values() if len({m["seed"] for m in ms}) >= 2]
        if agree and groups is not None:
            rows = _seed_agreement(agree, groups, mv)
            if rows:
                out.append(f'<h2 id="seeds-{_e(_slug(entry))}">Seed agreement: {_e(entry)}</h2>')
                out.append('<p class="muted">Adjusted Rand index between the groups found for each pair of '
                           "training seeds (1: the same grouping, about 0: chance).</p>")
                out.append(_table(["measure", "checkpoint", "seeds", "pairs", "mean ARI", "min ARI"], rows,
                                  num={3, 4, 5}))
    return out, n_png


def seed_ari(labels: list[list[int]]) -> list[float]:
    """Adjusted Rand index of every pair of groupings of the same layers."""
    from itertools import combinations

    from sklearn.metrics import adjusted_rand_score

    return [float(adjusted_rand_score(a, b)) for a, b in combinations(labels, 2)]


def _seed_agreement(agree: list[list[dict]], groups: Any, mv: _MeasureVariants) -> list[list[Any]]:
    rows = []
    for members in agree:
        ids = [m["model"] for m in members]
        g = groups[groups["model"].isin(ids)]
        for (measure, p), gm in g.groupby(["measure", "_p"], sort=False):
            labelings = []
            for mid in ids:
                one = gm[gm["model"] == mid].sort_values("layer_index")
                if len(one):
                    labelings.append(one["group"].astype(int).tolist())
            if len(labelings) < 2 or len({len(x) for x in labelings}) != 1:
                continue
            aris = seed_ari(labelings)
            rows.append([mv.label(measure, p), members[0]["label"], ", ".join(str(m["seed"]) for m in members),
                         len(aris), sum(aris) / len(aris), min(aris)])
    return rows


def _seconds(v: Any) -> Any:
    try:
        return round(float(v), 3)
    except (TypeError, ValueError):
        return v


def _groups_section(groups: Any, model: str, displays: list[str], mv: _MeasureVariants) -> list[str]:
    if groups is None:
        return []
    g = groups[groups["model"] == model]
    if not len(g):
        return []
    out = ["<h3>Groups</h3>"]
    keys = ["measure", "_p", "method", "selection", "seed"]
    for key, rows in g.groupby(keys, sort=False, dropna=False):
        measure, p, method, selection, seed = key
        first = rows.iloc[0]
        out.append(
            f"<p><b>{_e(mv.label(measure, p))}</b>: {_e(method)}, k = {_e(_fmt(first['k']))} "
            f"(selection {_e(selection)}; eigengap {_e(_fmt(first['k_eigengap']))}, "
            f"silhouette {_e(_fmt(first['k_silhouette']))}; seed {_e(_fmt(seed))})</p>"
        )
        out.append(_table(["group", "layers"], [[grp, rng] for grp, rng in _group_ranges(rows, displays)], num={0}))
        note = _outlier_note(rows, displays)
        if note:
            out.append(f"<p class=\"note\">{_e(note)}</p>")
    return out


def groups_summary(groups: Any) -> list[str]:
    """One line per model and measure variant of a GROUPS table: k, how it was chosen,
    the group sizes in depth order, and whether the split only isolates outliers."""
    if groups is None or not len(groups):
        return []
    df = groups.to_pandas() if hasattr(groups, "to_pandas") else groups
    df = _with_pkey(df)
    mv = _MeasureVariants(list(zip(df["measure"], df["_p"])))
    lines = []
    for (model, measure, p), rows in df.groupby(["model", "measure", "_p"], sort=False, dropna=False):
        rows = rows.sort_values("layer_index")
        first = rows.iloc[0]
        sizes = rows["group"].value_counts().sort_index().tolist()
        line = (f"{model} {mv.label(measure, p)}: k={_fmt(first['k'])} by {first['selection']} "
                f"(eigengap {_fmt(first['k_eigengap'])}, silhouette {_fmt(first['k_silhouette'])}), "
                f"sizes {'/'.join(map(str, sizes))}")
        if outlier_groups(rows["group"].to_numpy(), len(rows)):
            line += ", outlier split"
        lines.append(line)
    return lines


TRAINING_FACTS = (("final_train_acc", "train accuracy"), ("final_val_acc", "validation accuracy"),
                  ("final_test_acc", "test accuracy"), ("complete", "training complete"), ("epochs", "epochs"))


def _models_section(store: Any, models: list[str]) -> list[str]:
    """One row per model from its extraction manifest: family, points, n and how far its
    training got, so a grouping is read beside the accuracy of the model it came from."""
    manifests = [(m, _opt_json(store, f"reps/{m}/done.json")) for m in models]
    manifests = [(m, man, man.get("describe") or {}) for m, man in manifests if isinstance(man, dict)]
    if not manifests:
        return []
    facts = [(key, label) for key, label in TRAINING_FACTS if any(d.get(key) is not None for _, _, d in manifests)]
    rows = [[m, d.get("family"), len(man.get("points", [])), man.get("n"), *(_yes_no(d.get(k)) for k, _ in facts)]
            for m, man, d in manifests]
    header = ["model", "family", "points", "n", *(label for _, label in facts)]
    return ["<h2>Models</h2>", _table(header, rows, num=set(range(2, len(header))))]


def _yes_no(v: Any) -> Any:
    return ("yes" if v else "no") if isinstance(v, bool) else v


def outlier_groups(labels: Any, n_layers: int) -> list[int]:
    """Groups of at most 5% of the layers, in models of 20 layers or more.

    Spectral clustering on a "reverse" affinity often spends a group on one or a few of
    many layers whose distances to all others are extreme; such a split marks outliers,
    not a functional unit. In small models (a 12-block BERT) one layer can be a unit.
    """
    limit = _outlier_limit(n_layers)
    sizes = np.bincount(np.asarray(labels, dtype=int))
    return [int(g) for g, s in enumerate(sizes) if 0 < s <= limit]


def _outlier_limit(n_layers: int) -> int:
    return int(0.05 * n_layers) if n_layers >= 20 else 0


def _outlier_note(rows: Any, displays: list[str]) -> str:
    rows = rows.sort_values("layer_index")
    small = outlier_groups(rows["group"].to_numpy(), len(rows))
    if not small:
        return ""
    parts = []
    for g in small:
        sel = rows[rows["group"] == g]
        names = [str(d) if not _null(d) else str(ly) for d, ly in zip(sel["display"], sel["layer"])]
        parts.append(f"group {g} ({', '.join(names)})")
    return (f"{'; '.join(parts)}: at most {_outlier_limit(len(rows))} of {len(rows)} layers each; "
            "the clustering split off outliers here rather than dividing the network into units.")


def _targets_section(targets: Any, model: str, mv: _MeasureVariants) -> list[str]:
    if targets is None:
        return []
    t = targets[targets["model"] == model]
    if not len(t):
        return []
    out = ["<h3>Targets</h3>", f'<p class="muted">Layers ranked for each target, top {TOP_TARGETS}.</p>', '<div class="figs">']
    for (target, measure, p), rows in t.groupby(["target", "measure", "_p"], sort=False, dropna=False):
        rows = rows.assign(_r=rows["rank"].fillna(np.inf)).sort_values(["_r", "value"], kind="stable")
        top = rows.head(TOP_TARGETS)
        trs = [
            [None if _null(r["rank"]) else int(r["rank"]), r["display"] if not _null(r["display"]) else r["layer"], r["value"]]
            for _, r in top.iterrows()
        ]
        out.append(f"<div><p><b>{_e(target)}</b> ({_e(mv.label(measure, p))})</p>{_table(['rank', 'layer', 'value'], trs, num={0, 2})}</div>")
    out.append("</div>")
    return out
