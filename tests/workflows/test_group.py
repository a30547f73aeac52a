"""Group stage: stored pair tiles to groups, and what it says when pairs failed."""
from __future__ import annotations

import numpy as np
import pytest

from layergw import layout, results
from layergw.store import ResultStore
from workflows.config import GroupingSpec, MeasureSpec
from workflows.group import group_rows

WIDTHS = [8, 8, 8, 4, 8, 8]


def _store_pairs(tmp_path) -> ResultStore:
    rng = np.random.default_rng(0)
    store = ResultStore(str(tmp_path / "run"))
    rows = []
    for i in range(len(WIDTHS)):
        for j in range(i + 1, len(WIDTHS)):
            unequal = WIDTHS[i] != WIDTHS[j]
            error = (f"ValueError: euclidean needs equal widths: X has d={WIDTHS[i]} columns but Y has d={WIDTHS[j]}"
                     if unequal else None)
            rows.append({"study": "s", "run_id": "r", "model_a": "m", "seed_a": 0, "checkpoint_a": "final",
                         "layer_a": f"l{i}", "layer_a_index": i, "model_b": "m", "seed_b": 0, "checkpoint_b": "final",
                         "layer_b": f"l{j}", "layer_b_index": j, "measure": "euclidean", "params": "{}",
                         "kind": "distance", "value": None if unequal else float(rng.uniform(1, 2)),
                         "n_samples": 8, "iterations": 0, "converged": True, "seconds": 0.0, "error": error,
                         "config_hash": "h", "code_version": "0"})
    store.write_table(layout.tile("m", MeasureSpec(name="euclidean").key, 0, 0), results.table(rows, results.PAIRS))
    return store


def test_grouping_with_failed_pairs_says_what_failed_and_that_a_rerun_repeats_it(tmp_path):
    store = _store_pairs(tmp_path)
    names = [f"l{i}" for i in range(len(WIDTHS))]
    with pytest.raises(ValueError) as info:
        group_rows(store, "m", MeasureSpec(name="euclidean"), names, dict(enumerate(names)), GroupingSpec())
    msg = str(info.value)
    assert "5 of 15 layer pairs are missing" in msg
    assert "5 of them failed" in msg and "a rerun repeats" in msg
    assert "euclidean needs equal widths: X has d=8 columns but Y has d=4" in msg
    assert "ValueError:" not in msg


