"""The HTML report from a small synthetic run folder."""
from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from layergw import layout, results
from layergw.grouping import group_layers, pair_matrix
from layergw.report import build_report
from layergw.store import ResultStore

MODELS = {"modsum-L": 6, "bert/base": 4}  # a "/" in a name must still give a flat PNG name
MEASURES = {"gw": "distance", "cka": "similarity"}


def _matrix(L: int, kind: str) -> np.ndarray:
    lab = np.repeat([0, 1], [L // 2, L - L // 2])
    D = np.where(lab[:, None] == lab[None, :], 0.1, 1.0) + 0.01 * np.arange(L)[None, :]
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0)
    return D if kind == "distance" else 1 - D


def make_run(root, *, with_groups: bool = True, with_targets: bool = True) -> ResultStore:
    store = ResultStore(str(root))
    points, groups, targets = [], [], []
    for model, L in MODELS.items():
        points += [{"model": model, "layer": f"blocks.{i}.out", "layer_index": i, "display": f"B{i + 1} Resid-Post",
                    "block": i, "role": "Resid-Post", "dim": 8} for i in range(L)]
        for measure, kind in MEASURES.items():
            M = _matrix(L, kind)
            rows = []
            for i in range(L):
                for j in range(i + 1, L):
                    failed = model == "modsum-L" and measure == "gw" and (i, j) == (0, 5)
                    rows.append({
                        "study": "demo-study", "run_id": "run-42", "model_a": model, "seed_a": 0,
                        "checkpoint_a": "final", "layer_a": f"blocks.{i}.out", "layer_a_index": i,
                        "model_b": model, "seed_b": 0, "checkpoint_b": "final", "layer_b": f"blocks.{j}.out",
                        "layer_b_index": j, "measure": measure, "params": "{}", "kind": kind,
                        "value": None if failed else float(M[i, j]), "n_samples": 32, "iterations": 3,
                        "converged": (i, j) != (1, 2), "seconds": 0.01, "error": "solver failed" if failed else None,
                        "config_hash": "abc", "code_version": "0.1.0",
                    })
            tbl = results.table(rows, results.PAIRS)
            store.write_table(f"pairs/{model}/{measure}/tile-0-0.parquet", tbl)
            g = group_layers(_matrix(L, kind), kind, k_max=3)
            groups += g.to_rows(model, measure, [f"blocks.{i}.out" for i in range(L)],
                                [f"B{i + 1} Resid-Post" for i in range(L)], params="{}")
            assert pair_matrix(tbl, model, measure, L).shape == (L, L)
        vals = np.linspace(1.0, 0.1, L)
        order = np.argsort(vals)
        ranks = np.empty(L, dtype=int)
        ranks[order] = np.arange(1, L + 1)
        targets += [{"model": model, "target": "c1", "layer": f"blocks.{i}.out", "layer_index": i,
                     "display": f"B{i + 1} Resid-Post", "measure": "gw", "params": "{}", "value": float(vals[i]),
                     "rank": int(ranks[i])} for i in range(L)]
    store.write_table("points.parquet", results.table(points, results.POINTS))
    if with_groups:
        store.write_table("groups.parquet", results.table(groups, results.GROUPS))
    if with_targets:
        store.write_table("targets.parquet", results.table(targets, results.TARGETS))
    store.write_json("config.json", {"study": "demo-study", "measures": list(MEASURES), "note": "<b>x</b>"})
    store.write_json("run.json", {"run_id": "run-42", "status": "done", "timings": {"extract": 1.5, "compare": 12.25}})
    return store


def test_report_builds_with_everything(tmp_path):
    store = make_run(tmp_path / "run")
    url = build_report(store)
    assert url == store.url("report/index.html")
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "demo-study" in page and "run-42" in page
    for model in MODELS:
        assert model in page
    for measure in MEASURES:
        assert f"<b>{measure}</b>" in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == len(MODELS) * len(MEASURES)
    for src in srcs:
        assert "/" not in src
        assert (tmp_path / "run" / "report" / src).read_bytes().startswith(b"\x89PNG")
    assert "heatmap-modsum-L-gw.png" in srcs
    # groups as ranges of display names, with k and both selections
    assert "B1 Resid-Post … B3 Resid-Post" in page and "eigengap" in page
    # targets ranked: the deepest layer has the smallest value, rank 1, listed first
    targets = page[page.index("<h3>Targets</h3>"):]
    assert targets.index("B6 Resid-Post") < targets.index("B1 Resid-Post")
    assert "<td class=\"num\">1</td><td>B6 Resid-Post</td>" in targets
    # failures and non-converged pairs, config and timings
    assert "Failed and non-converged pairs" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page  # config is escaped
    assert "compare" in page and "12.25" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_report_without_targets_and_groups(tmp_path):
    store = make_run(tmp_path / "run", with_groups=False, with_targets=False)
    (tmp_path / "run" / "config.json").unlink()
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "Targets" not in page and "Groups" not in page and "Config" not in page
    assert len(re.findall(r'<img src="([^"]+)"', page)) == len(MODELS) * len(MEASURES)


def test_report_needs_points_and_pairs(tmp_path):
    store = ResultStore(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="points"):
        build_report(store)
    store.write_table("points.parquet", pa.Table.from_pylist([], schema=results.POINTS))
    with pytest.raises(FileNotFoundError, match="pair"):
        build_report(store)


def test_report_separates_checkpoints(tmp_path):
    store = make_run(tmp_path / "run", with_groups=False, with_targets=False)
    tbl = store.read_table("pairs/bert/base/gw/tile-0-0.parquet")
    early = tbl.set_column(tbl.schema.get_field_index("checkpoint_a"), "checkpoint_a",
                           pa.array(["step-10"] * tbl.num_rows))
    early = early.set_column(early.schema.get_field_index("checkpoint_b"), "checkpoint_b",
                             pa.array(["step-10"] * tbl.num_rows))
    store.write_table("pairs/bert/base/gw/step-10/tile-0-0.parquet", early)
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    srcs = [s for s in re.findall(r'<img src="([^"]+)"', page) if s.startswith("heatmap-bert_base-gw")]
    assert len(srcs) == 2 and "checkpoint step-10" in page
    for src in srcs:
        assert (tmp_path / "run" / "report" / src).exists()


def _drop_params(store: ResultStore, path: str) -> None:
    """Rewrite a table as a run from before GROUPS/TARGETS had ``params`` wrote it."""
    tbl = store.read_table(path)
    store.write_table(path, tbl.drop_columns(["params"]))


def test_report_reads_groups_and_targets_without_params(tmp_path):
    store = make_run(tmp_path / "run")
    _drop_params(store, "groups.parquet")
    _drop_params(store, "targets.parquet")
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    for measure in MEASURES:
        assert f"<b>{measure}</b>" in page  # the single variant of each measure
    assert "heatmap-modsum-L-gw.png" in page and "red lines: group boundaries" in page
    assert "B1 Resid-Post … B3 Resid-Post" in page and "<b>c1</b> (gw)" in page
    assert "params not recorded" not in page


GW = {"init": "product", "max_iter": 10000, "return_coupling": False, "tol_abs": 1e-9, "tol_rel": 1e-9}


def _split_matrix(L: int, split: int, scale: float) -> np.ndarray:
    lab = (np.arange(L) >= split).astype(int)
    D = scale * np.where(lab[:, None] == lab[None, :], 0.1, 1.0) + 0.01 * np.arange(L)[None, :]
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0)
    return D


