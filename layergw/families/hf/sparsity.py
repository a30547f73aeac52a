"""Structured sparsity while fine-tuning: whole attention heads and MLP neurons removed.

The structured-sparse BERTs the paper compares (25 %, 70 % and 95 % sparse) come from gradual
pruning during fine-tuning. Here a *unit* is one attention head (the output projection's input
columns of that head) or one MLP neuron (the down projection's input column); its importance is
the L2 norm of those weights. From ``window[0]`` to ``window[1]`` of the training steps, the
share of pruned units of each kind follows the cubic schedule of Zhu & Gupta (2017),
``s_t = s (1 - (1 - p)^3)`` with ``p`` the progress through the window, and the weakest
remaining units of that kind (ranked over all blocks) are pruned; a pruned unit stays pruned.
After each optimizer step the pruned units' weights are zeroed again, so every saved
checkpoint is really sparse. Heads and neurons are pruned to the same share.

A pruned head's query rows (and key and value rows when each head has its own, i.e. without
grouped-query attention) and their biases are zeroed too; its output columns alone make its
contribution exactly zero. The MLP's up projection is not in the architecture table, so a pruned
neuron is zero in the down projection only, which removes its contribution as well. A unit
counts as zeroed when its output columns are all zero: :func:`measure` reads a model that way,
which is also how a resumed run finds which units were pruned.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from layergw.families.hf.architectures import Architecture, split_site
from layergw.families.hf.capture import block_list

log = logging.getLogger(__name__)

KINDS = ("heads", "neurons")


def cubic_sparsity(step: int, total: int, target: float, window: tuple[float, float]) -> float:
    """The share of units pruned after ``step`` of ``total`` steps (cubic ramp over ``window``)."""
    start, end = window[0] * total, window[1] * total
    if step <= start:
        return 0.0
    if step >= end or end <= start:
        return target
    progress = (step - start) / (end - start)
    return target * (1.0 - (1.0 - progress) ** 3)


def _in_axis(module: nn.Module, path: str) -> int:
    """The weight axis that indexes a projection's inputs (Linear: 1; GPT-2's Conv1D: 0)."""
    if isinstance(module, nn.Linear):
        return 1
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return 0
    raise TypeError(f"structured sparsity: {path} must be a torch Linear or a transformers Conv1D, "
                    f"got {type(module).__name__}")


@dataclass(frozen=True)
class _Slice:
    """Weights of one unit: ``index`` along ``axis`` of ``module.weight`` (and of its bias when
    ``with_bias``: the index is along the output axis)."""

    module: nn.Module
    axis: int
    index: torch.Tensor
    with_bias: bool


@dataclass(frozen=True)
class Unit:
    """One head or neuron: the weights that carry its output, and those that feed it."""

    kind: str
    block: int
    index: int
    output: _Slice
    inputs: tuple[_Slice, ...] = ()


def _rows(start: int, width: int) -> torch.Tensor:
    return torch.arange(start, start + width)


def _head_inputs(block: nn.Module, arch: Architecture, head: int, head_dim: int, n_heads: int,
                 n_kv: int) -> tuple[_Slice, ...]:
    """The query (and own key/value) rows of one head, where the layout makes them its own."""
    out: list[_Slice] = []

    def rows_of(path: str, index: torch.Tensor) -> _Slice:
        module = block.get_submodule(split_site(path)[0])
        return _Slice(module, 1 - _in_axis(module, path), index, True)

    own = _rows(head * head_dim, head_dim)
    if arch.qkv is not None:
        if arch.qkv_layout == "per_head":
            out.append(rows_of(arch.qkv, _rows(head * 3 * head_dim, 3 * head_dim)))
        else:
            parts = [own] + ([own + n_heads * head_dim, own + 2 * n_heads * head_dim] if n_kv == n_heads else [])
            out.append(rows_of(arch.qkv, torch.cat(parts)))
    elif arch.q is not None:
        out.append(rows_of(arch.q, own))
        if n_kv == n_heads:
            out += [rows_of(arch.k, own), rows_of(arch.v, own)]
    return tuple(out)


def units(model: nn.Module, arch: Architecture) -> list[Unit]:
    """Every attention head and MLP neuron of ``model``'s blocks, through its architecture entry."""
    arch.require(["blocks", "o", "mlp_down"], "structured sparsity")
    config = model.config
    n_heads = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    found: list[Unit] = []
    for b, block in enumerate(block_list(model, arch)[1]):
        o_path = split_site(arch.o)[0]
        o = block.get_submodule(o_path)
        axis = _in_axis(o, arch.o)
        width = o.weight.shape[axis]
        if width % n_heads:
            raise ValueError(f"structured sparsity: block {b}'s {arch.o} has {width} inputs, not a multiple of "
                             f"num_attention_heads {n_heads}")
        head_dim = width // n_heads
        for h in range(n_heads):
            found.append(Unit("heads", b, h, _Slice(o, axis, _rows(h * head_dim, head_dim), False),
                              _head_inputs(block, arch, h, head_dim, n_heads, n_kv)))
        down = block.get_submodule(split_site(arch.mlp_down)[0])
        d_axis = _in_axis(down, arch.mlp_down)
        for j in range(down.weight.shape[d_axis]):
            found.append(Unit("neurons", b, j, _Slice(down, d_axis, torch.tensor([j]), False)))
    return found


