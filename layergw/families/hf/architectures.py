"""One table per Hugging Face architecture: where a model's blocks, embeddings, final norm, head,
attention projections and MLP modules live, and how the residual stream enters and leaves a
block. Extraction (the paper's Table-2 points), prune, freeze and skip all read this table, so
no other module names a module path of a specific architecture.

A *site* is where a tensor is read: ``"path"`` is a module's output (the first element of a
tuple), ``"path:in"`` its input (the first positional argument, else ``hidden_states``). Paths
inside a block are relative to the block; ``blocks``, ``embeddings``, ``final_norm`` and
``after_blocks`` are relative to the model's base model (``model.base_model``: ``BertModel``,
``LlamaModel``, ...), and ``lm_head`` to the causal-LM model. An architecture missing from the
table gets block outputs only; a study may give the entry (or override fields of a known one)
in ``models[].params.arch``.

Points read through the table (TransformerLens names, the paper's Table 2):

- ``hook_resid_pre`` / ``hook_resid_post``: the block's input and output;
- ``hook_attn_out``, ``hook_mlp_out``: what attention and MLP add to the stream (``attn_out``,
  ``mlp_out``); ``hook_resid_mid``: the stream between them (``resid_mid``; none when
  attention and MLP read the same input in parallel);
- ``mlp.hook_pre``: the activation function's input (the gate's pre-activation in a gated
  MLP); ``mlp.hook_post``: the down projection's input (``act(gate) * up`` when gated);
- per head ``attn.hook_q/k/v``: the projections' outputs before any rotary embedding or
  q/k norm (grouped-query attention: k and v have the key-value heads); ``attn.hook_z``: the
  output projection's input; ``attn.hook_pattern``: the attention module's softmax weights
  (eager attention). Hugging Face modules do not expose the pre-softmax scores, so
  ``attn.hook_attn_scores`` is not read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

RESIDUALS = ("pre_norm", "post_norm", "parallel")
QKV_LAYOUTS = ("concat", "per_head")
SITE_IN = ":in"
#: fields a point set needs, beyond ``blocks``
FINE_FIELDS = ("attn_out", "resid_mid", "mlp_act", "mlp_down", "mlp_out")
HEAD_FIELDS = ("attn", "o")


class ArchitectureError(ValueError):
    """A model whose architecture entry lacks what an operation needs."""


@dataclass(frozen=True)
class Architecture:
    """Where one architecture keeps each part (see the module docstring for sites and paths).

    ``residual``: ``pre_norm`` (the stream passes each block unnormalised; ``ln1``/``ln2`` before
    attention/MLP), ``post_norm`` (BERT: ``ln1``/``ln2`` after each residual add) or ``parallel``
    (attention and MLP both read the block input). ``q``/``k``/``v`` are separate projections, or
    ``qkv`` one fused projection laid out ``concat`` ([q | k | v]) or ``per_head`` (each head's
    q, k, v together, GPT-NeoX). ``when`` holds ``(config attribute, value, {field: value})``:
    fields that change when the model's config has that value. ``after_blocks`` (final norm,
    pooler) train with the head when blocks are frozen; an entry that leaves them out freezes them.
    """

    name: str
    model_types: tuple[str, ...] = ()
    blocks: str | None = None
    embeddings: tuple[str, ...] = ()
    final_norm: str | None = None
    after_blocks: tuple[str, ...] = ()
    lm_head: str | None = None
    residual: str = "pre_norm"
    ln1: str | None = None
    ln2: str | None = None
    attn: str | None = None
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None
    qkv_layout: str = "concat"
    o: str | None = None
    attn_out: str | None = None
    resid_mid: str | None = None
    mlp_act: str | None = None
    mlp_down: str | None = None
    mlp_out: str | None = None
    min_blocks: int = 0
    when: tuple[tuple[str, Any, dict], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.residual not in RESIDUALS:
            raise ArchitectureError(f"arch {self.name!r}: residual must be one of {', '.join(RESIDUALS)}, "
                                    f"got {self.residual!r}")
        if isinstance(self.min_blocks, bool) or not isinstance(self.min_blocks, int) or self.min_blocks < 0:
            raise ArchitectureError(f"arch {self.name!r}: min_blocks must be an integer >= 0, got {self.min_blocks!r}")
        if self.qkv_layout not in QKV_LAYOUTS:
            raise ArchitectureError(f"arch {self.name!r}: qkv_layout must be one of {', '.join(QKV_LAYOUTS)}, "
                                    f"got {self.qkv_layout!r}")
        for name in ("model_types", "embeddings", "after_blocks"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            else:
                object.__setattr__(self, name, tuple(value))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in ("name", "when", "residual", "qkv_layout", "model_types", "min_blocks") and value is not None \
                    and not (isinstance(value, str) or isinstance(value, tuple) and all(isinstance(v, str) for v in value)):
                raise ArchitectureError(f"arch {self.name!r}: {f.name} must be a module path (a string), got {value!r}")

    def for_config(self, config: Any) -> Architecture:
        """This entry with the ``when`` changes that apply to ``config``."""
        changes: dict = {}
        for attr, value, fields_ in self.when:
            if getattr(config, attr, None) == value:
                changes.update(fields_)
        return dataclasses.replace(self, **changes) if changes else self

    def require(self, names: tuple[str, ...] | list[str], what: str) -> None:
        """An :class:`ArchitectureError` naming the fields ``what`` needs that this entry lacks."""
        missing = [n for n in names if getattr(self, n) is None
                   and not (n == "resid_mid" and self.residual == "parallel")
                   and not (n in ("q", "k", "v") and self.qkv is not None)]
        if missing:
            raise ArchitectureError(
                f"{what} needs the architecture table's {', '.join(repr(m) for m in missing)} for "
                f"{self.describe()}; give {'it' if len(missing) == 1 else 'them'} in models[].params.arch "
                f"(e.g. arch: {{{missing[0]}: <module path>}}; see docs/models.md)")

    def describe(self) -> str:
        if self.model_types:
            return f"architecture {self.name!r} (model_type {', '.join(self.model_types)})"
        return f"architecture {self.name!r}"


def _bert_like(name: str, model_types: tuple[str, ...], *, q: str = "query", k: str = "key", v: str = "value",
               embeddings: tuple[str, ...] = ("embeddings",)) -> Architecture:
    """BERT's post-norm encoder layout (RoBERTa, ELECTRA, DeBERTa-v2 share it)."""
    return Architecture(
        name, model_types, blocks="encoder.layer", embeddings=embeddings, after_blocks=("pooler",),
        residual="post_norm", ln1="attention.output.LayerNorm", ln2="output.LayerNorm", attn="attention.self",
        q=f"attention.self.{q}", k=f"attention.self.{k}", v=f"attention.self.{v}", o="attention.output.dense",
        attn_out="attention.output.dense", resid_mid="attention.output", mlp_act="intermediate.intermediate_act_fn",
        mlp_down="output.dense", mlp_out="output.dense")