def make_variant_run(root) -> tuple[ResultStore, dict[str, str]]:
    """One model, two variants of gw (normalize none / max) with different values and groups."""
    store = ResultStore(str(root))
    L, model = 6, "m"
    names = [f"blocks.{i}.out" for i in range(L)]
    displays = [f"B{i + 1}" for i in range(L)]
    points = [{"model": model, "layer": names[i], "layer_index": i, "display": displays[i], "block": i,
               "role": "Resid-Post", "dim": 8} for i in range(L)]
    variants = {"none": (3, 1.0), "max": (2, 0.5)}  # normalize -> (first layer of group 1, scale)
    params = {n: json.dumps(dict(GW, normalize=n), sort_keys=True) for n in variants}
    groups, targets = [], []
    for n, (split, scale) in variants.items():
        M = _split_matrix(L, split, scale)
        rows = [{
            "study": "s", "run_id": "r", "model_a": model, "seed_a": 0, "checkpoint_a": "final",
            "layer_a": names[i], "layer_a_index": i, "model_b": model, "seed_b": 0, "checkpoint_b": "final",
            "layer_b": names[j], "layer_b_index": j, "measure": "gw", "params": params[n], "kind": "distance",
            "value": float(M[i, j]), "n_samples": 32, "iterations": 3, "converged": not (n == "max" and (i, j) == (0, 1)),
            "seconds": 0.01, "error": None, "config_hash": "abc", "code_version": "0.1.0",
        } for i in range(L) for j in range(i + 1, L)]
        key = "gw" if n == "none" else "gw-1234abcd"
        store.write_table(f"pairs/{model}/{key}/tile-0-0.parquet", results.table(rows, results.PAIRS))
        groups += group_layers(M, "distance", k_max=3).to_rows(model, "gw", names, displays, params=params[n])
        vals = M[0] if n == "none" else M[L - 1]  # ranks 1: B1 for none, B6 for max
        order = np.argsort(vals)
        targets += [{"model": model, "target": f"t-{n}", "layer": names[i], "layer_index": i, "display": displays[i],
                     "measure": "gw", "params": params[n], "value": float(vals[i]),
                     "rank": int(np.flatnonzero(order == i)[0]) + 1} for i in range(L)]
    store.write_table("points.parquet", results.table(points, results.POINTS))
    store.write_table("groups.parquet", results.table(groups, results.GROUPS))
    store.write_table("targets.parquet", results.table(targets, results.TARGETS))
    return store, params


