"""Group stage (driver): stored pair tiles -> L x L matrix -> spectral groups and contiguous
segments along depth -> GROUPS rows."""
from __future__ import annotations

import numpy as np

from layergw import layout
from workflows.config import GroupingSpec, MeasureSpec


def group_rows(run, model: str, measure: MeasureSpec, names: list[str], display: dict[int, str],
               spec: GroupingSpec, constant: frozenset[int] = frozenset()) -> list[dict]:
    """Group one model's layers under one measure variant from the tiles in the run folder.

    Points in ``constant`` (the same vector for every input, so no measure can place them) are
    left out of the grouping and get no rows."""
    from layergw.grouping import group_layers, pair_kind, pair_matrix
    from layergw.results import PAIRS
    from layergw.segmentation import segment_depth

    pairs = run.read_tables(layout.pairs_dir(model, measure.key), PAIRS)
    if pairs is None:
        raise ValueError(f"no pair results under {layout.pairs_dir(model, measure.key)}")
    kind = pair_kind(pairs, model, measure.name)
    M = pair_matrix(pairs, model, measure.name, len(names))
    kept = [i for i in range(len(names)) if i not in constant]
    M = M[np.ix_(kept, kept)]
    displays = [display[i] for i in kept]
    kept_names = [names[i] for i in kept]
    rows = []
    try:
        for method in spec.methods:
            if method == "spectral":
                g = group_layers(M, kind, k=spec.k, k_max=spec.k_max, select=spec.select, transform=spec.transform,
                                 seed=spec.seed)
            else:
                g = segment_depth(M, kind, k=spec.k, k_max=spec.k_max)
            rows += g.to_rows(model, measure.name, kept_names, displays, params=measure.params_json)
    except ValueError as e:
        why = failed_pairs_summary(pairs, model, measure.name)
        raise ValueError(f"{e}; {why}" if why else str(e)) from e
    for r in rows:  # the layer indices of the whole model
        r["layer_index"] = kept[r["layer_index"]]
    return rows


def failed_pairs_summary(pairs, model: str, measure: str) -> str:
    """What the stored failures of one model's grid say, most frequent first: a failure such
    as unequal widths is deterministic, and a rerun will not fill it."""
    df = pairs.to_pandas() if hasattr(pairs, "to_pandas") else pairs
    sel = df[(df["model_a"] == model) & (df["model_b"] == model) & (df["measure"] == measure) & df["error"].notna()]
    if not len(sel):
        return ""
    errors = sel["error"].astype(str).str.replace(r"^\w+(Error|Exception): ", "", regex=True)
    shapes = errors.str.replace(r"\d+", "N", regex=True)
    top = []
    for shape, n in shapes.value_counts().head(2).items():
        top.append(f"{n} like '{errors[shapes == shape].iloc[0][:200]}'")
    return f"{len(sel)} of them failed rather than went missing, and a rerun repeats such failures: {'; '.join(top)}"


def write_agreement(cfg, run, series: dict) -> None:
    """seed_agreement.parquet and agreement_summary.parquet for the study's seed sets, and
    study_summary.parquet: one row per model and grouping."""
    import json

    from layergw.agreement import agreement, seed_sets
    from layergw.results import AGREEMENT_SUMMARY, SEED_AGREEMENT, STUDY_SUMMARY, table

    if not run.exists(layout.GROUPS):
        return
    groups = run.read_table(layout.GROUPS).to_pandas()
    declared: dict[str, list[tuple[str, int]]] = {}
    for m in cfg.models:
        if m.seed_group:
            declared.setdefault(m.seed_group, []).append((m.id, m.seed))
    sets = seed_sets(series, declared)
    pairs, summary = agreement(groups, sets)
    if sets:
        run.write_table(layout.SEED_AGREEMENT, table(pairs, SEED_AGREEMENT))
        run.write_table(layout.AGREEMENT_SUMMARY, table(summary, AGREEMENT_SUMMARY))
    set_of = {mid: name for name, members in sets.items() for mid, _ in members}
    ari = {(s["seed_set"], s["measure"], s["params"], s["method"]): s["mean_ari"] for s in summary}
    rows = []
    for (model, measure, params, method), g in groups.groupby(["model", "measure", "params", "method"], sort=False,
                                                                dropna=False):
        name = set_of.get(model)
        rows.append({"model": model, "measure": measure, "params": params, "method": method,
                     "k": int(g["k"].iloc[0]),
                     "boundaries": json.dumps(sorted(int(i) for i in g.loc[g["boundary"] == True, "layer_index"])),  # noqa: E712
                     "seed_set": name, "mean_ari": ari.get((name, measure, params, method))})
    run.write_table(layout.STUDY_SUMMARY, table(rows, STUDY_SUMMARY))


def write_dynamics(cfg, run, series: dict) -> None:
    """dynamics.parquet: for each training series (a model at two or more checkpoints), each
    checkpoint's mean pairwise value under each measure variant, beside its step and accuracy
    (the paper's Figures 6 and 7)."""
    from layergw.results import DYNAMICS, PAIRS, table

    rows = []
    for entry, members in series.items():
        steps = [m for m in members if m.get("step") is not None]
        if len(steps) < 2 or len({m["label"] for m in members}) < 2:
            continue
        for measure in cfg.measures:
            for m in steps:
                pairs = run.read_tables(layout.pairs_dir(m["model"], measure.key), PAIRS)
                values = None
                if pairs is not None:
                    df = pairs.select(["model_a", "model_b", "value"]).to_pandas()
                    values = df.loc[(df["model_a"] == m["model"]) & (df["model_b"] == m["model"]), "value"].dropna()
                metrics = m.get("metrics") or {}
                rows.append({"series": entry, "model": m["model"], "label": m["label"], "step": int(m["step"]),
                             "accuracy": metrics.get("accuracy"), "f1": metrics.get("f1"), "measure": measure.name,
                             "params": measure.params_json,
                             "mean_value": float(values.mean()) if values is not None and len(values) else None,
                             "pairs": 0 if values is None else len(values)})
    if rows:
        run.write_table(layout.DYNAMICS, table(rows, DYNAMICS))
    elif run.exists(layout.DYNAMICS):
        run.delete(layout.DYNAMICS)
