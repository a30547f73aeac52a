"""Training curves from a checkpoint's record: the right numbers per phase and head, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from layergw.families.modsum.curves import phase_curve, phase_series, read_record


def _record(model_id: str = "run") -> dict:
    def history(n: int, heads: int) -> list[dict]:
        return [{"epoch": 50 * (i + 1), "loss": 1.0 / (i + 1), "train_acc": min(1.0, 0.3 * (i + 1)),
                 "val_acc": 0.1 * (i + 1), "train_acc_heads": [1.0] * heads,
                 "val_acc_heads": [0.1 * (i + 1), 0.9 + 0.01 * i][:heads]} for i in range(n)]

    return {"model_id": model_id, "phases": [
        {"phase": 0, "targets": ["c1", "b"], "history": history(3, 2)},
        {"phase": 1, "targets": ["c2", "b"], "history": history(5, 2)},
    ]}


def test_phase_curve_reads_epochs_and_the_chosen_accuracy_of_that_phase() -> None:
    rec = _record()
    epochs, acc = phase_curve(rec, 2, "val")
    np.testing.assert_array_equal(epochs, [50, 100, 150, 200, 250])
    np.testing.assert_allclose(acc, [0.1, 0.2, 0.3, 0.4, 0.5])
    _, b = phase_curve(rec, 2, "b")
    np.testing.assert_allclose(b, [0.90, 0.91, 0.92, 0.93, 0.94])
    _, train = phase_curve(rec, 1, "train")
    np.testing.assert_allclose(train, [0.3, 0.6, 0.9])


@pytest.mark.parametrize("phase,what,match", [(3, "val", "phase must be between 1 and 2"),
                                              (0, "val", "phase must be between 1 and 2"),
                                              (2, "c1", "c2, b.*got 'c1'")])
def test_phase_curve_names_a_phase_or_head_the_record_lacks(phase: int, what: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        phase_curve(_record(), phase, what)


def test_a_head_curve_leaves_gaps_where_an_older_run_kept_no_per_head_accuracies() -> None:
    rec = _record()
    for h in rec["phases"][1]["history"][:2]:  # a run resumed by a newer layergw: its first evaluations lack heads
        del h["val_acc_heads"], h["train_acc_heads"]
    epochs, c2 = phase_curve(rec, 2, "c2")
    np.testing.assert_array_equal(epochs, [50, 100, 150, 200, 250])
    np.testing.assert_allclose(c2, [np.nan, np.nan, 0.3, 0.4, 0.5])
    for h in rec["phases"][1]["history"]:
        h.pop("val_acc_heads", None)
    with pytest.raises(ValueError, match="phase 2 of run records no per-head accuracies.*what='val'"):
        phase_curve(rec, 2, "c2")
    np.testing.assert_allclose(phase_curve(rec, 2, "val")[1], [0.1, 0.2, 0.3, 0.4, 0.5])


def test_read_record_takes_the_json_beside_a_checkpoint_and_refuses_other_files(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(json.dumps(_record("m")))
    assert read_record(tmp_path / "m.safetensors")["model_id"] == "m"
    with pytest.raises(FileNotFoundError, match="no training record"):
        read_record(tmp_path / "other.json")
    with pytest.raises(ValueError, match=".json or .safetensors"):
        read_record(tmp_path / "m.txt")
    (tmp_path / "bad.json").write_text(json.dumps({"model_id": "x"}))
    with pytest.raises(ValueError, match="no training phases"):
        read_record(tmp_path / "bad.json")


def test_phase_series_labels_each_run_and_the_cli_draws_them_in_one_png(tmp_path: Path) -> None:
    from workflows.cli import main

    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(_record(name)))
    paths = [tmp_path / "a.json", tmp_path / "b.safetensors"]
    series = phase_series(paths, phase=2, what="c2")
    assert list(series) == ["a", "b"] and len(series["b"][0]) == 5
    assert list(phase_series(paths, labels=["x", "y"])) == ["x", "y"]
    with pytest.raises(ValueError, match="labels must name each of the 2 paths"):
        phase_series(paths, labels=["only one"])
    out = tmp_path / "curves.png"
    assert main(["curves", *map(str, paths), "--phase", "2", "--what", "c2", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
