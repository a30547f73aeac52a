"""The checkpoints shipped with layergw for the demo."""
import json

import pytest

from layergw import models


def test_builtin_checkpoints_are_the_papers_three_models():
    assert models.builtin_checkpoints() == ["model_0", "model_E", "model_L"]


@pytest.mark.parametrize("mid, n_points", [("model_0", 31), ("model_E", 93), ("model_L", 93)])
def test_builtin_checkpoint_loads_with_all_points_and_its_training_record(mid, n_points):
    adapter = models.get("modsum", checkpoint=f"builtin:{mid}")
    assert len(adapter.points()) == n_points
    record = json.loads((models.BUILTIN_DIR / f"{mid}.json").read_text())
    assert record["model_id"] == mid and isinstance(record["complete"], bool)
    assert record["phases"] and all(0.0 <= p["val_acc"] <= 1.0 for p in record["phases"])


def test_model_0_is_trained_to_the_papers_accuracy():
    record = json.loads((models.BUILTIN_DIR / "model_0.json").read_text())
    assert record["complete"] and record["final_train_acc"] == 1.0 and record["final_val_acc"] >= 0.99


def test_unknown_builtin_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="builtin:model_L"):
        models.resolve_checkpoint("builtin:model_X")
