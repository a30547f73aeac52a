"""ResNet9 training on a tiny digits subset: checkpoints, reloads, determinism, random checkpoints."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from layergw import families
from layergw.families.resnet9.checkpoint import load_checkpoint, random_checkpoint, save_checkpoint
from layergw.families.resnet9.model import random_resnet9
from layergw.families.resnet9.training import ImageTrainSpec, evaluate, fit_image_classifier, train_image_classifier

torch.set_num_threads(1)

TINY = ImageTrainSpec(model_id="tiny", size=12, epochs=1, batch_size=32, max_train=64, seed=0, device="cpu")


def test_training_writes_a_checkpoint_whose_reload_gives_identical_logits(tmp_path):
    model, record = fit_image_classifier(TINY)
    path = save_checkpoint(model, record, tmp_path)
    assert path == tmp_path / "tiny.safetensors" and (tmp_path / "tiny.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.safetensors"]  # no temp files left
    reloaded, meta = load_checkpoint(path)
    assert meta == json.loads(json.dumps(record))
    x = torch.randn(5, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reloaded(x))
    assert not reloaded.training


def test_record_has_history_accuracies_and_the_spec(tmp_path):
    record = train_image_classifier(TINY, tmp_path)
    stored = json.loads((tmp_path / "tiny.json").read_text())
    assert stored == json.loads(json.dumps(record))
    assert stored["spec"]["model_id"] == "tiny" and stored["family"] == "resnet9" and stored["trained"] is True
    assert [h["epoch"] for h in stored["history"]] == [1]
    assert {"loss", "train_acc", "test_acc", "lr", "seconds"} <= set(stored["history"][0])
    assert 0.0 <= stored["final_train_acc"] <= 1.0 and stored["final_test_acc"] == stored["history"][0]["test_acc"]
    assert stored["data"]["train"]["n"] == 64 and stored["data"]["test"]["n"] == 360
    assert stored["seconds"] > 0 and stored["device"] == "cpu"
    model, _ = load_checkpoint(tmp_path / "tiny.safetensors")
    from layergw.families.resnet9.training import load_split

    assert evaluate(model, load_split(TINY, "test")) == stored["final_test_acc"]


def test_training_is_deterministic_with_the_seed_on_cpu(tmp_path):
    train_image_classifier(TINY, tmp_path / "a")
    train_image_classifier(TINY, tmp_path / "b")
    train_image_classifier(ImageTrainSpec(**{**TINY.__dict__, "seed": 1}), tmp_path / "c")
    a, b, c = (load_file(str(tmp_path / d / "tiny.safetensors")) for d in "abc")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["layers.0.conv.weight"], c["layers.0.conv.weight"])
    ha, hb = (json.loads((tmp_path / d / "tiny.json").read_text())["history"] for d in "ab")
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in ha] == \
           [{k: v for k, v in h.items() if k != "seconds"} for h in hb]


def test_a_finished_checkpoint_is_reused_and_another_spec_refused(tmp_path):
    first = train_image_classifier(TINY, tmp_path)
    again = train_image_classifier(TINY, tmp_path)
    assert again["seconds"] == first["seconds"]  # read back, not trained again
    with pytest.raises(ValueError, match="another spec"):
        train_image_classifier(ImageTrainSpec(**{**TINY.__dict__, "lr": 0.1}), tmp_path)


def test_trained_checkpoint_loads_in_the_adapter_on_its_test_split(tmp_path):
    model, record = fit_image_classifier(TINY)
    path = save_checkpoint(model, record, tmp_path)
    adapter = families.get("resnet9").load(str(path))
    assert adapter.data.split == "test" and adapter.data.images.shape[-1] == 12
    facts = adapter.describe()
    assert facts["trained"] is True and facts["metrics"]["accuracy"] == record["final_test_acc"]
    assert facts["metrics"]["split"] == "test" and facts["metrics"]["step"] == TINY.epochs
    idx = np.arange(8)
    logits = adapter.extract(idx, [p for p in adapter.points() if p.name == "8.Linear"])["8.Linear"]
    with torch.no_grad():
        want = model(torch.as_tensor(adapter.data.images[idx])).numpy()
    np.testing.assert_array_equal(logits, want)


def test_random_checkpoint_is_the_seeded_untrained_network(tmp_path):
    path = random_checkpoint(3, tmp_path)
    model, record = load_checkpoint(path)
    assert record["trained"] is False and record["seed"] == 3
    ref = random_resnet9(3)
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize("field, value", [("schedule", "cosine"), ("device", "tpu"), ("epochs", 0),
                                          ("max_train", 0), ("lr", 0.0)])
def test_bad_spec_fields_are_value_errors(field, value):
    with pytest.raises(ValueError):
        ImageTrainSpec(**{field: value})


def test_missing_checkpoint_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="nothing.json"):
        torch.save({}, tmp_path / "nothing.safetensors")
        load_checkpoint(tmp_path / "nothing.safetensors")
