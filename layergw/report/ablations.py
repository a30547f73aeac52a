"""The report's ablation sections: accuracy against kept depth (pruning) and against the first
trained block (freezing) with every grouping's boundaries marked, the paper's Tables 6 and 7
in the same form, the layer-drop baselines, the prune plan, and which measure's groups
predict the accuracy knees best. Read from ``ablations.parquet`` and ``groups.parquet``."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from layergw import layout, plots
from layergw.interventions.ablate import (
    TOLERANCE,
    accuracy_summary,
    boundary_cuts,
    full_check,
    goal_reached,
    knees,
    measure_ranking,
    proposals,
    prune_plan,
)
from layergw.report.html import esc, html_table, slug
from layergw.report.variants import MeasureVariants


def _mean_std(mean: float, std: float, count: int) -> str:
    return f"{mean:.3f} ± {std:.3f}" if count > 1 else f"{mean:.3f}"


def _cut_at(marks: dict[str, list[int]], blocks: int) -> str:
    """The groupings with a boundary after ``blocks`` whole blocks (the cut that keeps or
    freezes them), or an empty cell."""
    return ", ".join(name for name, cuts in marks.items() if blocks in cuts)


def ablation_sections(store: Any, points: Any, groups: Any, mv: MeasureVariants) -> tuple[list[str], int]:
    """Every model's ablation section and the measure ranking across them; (html parts, PNG count)."""
    if not store.exists(layout.ABLATIONS):
        return [], 0
    table = store.read_table(layout.ABLATIONS).to_pandas()
    summary = accuracy_summary(table)
    out: list[str] = []
    n_png = 0
    all_cuts = {}
    for model in summary["model"].unique():
        depths = {int(r.layer_index): float(r.depth) for r in points[points["model"] == model].itertuples()
                  if r.depth == r.depth}
        cuts = boundary_cuts(groups[groups["model"] == model], depths) if groups is not None and depths else {}
        all_cuts[model] = cuts
        parts, n = _model_section(store, summary, model, cuts, mv, goal_reached(table, model))
        out += parts
        n_png += n
    ranking, _ = measure_ranking(summary, all_cuts)
    if len(ranking):
        out.append('<h2 id="measure-ranking">Which measure predicts the ablations</h2>')
        out.append(f'<p class="muted">Each grouping proposes a prune (keep the blocks before its last group) and a '
                   f'freeze (freeze its first group). Knee: the smallest kept depth (pruning, first blocks) or the '
                   f'largest frozen depth (freezing) whose mean accuracy stays within {TOLERANCE} of the full model. '
                   f'Distance: blocks between a proposal and the knee, averaged over models and both ablations '
                   f'(lower is better); accuracy lost: full model minus the proposal.</p>')
        rows = [[mv.label(r.measure, r.params), r.method, r.models, round(r.distance, 2), round(r.accuracy_lost, 3)]
                for r in ranking.itertuples()]
        out.append(html_table(["measure", "grouping", "models", "mean distance to the knee (blocks)",
                               "mean accuracy lost"], rows, num={2, 3, 4}))
    return out, n_png


def _model_section(store: Any, summary: Any, model: str, cuts: dict, mv: MeasureVariants,
                   goal: bool | None) -> tuple[list[str], int]:
    s = summary[summary["model"] == model]
    n_blocks = int(s["n_blocks"].iloc[0])
    knee = knees(summary, model)
    out = [f'<h2 id="ablations-{esc(slug(model))}">Ablations: {esc(model)}</h2>',
           f'<p class="muted">{n_blocks} blocks; held-out accuracy, mean ± standard deviation over seeds. '
           f'Knees (within {TOLERANCE} of the full model): prune to {knee["prune"]}, freeze up to '
           f'{knee["freeze"]}.</p>']
    check = full_check(summary, model, goal=goal)
    if check is not None:
        change = "gains" if check["difference"] > 0 else "loses"
        if not check["required"]:
            verdict = (f"the checkpoint did not reach its training goal, so N = {n_blocks} need not match it: the "
                       f"ablation recipe's fine-tuning {change} {abs(check['difference']):.3f}; the knees are read "
                       f"against N = {n_blocks}")
        elif check["holds"]:
            verdict = (f"within {max(check['spread'], TOLERANCE):.3f} (the seed spread or {TOLERANCE}): the grid "
                       f"reproduces the checkpoint")
        else:
            verdict = (f"more than the seed spread and {TOLERANCE}: the ablation recipe "
                       f"{'trains the model further than its checkpoint was' if check['difference'] > 0 else 'loses accuracy the checkpoint had'}"
                       f", so the knees are read against N = {n_blocks}")
        out.append(f'<p>The checkpoint as trained: {check["checkpoint"]:.3f}. Every block kept and fine-tuned '
                   f'(N = {n_blocks}): {_mean_std(check["full"], check["spread"], check["seeds"])}, '
                   f'{check["difference"]:+.3f}, {verdict}.</p>')
    marks = {f"{mv.label(m, p)} {method}": cs for (m, p, method), cs in cuts.items() if cs}
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
        store.write_bytes(layout.report_file(png), plots.png_bytes(
            plots.curves_png, sorted(depths), curves, title=f"{model}: pruning", xlabel="kept blocks N",
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
        store.write_bytes(layout.report_file(png), plots.png_bytes(
            plots.curves_png, [int(k) for k in freeze["first_trained_block"]], {"freeze": list(freeze["mean"])},
            title=f"{model}: freezing", xlabel="frozen blocks k", ylabel="held-out accuracy", marks=marks))
        out.append(f'<div class="figs"><figure><img src="{esc(quote(png))}" alt="freezing"><figcaption>accuracy '
                   f'against frozen depth; dashed lines: group boundaries</figcaption></figure></div>')
        n_png += 1
    plans = []
    for (m, p, method), cs in cuts.items():
        plan = prune_plan(summary, model, cs)
        if plan is not None:
            plans.append([mv.label(m, p), method, plan["kept_blocks"], plan["predicted"],
                          _mean_std(plan["measured"], plan["spread"], 2 if plan["spread"] else 1),
                          "yes" if plan["holds"] else "no",
                          ", ".join(f"{sel} {acc:.3f}" for sel, acc in sorted(plan["baselines"].items())) or "–"])
    if plans:
        out.append("<h3>Prune plan</h3>")
        out.append('<p class="muted">Each grouping predicts that keeping the blocks before its last group keeps the '
                   'full model\'s accuracy; the grid measured it, beside the baselines at the same depth.</p>')
        out.append(html_table(["measure", "grouping", "N", "predicted", "measured", "holds", "baselines at N"],
                              plans, num={2}))
    proposed = [[mv.label(m, p), method, proposals(cs, n_blocks)["prune"], proposals(cs, n_blocks)["freeze"]]
                for (m, p, method), cs in cuts.items()]
    if proposed:
        out.append(html_table(["measure", "grouping", "proposed prune N", "proposed freeze k"], proposed, num={2, 3}))
    return out, n_png