def _llama_like(name: str, model_types: tuple[str, ...], **changes: Any) -> Architecture:
    """The pre-norm decoder layout of Llama (Mistral, Qwen2/3, Gemma share it)."""
    base = Architecture(
        name, model_types, blocks="layers", embeddings=("embed_tokens",), final_norm="norm", after_blocks=("norm",),
        lm_head="lm_head", ln1="input_layernorm", ln2="post_attention_layernorm", attn="self_attn",
        q="self_attn.q_proj", k="self_attn.k_proj", v="self_attn.v_proj", o="self_attn.o_proj", attn_out="self_attn",
        resid_mid="post_attention_layernorm:in", mlp_act="mlp.act_fn", mlp_down="mlp.down_proj", mlp_out="mlp")
    return dataclasses.replace(base, **changes)


def _vit_like(name: str, model_types: tuple[str, ...]) -> Architecture:
    return Architecture(
        name, model_types, blocks="layers", embeddings=("embeddings",), final_norm="layernorm",
        after_blocks=("layernorm", "pooler"), ln1="layernorm_before", ln2="layernorm_after", attn="attention",
        q="attention.q_proj", k="attention.k_proj", v="attention.v_proj", o="attention.o_proj", attn_out="attention",
        resid_mid="layernorm_after:in", mlp_act="mlp.activation_fn", mlp_down="mlp.fc2", mlp_out="mlp")


_GEMMA2 = {"attn_out": "post_attention_layernorm", "resid_mid": "pre_feedforward_layernorm:in",
           "ln2": "pre_feedforward_layernorm", "mlp_out": "post_feedforward_layernorm"}

