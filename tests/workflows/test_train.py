"""Train stage: jobs in the study make checkpoints in the store; models name them with train:."""
from __future__ import annotations

import pytest

_TINY = {"task": "f_mod", "n_blocks": 1, "d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 32,
         "max_epochs": 3, "extra_epochs": 0, "eval_every": 1}


def _cfg(study_config, tmp_path, **changes):
    base = dict(train=[{"id": "tiny", "family": "modsum", "params": _TINY, "seeds": [0, 1]}],
                models=[{"id": "m", "checkpoint": "train:tiny", "seeds": [0, 1]},
                        {"id": "steps", "checkpoint": "train:tiny/*"}],
                measures=["cka"], targets={"enabled": False}, inputs={"n": 20, "seed": 0})
    base.update(changes)
    return study_config({}, tmp_path, **base)


@pytest.mark.long
@pytest.mark.ray
def test_jobs_train_once_and_models_expand_per_seed_and_label(study_config, ray_local, tmp_path, caplog) -> None:
    from layergw.store import ResultStore
    from workflows.study import run_study

    from workflows.train import job_key, seed_dir

    cfg = _cfg(study_config, tmp_path)
    with caplog.at_level("INFO", "layergw.progress"):
        run_study(cfg, show_progress=False)
    assert "train: 2 jobs, 0 already done" in caplog.text and "train: 2/2 jobs (100%)" in caplog.text
    study = ResultStore(cfg.store).child(cfg.study)
    run = study.child(cfg.resolved_run_id)
    key = job_key(cfg.train[0])
    for seed in (0, 1):
        done = study.read_json(f"{seed_dir(key, seed)}/done.json")
        assert done["labels"] == ["final"] and (done["family"], done["recipe"]) == ("modsum", "train")
        assert study.exists(f"{seed_dir(key, seed)}/final/tiny.safetensors")
        metrics = study.read_json(f"{seed_dir(key, seed)}/final/metrics.json")
        assert metrics["step"] == 3 and metrics["split"] == "validation" and 0 <= metrics["accuracy"] <= 1
    series = run.read_json("series.json")
    assert [m["model"] for m in series["m"]] == ["m-s0", "m-s1"]
    assert [m["seed"] for m in series["m"]] == [0, 1]
    assert [m["model"] for m in series["steps"]] == ["steps@final"]
    points = run.read_table("points.parquet").to_pandas()
    assert set(points["model"]) == {"m-s0", "m-s1", "steps@final"}
    # two seeds train different weights, so their layers differ; seed 0 twice is the same model
    import numpy as np

    a, b, c = (run.read_array(f"reps/{m}/3.npy") for m in ("m-s0", "m-s1", "steps@final"))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)

    html = (tmp_path / cfg.study / cfg.resolved_run_id / "report" / "index.html").read_text()
    assert "Seed agreement: m" in html and "Training dynamics" not in html  # one label: no dynamics
    agree = run.read_table("seed_agreement.parquet").to_pandas()
    assert set(agree["seed_set"]) == {"m"} and set(zip(agree["seed_a"], agree["seed_b"])) == {(0, 1)}
    assert set(agree["method"]) == {"spectral", "segment"} and agree["ari"].between(-1, 1).all()
    summary = run.read_table("study_summary.parquet").to_pandas()
    assert set(summary["model"]) == {"m-s0", "m-s1", "steps@final"}
    assert set(summary.loc[summary["model"] != "steps@final", "seed_set"]) == {"m"}

    stamp = study.read_json(f"{seed_dir(key, 0)}/done.json")
    again = run_study(cfg, show_progress=False)
    assert again.tiles_reused == again.tiles_total
    # other inputs are another run, but the trained checkpoints are the study's: no retraining
    other = _cfg(study_config, tmp_path, inputs={"n": 21, "seed": 0})
    assert other.resolved_run_id != cfg.resolved_run_id
    run_study(other, show_progress=False)
    assert study.read_json(f"{seed_dir(key, 0)}/done.json") == stamp


def test_a_train_reference_must_name_a_job_and_its_seeds(study_config, tmp_path) -> None:
    from workflows.config import ConfigError
    from workflows.study import check_plan

    cfg = _cfg(study_config, tmp_path, models=[{"id": "m", "checkpoint": "train:tinny"}])
    with pytest.raises(ConfigError, match=r"models\[0\] \(m\): checkpoint 'train:tinny' names no train job "
                                          r"\(did you mean 'tiny'\?\); train jobs: tiny"):
        check_plan(cfg)
    cfg = _cfg(study_config, tmp_path, models=[{"id": "m", "checkpoint": "train:tiny", "seeds": [0, 5]}])
    with pytest.raises(ConfigError, match=r"train job 'tiny' trains seeds \[0, 1\], not \[5\]"):
        check_plan(cfg)


def test_job_ids_are_checked_and_jobs_enter_the_run_id(study_config, tmp_path) -> None:
    with pytest.raises(ValueError, match="duplicate job ids"):
        _cfg(study_config, tmp_path, train=[{"id": "tiny", "family": "modsum"}, {"id": "tiny", "family": "modsum"}])
    with pytest.raises(ValueError, match="unknown model family 'sorcery'"):
        _cfg(study_config, tmp_path, train=[{"id": "tiny", "family": "sorcery"}])
    with pytest.raises(ValueError, match="model family 'hf' has no training recipe 'finetun' \\(did you mean 'finetune'"):
        _cfg(study_config, tmp_path, train=[{"id": "tiny", "family": "hf", "recipe": "finetun"}])
    a = _cfg(study_config, tmp_path)
    b = _cfg(study_config, tmp_path, train=[{"id": "tiny", "family": "modsum", "params": {**_TINY, "max_epochs": 4},
                                             "seeds": [0, 1]}])
    assert a.resolved_run_id != b.resolved_run_id


def test_the_old_kind_key_still_names_a_family_and_recipe_and_keeps_the_job_hash(study_config, tmp_path,
                                                                                   caplog) -> None:
    from workflows.train import job_fingerprint

    with caplog.at_level("WARNING"):
        old = _cfg(study_config, tmp_path, train=[{"id": "ft", "kind": "finetune", "params": {"checkpoint": "x"}}],
                   models=[{"id": "m", "checkpoint": "builtin:model_0"}])
    assert (old.train[0].family, old.train[0].recipe) == ("hf", "finetune")
    assert "'kind: finetune' is deprecated" in caplog.text
    new = _cfg(study_config, tmp_path, train=[{"id": "ft", "family": "hf", "params": {"checkpoint": "x"}}],
               models=[{"id": "m", "checkpoint": "builtin:model_0"}])
    assert new.train[0].recipe == "finetune"  # the family's default recipe
    assert job_fingerprint(old.train[0]) == job_fingerprint(new.train[0])
    with pytest.raises(ValueError, match="kind must be one of modsum, image, finetune, lm"):
        _cfg(study_config, tmp_path, train=[{"id": "tiny", "kind": "sorcery"}])


def test_seeds_without_a_train_job_is_refused(study_config, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"models\[0\] \(m\): seeds needs a train:<job> checkpoint"):
        study_config({}, tmp_path, models=[{"id": "m", "checkpoint": "builtin:model_0", "seeds": [0, 1]}])
