"""The checkpoints shipped with layergw for the demo."""
import json

import numpy as np

import pytest

from layergw import families
from layergw.families.modsum import BUILTIN_DIR, builtin_checkpoints
from layergw.points import with_pooling


def test_builtin_checkpoints_are_the_papers_three_models():
    assert builtin_checkpoints() == ["model_0", "model_E", "model_L"]


@pytest.mark.parametrize("mid, n_points", [("model_0", 31), ("model_E", 93), ("model_L", 93)])
def test_builtin_checkpoint_loads_with_all_points_and_its_training_record(mid, n_points):
    adapter = families.get("modsum").load(f"builtin:{mid}")
    assert len(adapter.points()) == n_points
    record = json.loads((BUILTIN_DIR / f"{mid}.json").read_text())
    assert record["model_id"] == mid and isinstance(record["complete"], bool)
    assert record["phases"] and all(0.0 <= p["val_acc"] <= 1.0 for p in record["phases"])
    facts = adapter.describe()["metrics"]  # what the report's Models table shows
    assert facts["complete"] is record["complete"] and facts["accuracy"] == record["final_val_acc"]
    assert facts["train_accuracy"] == record["final_train_acc"] and facts["split"] == "validation"
    assert facts["step"] == sum(p["epochs"] for p in record["phases"])


def test_model_0_is_trained_to_the_papers_accuracy():
    record = json.loads((BUILTIN_DIR / "model_0.json").read_text())
    assert record["complete"] and record["final_train_acc"] == 1.0 and record["final_val_acc"] >= 0.99


def test_unknown_builtin_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="builtin:model_L"):
        families.get("modsum").resolve("builtin:model_X")


@pytest.mark.parametrize("mid", ["model_0", "model_E", "model_L"])
def test_shipped_weights_have_the_accuracies_their_record_states(mid):
    """The JSON beside each checkpoint must describe those weights, not an earlier export."""
    import numpy as np
    import torch

    adapter = families.get("modsum").load(f"builtin:{mid}")
    data, record = adapter.data, adapter.record
    with torch.no_grad():
        pred = adapter.model(torch.as_tensor(data.inputs))[0].argmax(-1).numpy()
    correct = pred == data.targets[:, -1]
    final = record["phases"][-1]
    assert final["targets"] == [data.target_names()[-1]]
    assert np.isclose(correct[data.train_idx].mean(), record["final_train_acc"], atol=1e-6)
    assert np.isclose(correct[data.val_idx].mean(), record["final_val_acc"], atol=1e-6)


def test_gw_to_the_target_ranks_model_0_output_first_with_max_scaling_on_the_last_token():
    """Positive control for the targets table: Model 0 reads c linearly from its last
    Resid-Post at 100% accuracy, so GW between the one-hot c and that point must be the
    smallest of its 31 points (max-scaled distances, last token; n = 160)."""
    import numpy as np

    from layergw import measures
    from layergw.inputs import input_indices

    adapter = families.get("modsum").load("builtin:model_0")
    idx = input_indices(adapter.n_inputs(), 160, seed=0)
    reps = adapter.extract(idx, with_pooling(adapter.points(), "last"))
    gw = measures.get("gw", normalize="max", init="product")
    target = gw.prepare(adapter.targets(idx)["c"], label="c")
    values = {name: gw.compare(gw.prepare(X, label=name), target).value
              for name, X in reps.items() if np.ptp(X, axis=0).max() > 0}  # the '=' token's Resid-Pre is constant
    assert min(values, key=values.get) == "blocks.0.hook_resid_post"


def test_a_checkpoints_splits_are_its_own_training_and_validation_pairs():
    from layergw.data.modsum import make_modsum

    model = families.get("modsum").load("builtin:model_L")
    splits = model.splits()
    data = make_modsum("f_mod3", split_seed=0)
    np.testing.assert_array_equal(splits["train"], data.train_idx)
    np.testing.assert_array_equal(splits["validation"], data.val_idx)
    assert len(splits["train"]) + len(splits["validation"]) == model.n_inputs()
    assert families.get("resnet9").load("random:0", data="digits", size=12).splits() == {}
