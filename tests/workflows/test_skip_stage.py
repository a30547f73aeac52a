"""A study that trains a small causal LM, compares its blocks and runs the skip check."""
from __future__ import annotations

import math

import pytest


@pytest.mark.ray
def test_lm_job_then_skip_check_reports_agreement_for_every_measure(study_config, ray_local, tmp_path) -> None:
    import numpy as np

    from layergw.store import ResultStore
    from workflows.study import run_study

    rng = np.random.default_rng(0)
    words = "the food was good bad great awful service slow fast and but very not place staff".split()
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(" ".join(rng.choice(words, size=rng.integers(4, 10))) for _ in range(80)) + "\n")
    data = {"source": str(texts)}
    cfg = study_config(
        {}, tmp_path / "store",
        train=[{"id": "lm", "family": "hf", "recipe": "lm", "params": {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 32,
                                                     "max_length": 16, "steps": 4, "batch_size": 8, "eval_every": 4,
                                                     "data": data}}],
        models=[{"id": "lm", "family": "hf", "checkpoint": "train:lm",
                 "params": {"data": data, "points": "blocks", "max_length": 16}}],
        measures=["cka", "gw"], targets={"enabled": False}, inputs={"n": 24, "seed": 0},
        skip=[{"model": "lm", "data": {**data, "max_rows": 20}, "max_length": 16}])
    run_study(cfg, show_progress=False)
    run = ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id)

    kl = run.read_array("skip/lm/kl.npy")
    assert kl.shape == (3, 3)  # embeddings + 2 blocks, the order of the adapter's points
    assert np.allclose(np.diag(kl), 0) and np.allclose(kl, kl.T) and (kl >= 0).all()
    info = run.read_json("skip/lm/agreement.json")
    assert [r["measure"] for r in info["rows"]] == ["cka", "gw"]
    for r in info["rows"]:
        assert r["rows_used"] + r["rows_nan"] == 3
        assert math.isnan(r["mean"]) or -1.0 <= r["mean"] <= 1.0
    html = (tmp_path / "store" / cfg.study / cfg.resolved_run_id / "report" / "index.html").read_text()
    assert "Skip intervention: lm" in html
    from workflows.train import job_key, seed_dir

    assert run.parent().read_json(f"{seed_dir(job_key(cfg.train[0]), 0)}/final/metrics.json")["step"] == 4


def test_skip_must_name_a_model(study_config, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"skip\[0\]\.model: unknown model id 'lmm'"):
        study_config({"lm": "x"}, tmp_path, skip=[{"model": "lmm"}])