ARCHITECTURES: tuple[Architecture, ...] = (
    _bert_like("bert", ("bert",)),
    _bert_like("roberta", ("roberta", "xlm-roberta", "camembert")),
    _bert_like("electra", ("electra",), embeddings=("embeddings", "embeddings_project")),
    # transformers' DebertaV2Encoder reads the last layer's output, so it needs one layer at least
    dataclasses.replace(_bert_like("deberta-v2", ("deberta-v2",), q="query_proj", k="key_proj", v="value_proj"),
                        min_blocks=1),
    Architecture(
        "distilbert", ("distilbert",), blocks="transformer.layer", embeddings=("embeddings",), residual="post_norm",
        ln1="sa_layer_norm", ln2="output_layer_norm", attn="attention", q="attention.q_lin", k="attention.k_lin",
        v="attention.v_lin", o="attention.out_lin", attn_out="attention", resid_mid="sa_layer_norm",
        mlp_act="ffn.activation", mlp_down="ffn.lin2", mlp_out="ffn.lin2"),
    Architecture(
        "gpt2", ("gpt2",), blocks="h", embeddings=("wte", "wpe", "drop"), final_norm="ln_f", after_blocks=("ln_f",),
        lm_head="lm_head", ln1="ln_1", ln2="ln_2", attn="attn", qkv="attn.c_attn", o="attn.c_proj", attn_out="attn",
        resid_mid="ln_2:in", mlp_act="mlp.act", mlp_down="mlp.c_proj", mlp_out="mlp"),
    Architecture(
        "gpt-neox", ("gpt_neox",), blocks="layers", embeddings=("embed_in", "emb_dropout"),
        final_norm="final_layer_norm", after_blocks=("final_layer_norm",), lm_head="embed_out", residual="parallel",
        ln1="input_layernorm", ln2="post_attention_layernorm", attn="attention", qkv="attention.query_key_value",
        qkv_layout="per_head", o="attention.dense", attn_out="attention", mlp_act="mlp.act",
        mlp_down="mlp.dense_4h_to_h", mlp_out="mlp",
        when=(("use_parallel_residual", False, {"residual": "pre_norm",
                                                "resid_mid": "post_attention_layernorm:in"}),)),
    Architecture(
        "opt", ("opt",), blocks="decoder.layers",
        embeddings=("decoder.embed_tokens", "decoder.embed_positions", "decoder.project_in"),
        final_norm="decoder.final_layer_norm", after_blocks=("decoder.final_layer_norm", "decoder.project_out"),
        lm_head="lm_head", ln1="self_attn_layer_norm", ln2="final_layer_norm", attn="self_attn", q="self_attn.q_proj",
        k="self_attn.k_proj", v="self_attn.v_proj", o="self_attn.out_proj", attn_out="self_attn",
        resid_mid="final_layer_norm:in", mlp_act="activation_fn", mlp_down="fc2", mlp_out="fc2",
        when=(("do_layer_norm_before", False, {"residual": "post_norm", "resid_mid": "self_attn_layer_norm",
                                               "final_norm": None}),)),
    _llama_like("llama", ("llama",)),
    _llama_like("mistral", ("mistral",)),
    _llama_like("qwen2", ("qwen2",)),
    _llama_like("qwen3", ("qwen3",)),
    _llama_like("gemma", ("gemma",)),
    _llama_like("gemma2", ("gemma2",), **_GEMMA2),
    _llama_like("gemma3", ("gemma3_text",), **_GEMMA2),
    _llama_like("phi3", ("phi3",), q=None, k=None, v=None, qkv="self_attn.qkv_proj", mlp_act="mlp.activation_fn"),
    _vit_like("vit", ("vit",)),
    _vit_like("deit", ("deit",)),
)

_BY_TYPE = {t: a for a in ARCHITECTURES for t in a.model_types}
ARCH_FIELDS = tuple(f.name for f in dataclasses.fields(Architecture) if f.name not in ("when",))


def names() -> list[str]:
    return [a.name for a in ARCHITECTURES]


def lookup(model_type: str | None) -> Architecture | None:
    """The table's entry for a config's ``model_type``, or None."""
    return _BY_TYPE.get(model_type or "")


def architecture_for(config: Any, override: dict | None = None) -> Architecture | None:
    """The entry for a model's config, with a study's ``params.arch`` fields over it (a full entry
    for an architecture the table lacks); None when neither gives one."""
    model_type = getattr(config, "model_type", None)
    known = lookup(model_type)
    if override is None:
        return None if known is None else known.for_config(config)
    if not isinstance(override, dict):
        raise ArchitectureError(f"params.arch must be a mapping of table fields, got {type(override).__name__}")
    from layergw.registry import suggest

    valid = [f for f in ARCH_FIELDS if f not in ("name", "model_types")]
    for key in override:
        if key not in valid:
            raise ArchitectureError(f"params.arch: no field {key!r}{suggest(key, valid)}; valid: {', '.join(valid)}")
    base = known.for_config(config) if known is not None else Architecture(f"{model_type or 'custom'} (params.arch)",
                                                                            (model_type,) if model_type else ())
    try:
        return dataclasses.replace(base, **override)
    except TypeError as e:
        raise ArchitectureError(f"params.arch: {e}") from None


def split_site(site: str) -> tuple[str, bool]:
    """(module path, whether the site is the module's input)."""
    if site.endswith(SITE_IN):
        return site[:-len(SITE_IN)], True
    return site, False


def is_causal(config: Any) -> bool:
    """Whether a config is of a decoder-only (causal) LM: GPT-2, Llama and the like; BERT-style
    masked LMs are encoders even though a causal head exists for them."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_decoder", False):
        return True
    mt = getattr(config, "model_type", "")
    return mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
