"""Structured sparsity: the cubic schedule, which weights a pruned head or neuron owns, and sparse
fine-tuning (measured share, a really sparse checkpoint, resume).

Which rows of a projection belong to a head is read here from each architecture's own layout
(transformers' attention code: ``view(batch, tokens, heads, head_dim)`` of q, k and v; GPT-2's
fused ``[q | k | v]``; GPT-NeoX's per-head ``[q k v]``), not from layergw's table: if a pruned
head's output columns were not the ones its query rows feed, randomising those rows would change
the model's output.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from layergw.families.hf.architectures import architecture_for
from layergw.families.hf.finetune import FineTuneSpec, finetune
from layergw.families.hf.random_init import materialize
from layergw.families.hf.sparsity import StructuredPruner, cubic_sparsity, measure
from tests.families.hf.conftest import RANDOM
from tests.families.hf.test_finetune import EVAL, TRAIN, run_killed_after, spec_for, tiny_bert  # noqa: F401 (fixture)


def test_cubic_schedule_is_zero_before_the_window_full_after_and_cubic_between() -> None:
    total, target, window = 1000, 0.7, (0.1, 0.7)
    assert cubic_sparsity(0, total, target, window) == 0.0
    assert cubic_sparsity(100, total, target, window) == 0.0
    assert cubic_sparsity(700, total, target, window) == target
    assert cubic_sparsity(1000, total, target, window) == target
    assert cubic_sparsity(400, total, target, window) == pytest.approx(target * (1 - 0.5 ** 3))
    values = [cubic_sparsity(s, total, target, window) for s in range(total + 1)]
    assert all(a <= b for a, b in zip(values, values[1:]))


#: where each architecture's per-head query rows and MLP up rows are, by its transformers code
LAYOUTS = {
    "bert": ("bert.encoder.layer.{b}.attention.self.query", "concat_q", "bert.encoder.layer.{b}.intermediate.dense"),
    "distilbert": ("distilbert.transformer.layer.{b}.attention.q_lin", "concat_q",
                   "distilbert.transformer.layer.{b}.ffn.lin1"),
    "gpt2": ("transformer.h.{b}.attn.c_attn", "conv1d_qkv", "transformer.h.{b}.mlp.c_fc"),
    "gpt_neox": ("gpt_neox.layers.{b}.attention.query_key_value", "per_head", "gpt_neox.layers.{b}.mlp.dense_h_to_4h"),
    "opt": ("model.decoder.layers.{b}.self_attn.q_proj", "concat_q", "model.decoder.layers.{b}.fc1"),
    "llama": ("model.layers.{b}.self_attn.q_proj", "concat_q", "model.layers.{b}.mlp.up_proj"),
    "phi3": ("model.layers.{b}.self_attn.qkv_proj", "concat_q", "model.layers.{b}.mlp.gate_up_proj"),
}


def _classifier(model_type: str) -> torch.nn.Module:
    from transformers import AutoModelForSequenceClassification

    folder = materialize(f"random:{model_type}", RANDOM[model_type]["params"]["model_config"], 0)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, local_files_only=True)
    model.config.pad_token_id = model.config.pad_token_id or 0
    return model.eval()


def _head_rows(model_type: str, head: int, head_dim: int) -> tuple[int, slice]:
    """(axis, rows) of one head's query weights in the architecture's own layout."""
    kind = LAYOUTS[model_type][1]
    if kind == "conv1d_qkv":  # GPT-2: Conv1D weight (in, 3 * embed), q first
        return 1, slice(head * head_dim, (head + 1) * head_dim)
    if kind == "per_head":  # GPT-NeoX: (heads, 3 * head_dim) rows, q first in each
        return 0, slice(head * 3 * head_dim, head * 3 * head_dim + head_dim)
    return 0, slice(head * head_dim, (head + 1) * head_dim)


@pytest.mark.parametrize("model_type", sorted(LAYOUTS))
def test_a_pruned_head_or_neuron_no_longer_reaches_the_output(model_type: str) -> None:
    model = _classifier(model_type)
    arch = architecture_for(model.config)
    pruner = StructuredPruner(model, arch, 0.5, total_steps=10, window=(0.0, 0.5))
    pruner.step(10)
    got = measure(model, arch)
    assert got["heads"]["zeroed"] == round(0.5 * got["heads"]["total"])
    assert got["neurons"]["zeroed"] == round(0.5 * got["neurons"]["total"])
    ids = torch.randint(3, 50, (2, 7))
    def out() -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=ids, output_hidden_states=True).hidden_states[-1]

    before = out()
    q_path, _, up_path = LAYOUTS[model_type]
    heads = pruner.groups["heads"]
    pruned = [heads[i] for i in sorted(pruner.pruned["heads"])]
    alive = [heads[i] for i in range(len(heads)) if i not in pruner.pruned["heads"]]
    generator = torch.Generator().manual_seed(1)

    def randomise(unit) -> None:
        q = model.get_submodule(q_path.format(b=unit.block))
        head_dim = unit.output.index.numel()
        axis, rows = _head_rows(model_type, unit.index, head_dim)
        with torch.no_grad():
            view = q.weight[rows] if axis == 0 else q.weight[:, rows]
            view.copy_(torch.randn(view.shape, generator=generator))

    for unit in pruned:
        randomise(unit)
    neurons = pruner.groups["neurons"]
    for i in sorted(pruner.pruned["neurons"]):
        up = model.get_submodule(up_path.format(b=neurons[i].block))
        with torch.no_grad():  # Linear (out, in) rows; GPT-2's Conv1D (in, out) columns
            if type(up).__name__ == "Conv1D":
                up.weight[:, neurons[i].index] = torch.randn(up.weight.shape[0], generator=generator)
            else:
                up.weight[neurons[i].index] = torch.randn(up.weight.shape[1], generator=generator)
    assert torch.allclose(before, out(), atol=1e-5)
    randomise(alive[0])
    assert (before - out()).abs().max() > 1e-3


def test_the_weakest_units_go_first_and_stay_pruned() -> None:
    model = _classifier("bert")
    arch = architecture_for(model.config)
    pruner = StructuredPruner(model, arch, 0.5, total_steps=100, window=(0.0, 1.0))
    norms = pruner.norms("neurons")
    pruner.step(50)  # 0.5 * (1 - 0.5^3) = 0.4375 of the neurons
    first = set(pruner.pruned["neurons"])
    k = round(0.4375 * len(norms))
    assert first == set(torch.argsort(norms)[:k].tolist())
    pruner.step(100)
    assert first <= pruner.pruned["neurons"]
    assert len(pruner.pruned["neurons"]) == len(norms) // 2


@pytest.mark.parametrize("target", [0.25, 0.7, 0.95])
def test_sparse_fine_tuning_saves_a_checkpoint_at_the_target_and_records_it(tiny_bert: Path, tmp_path: Path,
                                                                           target: float) -> None:
    from transformers import BertConfig

    record = finetune(spec_for(tiny_bert, sparsity=target, epochs=2), TRAIN, EVAL, tmp_path)
    measured = record.sparsity
    assert measured["target"] == target
    config = BertConfig.from_pretrained(record.final_path)
    n_heads = config.num_hidden_layers * config.num_attention_heads
    n_neurons = config.num_hidden_layers * config.intermediate_size
    assert measured["heads"]["total"] == n_heads and measured["neurons"]["total"] == n_neurons
    assert abs(measured["neurons"]["share"] - target) <= 0.01
    assert abs(measured["heads"]["zeroed"] - target * n_heads) <= 0.5  # 4 heads: the nearest count
    weights = load_file(record.final_path / "model.safetensors")
    zero_cols = sum(int((weights[f"bert.encoder.layer.{b}.output.dense.weight"] == 0).all(0).sum())
                    for b in range(config.num_hidden_layers))
    assert zero_cols == measured["neurons"]["zeroed"]
    step_metrics = json.loads((record.final_path / "metrics.json").read_text())
    assert step_metrics["extra"]["sparsity"]["neurons"]["zeroed"] == measured["neurons"]["zeroed"]


def test_a_sparse_run_resumed_after_a_kill_matches_the_uninterrupted_one(
        tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_for(tiny_bert, epochs=2, save_steps=(5,), sparsity=0.7)
    whole = finetune(spec, TRAIN, EVAL, tmp_path / "whole")
    run_killed_after(spec, tmp_path / "killed", 5, monkeypatch)
    resumed = finetune(spec, TRAIN, EVAL, tmp_path / "killed")
    assert resumed.sparsity == whole.sparsity
    a, b = load_file(whole.final_path / "model.safetensors"), load_file(resumed.final_path / "model.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("field,value", [("sparsity", 1.0), ("sparsity", -0.1), ("sparsity", True),
                                         ("sparsity_window", (0.7, 0.1)), ("sparsity_window", (0.1,))])
def test_sparsity_settings_are_validated_by_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        FineTuneSpec(id="x", checkpoint="builtin:minilm", **{field: value})


def test_a_run_folder_written_before_sparsity_existed_still_resumes() -> None:
    from layergw.families.hf.finetune import _differs

    spec = FineTuneSpec(id="x", checkpoint="builtin:minilm")
    old = spec.to_json()
    del old["sparsity"], old["sparsity_window"]
    identity = {"spec": spec.to_json(), "checkpoint_contents": "builtin:minilm", "data": {}}
    assert _differs({"spec": old, "checkpoint_contents": "builtin:minilm", "data": {}}, identity) == ""
    sparse = {**identity, "spec": FineTuneSpec(id="x", checkpoint="builtin:minilm", sparsity=0.7).to_json()}
    assert "sparsity" in _differs({"spec": old, "checkpoint_contents": "builtin:minilm", "data": {}}, sparse)


def test_a_sparse_checkpoint_carries_its_measured_sparsity_to_extraction(tiny_bert: Path, tmp_path: Path) -> None:
    from layergw.families.hf.adapter import _trained_metrics

    record = finetune(spec_for(tiny_bert, sparsity=0.5, epochs=1), TRAIN, EVAL, tmp_path)
    metrics = _trained_metrics(str(record.final_path))
    assert metrics["accuracy"] == record.final_accuracy
    assert metrics["extra"]["sparsity"]["neurons"]["share"] == record.sparsity["neurons"]["share"] == 0.5
    assert _trained_metrics(str(tmp_path)) is None
