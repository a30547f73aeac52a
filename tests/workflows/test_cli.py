"""The ``layergw`` command line, called in-process through ``workflows.cli.main``."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import yaml

from workflows.cli import main


def _write_config(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _local(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri[len("file://"):])


@pytest.mark.long
@pytest.mark.ray
def test_run_then_report_rebuilds_from_stored_results(tiny_checkpoints, tiny_layers, study_dict, ray_local,
                                                      tmp_path, capsys) -> None:
    cfg = _write_config(tmp_path / "study.yaml", study_dict(tiny_checkpoints, tmp_path / "runs", measures=["gw"]))
    # overrides go before the options here; see test_run_overrides_after_options_are_accepted
    assert main(["run", cfg, "inputs.n=20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    run_uri = re.search(r"^run finished.*?: (\S+)$", out, re.M).group(1)
    report_uri = re.search(r"^report: (\S+)$", out, re.M).group(1)
    report = _local(report_uri)
    assert report.is_file() and report.name == "index.html"
    assert report.parent.parent == _local(run_uri)
    run_dir = _local(run_uri)
    # the override reached the run: every pair used 20 inputs
    import pyarrow.parquet as pq

    for tile in (run_dir / "pairs").rglob("tile-*.parquet"):
        assert set(pq.read_table(tile).column("n_samples").to_pylist()) == {20}
    assert json.loads((run_dir / "config.json").read_text())["config"]["inputs"]["n"] == 20
    # the groups are summarised on the terminal, one line per model and measure
    group_lines = re.findall(r"^groups: (\S+) gw spectral: k=(\d+) by eigengap", out, re.M)
    assert len(re.findall(r"^groups: (\S+) gw segment: k=(\d+) by knee", out, re.M)) == len(group_lines)
    assert sorted(m for m, _ in group_lines) == sorted(tiny_checkpoints)

    report.unlink()
    assert main(["report", run_uri]) == 0
    out = capsys.readouterr().out
    assert report.is_file()
    assert str(report) in out or report_uri in out
    page = report.read_text()
    assert all(mid in page for mid in tiny_checkpoints)
    # a plain path to the run folder works too
    assert main(["report", str(run_dir)]) == 0


def test_report_of_a_missing_folder_is_one_clear_error(capsys) -> None:
    assert main(["report", "/nonexistent/run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert "/nonexistent/run" in err
    assert "Traceback" not in err


def test_run_with_a_missing_config_names_the_file(tmp_path, capsys) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["run", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err


def test_run_with_an_invalid_config_names_the_key(tmp_path, capsys) -> None:
    cfg = _write_config(tmp_path / "bad.yaml", {"models": [{"id": "m", "checkpoint": "x"}], "inputz": {"n": 4}})
    assert main(["run", cfg]) == 1
    err = capsys.readouterr().err
    assert "inputz" in err and "did you mean 'inputs'" in err


def test_run_with_a_bad_override_is_an_error(tmp_path, capsys) -> None:
    cfg = _write_config(tmp_path / "ok.yaml", {"models": [{"id": "m", "checkpoint": "x"}]})
    assert main(["run", cfg, "inputs.n"]) == 1
    assert "inputs.n" in capsys.readouterr().err


def _fake_run_study(monkeypatch) -> list:
    """Replace run_study (imported by cmd_run at call time) by a recorder; no Ray, no work."""
    from workflows.study import RunResult

    calls = []

    def fake(cfg, *, store_uri=None, address=None, show_progress=True):
        calls.append({"cfg": cfg, "store_uri": store_uri, "address": address, "show_progress": show_progress})
        return RunResult("file:///fake/run", "file:///fake/run/report/index.html")

    monkeypatch.setattr(importlib.import_module("workflows.study"), "run_study", fake)
    return calls


def test_run_passes_store_address_and_progress_to_the_study(tmp_path, monkeypatch, capsys) -> None:
    calls = _fake_run_study(monkeypatch)
    cfg = _write_config(tmp_path / "ok.yaml", {"models": [{"id": "m", "checkpoint": "x"}]})
    assert main(["run", cfg, "inputs.n=20", "--store", "/elsewhere", "--address", "ray://h:10001", "--no-progress"]) == 0
    (call,) = calls
    assert call["cfg"].inputs.n == 20
    assert call["store_uri"] == "/elsewhere" and call["address"] == "ray://h:10001"
    assert call["show_progress"] is False
    assert "report: file:///fake/run/report/index.html" in capsys.readouterr().out


@pytest.mark.parametrize("argv_tail", [["--no-progress", "inputs.n=20"], ["--store", "/elsewhere", "inputs.n=20"]])
def test_run_overrides_after_options_are_accepted(tmp_path, monkeypatch, argv_tail) -> None:
    calls = _fake_run_study(monkeypatch)
    cfg = _write_config(tmp_path / "ok.yaml", {"models": [{"id": "m", "checkpoint": "x"}]})
    assert main(["run", cfg, *argv_tail]) == 0
    assert calls[0]["cfg"].inputs.n == 20


def test_train_needs_an_id_or_preset(capsys) -> None:
    assert main(["train"]) == 2
    assert "--preset or --id" in capsys.readouterr().err


def test_train_unknown_preset_lists_presets(tmp_path, capsys) -> None:
    from layergw.families.modsum.training import PRESETS

    assert main(["train", "--preset", "model_X", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "model_X" in err and all(p in err for p in PRESETS)


def test_train_writes_checkpoint_and_record(tmp_path, capsys) -> None:
    out_dir = tmp_path / "ckpt"
    rc = main(["train", "--id", "t", "--task", "f_mod", "--blocks", "1", "--max-epochs", "2", "--eval-every", "1",
               "--device", "cpu", "--out", str(out_dir)])
    assert rc == 0
    assert (out_dir / "t.safetensors").is_file()
    record = json.loads((out_dir / "t.json").read_text())
    assert record["model_id"] == "t"
    assert "final_train_acc" in record and 0.0 <= record["final_train_acc"] <= 1.0
    assert record["spec"]["max_epochs"] == 2 and record["spec"]["eval_every"] == 1
    assert record["spec"]["task"] == "f_mod" and record["spec"]["n_blocks"] == 1
    assert record["phases"][-1]["epochs"] == 2
    assert str(out_dir / "t.safetensors") in capsys.readouterr().out
    # the checkpoint loads as a model family checkpoint
    from layergw import families

    assert len(families.get("modsum").load(str(out_dir / "t")).points()) > 0


def test_train_phase_one_with_settings_and_snapshots_then_measure_the_handover(tmp_path, capsys) -> None:
    out = tmp_path / "ckpt"
    rc = main(["train", "--id", "l", "--task", "f_mod3", "--blocks", "2", "--scheme", "layerwise", "--max-epochs", "2",
               "--eval-every", "1", "--device", "cpu", "--out", str(out), "--phases", "1", "--snapshot-every", "2",
               "--set", "d_model=16", "--set", "n_heads=2", "--set", "d_head=8", "--set", "d_mlp=32",
               "--set", "weight_decay=0.5", "--set", "layout=reference"])
    assert rc == 0
    record = json.loads((out / "l.json").read_text())
    assert record["complete"] is False and len(record["phases"]) == 1
    assert (record["spec"]["weight_decay"], record["spec"]["layout"], record["spec"]["d_model"]) == (0.5, "reference", 16)
    assert sorted(p.name for p in (out / "l.snapshots").iterdir()) == ["p1-e00002.json", "p1-e00002.safetensors"]
    capsys.readouterr()
    assert main(["handover", str(out / "l.snapshots"), "--blocks", "0", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| checkpoint | phase | epoch |") and "best_r2" in lines[0]
    assert len(lines) == 2 + 2 * 5  # header, rule, two poolings x five quantities
    assert main(["train", "--id", "x", "--out", str(out), "--set", "weight_decai=1"]) == 1
    assert "did you mean 'weight_decay'" in capsys.readouterr().err


def test_submit_validates_the_config_before_sending(tmp_path, capsys) -> None:
    cfg = _write_config(tmp_path / "bad.yaml", {"models": [{"id": "m", "checkpoint": "x"}], "mesures": []})
    assert main(["submit", cfg, "--address", "http://127.0.0.1:8265"]) == 1
    assert "did you mean 'measures'" in capsys.readouterr().err


def test_set_reads_exponent_numbers_yaml_leaves_as_strings() -> None:
    from layergw.families.modsum.training import ModSumTrainSpec
    from workflows.cli import _spec_settings

    assert _spec_settings(["lr=3e-4", "weight_decay=1e-1"], ModSumTrainSpec) == {"lr": 3e-4, "weight_decay": 0.1}
    assert _spec_settings(["layout=reference"], ModSumTrainSpec) == {"layout": "reference"}
    with pytest.raises(ValueError, match="lr must be a number"):
        _spec_settings(["lr=fast"], ModSumTrainSpec)
