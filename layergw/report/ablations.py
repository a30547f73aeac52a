"""The report's ablation sections: accuracy against kept depth (pruning) and against the first
trained block (freezing) with every grouping's boundaries marked, the paper's Tables 6 and 7
in the same form, the layer-drop baselines, the prune plan, and which measure's groups
predict the accuracy knees best. Drawn from the tables the ablate stage writes; nothing here
recomputes them."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from layergw import layout, plot
from layergw.interventions.ablate import TOLERANCE
from layergw.report.html import esc, html_table, opt_table, slug
from layergw.report.variants import MeasureVariants, with_pkey


def _mean_std(mean: float, std: float, count: int) -> str:
    return f"{mean:.3f} ± {std:.3f}" if count > 1 else f"{mean:.3f}"


def _cut_at(marks: dict[str, list[int]], blocks: int) -> str:
    """The groupings with a boundary after ``blocks`` whole blocks (the cut that keeps or
    freezes them), or an empty cell."""
    return ", ".join(name for name, cuts in marks.items() if blocks in cuts)


def ablation_sections(store: Any, mv: MeasureVariants) -> tuple[list[str], int]:
    """Every model's ablation section and the measure ranking across them; (html parts, PNG count).
    Drawn from the tables the ablate stage wrote (``layout.ABLATION_TABLES``)."""
    if not store.exists(layout.ABLATIONS):
        return [], 0
    tables = {name: opt_table(store, path) for name, path in layout.ABLATION_TABLES.items()}
    if any(t is None for t in tables.values()):
        missing = [layout.ABLATION_TABLES[n] for n, t in tables.items() if t is None]
        return [f'<p class="warn">{layout.ABLATIONS} is here but {", ".join(missing)} are not: run the study '
                f'again to write them (its finished cells are reused).</p>'], 0
    summary, knees = tables["summary"], tables["knees"]
    plans = with_pkey(tables["prune_plan"], mv).rename(columns={"_p": "pkey"})
    out: list[str] = []
    n_png = 0
    for model in summary["model"].unique():
        parts, n = _model_section(store, summary, model, knees[knees["model"] == model].iloc[0],
                                  plans[plans["model"] == model], mv)
        out += parts
        n_png += n
    ranking = with_pkey(tables["measure_ranking"], mv).rename(columns={"_p": "pkey"})
    if len(ranking):
        out.append('<h2 id="measure-ranking">Which measure predicts the ablations</h2>')
        out.append(f'<p class="muted">Each grouping proposes a prune (keep the blocks before its last group) and a '
                   f'freeze (freeze its first group). Knee: the smallest kept depth (pruning, first blocks) or the '
                   f'largest frozen depth (freezing) whose mean accuracy stays within {TOLERANCE} of the full model. '
                   f'Distance: blocks between a proposal and the knee, averaged over models and both ablations '
                   f'(lower is better); accuracy lost: full model minus the proposal.</p>')
        rows = [[mv.label(r.measure, r.pkey), r.method, r.models, round(r.distance, 2),
                 None if r.accuracy_lost != r.accuracy_lost else round(r.accuracy_lost, 3)]
                for r in ranking.itertuples()]
        out.append(html_table(["measure", "grouping", "models", "mean distance to the knee (blocks)",
                               "mean accuracy lost"], rows, num={2, 3, 4}))
    return out, n_png


def _known(x: Any) -> bool:
    return x is not None and x == x


def _model_section(store: Any, summary: Any, model: str, knee: Any, plans: Any,
                   mv: MeasureVariants) -> tuple[list[str], int]:
    s = summary[summary["model"] == model]
    n_blocks = int(s["n_blocks"].iloc[0])
    show = lambda k: int(k) if _known(k) else None  # noqa: E731
    out = [f'<h2 id="ablations-{esc(slug(model))}">Ablations: {esc(model)}</h2>',
           f'<p class="muted">{n_blocks} blocks; held-out accuracy, mean ± standard deviation over seeds. '
           f'Knees (within {TOLERANCE} of the full model): prune to {show(knee.prune_knee)}, freeze up to '
           f'{show(knee.freeze_knee)}.</p>']
    if _known(knee.full_checkpoint) and _known(knee.full_full):
        diff = float(knee.full_difference)
        change = "gains" if diff > 0 else "loses"
        if not knee.full_required:
            verdict = (f"the checkpoint did not reach its training goal, so N = {n_blocks} need not match it: the "
                       f"ablation recipe's fine-tuning {change} {abs(diff):.3f}; the knees are read "
                       f"against N = {n_blocks}")
        elif knee.full_holds:
            verdict = (f"within {max(float(knee.full_spread), TOLERANCE):.3f} (the seed spread or {TOLERANCE}): "
                       f"the grid reproduces the checkpoint")
        else:
            verdict = (f"more than the seed spread and {TOLERANCE}: the ablation recipe "
                       f"{'trains the model further than its checkpoint was' if diff > 0 else 'loses accuracy the checkpoint had'}"
                       f", so the knees are read against N = {n_blocks}")
        out.append(f'<p>The checkpoint as trained: {float(knee.full_checkpoint):.3f}. Every block kept and '
                   f'fine-tuned (N = {n_blocks}): {_mean_std(float(knee.full_full), float(knee.full_spread), int(knee.full_seeds))}, '
                   f'{diff:+.3f}, {verdict}.</p>')
    marks = {f"{mv.label(r.measure, r.pkey)} {r.method}": json.loads(r.cuts) for r in plans.itertuples()
             if json.loads(r.cuts)}
    n_png = 0
    prune = s[s["ablation"] == "prune"]
    if len(prune):
        selectors = list(dict.fromkeys(prune["selector"]))
        table = {(int(r.kept_blocks), r.selector): _mean_std(r.mean, r.std, int(r.count)) for r in prune.itertuples()}
        depths = sorted({int(n) for n in prune["kept_blocks"]}, reverse=True)
        out.append("<h3>Pruning (the paper's Table 7): keep N blocks, a fresh classifier, fine-tune</h3>")
        out.append(html_table(["kept blocks N", *selectors, "group boundary after block N"],
                              [[n, *(table.get((n, sel), "") for sel in selectors), _cut_at(marks, n)]
                               for n in depths], num={0}))
        curves = {sel: [prune[(prune["selector"] == sel) & (prune["kept_blocks"] == n)]["mean"].mean()
                        for n in sorted(depths)] for sel in selectors}
        png = f"ablation-{slug(model)}-prune.png"
        store.write_bytes(layout.report_file(png), plot.png_bytes(
            plot.curves_png, sorted(depths), curves, title=f"{model}: pruning", xlabel="kept blocks N",
            ylabel="held-out accuracy", marks=marks))
        out.append(f'<div class="figs"><figure><img src="{esc(quote(png))}" alt="pruning"><figcaption>accuracy '
                   f'against kept depth; dashed lines: group boundaries</figcaption></figure></div>')
        n_png += 1
    freeze = s[s["ablation"] == "freeze"]
    if len(freeze):
        freeze = freeze.sort_values("first_trained_block")
        out.append("<h3>Freezing (the paper's Table 6): blocks before k and the embeddings frozen</h3>")
        out.append(html_table(["frozen blocks k", "accuracy", "group boundary after block k"],
                              [[int(r.first_trained_block), _mean_std(r.mean, r.std, int(r.count)),
                                _cut_at(marks, int(r.first_trained_block))] for r in freeze.itertuples()], num={0}))
        png = f"ablation-{slug(model)}-freeze.png"
        store.write_bytes(layout.report_file(png), plot.png_bytes(
            plot.curves_png, [int(k) for k in freeze["first_trained_block"]], {"freeze": list(freeze["mean"])},
            title=f"{model}: freezing", xlabel="frozen blocks k", ylabel="held-out accuracy", marks=marks))
        out.append(f'<div class="figs"><figure><img src="{esc(quote(png))}" alt="freezing"><figcaption>accuracy '
                   f'against frozen depth; dashed lines: group boundaries</figcaption></figure></div>')
        n_png += 1
    rows = [[mv.label(r.measure, r.pkey), r.method, int(r.proposed_prune),
             f">= {r.threshold:.3f} (within {TOLERANCE} of the full model)",
             _mean_std(r.measured, r.spread, 2 if r.spread else 1), "yes" if r.holds else "no",
             ", ".join(f"{sel} {acc:.3f}" for sel, acc in sorted(json.loads(r.baselines).items())) or "–"]
            for r in plans.itertuples() if _known(r.measured)]
    if rows:
        out.append("<h3>Prune plan</h3>")
        out.append('<p class="muted">Each grouping predicts that keeping the blocks before its last group keeps the '
                   'full model\'s accuracy; the grid measured it, beside the baselines at the same depth.</p>')
        out.append(html_table(["measure", "grouping", "N", "predicted", "measured", "holds", "baselines at N"],
                              rows, num={2}))
    proposed = [[mv.label(r.measure, r.pkey), r.method, int(r.proposed_prune), int(r.proposed_freeze)]
                for r in plans.itertuples()]
    if proposed:
        out.append(html_table(["measure", "grouping", "proposed prune N", "proposed freeze k"], proposed, num={2, 3}))
    return out, n_png
