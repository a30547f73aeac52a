"""Pruning and freezing ResNet9: the kept modules run as in the full network, widths must chain."""
import numpy as np
import pytest
import torch

from layergw import families
from layergw.families.base import Ablation
from layergw.families.resnet9.ablation import ablate, ablated_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return families.get("resnet9").load("random:0", data="digits", size=12)


def test_keeping_every_module_with_the_old_head_is_the_network(model):
    net = ablated_model(model, Ablation("prune", tuple(range(8))))
    with torch.no_grad():
        net.head.weight.copy_(model.model.layers[8].weight)
        x = torch.as_tensor(model.data.images[:5])
        np.testing.assert_allclose(net.eval()(x).numpy(), model.model.eval()(x).numpy(), rtol=1e-5, atol=1e-6)


def test_a_residual_sum_stays_only_with_both_units_of_its_block(model):
    x = torch.as_tensor(model.data.images[:3])
    full_block = ablated_model(model, Ablation("prune", (0, 1, 2, 3)))
    with torch.no_grad():
        h = model.model.layers[1](model.model.layers[0](x))
        expected = model.model.layers[3].add(h, model.model.layers[3](model.model.layers[2](h)))
        got = full_block.units[3](full_block.units[2](h))
    assert not torch.allclose(got, expected)  # the sum is the network's business, not the unit's
    with torch.no_grad():
        out = torch.nn.AdaptiveMaxPool2d((1, 1))(expected).flatten(1)
        np.testing.assert_allclose(full_block.eval()(x).numpy(), full_block.head(out).numpy(), rtol=1e-5, atol=1e-6)


def test_widths_must_chain_and_freezing_turns_off_the_early_units(model):
    with pytest.raises(ValueError, match=r"keeping modules \[0, 2\] does not fit: module 2 takes 128 channels but gets 64"):
        ablated_model(model, Ablation("prune", (0, 2)))
    frozen = ablated_model(model, Ablation("freeze", tuple(range(8)), first_trained=3))
    assert [any(p.requires_grad for p in u.parameters()) for u in frozen.units] == [False] * 3 + [True] * 5
    assert all(p.requires_grad for p in frozen.head.parameters())


def test_a_cell_trains_and_reports_on_the_test_split(model):
    m = ablate(model, Ablation("prune", (0, 1)), {"epochs": 1, "max_train": 64, "batch_size": 32}, "cpu")
    assert m.split == "test" and m.step == 1 and 0.0 <= m.accuracy <= 1.0 and m.extra["n_train"] == 64


def test_the_reference_scores_the_unmodified_network_on_the_test_split(model):
    from layergw.families.resnet9.training import evaluate, load_split
    from layergw.families.resnet9.ablation import _spec

    ref = families.get("resnet9").reference(model, {}, "cpu")
    ablated = ablated_model(model, Ablation("prune", tuple(range(8))))
    with torch.no_grad():
        ablated.head.weight.copy_(model.model.layers[8].weight)
    test = load_split(_spec(model, {}, 0, "cpu"), "test")
    # the whole network with its own head is the checkpoint, scored as the cells are
    assert ref.accuracy == pytest.approx(evaluate(ablated, test)) and ref.split == "test" and ref.step == 0


def test_a_killed_cell_resumes_from_its_last_epoch_to_the_same_network(model, tmp_path, monkeypatch):
    import layergw.families.resnet9.training as tr

    params, cell = {"epochs": 3, "max_train": 64, "batch_size": 16}, Ablation("freeze", tuple(range(8)), 2, seed=1)
    whole = ablate(model, cell, params, "cpu")
    real = tr.ckpt.save_state
    epochs = []

    def killed_after_epoch_2(path, state):
        real(path, state)
        epochs.append(len(state["history"]))
        if len(epochs) == 2:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(tr.ckpt, "save_state", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        ablate(model, cell, params, "cpu", workdir=tmp_path)
    monkeypatch.setattr(tr.ckpt, "save_state", lambda path, state: (real(path, state),
                                                                     epochs.append(len(state["history"]))))
    resumed = ablate(model, cell, params, "cpu", workdir=tmp_path)
    assert epochs == [1, 2, 3]  # the rerun trained the third epoch only
    assert (resumed.accuracy, resumed.train_accuracy, resumed.loss) == (whole.accuracy, whole.train_accuracy, whole.loss)