def _section(page: str, start: str, end: str = "</table>") -> str:
    i = page.index(start)
    return page[i:page.index(end, i)]


def test_report_keeps_two_variants_of_a_measure_apart(tmp_path):
    store, params = make_variant_run(tmp_path / "run")
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == 2 and len(set(srcs)) == 2
    assert all(s.startswith("heatmap-m-gw-") and s.endswith(".png") for s in srcs)
    pngs = [(tmp_path / "run" / "report" / s).read_bytes() for s in srcs]
    assert pngs[0] != pngs[1]
    for n in ("none", "max"):
        assert f"gw (normalize={n}) (distance)" in page  # heatmap captions
    # one groups table per variant, each with its own split
    assert page.count("<b>gw (normalize=none)</b>") == 1 and page.count("<b>gw (normalize=max)</b>") == 1
    assert "<td>B1 … B3</td>" in _section(page, "<b>gw (normalize=none)</b>")
    assert "<td>B1 … B2</td>" in _section(page, "<b>gw (normalize=max)</b>")
    # targets and the non-converged count are labelled by variant too
    assert "<b>t-none</b> (gw (normalize=none))" in page and "<b>t-max</b> (gw (normalize=max))" in page
    assert "<td>B1</td>" in _section(page, "<b>t-none</b>", "</tr></tbody>")
    assert "<td>B6</td>" in _section(page, "<b>t-max</b>", "</tr></tbody>")
    health = _section(page, "Failed and non-converged pairs")
    assert "gw (normalize=max)" in health and "gw (normalize=none)" not in health
    assert "gw (normalize=max), gw (normalize=none)" in page or "gw (normalize=none), gw (normalize=max)" in page

    # an older run whose groups table has no params still builds, without guessing the variant
    _drop_params(store, "groups.parquet")
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert len(re.findall(r'<img src="([^"]+)"', page)) == 2
    assert "gw (params not recorded)" in page and "red lines" not in page


