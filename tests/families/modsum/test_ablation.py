"""Pruning and freezing a modular-sum model: a known useless block costs nothing to drop, a
known useful one costs everything."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from layergw import families
from layergw.families.base import Ablation
from layergw.families.modsum.ablation import ModSumAblationSpec, ablate, ablated_model, fine_tune
from layergw.families.modsum.adapter import ModSumModel
from layergw.families.modsum.model import ModSumTransformer


@pytest.fixture(scope="module")
def useful_then_useless() -> ModSumModel:
    """Model 0's trained block, then a block that writes nothing to the residual stream."""
    m0 = families.get("modsum").load("builtin:model_0")
    two = ModSumTransformer(replace(m0.model.cfg, n_blocks=2))
    state = {**two.state_dict(), **m0.model.state_dict()}
    two.load_state_dict(state)
    with torch.no_grad():
        two.blocks[1].attn.W_O.zero_()
        two.blocks[1].mlp.W_out.weight.zero_()
        two.blocks[1].mlp.W_out.bias.zero_()
    return ModSumModel(two.eval(), m0.record, m0.data)


def test_dropping_the_useless_block_costs_nothing_and_the_useful_one_everything(useful_then_useless):
    torch.set_num_threads(1)
    keep_useful = ablate(useful_then_useless, Ablation("prune", (0,)), {"epochs": 30, "head_epochs": 20}, "cpu")
    keep_useless = ablate(useful_then_useless, Ablation("prune", (1,)), {"epochs": 30, "head_epochs": 20}, "cpu")
    assert keep_useful.accuracy >= 0.99 and keep_useful.split == "validation" and keep_useful.step == 50
    assert keep_useless.accuracy < 0.05  # chance is 1/59


def test_ablated_models_keep_copies_of_the_blocks_and_freeze_what_they_should(useful_then_useless):
    src = useful_then_useless.model
    pruned = ablated_model(useful_then_useless, Ablation("prune", (1,), seed=3))
    assert len(pruned.blocks) == 1 and torch.equal(pruned.blocks[0].mlp.W_in.weight, src.blocks[1].mlp.W_in.weight)
    assert pruned.blocks[0] is not src.blocks[1] and all(p.requires_grad for p in pruned.parameters())
    frozen = ablated_model(useful_then_useless, Ablation("freeze", (0, 1), first_trained=1))
    assert not frozen.W_E.requires_grad and not any(p.requires_grad for p in frozen.blocks[0].parameters())
    assert all(p.requires_grad for p in frozen.blocks[1].parameters())
    assert all(p.requires_grad for p in frozen.heads.parameters())
    again = ablated_model(useful_then_useless, Ablation("prune", (1,), seed=3))
    assert torch.equal(again.heads[0].weight, pruned.heads[0].weight)  # the fresh head follows the seed


@pytest.mark.parametrize("ablation, match", [
    (Ablation("prune", (2,)), r"keep must be distinct blocks in depth order within 0..1"),
    (Ablation("prune", (1, 0)), r"keep must be distinct blocks in depth order"),
    (Ablation("freeze", (0,), 1), r"a freeze keeps every block \(0..1\)"),
    (Ablation("freeze", (0, 1), 3), r"first_trained must be in 0..2"),
    (Ablation("prune", (0,), 1), r"a prune fine-tunes every kept block"),
    (Ablation("cut", (0,)), r"kind must be one of prune, freeze"),
])
def test_bad_ablations_name_what_is_wrong(useful_then_useless, ablation, match):
    with pytest.raises(ValueError, match=match):
        ablated_model(useful_then_useless, ablation)


