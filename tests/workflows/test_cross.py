"""Cross-model comparisons: layers of model a against layers of model b, in tiles on Ray."""
from __future__ import annotations

import numpy as np
import pytest


def _tables(cfg):
    from layergw.results import PAIRS
    from layergw.store import ResultStore

    run = ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id)
    return run, run.read_tables("pairs", PAIRS).to_pandas(), run.read_tables("cross", PAIRS).to_pandas()


@pytest.mark.long
@pytest.mark.ray
def test_cross_grid_is_complete_and_agrees_with_the_model_own_grid(tiny_checkpoints, tiny_layers, study_config,
                                                                     ray_local, tmp_path) -> None:
    from workflows.study import run_study

    fmod = tiny_checkpoints["tiny_fmod"]
    fmod3 = tiny_checkpoints["tiny_fmod3"]
    models = {"tiny_fmod": fmod, "same": fmod, "tiny_fmod3": fmod3}
    cfg = study_config(models, tmp_path, measures=["cka"], targets={"enabled": False},
                       compare={"tile_size": 8, "cross": [{"a": "tiny_fmod", "b": "same"},
                                                          {"a": "tiny_fmod", "b": "tiny_fmod3"}]})
    result = run_study(cfg, show_progress=False)
    run, pairs, cross = _tables(cfg)

    La, Lb = tiny_layers["tiny_fmod"], tiny_layers["tiny_fmod3"]
    counts = cross.groupby(["model_a", "model_b"]).size().to_dict()
    assert counts == {("tiny_fmod", "same"): La * La, ("tiny_fmod", "tiny_fmod3"): La * Lb}
    assert not cross.duplicated(["model_a", "model_b", "layer_a_index", "layer_b_index"]).any()
    assert cross["value"].notna().all()

    # the same checkpoint under two ids: the cross matrix is the model's own (symmetric) grid
    same = cross[cross["model_b"] == "same"]
    C = np.full((La, La), np.nan)
    C[same["layer_a_index"], same["layer_b_index"]] = same["value"]
    own = pairs[pairs["model_a"] == "tiny_fmod"]
    W = np.eye(La)
    W[own["layer_a_index"], own["layer_b_index"]] = own["value"]
    W[own["layer_b_index"], own["layer_a_index"]] = own["value"]
    np.testing.assert_allclose(C, W, rtol=1e-10, atol=1e-12)
    names = dict(zip(own["layer_a_index"], own["layer_a"]))
    assert all(names.get(i, n) == n for i, n in zip(same["layer_a_index"], same["layer_a"]))

    html = (tmp_path / cfg.study / cfg.resolved_run_id / "report" / "index.html").read_text()
    assert "Cross-model comparisons" in html and "tiny_fmod × tiny_fmod3" in html
    report = tmp_path / cfg.study / cfg.resolved_run_id / "report"
    assert "Diagnostics" in html
    for part in ("histograms", "jaccard"):
        assert (report / f"diag-tiny_fmod-{part}.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / cfg.study / cfg.resolved_run_id / "report").glob("cross-tiny_fmod-tiny_fmod3-*.png")
    assert result.tiles_reused == 0

    # a rerun finds every tile, own and cross, and computes nothing
    again = run_study(cfg, show_progress=False)
    assert again.tiles_reused == again.tiles_total


def test_cross_config_names_unknown_models_and_keeps_the_run_id(tiny_checkpoints, study_config, tmp_path) -> None:
    from workflows.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match=r"compare\.cross\[0\]\.b: unknown model id 'tiny_fmd'.*did you mean 'tiny_fmod'"):
        study_config(tiny_checkpoints, tmp_path, compare={"cross": [{"a": "tiny_fmod3", "b": "tiny_fmd"}]})
    with pytest.raises((ConfigError, ValueError), match=r"compare\.cross\[0\]: a and b are both"):
        study_config(tiny_checkpoints, tmp_path, compare={"cross": [{"a": "tiny_fmod", "b": "tiny_fmod"}]})
    plain = study_config(tiny_checkpoints, tmp_path)
    crossed = study_config(tiny_checkpoints, tmp_path,
                           compare={"tile_size": 8, "cross": [{"a": "tiny_fmod", "b": "tiny_fmod3"}]})
    assert plain.resolved_run_id == crossed.resolved_run_id
