"""The report's sections of one model: the Models table, groups, targets and diagnostics,
and the outlier flag of a grouping. Sections read stored tables and draw; they never solve."""
from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import numpy as np

from layergw import grouping, layout, plot
from layergw.report.html import esc, fmt, html_table, null, opt_json, opt_table, slug, yes_no
from layergw.report.variants import MeasureVariants, seed_variants, variant_label, variant_rows, with_pkey

log = logging.getLogger(__name__)


TOP_TARGETS = 10


def heatmaps_section(store: Any, model: str, rows_m: Any, groups: Any, layers: list[str], displays: list[str],
                     mv: MeasureVariants) -> tuple[list[str], int]:
    """One heatmap per measure variant (and per seed/checkpoint pairing where rows mix them), the
    groups' boundaries drawn as red lines, and a table of failed and non-converged pairs."""
    measures = mv.ordered(list(zip(rows_m["measure"], rows_m["_p"])))
    if not measures:
        return ['<p class="muted">No pair results for this model.</p>'], 0
    figs: list[str] = []
    health: list[list[Any]] = []
    n_png = 0
    for measure, p in measures:
        label = mv.label(measure, p)
        rows = rows_m[(rows_m["measure"] == measure) & (rows_m["_p"] == p)]
        n_err = int(rows["error"].notna().sum())
        n_nc = int((rows["converged"] == False).sum())  # noqa: E712
        if n_err or n_nc:
            health.append([label, n_err, n_nc, len(rows)])
        bounds = boundaries_of(groups, model, measure, p)
        variants = seed_variants(rows)
        for v in variants:
            vrows = variant_rows(rows, v) if len(variants) > 1 else rows
            name = f"heatmap-{slug(model)}-{mv.file_part(measure, p)}"
            caption = label
            if len(variants) > 1:
                name += "-" + slug(f"s{v[0]}-{v[1]}-s{v[2]}-{v[3]}")
                caption += f" ({variant_label(v)})"
            try:
                kind = grouping.pair_kind(vrows, model, measure)
                M = grouping.pair_matrix(vrows, model, measure, len(layers))
                data = plot.png_bytes(plot.heatmap_png, M, displays, title=f"{model} — {caption}",
                                       boundaries=bounds if len(variants) == 1 else (), kind=kind, measure=measure)
            except ValueError as exc:
                log.warning("report: model %s measure %s: %s", model, caption, exc)
                figs.append(f'<figure><figcaption class="warn">{esc(caption)}: {esc(exc)}</figcaption></figure>')
                continue
            store.write_bytes(layout.report_file(f"{name}.png"), data)
            n_png += 1
            figs.append(
                f'<figure class="heatmap"><img src="{esc(quote(name + ".png"))}" alt="{esc(model)} {esc(caption)} heatmap">'
                f"<figcaption>{esc(caption)} ({esc(kind)})"
                f"{'; red lines: group boundaries' if bounds and len(variants) == 1 else ''}</figcaption></figure>")
    out = [f'<div class="figs">{"".join(figs)}</div>'] if figs else []
    if health:
        out += ["<h3>Failed and non-converged pairs</h3>",
                html_table(["measure", "failed (error)", "not converged", "rows"], health, num={1, 2, 3})]
    return out, n_png


def boundaries_of(groups: Any, model: str, measure: str, p: str) -> list[int]:
    """The first layer of every group after the first, of one model's grouping under one variant."""
    if groups is None:
        return []
    sel = groups[(groups["model"] == model) & (groups["measure"] == measure) & (groups["_p"] == p)]
    if not len(sel):
        return []
    first = sel.iloc[0]
    sel = sel[(sel["method"] == first["method"]) & (sel["selection"] == first["selection"]) & (sel["seed"] == first["seed"])]
    return sorted(int(i) for i in sel.loc[sel["boundary"] == True, "layer_index"])  # noqa: E712