def test_seed_ari_is_one_for_relabelled_groups_and_low_for_unrelated_ones():
    from layergw.agreement import seed_ari

    a = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert seed_ari([a, [5, 5, 5, 3, 3, 3, 4, 4, 4]]) == [1.0]
    rng = np.random.default_rng(0)
    vals = [seed_ari([list(rng.integers(0, 3, 60)), list(rng.integers(0, 3, 60))])[0] for _ in range(20)]
    assert abs(np.mean(vals)) < 0.05
    assert len(seed_ari([a, a, a])) == 3


def test_dynamics_section_draws_the_stored_series_against_step_and_accuracy(tmp_path):
    from layergw.report.study import series_sections
    from layergw.report.variants import MeasureVariants
    from layergw.store import ResultStore

    store = ResultStore(str(tmp_path))
    rows = [{"series": "ft", "model": f"ft@step-{s}", "label": f"step-{s}", "step": s, "accuracy": 0.5 + s / 100,
             "f1": None, "measure": "gw", "params": '{"init": "product"}', "mean_value": v, "pairs": 3}
            for s, v in ((0, 1.0), (10, 2.0), (20, 4.0))]
    store.write_table(layout.DYNAMICS, results.table(rows, results.DYNAMICS))
    html, n_png = series_sections(store, MeasureVariants([("gw", '{"init": "product"}')]))
    page = "".join(html)
    assert n_png == 2 and "Training dynamics: ft" in page
    assert (tmp_path / "report" / "dynamics-ft-gw-step.png").read_bytes()[:4] == b"\x89PNG"
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", page)
    assert [cells[i * 6 + 5] for i in range(3)] == ["1", "2", "4"]
    assert series_sections(ResultStore(str(tmp_path / "none")), MeasureVariants([])) == ([], 0)
    old = ResultStore(str(tmp_path / "old"))  # a run whose series predate dynamics.parquet
    old.write_json(layout.SERIES, {"ft": [{"model": f"ft@step-{s}", "step": s} for s in (0, 10)]})
    html, _ = series_sections(old, MeasureVariants([]))
    assert "dynamics.parquet is not here" in html[0]


def test_outlier_groups_are_tiny_groups_of_large_models_only():
    from layergw.report import outlier_groups

    assert outlier_groups([0] * 91 + [1] * 2, 93) == [1]
    assert outlier_groups([0] * 88 + [1] * 5, 93) == []  # 5 > 4 = 5% of 93
    assert outlier_groups([0] * 11 + [1], 12) == []  # a 12-block model's last block can be a unit


def test_report_says_when_a_grouping_only_splits_off_an_outlier(tmp_path):
    L = 30
    rng = np.random.default_rng(0)
    X = rng.normal(size=(L, 4))
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    D[7, :] = D[:, 7] = 50.0  # one layer far from all others
    np.fill_diagonal(D, 0.0)
    g = group_layers(D, "distance", k_max=4)
    assert g.k == 2 and np.bincount(g.labels).min() == 1
    store = make_run(tmp_path / "run")
    names = [f"l{i}" for i in range(L)]
    rows = g.to_rows("big", "gw", names, [f"L{i}" for i in range(L)], params="{}")
    store.write_table("groups.parquet", results.table(rows, results.GROUPS))
    store.write_table("points.parquet", results.table(
        [{"model": "big", "layer": n, "layer_index": i, "display": f"L{i}", "block": i, "role": "x", "dim": 4}
         for i, n in enumerate(names)], results.POINTS))
    rows_p = [{"study": "s", "run_id": "r", "model_a": "big", "seed_a": 0, "checkpoint_a": "final", "layer_a": names[i],
               "layer_a_index": i, "model_b": "big", "seed_b": 0, "checkpoint_b": "final", "layer_b": names[j],
               "layer_b_index": j, "measure": "gw", "params": "{}", "kind": "distance", "value": float(D[i, j]),
               "n_samples": 8, "iterations": 1, "converged": True, "seconds": 0.0, "error": None,
               "config_hash": "h", "code_version": "0"} for i in range(L) for j in range(i + 1, L)]
    store.write_table("pairs/big/gw/tile-0-0.parquet", results.table(rows_p, results.PAIRS))
    page = (tmp_path / "run" / "report" / "index.html").read_text() if build_report(store) else ""
    section = page[page.index("big"):]
    assert "group 1 (L7)" in section and "split off outliers" in section


