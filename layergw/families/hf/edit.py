"""Prune, freeze and skip on any Hugging Face model through its architecture entry.

Pruning keeps some blocks in depth order: the block list is replaced, the config says how many
there are, each kept block's ``layer_idx`` (what a key-value cache indexes) is renumbered, and a
per-layer ``config.layer_types`` list (sliding or full attention, Gemma 2/3, Qwen) keeps each
kept block's own entry, so a saved pruned model reloads as the same network. Freezing turns off
the gradients of everything in the base model before the first trained block (embeddings
included); the blocks from it on, what follows them (``after_blocks``: final norm, pooler) and
the task head train. Skipping runs a model from block ``j`` on a given residual stream, for the
layer-skip KL of :mod:`layergw.interventions.skip`.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from layergw.families.hf.architectures import Architecture, ArchitectureError
from layergw.families.hf.capture import base_prefix, block_list, capture, module_path, readers
from layergw.points import RepPoint


def _config_for(model: nn.Module, keep: Sequence[int], n_blocks: int) -> dict[str, Any]:
    """The config fields that change when only ``keep`` of ``n_blocks`` blocks remain."""
    config = model.config
    fields: dict[str, Any] = {"num_hidden_layers": len(keep)}
    types = getattr(config, "layer_types", None)
    if isinstance(types, (list, tuple)) and len(types) == n_blocks:
        fields["layer_types"] = [types[i] for i in keep]
    return fields


@contextmanager
def blocks_kept(model: nn.Module, arch: Architecture, keep: Sequence[int]) -> Iterator[None]:
    """Run ``model`` with only the blocks ``keep`` while inside (each keeps its own layer index)."""
    path, blocks = block_list(model, arch)
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    saved = {k: getattr(model.config, k) for k in _config_for(model, keep, len(blocks))}
    for k, v in _config_for(model, keep, len(blocks)).items():
        setattr(model.config, k, v)
    setattr(parent, attr, type(blocks)(blocks[i] for i in keep))
    try:
        yield
    finally:
        setattr(parent, attr, blocks)
        for k, v in saved.items():
            setattr(model.config, k, v)


def keep_blocks(model: nn.Module, arch: Architecture, keep: Sequence[int]) -> None:
    """Prune ``model`` in place to the blocks ``keep`` (distinct, in depth order)."""
    path, blocks = block_list(model, arch)
    if list(keep) != sorted(set(keep)) or any(not 0 <= b < len(blocks) for b in keep):
        raise ValueError(f"keep must be distinct blocks in depth order within 0..{len(blocks) - 1}, got {list(keep)}")
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    for k, v in _config_for(model, keep, len(blocks)).items():
        setattr(model.config, k, v)
    kept = type(blocks)(blocks[i] for i in keep)
    for new, block in enumerate(kept):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new
    setattr(parent, attr, kept)


def freeze_before(model: nn.Module, arch: Architecture, first_trained: int) -> None:
    """Turn off the gradients of the base model's embeddings and blocks before ``first_trained``."""
    path, blocks = block_list(model, arch)
    if not 0 <= first_trained <= len(blocks):
        raise ValueError(f"first_trained must be in 0..{len(blocks)}, got {first_trained}")
    trained = {id(p) for b in blocks[first_trained:] for p in b.parameters()}
    for name in arch.after_blocks:
        try:
            trained |= {id(p) for p in model.get_submodule(module_path(model, name, "after_blocks")).parameters()}
        except ArchitectureError:
            continue  # an optional part this model lacks (OPT's project_out, a pooler)
    base = model.get_submodule(base_prefix(model)) if base_prefix(model) else model
    in_base = {id(p) for p in base.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) not in in_base or id(p) in trained)


def _hidden(args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def _replaced_input(module: nn.Module, value: torch.Tensor) -> Iterator[None]:
    """``module`` reads ``value`` instead of its first input (or ``hidden_states``)."""
    def pre(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if args:
            return (value, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": value}

    handle = module.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


class HFCausalLM:
    """A causal LM read and run block by block through its architecture entry: the residual
    stream before block 0 and after each block, and the logits when a given stream enters block
    ``start`` (the blocks before it not run)."""

    def __init__(self, model: nn.Module, tokenizer: Any, arch: Architecture) -> None:
        arch.require(("blocks", "final_norm"), "the skip check")
        self.model, self.tokenizer, self.arch = model, tokenizer, arch
        self.n_blocks = len(block_list(model, arch)[1])
        self.max_positions = getattr(model.config, "max_position_embeddings", None) or \
            getattr(model.config, "n_positions", None)
        names = ["blocks.0.hook_resid_pre"] + [f"blocks.{b}.hook_resid_post" for b in range(self.n_blocks)]
        self._names = names
        self._readers = readers(model, arch, [RepPoint(n, n, i, n) for i, n in enumerate(names)])
        self._final_norm = model.get_submodule(module_path(model, arch.final_norm, "final_norm"))

    def streams(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """The L + 1 residual-stream states (batch, positions, d) of the unmodified model."""
        taken: dict[str, torch.Tensor] = {}
        with capture(self.model, self._readers, taken.__setitem__):
            self.model(input_ids=ids, attention_mask=mask, use_cache=False)
        return [taken[n] for n in self._names]

    def logits_from(self, h: torch.Tensor, start: int, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits when the stream ``h`` enters block ``start`` (``start = L``: the final norm)."""
        _, blocks = block_list(self.model, self.arch)
        if not 0 <= start <= self.n_blocks:
            raise ValueError(f"start must be in 0..{self.n_blocks}, got {start}")
        entry = blocks[start] if start < self.n_blocks else self._final_norm
        with blocks_kept(self.model, self.arch, range(start, self.n_blocks)), _replaced_input(entry, h):
            return self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