def group_ranges(rows: Any, displays: list[str]) -> list[tuple[int, str]]:
    """(group, "first … last") for each contiguous run of layers along depth."""
    rows = rows.sort_values("layer_index")
    labels = rows["group"].to_numpy()
    idx = rows["layer_index"].to_numpy()
    names = [
        (str(d) if not null(d) else (displays[i] if i < len(displays) else str(ly)))
        for i, d, ly in zip(idx, rows["display"], rows["layer"])
    ]
    out = []
    for first, last, g in grouping.contiguous_segments(labels):
        out.append((int(g), names[first] if first == last else f"{names[first]} … {names[last]}"))
    return out


def groups_section(groups: Any, model: str, displays: list[str], mv: MeasureVariants,
                   bootstrap: Any = None) -> list[str]:
    if groups is None:
        return []
    g = groups[groups["model"] == model]
    if not len(g):
        return []
    out = ["<h3>Groups</h3>"]
    keys = ["measure", "_p", "method", "selection", "seed"]
    for key, rows in g.groupby(keys, sort=False, dropna=False):
        measure, p, method, selection, seed = key
        out.append(f"<p><b>{esc(mv.label(measure, p))}</b>: {esc(method)}, {esc(_how(rows))}</p>")
        out.append(html_table(["group", "layers"], [[grp, rng] for grp, rng in group_ranges(rows, displays)], num={0}))
        if method == "segment" and bootstrap is not None:
            b = bootstrap[(bootstrap["model"] == model) & (bootstrap["measure"] == measure) & (bootstrap["_p"] == p)]
            if len(b):
                shares = ", ".join(f"{int(r.cut)} blocks: {r.share:.2f}" for r in b.sort_values("cut").itertuples())
                out.append(f'<p class="muted">Boundary confidence over {int(b["replicates"].iloc[0])} bootstrap '
                           f'replicates of the inputs ({int(b["points"].iloc[0])} points resampled): how '
                           f'often each cut recurs: {esc(shares)}</p>')
        note = _outlier_note(rows, displays)
        if note:
            out.append(f"<p class=\"note\">{esc(note)}</p>")
    return out


def _how(rows: Any) -> str:
    """k and how it was chosen: the eigengap and silhouette choices of spectral grouping, the
    boundary strengths of a segmentation."""
    first = rows.iloc[0]
    how = f"k={fmt(first['k'])} by {first['selection']}"
    if first["method"] == "segment":
        strengths = rows.sort_values("layer_index").loc[rows["boundary"] == True, "strength"]  # noqa: E712
        return how + (f" (boundary strengths {', '.join(f'{s:.2f}' for s in strengths)})" if len(strengths) else "")
    return how + f" (eigengap {fmt(first['k_eigengap'])}, silhouette {fmt(first['k_silhouette'])})"


def groups_summary(groups: Any) -> list[str]:
    """One line per model and measure variant of a GROUPS table: k, how it was chosen,
    the group sizes in depth order, and whether the split only isolates outliers."""
    if groups is None or not len(groups):
        return []
    df = groups.to_pandas() if hasattr(groups, "to_pandas") else groups
    df = with_pkey(df)
    mv = MeasureVariants(list(zip(df["measure"], df["_p"])))
    lines = []
    for (model, measure, p, method), rows in df.groupby(["model", "measure", "_p", "method"], sort=False,
                                                        dropna=False):
        rows = rows.sort_values("layer_index")
        sizes = rows["group"].value_counts().sort_index().tolist()
        line = f"{model} {mv.label(measure, p)} {method}: {_how(rows)}, sizes {'/'.join(map(str, sizes))}"
        if outlier_groups(rows["group"].to_numpy(), len(rows)):
            line += ", outlier split"
        lines.append(line)
    return lines


TRAINING_FACTS = (("train_accuracy", "train accuracy"), ("accuracy", "held-out accuracy"), ("split", "held out"),
                  ("complete", "training complete"), ("step", "steps"), ("sparsity", "zeroed heads / neurons"))