def test_depth_counts_whole_blocks_and_block_states_are_the_residual_stream(useful_then_useless):
    m = useful_then_useless
    depth = {p.name: m.depth(p) for p in m.points()}
    assert depth["blocks.0.hook_resid_pre"] == 0.0 and depth["blocks.0.hook_resid_post"] == 1.0
    assert depth["blocks.1.hook_resid_pre"] == 1.0 and depth["blocks.1.attn.hook_q.h0"] == 1.5
    assert m.n_blocks == 2
    idx = np.arange(10)
    states = m.block_states(idx)
    assert len(states) == 3 and all(s.shape == (10 * 3, 128) for s in states)  # [a, b, =]: 3 positions
    with torch.no_grad():
        x = torch.as_tensor(m.data.inputs[idx])
        h0 = m.model.embed(x)
        h1 = m.model.blocks[0](h0)
    np.testing.assert_allclose(states[0], h0.reshape(-1, 128).numpy(), rtol=1e-6)
    np.testing.assert_allclose(states[1], h1.reshape(-1, 128).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(states[2], states[1])  # the useless block writes nothing


def test_the_fresh_head_is_fitted_alone_before_the_blocks_move(useful_then_useless):
    """Head epochs leave the embeddings and blocks untouched; a head alone on the trained block
    already solves the task; the later epochs then train everything."""
    torch.set_num_threads(1)
    src = useful_then_useless.model
    net = ablated_model(useful_then_useless, Ablation("prune", (0,), seed=1))
    head0 = net.heads[0].weight.detach().clone()
    spec = ModSumAblationSpec(epochs=1, head_epochs=60, weight_decay=0.0)
    fine_tune(net, useful_then_useless, spec, "cpu")
    step = 1.01 * spec.lr  # the one epoch of all parameters: an Adam step moves each by at most about lr
    for name, p in net.blocks[0].named_parameters():
        assert (p - dict(src.blocks[0].named_parameters())[name]).abs().max() <= step, name
    assert (net.W_E - src.W_E).abs().max() <= step
    assert (net.heads[0].weight - head0).abs().max() > 10 * step
    assert all(p.requires_grad for p in net.parameters())  # a prune trains everything in the end
    x = torch.as_tensor(useful_then_useless.data.inputs)
    y = torch.as_tensor(useful_then_useless.data.targets[:, -1])
    va = torch.as_tensor(useful_then_useless.data.val_idx)
    with torch.no_grad():
        assert (net(x[va])[0].argmax(-1) == y[va]).float().mean() >= 0.99


def test_an_ablation_budget_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="head_epochs >= 0"):
        ModSumAblationSpec(head_epochs=-1)


@pytest.mark.parametrize("builtin", ["model_E", "model_L"])
def test_the_reference_is_the_accuracy_training_recorded(builtin):
    """The checkpoint as trained, measured as a cell is, equals what its own training measured
    on the same validation split at its last epoch."""
    model = families.get("modsum").load(f"builtin:{builtin}")
    ref = families.get("modsum").reference(model, {}, "cpu")
    assert ref.accuracy == pytest.approx(model.record["final_val_acc"], abs=1e-6)
    assert ref.train_accuracy == pytest.approx(model.record["final_train_acc"], abs=1e-6)
    assert ref.step == 0 and ref.split == "validation"


def test_a_checkpoint_without_the_final_targets_head_has_no_reference(useful_then_useless):
    m = useful_then_useless
    phase_one = ModSumModel(m.model, {**m.record, "complete": False}, m.data)
    assert families.get("modsum").reference(phase_one, {}, "cpu") is None


def test_a_killed_cell_resumes_from_its_saved_state_to_the_same_model(useful_then_useless, tmp_path, monkeypatch):
    import layergw.families.modsum.ablation as ma

    torch.set_num_threads(1)
    monkeypatch.setattr(ma, "SAVE_EVERY", 5)
    params, cell = {"epochs": 15, "head_epochs": 10}, Ablation("freeze", (0, 1), first_trained=1, seed=2)
    whole = ablate(useful_then_useless, cell, params, "cpu")
    real = ma.ckpt.save_state
    saves = []

    def killed_at_the_third_save(path, state):
        real(path, state)
        saves.append((state["phase"], state["epoch"]))
        if len(saves) == 3:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ma.ckpt, "save_state", killed_at_the_third_save)
    with pytest.raises(KeyboardInterrupt):
        ablate(useful_then_useless, cell, params, "cpu", workdir=tmp_path)
    assert saves == [(0, 5), (0, 10), (1, 5)]  # killed 5 epochs into the second phase
    monkeypatch.setattr(ma.ckpt, "save_state", lambda path, state: saves.append((state["phase"], state["epoch"])))
    resumed = ablate(useful_then_useless, cell, params, "cpu", workdir=tmp_path)
    assert saves[3:] == [(1, 10), (1, 15)]  # it trained only the rest
    assert resumed.accuracy == whole.accuracy and resumed.loss == whole.loss and resumed.step == whole.step
    assert resumed.extra["train_loss"] == whole.extra["train_loss"]
    assert resumed.extra["trainable_parameters"] == whole.extra["trainable_parameters"]


def test_a_saved_state_of_another_budget_is_refused(useful_then_useless, tmp_path, monkeypatch):
    import layergw.families.modsum.ablation as ma

    monkeypatch.setattr(ma, "SAVE_EVERY", 5)
    cell = Ablation("prune", (0,))
    ablate(useful_then_useless, cell, {"epochs": 5, "head_epochs": 5}, "cpu", workdir=tmp_path)
    with pytest.raises(ValueError, match=r"fine-tuning of \[5, 5\] epochs, not \[5, 6\]: delete it"):
        ablate(useful_then_useless, cell, {"epochs": 6, "head_epochs": 5}, "cpu", workdir=tmp_path)