def test_groups_summary_gives_k_selection_and_sizes_per_model_and_variant():
    from layergw.report import groups_summary

    from layergw.segmentation import segment_depth

    D = _matrix(6, "distance")
    rows = []
    for params in ('{"normalize": "none"}', '{"normalize": "mean"}'):
        g = group_layers(D, "distance", k_max=3)
        rows += g.to_rows("m", "gw", [f"l{i}" for i in range(6)], None, params=params)
    s = segment_depth(D, "distance", k_max=3)
    rows += s.to_rows("m", "gw", [f"l{i}" for i in range(6)], None, params='{"normalize": "none"}')
    lines = groups_summary(results.table(rows, results.GROUPS))
    assert lines == [f"m gw (normalize={v}) spectral: k=2 by eigengap (eigengap 2, silhouette 2), sizes 3/3"
                     for v in ("none", "mean")] + [
        f"m gw (normalize=none) segment: k=2 by knee (boundary strengths {s.strengths[0]:.2f}), sizes 3/3"]
    assert groups_summary(None) == []


def test_models_table_shows_how_far_each_model_was_trained(tmp_path):
    """A grouping is only as meaningful as the model: the report shows each model's
    accuracies from its extraction manifest, and leaves out facts no model has."""
    store = make_run(tmp_path / "run")
    store.write_json("reps/modsum-L/done.json", {
        "model": "modsum-L", "n": 32, "inputs_split": "train", "points": [{}] * 6,
        "describe": {"family": "modsum", "metrics": {"step": 15500, "accuracy": 0.737, "train_accuracy": 1.0,
                                                     "split": "validation", "complete": False}}})
    store.write_json("reps/bert/base/done.json", {"model": "bert/base", "n": 32, "points": [{}] * 4,
                                                   "describe": {"family": "hf"}})
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    section = page[page.index("<h2>Models</h2>"):]
    section = section[:section.index("</table>")]
    header = re.findall(r"<th>(.*?)</th>", section)
    assert header == ["model", "family", "points", "n", "train accuracy", "held-out accuracy", "held out",
                      "training complete", "steps"]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section)[1:]]
    assert cells == [["modsum-L", "modsum", "6", "32 (train)", "1", "0.737", "validation", "no", "15500"],
                     ["bert/base", "hf", "4", "32", "", "", "", "", ""]]


def test_models_table_is_absent_without_manifests(tmp_path):
    build_report(make_run(tmp_path / "run"))
    assert "<h2>Models</h2>" not in (tmp_path / "run" / "report" / "index.html").read_text()