def _sparsity(metrics: dict) -> str | None:
    """A structured-sparse checkpoint's measured shares (``extra.sparsity``), as text."""
    sp = (metrics.get("extra") or {}).get("sparsity") if isinstance(metrics.get("extra"), dict) else None
    if not isinstance(sp, dict) or "heads" not in sp:
        return None
    return f"{sp['heads']['share']:.1%} / {sp['neurons']['share']:.1%}"


def models_section(store: Any, models: list[str]) -> list[str]:
    """One row per model from its extraction manifest: family, points, n and how far its
    training got, so a grouping is read beside the accuracy of the model it came from."""
    manifests = [(m, opt_json(store, layout.extracted(m))) for m in models]
    manifests = [(m, man, {"family": (man.get("describe") or {}).get("family"),
                           **((man.get("describe") or {}).get("metrics") or {})})
                 for m, man in manifests if isinstance(man, dict)]
    for _, _, d in manifests:
        d["sparsity"] = _sparsity(d)
    if not manifests:
        return []
    facts = [(key, label) for key, label in TRAINING_FACTS if any(d.get(key) is not None for _, _, d in manifests)]
    rows = [[m, d.get("family"), len(man.get("points", [])), _inputs(man), *(yes_no(d.get(k)) for k, _ in facts)]
            for m, man, d in manifests]
    header = ["model", "family", "points", "n", *(label for _, label in facts)]
    return ["<h2>Models</h2>", html_table(header, rows, num=set(range(2, len(header))))]


def _inputs(manifest: dict) -> Any:
    """n, with the split drawn from when it is not all inputs (``160 (train)``)."""
    split = manifest.get("inputs_split", "all")
    return manifest.get("n") if split == "all" else f"{manifest.get('n')} ({split})"


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
        names = [str(d) if not null(d) else str(ly) for d, ly in zip(sel["display"], sel["layer"])]
        parts.append(f"group {g} ({', '.join(names)})")
    return (f"{'; '.join(parts)}: at most {_outlier_limit(len(rows))} of {len(rows)} layers each; "
            "the clustering split off outliers here rather than dividing the network into units.")


def targets_section(targets: Any, model: str, mv: MeasureVariants) -> list[str]:
    if targets is None:
        return []
    t = targets[targets["model"] == model]
    if not len(t):
        return []
    out = ["<h3>Targets</h3>", f'<p class="muted">Layers ranked for each target, top {TOP_TARGETS}.</p>', '<div class="figs">']
    notes = []
    for (target, measure, p), rows in t.groupby(["target", "measure", "_p"], sort=False, dropna=False):
        rows = rows.assign(_r=rows["rank"].fillna(np.inf)).sort_values(["_r", "value"], kind="stable")
        top = rows.head(TOP_TARGETS)
        same = rows["same_classes"].eq(True) if "same_classes" in rows else rows["layer"].isna()  # older runs: none

        def name(i: Any, r: Any) -> str:
            shown = r["display"] if not null(r["display"]) else r["layer"]
            return f"{shown} ≡" if same[i] else shown

        trs = [[None if null(r["rank"]) else int(r["rank"]), name(i, r), r["value"]] for i, r in top.iterrows()]
        out.append(f"<div><p><b>{esc(target)}</b> ({esc(mv.label(measure, p))})</p>{html_table(['rank', 'layer', 'value'], trs, num={0, 2})}</div>")
        if same.any():
            listed = [r["display"] if not null(r["display"]) else r["layer"] for _, r in rows[same].iterrows()]
            notes.append(f"{esc(target)}: {esc(', '.join(listed))}")
    out.append("</div>")
    if notes:
        out.append('<p class="muted">≡ marks a point whose inputs fall into as many tight classes as the target '
                   'has: it is (nearly) isometric to the one-hot target by construction, whatever variable it '
                   'encodes, so GW cannot tell whether it computes the target; a probe can '
                   '(docs/findings/modsum.md, "What GW to a target can see"). Such points: '
                   + "; ".join(notes) + ".</p>")
    return out


