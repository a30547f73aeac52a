"""Hugging Face architectures through whole studies: a Llama-style decoder (random-init,
grouped-query attention, rotary embeddings) with its Table-2 points, groups without its constant
point, the skip check against every measure and prune cells of every selector scored by
next-token accuracy; a ViT on the digits images through points, groups and prune cells."""
from __future__ import annotations

import math

import pytest

LLAMA = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
         "num_key_value_heads": 2}


pytestmark = pytest.mark.long  # whole studies of Hugging Face models

@pytest.mark.ray
def test_a_llama_study_groups_skips_and_prunes_with_every_selector(study_config, ray_local, tmp_path,
                                                                    monkeypatch) -> None:
    from layergw.store import ResultStore
    from workflows.study import run_study

    monkeypatch.setenv("LAYERGW_CACHE", str(tmp_path / "cache"))
    texts = {"source": "sst2", "split": "dev", "max_rows": 40}
    cfg = study_config(
        {}, tmp_path / "store",
        models=[{"id": "llama", "family": "hf", "checkpoint": "random:llama",
                 "params": {"model_config": LLAMA, "points": "fine", "pooling": "last", "max_length": 24,
                            "data": texts}}],
        measures=["cka", {"name": "gw", "params": {"normalize": "mean"}}], targets={"enabled": False},
        inputs={"n": 24, "seed": 0}, grouping={"k_max": 3},
        skip=[{"model": "llama", "data": {**texts, "max_rows": 8}, "max_length": 24}],
        ablate=[{"model": "llama", "ablations": ["prune"], "depths": [1, 2],
                 "selectors": ["first", "last", "block_influence", "angular", "random"],
                 "params": {"train": {**texts, "max_rows": 16}, "eval": {**texts, "max_rows": 8}, "batch_size": 8,
                            "max_length": 24}}])
    run_study(cfg, show_progress=False)
    run = ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id)

    points = run.read_table("points.parquet").to_pandas()
    assert len(points) == 3 * 7
    # every text ends with [SEP], and block 0's input at the last token is its embedding alone
    assert points.loc[points["constant"], "layer"].tolist() == ["blocks.0.hook_resid_pre"]
    groups = run.read_table("groups.parquet").to_pandas()
    assert set(groups["layer"]) == set(points["layer"]) - {"blocks.0.hook_resid_pre"}

    kl = run.read_array("skip/llama/kl.npy")
    assert kl.shape == (4, 4) and (kl >= 0).all() and kl[0, 3] > 0
    info = run.read_json("skip/llama/agreement.json")
    assert info["points"] == ["blocks.0.hook_resid_pre"] + [f"blocks.{b}.hook_resid_post" for b in range(3)]
    for r in info["rows"]:
        assert math.isnan(r["mean"]) or -1.0 <= r["mean"] <= 1.0

    cells = run.read_table("ablations.parquet").to_pandas()
    pruned = cells[cells["ablation"] == "prune"]
    assert set(pruned["selector"]) >= {"first", "last", "block_influence", "angular", "random"}
    value = {m: pruned.loc[pruned["metric"] == m, "value"] for m in ("accuracy", "perplexity")}
    assert len(value["accuracy"]) == len(value["perplexity"]) > 5
    assert value["accuracy"].between(0, 1).all() and value["perplexity"].gt(1).all()
    reference = cells[cells["ablation"] == "checkpoint"]  # the LM as it is, scored as the cells are
    assert set(reference["metric"]) >= {"accuracy", "perplexity"}


@pytest.mark.ray
def test_a_vit_on_digits_gets_points_groups_and_prune_cells(study_config, ray_local, tmp_path, monkeypatch) -> None:
    from layergw.store import ResultStore
    from workflows.study import run_study

    monkeypatch.setenv("LAYERGW_CACHE", str(tmp_path / "cache"))
    vit = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
           "image_size": 16, "patch_size": 4}
    cfg = study_config(
        {}, tmp_path / "store",
        models=[{"id": "vit", "family": "hf", "checkpoint": "random:vit",
                 "params": {"model_config": vit, "points": "fine", "pooling": "cls",
                            "data": {"source": "digits", "split": "test"}}}],
        measures=["cka"], targets={"enabled": True}, inputs={"n": 32, "seed": 0}, grouping={"k_max": 3},
        ablate=[{"model": "vit", "ablations": ["prune"], "depths": [1],
                 "params": {"batch_size": 256, "lr": 1e-3}}])
    run_study(cfg, show_progress=False)
    run = ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id)
    points = run.read_table("points.parquet").to_pandas()
    # block 0's input at the CLS position is the CLS embedding and position 0's: the same for every image
    assert len(points) == 21 and points.loc[points["constant"], "layer"].tolist() == ["blocks.0.hook_resid_pre"]
    groups = run.read_table("groups.parquet").to_pandas()
    assert set(groups["layer"]) == set(points["layer"]) - {"blocks.0.hook_resid_pre"}
    targets = run.read_table("targets.parquet").to_pandas()
    assert set(targets["target"]) == {"label"}  # the digit classes, one-hot
    cells = run.read_table("ablations.parquet").to_pandas()
    accuracy = cells[(cells["ablation"] == "prune") & (cells["metric"] == "accuracy")]
    assert {1, 3} <= set(accuracy["kept_blocks"]) and accuracy["value"].between(0, 1).all()
    assert (accuracy["split"] == "test").all()
