"""Pruning and freezing checks of layer groups, written once for every family.

Which blocks to drop, at a kept depth N of a model with L blocks (``n = L - N`` dropped):

- ``first``: keep blocks 0..N-1 (the paper's Table 7: "keep the first N blocks").
- ``last``: drop the n blocks just before the final one and keep the final block (the
  "drop the deepest layers but the last" rule Gromov et al. 2024 find strong; dropping the
  last n outright is ``first``).
- ``block_influence``: drop the n blocks of lowest Block Influence, BI_i = 1 - mean cos(h_i,
  h_{i+1}) between a block's input and output over every input and token (ShortGPT, Men et al.
  2024).
- ``angular``: drop the contiguous window of n blocks whose input and output are closest in
  angle, mean arccos(cos(h_l, h_{l+n})) / pi over every input and token (Gromov et al. 2024,
  who take the last token; layergw averages over all).
- ``random``: a seeded random contiguous window of n blocks.

``h_0`` is the residual stream entering block 0 and ``h_i`` the one leaving block i-1; the
family's loaded model provides them (``LoadedModel.block_states``). A family whose blocks
change the width of their input (ResNet9's modules) has no such stream, and only ``first``
and ``last`` apply to it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from layergw.families.base import Ablation, Metrics

SELECTORS = ("first", "last", "block_influence", "angular", "random")
#: selectors that need block input/output states
STATE_SELECTORS = ("block_influence", "angular")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.clip(np.divide(num, den, out=np.zeros_like(num), where=den > 0), -1.0, 1.0)


def check_states(states: Sequence[np.ndarray]) -> list[np.ndarray]:
    """L + 1 arrays (rows, d): the same rows (inputs x tokens) of the residual stream before
    block 0 and after each block."""
    states = [np.asarray(s, dtype=np.float64) for s in states]
    if len(states) < 2:
        raise ValueError(f"block states must hold at least 2 arrays (before and after one block), got {len(states)}")
    shape = states[0].shape
    if len(shape) != 2 or any(s.shape != shape for s in states):
        raise ValueError(f"block states must be (rows, d) arrays of one shape, got {[s.shape for s in states]}")
    return states


def block_influence(states: Sequence[np.ndarray]) -> np.ndarray:
    """BI of each of the L blocks: 1 - mean cosine between its input and output."""
    states = check_states(states)
    return np.array([1.0 - _cosines(a, b).mean() for a, b in zip(states, states[1:])])


def angular_distances(states: Sequence[np.ndarray]) -> np.ndarray:
    """A[l, l + n] = mean arccos(cos(h_l, h_{l+n})) / pi: how far n blocks from l turn the stream."""
    states = check_states(states)
    L = len(states) - 1
    A = np.zeros((L + 1, L + 1))
    for i in range(L + 1):
        for j in range(i + 1, L + 1):
            A[i, j] = A[j, i] = float(np.mean(np.arccos(_cosines(states[i], states[j])) / np.pi))
    return A


def select_blocks(selector: str, n_blocks: int, n_keep: int, *, seed: int = 0, influence: np.ndarray | None = None,
                  angular: np.ndarray | None = None) -> tuple[int, ...]:
    """The blocks kept, in depth order, when ``selector`` keeps ``n_keep`` of ``n_blocks``."""
    if selector not in SELECTORS:
        from layergw.registry import suggest

        raise ValueError(f"unknown selector {selector!r}{suggest(selector, SELECTORS)}; selectors: {', '.join(SELECTORS)}")
    if not 0 <= n_keep <= n_blocks:
        raise ValueError(f"the kept depth must be in 0..{n_blocks} (the model's blocks), got {n_keep}")
    n = n_blocks - n_keep
    every = range(n_blocks)
    if n == 0 or selector == "first":
        return tuple(range(n_keep))
    if n_keep == 0:
        return ()
    if selector == "last":
        return tuple(b for b in every if not n_blocks - 1 - n <= b < n_blocks - 1)
    if selector == "random":
        start = int(np.random.default_rng(seed).integers(0, n_blocks - n + 1))
        return tuple(b for b in every if not start <= b < start + n)
    if selector == "block_influence":
        if influence is None or len(influence) != n_blocks:
            raise ValueError(f"block_influence needs one Block Influence per block ({n_blocks})")
        dropped = set(np.argsort(influence, kind="stable")[:n].tolist())
        return tuple(b for b in every if b not in dropped)
    if angular is None or np.shape(angular) != (n_blocks + 1, n_blocks + 1):
        raise ValueError(f"angular needs the ({n_blocks + 1} x {n_blocks + 1}) angular distances of the block states")
    start = int(np.argmin([angular[s, s + n] for s in range(n_blocks - n + 1)]))
    return tuple(b for b in every if not start <= b < start + n)


@dataclass(frozen=True)
class Cell:
    """One ablation to run: the cut, how its blocks were chosen, and the seed."""

    ablation: Ablation
    selector: str

    @property
    def name(self) -> str:
        a = self.ablation
        if a.kind == "freeze":
            return f"freeze-k{a.first_trained}-s{a.seed}"
        return f"prune-{self.selector}-n{len(a.keep)}-s{a.seed}"

    @property
    def trains(self) -> tuple:
        """What the cell fine-tunes: cells equal here train the same network (pruning to all L
        blocks is freezing at k = 0; a selector may pick the first N blocks) and are run once."""
        a = self.ablation
        return a.keep, a.first_trained, a.seed


def blocks_before(depth: float) -> int:
    """The whole blocks before the block that makes a point of this depth: a group that starts
    there is removed by keeping them. A block's output (depth b + 1) is made by block b, so
    it keeps b blocks, as a point inside block b (b + 0.5) does; the paper's BERT groups
    (blocks 9-12 splitting off) give N = 8."""
    return max(0, int(np.ceil(depth)) - 1)


def boundary_cuts(groups: Any, depths: dict[int, float]) -> dict[tuple[str, str, str], list[int]]:
    """For each grouping of one model ((measure, params, method) -> cuts): the whole blocks kept
    before each group boundary (``blocks_before`` the depth of the group's first point), in
    depth order; a boundary at a point of unknown depth makes no cut."""
    cuts: dict[tuple[str, str, str], list[int]] = {}
    df = groups.to_pandas() if hasattr(groups, "to_pandas") else groups
    for (measure, params, method), rows in df.groupby(["measure", "params", "method"], dropna=False, sort=False):
        at = rows.loc[rows["boundary"] == True, "layer_index"]  # noqa: E712
        cuts[(measure, params, method)] = sorted({blocks_before(depths[int(i)]) for i in at if int(i) in depths})
    return cuts


def plan_cells(n_blocks: int, ablations: Sequence[str], depths: Sequence[int], selectors: Sequence[str],
               seeds: Sequence[int], *, influence: np.ndarray | None = None, angular: np.ndarray | None = None,
               where: str = "ablate") -> list[Cell]:
    """Every cell of the grid: each depth (with 0 and the full model) for each ablation, each
    selector where it differs from keeping the first blocks (0 < N < L), each seed."""
    bad = [d for d in depths if not 0 <= d <= n_blocks]
    if bad:
        raise ValueError(f"{where}: depths {bad} are outside 0..{n_blocks} (the model's blocks)")
    grid = sorted({0, n_blocks, *depths})
    cells = []
    for seed in seeds:
        for kind in ablations:
            for d in grid:
                if kind == "freeze":
                    cells.append(Cell(Ablation("freeze", tuple(range(n_blocks)), d, seed), "first"))
                    continue
                for selector in selectors if 0 < d < n_blocks else ["first"]:
                    keep = select_blocks(selector, n_blocks, d, seed=seed, influence=influence, angular=angular)
                    cells.append(Cell(Ablation("prune", keep, 0, seed), selector))
    return cells


#: the ``ablation`` (and ``selector``) of the row measuring the checkpoint as trained
REFERENCE = "checkpoint"


def _metric_rows(base: dict, metrics: Metrics) -> list[dict]:
    goal = metrics.extra.get("goal_reached")
    values = {"accuracy": metrics.accuracy, "train_accuracy": metrics.train_accuracy, "f1": metrics.f1,
              "loss": metrics.loss, "perplexity": metrics.perplexity,
              "goal_reached": None if goal is None else float(bool(goal))}
    base = {**base, "split": metrics.split, "n_train": metrics.extra.get("n_train"), "epochs": metrics.step,
            "seconds": metrics.extra.get("seconds")}
    return [{**base, "metric": k, "value": float(v)} for k, v in values.items() if v is not None]


def cell_rows(model: str, cell: Cell, metrics: Metrics, n_blocks: int, checkpoint: str) -> list[dict]:
    """ABLATIONS rows of one finished cell: one per metric the fine-tuned model has."""
    a = cell.ablation
    return _metric_rows({"model": model, "ablation": a.kind, "kept_blocks": len(a.keep),
                         "first_trained_block": a.first_trained, "selector": cell.selector,
                         "keep": json.dumps(list(a.keep)), "seed": a.seed, "n_blocks": n_blocks,
                         "checkpoint": checkpoint}, metrics)


def reference_rows(model: str, metrics: Metrics | None, n_blocks: int, checkpoint: str) -> list[dict]:
    """ABLATIONS rows of the checkpoint as trained (every block kept, none trained, no epochs);
    none when the family cannot measure it."""
    if metrics is None:
        return []
    return _metric_rows({"model": model, "ablation": REFERENCE, "kept_blocks": n_blocks,
                         "first_trained_block": n_blocks, "selector": REFERENCE,
                         "keep": json.dumps(list(range(n_blocks))), "seed": 0, "n_blocks": n_blocks,
                         "checkpoint": checkpoint}, metrics)


# -- reading the grid: knees, each measure's proposed cuts, the prune plan ----------------------

#: accuracy within this much of the full model counts as kept (also the prune plan's tolerance)
TOLERANCE = 0.01


def accuracy_summary(table: Any) -> Any:
    """Mean, standard deviation and count over seeds of the held-out accuracy of every cell
    (one row per model, ablation, kept depth, first trained block and selector)."""
    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    acc = df[df["metric"] == "accuracy"]
    keys = ["model", "ablation", "kept_blocks", "first_trained_block", "selector", "n_blocks"]
    out = acc.groupby(keys, sort=True)["value"].agg(["mean", "std", "count"]).reset_index()
    return out.fillna({"std": 0.0})


def knees(summary: Any, model: str, tolerance: float = TOLERANCE) -> dict[str, int | None]:
    """The smallest kept depth whose pruned accuracy (first blocks) stays within ``tolerance``
    of the full model's, and the largest first-trained block whose frozen accuracy stays
    within it of training everything; None where the grid lacks that ablation."""
    s = summary[summary["model"] == model]
    out: dict[str, int | None] = {"prune": None, "freeze": None}
    prune = s[(s["ablation"] == "prune") & (s["selector"] == "first")].set_index("kept_blocks")["mean"]
    if len(prune) and int(s["n_blocks"].iloc[0]) in prune.index:
        full = prune[int(s["n_blocks"].iloc[0])]
        out["prune"] = int(min(n for n, a in prune.items() if a >= full - tolerance))
    freeze = s[s["ablation"] == "freeze"].set_index("first_trained_block")["mean"]
    if len(freeze) and 0 in freeze.index:
        out["freeze"] = int(max(k for k, a in freeze.items() if a >= freeze[0] - tolerance))
    return out


def goal_reached(table: Any, model: str) -> bool | None:
    """Whether a model's checkpoint reached its training goal (its ``checkpoint`` row's
    ``goal_reached`` metric); None where the family records no goal."""
    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    row = df[(df["model"] == model) & (df["ablation"] == REFERENCE) & (df["metric"] == "goal_reached")]
    return None if not len(row) else bool(row["value"].iloc[0])


def full_check(summary: Any, model: str, tolerance: float = TOLERANCE, goal: bool | None = None) -> dict | None:
    """Whether keeping every block (N = L, fine-tuned like every cell) gives the checkpoint's own
    accuracy: it holds when they differ by at most the seed spread (standard deviation) or
    ``tolerance``, whichever is larger. None without both rows. The knees are always read against
    N = L; matching the checkpoint is ``required`` only of one that reached its training goal
    (``goal`` False: it did not, and the difference is what the recipe's fine-tuning gains)."""
    s = summary[summary["model"] == model]
    ref = s[s["ablation"] == REFERENCE]
    full = s[(s["ablation"] == "prune") & (s["selector"] == "first") & (s["kept_blocks"] == s["n_blocks"])]
    if not len(ref) or not len(full):
        return None
    checkpoint, r = float(ref["mean"].iloc[0]), full.iloc[0]
    difference = float(r["mean"]) - checkpoint
    return {"model": model, "checkpoint": checkpoint, "full": float(r["mean"]), "spread": float(r["std"]),
            "seeds": int(r["count"]), "difference": difference, "goal_reached": goal, "required": goal is not False,
            "holds": abs(difference) <= max(float(r["std"]), tolerance)}


def proposals(cuts: Sequence[int], n_blocks: int) -> dict[str, int]:
    """What a grouping proposes: prune to the start of its last group (drop the final group),
    freeze up to the end of its first group; with no boundary, keep and train everything."""
    return {"prune": max(cuts) if cuts else n_blocks, "freeze": min(cuts) if cuts else 0}


def measure_ranking(summary: Any, cuts: dict[str, dict[tuple, list[int]]],
                    tolerance: float = TOLERANCE) -> tuple[Any, Any]:
    """How well each grouping's cuts locate the accuracy knees: (ranking, detail).

    ``detail`` has one row per model, grouping (measure, params, method) and ablation: the
    proposed cut, the knee, their distance in blocks and the accuracy the proposed cut loses
    against the full model. ``ranking`` averages them per grouping over models and ablations,
    best (nearest the knees, then least accuracy lost) first. ``cuts``: model -> grouping -> cuts."""
    import pandas as pd

    rows = []
    for model, groupings in cuts.items():
        s = summary[summary["model"] == model]
        if not len(s):
            continue
        n_blocks = int(s["n_blocks"].iloc[0])
        knee = knees(summary, model, tolerance)
        for (measure, params, method), cs in groupings.items():
            for kind, proposed in proposals(cs, n_blocks).items():
                if knee[kind] is None:
                    continue
                if kind == "prune":
                    sel = s[(s["ablation"] == "prune") & (s["selector"] == "first")].set_index("kept_blocks")["mean"]
                    full = sel.get(n_blocks)
                else:
                    sel = s[s["ablation"] == "freeze"].set_index("first_trained_block")["mean"]
                    full = sel.get(0)
                at = sel.get(proposed)
                rows.append({"model": model, "measure": measure, "params": params, "method": method,
                             "ablation": kind, "proposed": proposed, "knee": knee[kind],
                             "distance": abs(proposed - knee[kind]),
                             "accuracy_lost": None if at is None or full is None else float(full - at)})
    if not rows:
        return (pd.DataFrame(columns=["measure", "params", "method", "models", "distance", "accuracy_lost"]),
                pd.DataFrame(rows))
    df = pd.DataFrame(rows)
    ranked = (df.groupby(["measure", "params", "method"], dropna=False)
              .agg(models=("model", "nunique"), distance=("distance", "mean"), accuracy_lost=("accuracy_lost", "mean"))
              .reset_index().sort_values(["distance", "accuracy_lost"], kind="stable"))
    return ranked.reset_index(drop=True), df


def prune_plan(summary: Any, model: str, cuts: Sequence[int], tolerance: float = TOLERANCE) -> dict | None:
    """The smallest depth a grouping predicts to keep the full model's accuracy (the start of
    its last group), and what the grid measured there: the paper's selector and the baselines."""
    s = summary[(summary["model"] == model) & (summary["ablation"] == "prune")]
    if not len(s):
        return None
    n_blocks = int(s["n_blocks"].iloc[0])
    n = proposals(cuts, n_blocks)["prune"]
    full = s[(s["kept_blocks"] == n_blocks) & (s["selector"] == "first")]["mean"]
    at = s[s["kept_blocks"] == n].set_index("selector")
    if not len(full) or "first" not in at.index:
        return None
    measured = float(at.loc["first", "mean"])
    return {"model": model, "kept_blocks": n, "n_blocks": n_blocks, "full": float(full.iloc[0]),
            "predicted": f">= {float(full.iloc[0]) - tolerance:.3f} (within {tolerance} of the full model)",
            "measured": measured, "spread": float(at.loc["first", "std"]),
            "holds": measured >= float(full.iloc[0]) - tolerance,
            "baselines": {sel: float(r["mean"]) for sel, r in at.iterrows() if sel != "first"}}


def ablation_tables(table: Any, groups: Any, points: Any, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Everything read from the grid, as tables (``results.ABLATION_TABLES``; the report draws
    them and a notebook reads them): the accuracy summary, one knees row per model (with the
    N = L check), one prune-plan row per model and grouping (its cuts, proposals and what the
    grid measured at the proposed depth), and the measure ranking."""
    import json

    import pandas as pd

    df = table.to_pandas() if hasattr(table, "to_pandas") else table
    summary = accuracy_summary(df)
    grp = groups.to_pandas() if hasattr(groups, "to_pandas") else groups
    knee_rows, plan_rows, all_cuts = [], [], {}
    for model in summary["model"].unique():
        n_blocks = int(summary.loc[summary["model"] == model, "n_blocks"].iloc[0])
        p = points[points["model"] == model]
        depths = {int(r.layer_index): float(r.depth) for r in p.itertuples() if r.depth == r.depth} \
            if "depth" in p else {}
        cuts = boundary_cuts(grp[grp["model"] == model], depths) if grp is not None and depths else {}
        all_cuts[model] = cuts
        knee = knees(summary, model, tolerance)
        check = full_check(summary, model, tolerance, goal=goal_reached(df, model)) or {}
        knee_rows.append({"model": model, "n_blocks": n_blocks, "tolerance": tolerance,
                          "prune_knee": knee["prune"], "freeze_knee": knee["freeze"],
                          **{f"full_{k}": check.get(k) for k in ("checkpoint", "full", "spread", "seeds",
                                                                   "difference", "goal_reached", "required", "holds")}})
        for (measure, params, method), cs in cuts.items():
            plan = prune_plan(summary, model, cs, tolerance) or {}
            prop = proposals(cs, n_blocks)
            plan_rows.append({"model": model, "measure": measure, "params": params, "method": method,
                              "cuts": json.dumps(cs), "n_blocks": n_blocks, "proposed_prune": prop["prune"],
                              "proposed_freeze": prop["freeze"], "full": plan.get("full"),
                              "threshold": None if plan.get("full") is None else plan["full"] - tolerance,
                              "measured": plan.get("measured"), "spread": plan.get("spread"),
                              "holds": plan.get("holds"), "baselines": json.dumps(plan.get("baselines", {}),
                                                                                  sort_keys=True)})
    ranking, _ = measure_ranking(summary, all_cuts, tolerance)
    ranking = ranking.assign(rank=range(1, len(ranking) + 1))
    return {"summary": summary, "knees": pd.DataFrame(knee_rows), "prune_plan": pd.DataFrame(plan_rows),
            "measure_ranking": ranking}