def test_ablation_section_reads_the_grid_as_the_papers_tables_and_checks_the_prune_plan(tmp_path) -> None:
    """A 4-block model whose accuracy holds down to 2 kept blocks and drops below: the grouping
    with its boundary at block 2 proposes N = 2 and holds; the baselines at N = 2 are listed."""
    import pandas as pd

    from layergw.report.ablations import ablation_sections
    from layergw.report.variants import MeasureVariants

    store = ResultStore(str(tmp_path))
    acc = {("prune", "first", 4): 0.90, ("prune", "first", 2): 0.895, ("prune", "last", 2): 0.60,
           ("prune", "first", 1): 0.40, ("prune", "first", 0): 0.10}
    rows = []
    for (kind, sel, n), a in acc.items():
        for seed, d in ((0, -0.01), (1, 0.01)):
            rows.append({"model": "m", "ablation": kind, "kept_blocks": n, "first_trained_block": 0, "selector": sel,
                         "keep": "[]", "seed": seed, "n_blocks": 4, "metric": "accuracy", "value": a + d,
                         "split": "validation", "n_train": 10, "epochs": 5, "seconds": 1.0, "checkpoint": "c"})
    store.write_table("ablations.parquet", pa.Table.from_pylist(rows, schema=results.ABLATIONS))
    points = pd.DataFrame({"model": "m", "layer_index": range(5), "depth": [0.0, 1.0, 2.0, 3.0, 4.0]})
    groups = pd.DataFrame({"model": "m", "measure": "gw", "params": "{}", "method": "segment",
                           "layer_index": range(5), "boundary": [False, False, False, True, False]})
    # the last group starts at the third block's output (depth 3): made by that block, so N = 2 keeps the two before
    from layergw.interventions.ablate import ablation_tables

    for name, frame in ablation_tables(store.read_table("ablations.parquet"), groups, points).items():
        store.write_table(layout.ABLATION_TABLES[name], results.from_frame(frame, results.ABLATION_TABLES[name]))
    html, n_png = ablation_sections(store, MeasureVariants([("gw", "{}")]))
    page = "".join(html)
    assert n_png == 1 and "Ablations: m" in page and "Knees (within 0.01 of the full model): prune to 2" in page
    import html as html_lib

    pruning = page[page.index("Pruning"):page.index("Prune plan")]
    rows = [[html_lib.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", tr)]
            for tr in re.findall(r"<tr>(.*?)</tr>", pruning, flags=re.S)]
    # the kept depth at the grouping's boundary is marked in the table, the others are not
    assert [r for r in rows if r] == [["4", "0.900 ± 0.014", "", ""], ["2", "0.895 ± 0.014", "0.600 ± 0.014", "gw segment"],
                                     ["1", "0.400 ± 0.014", "", ""], ["0", "0.100 ± 0.014", "", ""]]
    cells = [html_lib.unescape(c) for c in re.findall(r"<td[^>]*>([^<]*)</td>", page[page.index("Prune plan"):])]
    assert cells[:7] == ["gw", "segment", "2", ">= 0.890 (within 0.01 of the full model)", "0.895 ± 0.014", "yes",
                         "last 0.600"]
    ranking = page[page.index("Which measure predicts"):]
    assert re.findall(r"<td[^>]*>([^<]*)</td>", ranking)[:3] == ["gw", "segment", "1"]


def test_ablation_section_says_which_tables_are_missing_rather_than_computing_them(tmp_path) -> None:
    from layergw.report.ablations import ablation_sections
    from layergw.report.variants import MeasureVariants

    store = ResultStore(str(tmp_path))
    store.write_table("ablations.parquet", results.ABLATIONS.empty_table())
    html, n_png = ablation_sections(store, MeasureVariants([]))
    assert n_png == 0 and "prune_plan.parquet" in html[0] and "run the study again" in html[0]


def test_models_table_shows_a_sparse_checkpoints_measured_sparsity(tmp_path):
    store = make_run(tmp_path / "run")
    sparsity = {"target": 0.7, "heads": {"zeroed": 50, "total": 72, "share": 50 / 72},
                "neurons": {"zeroed": 6451, "total": 9216, "share": 6451 / 9216}, "heads_per_block": [8] * 6}
    store.write_json("reps/modsum-L/done.json", {"model": "modsum-L", "n": 32, "points": [{}] * 6, "describe": {
        "family": "hf", "metrics": {"step": 250, "accuracy": 0.8, "extra": {"sparsity": sparsity}}}})
    store.write_json("reps/bert/base/done.json", {"model": "bert/base", "n": 32, "points": [{}] * 6, "describe": {
        "family": "hf", "metrics": {"step": 250, "accuracy": 0.85, "extra": {}}}})
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    section = page[page.index("<h2>Models</h2>"):]
    section = section[:section.index("</table>")]
    assert re.findall(r"<th>(.*?)</th>", section)[-1] == "zeroed heads / neurons"
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section)[1:]]
    assert [c[-1] for c in cells] == ["69.4% / 70.0%", ""]
