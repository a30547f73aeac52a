"""Prune, freeze and skip through the architecture table, on every architecture of the zoo:
a pruned model equals the same network built by transformers with fewer layers, a skip equals
the model with those blocks removed, and frozen parameters do not move in a training step."""
from __future__ import annotations

import copy

import pytest
import torch
import transformers

from layergw.families.hf.architectures import architecture_for, is_causal, lookup
from layergw.families.hf.capture import block_list, module_path
from layergw.families.hf.edit import HFCausalLM, freeze_before, keep_blocks
from layergw.interventions.skip import skip_logits
from tests.families.hf.conftest import RANDOM, zoo_model

torch.set_num_threads(1)
DECODERS = sorted(t for t in RANDOM if lookup(t).lm_head is not None)


def _task_model(model_type: str) -> tuple[torch.nn.Module, object]:
    loaded = zoo_model(model_type)
    if loaded.vision:
        auto = transformers.AutoModelForImageClassification
        kwargs = {"num_labels": 10}
    elif is_causal(loaded.model.config):
        auto, kwargs = transformers.AutoModelForCausalLM, {}
    else:
        auto, kwargs = transformers.AutoModelForSequenceClassification, {"num_labels": 2}
    torch.manual_seed(0)
    return auto.from_pretrained(loaded.path, **kwargs).eval(), loaded


def _inputs(loaded, n: int = 3) -> dict[str, torch.Tensor]:
    rows, batch, _ = next(loaded._batches(torch.arange(n).numpy(), "cpu", n))
    return batch


def _fewer_layers(model: torch.nn.Module, keep: list[int]) -> torch.nn.Module:
    """The network of ``keep``'s blocks built by transformers itself: a config with that many
    layers and the kept blocks' weights renamed into it."""
    arch = architecture_for(model.config)
    path = module_path(model, arch.blocks, "blocks")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(keep)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in keep]
    fresh = type(model)(config).eval()
    renamed = {}
    for key, value in model.state_dict().items():
        if key.startswith(path + "."):
            old, _, rest = key[len(path) + 1:].partition(".")
            if int(old) not in keep:
                continue
            key = f"{path}.{keep.index(int(old))}.{rest}"
        renamed[key] = value
    fresh.load_state_dict(renamed, strict=True)
    return fresh


@pytest.mark.parametrize("model_type", sorted(RANDOM))
def test_a_pruned_model_is_the_network_of_its_kept_blocks(model_type: str) -> None:
    model, loaded = _task_model(model_type)
    keep = [0, 2]
    reference = _fewer_layers(model, keep)
    keep_blocks(model, loaded.arch, keep)
    assert len(block_list(model, loaded.arch)[1]) == 2 and model.config.num_hidden_layers == 2
    layer_idx = [m.layer_idx for m in model.modules() if isinstance(getattr(m, "layer_idx", None), int)]
    assert set(layer_idx) <= {0, 1}
    batch = _inputs(loaded)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, reference(**batch).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", sorted(RANDOM))
def test_freezing_keeps_the_embeddings_and_early_blocks_bit_equal_through_a_training_step(model_type: str) -> None:
    model, loaded = _task_model(model_type)
    freeze_before(model, loaded.arch, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _, blocks = block_list(model, loaded.arch)
    frozen = {id(p) for b in blocks[:2] for p in b.parameters()}
    trained = {id(p) for p in blocks[2].parameters()}
    assert all(not p.requires_grad for p in model.parameters() if id(p) in frozen)
    assert all(p.requires_grad for p in model.parameters() if id(p) in trained)
    batch = _inputs(loaded, 4)
    labels = batch["input_ids"] if "input_ids" in batch and is_causal(model.config) else torch.tensor([0, 1, 0, 1])
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(**batch, labels=labels).loss.backward()
    opt.step()
    names = {id(p): n for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p.detach(), before[n]), n
    moved = [names[i] for i in trained if not torch.equal(dict(model.named_parameters())[names[i]].detach(),
                                                          before[names[i]])]
    assert moved, "block 2 should train"
    embeddings = []
    for name in loaded.arch.embeddings:
        try:
            embeddings += list(model.get_submodule(module_path(model, name, "embeddings")).parameters())
        except ValueError:
            continue  # an optional part this model lacks
    assert embeddings and not any(p.requires_grad for p in embeddings)


@pytest.mark.parametrize("model_type", DECODERS)
def test_a_skip_equals_the_model_with_those_blocks_removed(model_type: str) -> None:
    model, loaded = _task_model(model_type)
    lm = HFCausalLM(model, loaded.tokenizer, loaded.arch)
    batch = _inputs(loaded)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    real = mask.bool()
    L = lm.n_blocks
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(skip_logits(lm, ids, mask, 1, 1)[real], full[real], atol=1e-5, rtol=1e-5)
        for i, j in [(0, 1), (1, 2), (0, 3), (1, 3), (2, 3)]:
            cut = copy.deepcopy(model)
            keep_blocks(cut, loaded.arch, [k for k in range(L) if not i <= k < j])
            expected = cut(input_ids=ids, attention_mask=mask).logits
            torch.testing.assert_close(skip_logits(lm, ids, mask, i, j)[real], expected[real], atol=1e-5, rtol=1e-5)


def test_a_pruned_decoder_generates_with_its_key_value_cache_as_without() -> None:
    """Renumbered layer indices keep the cache consistent: greedy decoding with the cache equals
    decoding by full forward passes."""
    model, loaded = _task_model("llama")
    keep_blocks(model, loaded.arch, [0, 2])
    ids = _inputs(loaded, 1)["input_ids"]
    with torch.no_grad():
        cached = model.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
        plain = ids
        for _ in range(6):
            nxt = model(input_ids=plain, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            plain = torch.cat([plain, nxt], dim=1)
    assert torch.equal(cached, plain)


def test_a_decoder_can_be_fine_tuned_as_a_classifier_cell() -> None:
    from layergw.families.base import Ablation
    from layergw.families.hf.ablation import ablate

    texts = {"source": "sst2", "split": "dev", "max_rows": 16}
    metrics = ablate(zoo_model("qwen2"), Ablation("prune", (0, 1)),
                     {"task": "classify", "train": texts, "eval": texts, "batch_size": 8, "max_length": 32,
                      "save_steps": []}, "cpu")
    assert metrics.extra["task"] == "classify" and metrics.step == 2 and 0 <= metrics.accuracy <= 1