def diagnostics_section(store: Any, model: str, displays: list[str], mv: MeasureVariants) -> tuple[list[str], int]:
    """The paper's diagnostics from the diagnose stage's tables: intra-layer distance histograms
    with KL between consecutive layers (Figure 2), top-5-neighbour Jaccard overlap (Table 5),
    the distance of each layer to the previous one, and the GW transport plan across the
    sharpest step (Figure 11)."""
    tables = {name: opt_table(store, layout.diagnostics(model, name)) for name in layout.DIAGNOSTIC_TABLES}
    L = len(displays)
    figs, n_png = [], 0

    def add(png: str, data: bytes, caption: str) -> None:
        nonlocal n_png
        store.write_bytes(layout.report_file(png), data)
        n_png += 1
        figs.append(f'<figure><img src="{esc(quote(png))}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>')

    name = slug(model)
    hist, steps = tables["histograms"], tables["steps"]
    if hist is not None and len(hist) and steps is not None:
        bins = int(hist["bin"].max()) + 1
        first = hist[hist["layer_index"] == 0].sort_values("bin")
        counts = np.zeros((L, bins), dtype=np.int64)
        counts[hist["layer_index"].to_numpy(), hist["bin"].to_numpy()] = hist["count"].to_numpy()
        result = {"edges": np.append(first["lo"].to_numpy(), first["hi"].iloc[-1]), "counts": counts,
                  "kl_consecutive": steps.sort_values("layer_index")["kl"].to_numpy(dtype=float),
                  "normalize": str(first["normalize"].iloc[0]), "epsilon": float(first["epsilon"].iloc[0])}
        add(f"diag-{name}-histograms.png",
            plot.png_bytes(plot.distance_histograms_png, result, displays, title=f"{model}: intra-layer distances"),
            "intra-layer pairwise distances (each layer divided by its mean) and KL between consecutive layers")
    jac = tables["jaccard"]
    if jac is not None and len(jac):
        J = np.eye(L)
        a, b = jac["layer_a_index"].to_numpy(), jac["layer_b_index"].to_numpy()
        J[a, b] = J[b, a] = jac["value"].to_numpy()
        k = int(jac["k"].iloc[0])
        add(f"diag-{name}-jaccard.png",
            plot.png_bytes(plot.jaccard_png, J, displays, title=f"{model}: top-{k}-neighbour Jaccard overlap"),
            f"top-{k}-neighbour Jaccard overlap between layers")
    if steps is not None and steps["value"].notna().any():
        steps = steps.sort_values("layer_index")
        label = mv.label(str(steps["measure"].dropna().iloc[0]), str(steps["params"].dropna().iloc[0]))
        add(f"diag-{name}-consecutive.png",
            plot.png_bytes(plot.line_png, steps["value"].to_numpy(dtype=float), displays,
                            title=f"{model}: {label} to the previous layer", ylabel=label),
            f"{label} between each layer and the previous one")
        plan = tables["plan"]
        if plan is not None and len(plan):
            i, j = int(plan["layer_a_index"].iloc[0]), int(plan["layer_b_index"].iloc[0])
            n = int(store.read_json(layout.extracted(model))["n"])
            T = np.zeros((n, n))
            T[plan["row"].to_numpy(), plan["col"].to_numpy()] = plan["mass"].to_numpy()
            add(f"diag-{name}-plan.png",
                plot.png_bytes(plot.transport_plan_png, T, title=f"{model}: GW plan {displays[i]} → {displays[j]}"),
                f"GW transport plan across the largest step ({displays[i]} → {displays[j]}, {label})")
    if not figs:
        return [], 0
    return ["<h3>Diagnostics</h3>", f'<div class="figs">{"".join(figs)}</div>'], n_png
