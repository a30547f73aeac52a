"""Security checks: names that would leave the run folder are refused at config validation,
before Ray starts; no credential value reaches anything a run writes or logs."""
from __future__ import annotations

import logging
import pytest
import yaml

from workflows.config import ConfigError, validate

BASE = {"study": "sec", "models": [{"id": "m0", "checkpoint": "builtin:model_0"}], "inputs": {"n": 16},
        "measures": ["cka"], "targets": {"enabled": False}}


def _with(**changes) -> dict:
    return {**BASE, **changes}


def _model(**changes) -> dict:
    return _with(models=[{"id": "m0", "checkpoint": "builtin:model_0", **changes}])


ESCAPES = [
    (_with(study=".."), "study"),
    (_with(study="../elsewhere"), "study"),
    (_with(study="/etc"), "study"),
    (_with(study="~root"), "study"),
    (_with(run_id="../../x"), "run_id"),
    (_with(run_id="."), "run_id"),
    (_model(id=".."), "models.0.id"),
    (_model(id="a\\b"), "models.0.id"),
    (_model(checkpoint_label="../final"), "models.0.checkpoint_label"),
    (_model(checkpoint="train:job/../../x"), "models.0.checkpoint"),
    (_model(checkpoint="train:../job"), "models.0.checkpoint"),
    (_with(train=[{"id": "..", "family": "modsum"}]), "train.0.id"),
    (_with(study="a\x00b"), "study"),
    (_with(study="trailing "), "study"),
]


@pytest.mark.parametrize(("data", "where"), ESCAPES, ids=[f"{where}-{i}" for i, (_, where) in enumerate(ESCAPES)])
def test_a_name_that_would_leave_the_run_folder_is_refused_naming_it(data, where) -> None:
    with pytest.raises(ConfigError, match=rf"{where}: Value error, .* must name one folder inside the run"):
        validate(data)


def test_plain_names_with_dots_and_dashes_still_pass() -> None:
    cfg = validate(_with(study="paper.v2-final", run_id="2026-12-01.a",
                         models=[{"id": "model_L.s1", "checkpoint": "builtin:model_0", "checkpoint_label": "step-10"}]))
    assert (cfg.study, cfg.run_id, cfg.models[0].id) == ("paper.v2-final", "2026-12-01.a", "model_L.s1")


def test_the_cli_refuses_an_escaping_config_before_ray_starts(tmp_path, monkeypatch, capsys) -> None:
    import ray

    from workflows.cli import main

    def no_ray(*_a, **_k):
        raise AssertionError("Ray was started for a config that should have been refused")

    monkeypatch.setattr(ray, "init", no_ray)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_model(id="..")))
    assert main(["run", str(path), "--store", str(tmp_path / "store"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "models.0.id" in err and "must name one folder inside the run" in err
    assert not (tmp_path / "store").exists()  # nothing written


FAKE = {"AWS_ACCESS_KEY_ID": "AKIAFAKEKEY7Q2XJ4M9Z", "AWS_SECRET_ACCESS_KEY": "fakeSecret/K7MDENG+bPxRfiCYzz9Q3",
        "AWS_SESSION_TOKEN": "FakeSessionTokenQ9w8e7r6t5y4u3i2o1", "GOOGLE_OAUTH_ACCESS_TOKEN": "ya29.fakeGcsTokenZ1x2c3v4"}


@pytest.mark.ray
def test_no_credential_value_reaches_a_file_or_log_of_a_run(study_config, tiny_checkpoints, ray_local, s3_uri,
                                                            monkeypatch, caplog) -> None:
    """A study writes to S3 with fake credentials in the driver's environment: no value of
    them appears in any object the run wrote (config.json, run.json, results, report) or in
    any log line."""
    from layergw.store import ResultStore
    from workflows.study import run_study

    for k, v in FAKE.items():
        monkeypatch.setenv(k, v)
    caplog.set_level(logging.DEBUG)
    cfg = study_config({"tiny_fmod": tiny_checkpoints["tiny_fmod"]}, s3_uri, measures=["cka"],
                       targets={"enabled": False}, inputs={"n": 16, "seed": 0})
    run_study(cfg, show_progress=False)
    store = ResultStore(s3_uri)
    files = store.list_files()
    assert any(f.endswith("/config.json") for f in files) and any(f.endswith("/run.json") for f in files)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for name, value in FAKE.items():
        assert value not in logs, f"{name} appears in a log line"
        for f in files:
            assert value.encode() not in store.read_bytes(f), f"{name} appears in {f}"