def _two_block_store(tmp_path, L: int = 8) -> ResultStore:
    store = ResultStore(str(tmp_path / "two"))
    lab = np.repeat([0, 1], L // 2)
    rows = [{"study": "s", "run_id": "r", "model_a": "m", "seed_a": 0, "checkpoint_a": "final",
             "layer_a": f"l{i}", "layer_a_index": i, "model_b": "m", "seed_b": 0, "checkpoint_b": "final",
             "layer_b": f"l{j}", "layer_b_index": j, "measure": "rsm", "params": "{}", "kind": "distance",
             "value": (0.1 if lab[i] == lab[j] else 1.0) + 0.01 * abs(i - j), "n_samples": 8, "iterations": 0,
             "converged": True, "seconds": 0.0, "error": None, "config_hash": "h", "code_version": "0"}
            for i in range(L) for j in range(i + 1, L)]
    store.write_table(layout.tile("m", MeasureSpec(name="rsm").key, 0, 0), results.table(rows, results.PAIRS))
    return store


def test_a_fixed_k_overrides_the_selection_and_keeps_both_choices_on_record(tmp_path):
    store = _two_block_store(tmp_path)
    names = [f"l{i}" for i in range(8)]
    spectral = GroupingSpec(methods=["spectral"])
    chosen = group_rows(store, "m", MeasureSpec(name="rsm"), names, dict(enumerate(names)), spectral)
    fixed = group_rows(store, "m", MeasureSpec(name="rsm"), names, dict(enumerate(names)),
                       spectral.model_copy(update={"k": 3}))
    assert {r["k"] for r in chosen} == {2} and {r["selection"] for r in chosen} == {"eigengap"}
    assert {r["k"] for r in fixed} == {3} and {r["selection"] for r in fixed} == {"fixed"}
    assert len({r["group"] for r in fixed}) == 3
    assert {(r["k_eigengap"], r["k_silhouette"]) for r in fixed} == {(r["k_eigengap"], r["k_silhouette"]) for r in chosen}


def test_both_methods_group_the_two_blocks_and_segments_record_their_boundary_strength(tmp_path):
    store = _two_block_store(tmp_path)
    names = [f"l{i}" for i in range(8)]
    rows = group_rows(store, "m", MeasureSpec(name="rsm"), names, dict(enumerate(names)), GroupingSpec())
    by_method = {m: [r for r in rows if r["method"] == m] for m in ("spectral", "segment")}
    assert all(len(v) == 8 for v in by_method.values())
    for method, rs in by_method.items():
        assert [r["group"] for r in rs] == [0] * 4 + [1] * 4, method
    segment = by_method["segment"]
    assert {r["selection"] for r in segment} == {"knee"} and {r["k_eigengap"] for r in segment} == {None}
    assert [r["layer_index"] for r in segment if r["boundary"]] == [4]
    assert segment[4]["strength"] > 0.5 and all(r["strength"] is None for r in segment if not r["boundary"])


def test_fixed_k_below_two_is_refused_naming_the_key():
    from workflows.config import ConfigError, validate

    cfg = {"study": "s", "models": [{"id": "m", "family": "modsum", "checkpoint": "builtin:model_0"}],
           "grouping": {"k": 1}}
    with pytest.raises(ConfigError, match=r"grouping\.k: Input should be greater than or equal to 2 \(got 1\)"):
        validate(cfg, "x.yaml")


@pytest.mark.ray
def test_bootstrap_records_how_often_each_block_cut_recurs(tiny_checkpoints, ray_local, study_config, tmp_path):
    from workflows.study import run_study

    cfg = study_config({"tiny_fmod3": tiny_checkpoints["tiny_fmod3"]}, tmp_path / "store", measures=["cka"],
                       targets={"enabled": False}, inputs={"n": 16, "seed": 0},
                       grouping={"bootstrap": 4, "bootstrap_points": "all"})
    run_study(cfg, show_progress=False)
    run = ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id)
    boot = run.read_table("bootstrap.parquet").to_pandas()
    assert set(boot["measure"]) == {"cka"} and (boot["replicates"] == 4).all()
    assert ((boot["share"] > 0) & (boot["share"] <= 1)).all() and boot["cut"].between(0, 2).all()
    assert boot["points"].iloc[0] == 38  # every point of the 2-block model
    page = run.read_bytes("report/index.html").decode()
    assert "Boundary confidence over 4 bootstrap replicates" in page


def test_dynamics_rows_hold_each_checkpoints_mean_pairwise_value_beside_its_step_and_accuracy(tmp_path):
    from types import SimpleNamespace

    from workflows.group import write_dynamics

    store = ResultStore(str(tmp_path / "run"))
    measure = MeasureSpec(name="gw")
    for step, scale in ((0, 1.0), (10, 2.0), (20, 4.0)):
        model = f"ft@step-{step}"
        rows = [{"study": "s", "run_id": "r", "model_a": model, "seed_a": 0, "checkpoint_a": f"step-{step}",
                 "layer_a": f"l{i}", "layer_a_index": i, "model_b": model, "seed_b": 0, "checkpoint_b": f"step-{step}",
                 "layer_b": f"l{j}", "layer_b_index": j, "measure": "gw", "params": measure.params_json,
                 "kind": "distance", "value": scale * (j - i), "n_samples": 8, "iterations": 1, "converged": True,
                 "seconds": 0.0, "error": None, "config_hash": "h", "code_version": "0"}
                for i, j in ((0, 1), (0, 2), (1, 2))]
        store.write_table(layout.tile(model, measure.key, 0, 0), results.table(rows, results.PAIRS))
    series = {"ft": [{"model": f"ft@step-{s}", "seed": 0, "label": f"step-{s}", "step": s,
                      "metrics": {"accuracy": 0.5 + s / 100}} for s in (0, 10, 20)],
              "alone": [{"model": "other", "seed": 0, "label": "final", "step": None, "metrics": {}}]}
    write_dynamics(SimpleNamespace(measures=[measure]), store, series)
    df = store.read_table(layout.DYNAMICS).to_pandas()
    assert df["model"].tolist() == ["ft@step-0", "ft@step-10", "ft@step-20"]  # a lone checkpoint is no series
    assert df["mean_value"].tolist() == pytest.approx([4 / 3, 8 / 3, 16 / 3])  # mean of (1, 2, 1) x scale
    assert df["accuracy"].tolist() == pytest.approx([0.5, 0.6, 0.7]) and set(df["pairs"]) == {3}