def _zero_mask(group: list[Unit]) -> list[bool]:
    """Which units of one kind are zero, from their output weights (one norm per projection)."""
    by_module: dict[int, torch.Tensor] = {}
    out = []
    for u in group:
        key = id(u.output.module)
        if key not in by_module:
            w = u.output.module.weight.detach()
            by_module[key] = (w != 0).any(dim=1 - u.output.axis)
        nonzero = by_module[key]
        out.append(not bool(nonzero[u.output.index.to(nonzero.device)].any()))
    return out


def measure(model: nn.Module, arch: Architecture) -> dict:
    """The share of zeroed heads and neurons of ``model`` (counts and shares per kind)."""
    every = units(model, arch)
    out: dict = {}
    for kind in KINDS:
        group = [u for u in every if u.kind == kind]
        zero = sum(_zero_mask(group))
        out[kind] = {"zeroed": zero, "total": len(group), "share": zero / len(group) if group else 0.0}
    heads = [u for u in every if u.kind == "heads"]
    out["heads_per_block"] = [sum(z for u, z in zip(heads, _zero_mask(heads)) if u.block == b)
                              for b in sorted({u.block for u in heads})]
    return out


class StructuredPruner:
    """Gradual magnitude pruning of heads and neurons to ``target`` over a fine-tuning run."""

    def __init__(self, model: nn.Module, arch: Architecture, target: float, total_steps: int,
                 window: tuple[float, float] = (0.1, 0.7)) -> None:
        if not (0.0 <= target < 1.0):
            raise ValueError(f"sparsity must be in [0, 1), got {target!r}")
        self.target, self.total, self.window = float(target), int(total_steps), tuple(window)
        every = units(model, arch)
        self.groups = {kind: [u for u in every if u.kind == kind] for kind in KINDS}
        self._owners = {kind: _owners(g) for kind, g in self.groups.items()}
        self._masks: dict[int, tuple[nn.Module, torch.Tensor, torch.Tensor | None]] = {}
        self.pruned: dict[str, set[int]] = {kind: set() for kind in KINDS}
        for kind, group in self.groups.items():
            self._prune(kind, [i for i, z in enumerate(_zero_mask(group)) if z])
        if any(self.pruned.values()):
            log.info("structured sparsity: %s already zero (a resumed run keeps them pruned)",
                     ", ".join(f"{len(p)} {k}" for k, p in self.pruned.items()))

    def norms(self, kind: str) -> torch.Tensor:
        """Each unit's output-weight L2 norm, in the order of ``groups[kind]``."""
        out = torch.zeros(len(self.groups[kind]), dtype=torch.float64)
        for module, axis, owner in self._owners[kind]:
            sq = module.weight.detach().double().pow(2).sum(dim=1 - axis).cpu()
            out.index_add_(0, owner, sq)
        return out.sqrt()

    def step(self, step: int) -> None:
        """After optimizer step ``step``: prune up to the schedule's share, then re-zero."""
        share = cubic_sparsity(step, self.total, self.target, self.window)
        for kind, group in self.groups.items():
            want = min(len(group), math.floor(share * len(group) + 0.5))
            have = self.pruned[kind]
            if want > len(have):
                norms = self.norms(kind)
                if have:
                    norms[list(have)] = math.inf
                self._prune(kind, torch.argsort(norms, stable=True)[:want - len(have)].tolist())
        self.apply()

    def _prune(self, kind: str, new: list[int]) -> None:
        for i in new:
            self.pruned[kind].add(i)
            unit = self.groups[kind][i]
            for part in (unit.output, *unit.inputs):
                module = part.module
                if id(module) not in self._masks:
                    bias = getattr(module, "bias", None)
                    self._masks[id(module)] = (module, torch.ones_like(module.weight),
                                               None if bias is None else torch.ones_like(bias))
                _, w_mask, b_mask = self._masks[id(module)]
                index = part.index.to(w_mask.device)
                w_mask.index_fill_(part.axis, index, 0.0)
                if part.with_bias and b_mask is not None:
                    b_mask.index_fill_(0, index, 0.0)

    def apply(self) -> None:
        """Zero every pruned unit's weights (after an optimizer step moved them)."""
        with torch.no_grad():
            for module, w_mask, b_mask in self._masks.values():
                if w_mask.device != module.weight.device:
                    w_mask = w_mask.to(module.weight.device)
                    b_mask = None if b_mask is None else b_mask.to(module.weight.device)
                    self._masks[id(module)] = (module, w_mask, b_mask)
                module.weight.mul_(w_mask)
                if b_mask is not None:
                    module.bias.mul_(b_mask)

    def counts(self) -> dict[str, int]:
        return {kind: len(p) for kind, p in self.pruned.items()}


def _owners(group: list[Unit]) -> list[tuple[nn.Module, int, torch.Tensor]]:
    """Per output projection of a kind: which unit (position in ``group``) owns each input column."""
    by_module: dict[int, tuple[nn.Module, int, torch.Tensor]] = {}
    for pos, u in enumerate(group):
        module, axis = u.output.module, u.output.axis
        if id(module) not in by_module:
            by_module[id(module)] = (module, axis, torch.full((module.weight.shape[axis],), -1, dtype=torch.long))
        by_module[id(module)][2][u.output.index] = pos
    for module, _, owner in by_module.values():
        if (owner < 0).any():
            raise ValueError(f"structured sparsity: {type(module).__name__} has input columns owned by no unit")
    return list(by_module.values())
