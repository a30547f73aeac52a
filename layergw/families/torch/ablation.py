"""Pruning and freezing of a torch module of one's own, fine-tuned as a classifier of its
inputs' labels (accuracy on held-out rows of the same source).

Where every block maps its input to a tensor of the same shape, a prune keeps any blocks in
depth order (the sequence container holds only them) and the module's own output is the
classifier's logits. Where blocks change the shape, only the paper's ``first`` applies: the
first N blocks, their output pooled (mean over positions or pixels) into a fresh linear
classifier. A freeze turns off the gradients of what runs before the first block and of the
blocks before ``first_trained``.

``params``: :class:`TorchTuneSpec` fields and ``eval`` (an inputs mapping of the held-out rows;
default: the probe source's other split for images, else a seeded fifth of the probe rows).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from layergw.families.base import Ablation, Metrics, spec_from_params
from layergw.families.torch.adapter import Inputs, TorchModel, call, read_inputs
from layergw.torchkit.checkpoint import TrainState, resume_points


@dataclass(frozen=True)
class TorchTuneSpec:
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")


class _Stop(Exception):
    pass


class Truncated(nn.Module):
    """The module up to the output of its block ``n - 1`` (block 0's input when ``n = 0``), pooled
    and classified by a fresh linear layer."""

    def __init__(self, model: TorchModel, n: int, width: int, n_classes: int) -> None:
        super().__init__()
        self.model, self.n = model, n
        self.body = copy.deepcopy(model.module)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        seq = self.body.get_submodule(self.model.blocks)
        taken: list[torch.Tensor] = []

        def grab(_m: nn.Module, args: tuple, out: object = None) -> None:
            t = args[0] if out is None else (out[0] if isinstance(out, (tuple, list)) else out)
            taken.append(t)
            raise _Stop

        handle = (seq[self.n - 1].register_forward_hook(grab) if self.n else
                  seq[0].register_forward_pre_hook(lambda m, a: grab(m, a)))
        try:
            call(self.body, x, mask)
        except _Stop:
            pass
        finally:
            handle.remove()
        return self.head(pooled(taken[0], mask))


def pooled(t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One vector per input: the mean over pixels of a feature map, over the real positions of a
    sequence; a vector stays as it is."""
    if t.ndim == 4:
        return t.flatten(2).mean(-1)
    if t.ndim == 3:
        if mask is not None and mask.shape[:2] == t.shape[:2]:
            w = mask.to(t.dtype).unsqueeze(-1)
            return (t * w).sum(1) / w.sum(1).clamp_min(1.0)
        return t.mean(1)
    if t.ndim == 2:
        return t
    raise ValueError(f"torch ablation: a block output of shape {tuple(t.shape)} (batch first) cannot be pooled into a "
                     f"classifier's input; blocks must give (batch, d), (batch, positions, d) or (batch, C, H, W)")


def ablated(model: TorchModel, ablation: Ablation) -> nn.Module:
    """The network a cell trains (module docstring)."""
    shapes = block_shapes(model)
    same = all(a == b for a, b in shapes)
    n_classes = model.inputs.n_classes
    if ablation.kind == "prune" and not same:
        if ablation.keep != tuple(range(len(ablation.keep))):
            raise ValueError(f"torch ablation: the blocks of {model.factory} change the shape of their input "
                             f"({shapes[0][0]} -> ... -> {shapes[-1][1]}), so a prune keeps the first N blocks only "
                             f"(selector first); got {list(ablation.keep)}")
        n = len(ablation.keep)
        out_shape = shapes[n - 1][1] if n else shapes[0][0]
        width = pooled(torch.zeros((1, *out_shape))).shape[-1]
        return Truncated(model, n, width, n_classes)
    net = copy.deepcopy(model.module)
    if ablation.kind == "prune":
        seq = net.get_submodule(model.blocks)
        parent_path, _, attr = model.blocks.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        setattr(parent, attr, type(seq)(*[seq[i] for i in ablation.keep]) if isinstance(seq, nn.Sequential)
                else nn.ModuleList(seq[i] for i in ablation.keep))
    return net


def block_shapes(model: TorchModel) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(input shape, output shape) of each block on one input, batch axis left out."""
    seq = model.block_list()
    shapes: dict[int, list] = {}
    handles = []
    def entering(i: int):
        def pre(_m: nn.Module, args: tuple) -> None:
            shapes[i] = [tuple(args[0].shape[1:])]
        return pre

    def leaving(i: int):
        def post(_m: nn.Module, _a: tuple, out: object) -> None:
            shapes[i].append(tuple((out[0] if isinstance(out, (tuple, list)) else out).shape[1:]))
        return post

    for i, block in enumerate(seq):
        handles.append(block.register_forward_pre_hook(entering(i)))
        handles.append(block.register_forward_hook(leaving(i)))
    try:
        with torch.no_grad():
            _, x, mask = next(model._batches(np.arange(1), "cpu", 1))
            model._run(x, mask)
    finally:
        for h in handles:
            h.remove()
    return [tuple(shapes[i]) for i in range(len(seq))]


def _freeze(net: nn.Module, model: TorchModel, first_trained: int) -> None:
    seq = net.get_submodule(model.blocks)
    frozen = {id(p) for b in list(seq)[:first_trained] for p in b.parameters()}
    for name in model.modules_before_blocks():
        frozen |= {id(p) for p in net.get_submodule(name).parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) not in frozen)


def _held_out(model: TorchModel, params: dict) -> tuple[Inputs, Inputs]:
    """(training rows, evaluation rows)."""
    if "eval" in params:
        return model.inputs, read_inputs(params["eval"])
    if model.inputs.kind == "images" and model.inputs.describe.get("split") in ("train", "test"):
        other = "train" if model.inputs.describe["split"] == "test" else "test"
        held = read_inputs({**model.inputs.spec, "split": other})
        return (held, model.inputs) if other == "train" else (model.inputs, held)
    rows = np.random.default_rng(0).permutation(len(model.inputs.x))
    cut = max(1, len(rows) // 5)

    def part(idx: np.ndarray) -> Inputs:
        i = model.inputs
        return Inputs(i.kind, i.x[idx], i.labels[idx], None if i.mask is None else i.mask[idx], i.n_classes,
                      i.describe, i.spec)

    return part(np.sort(rows[cut:])), part(np.sort(rows[:cut]))


def _logits(net: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, n_classes: int) -> torch.Tensor:
    out = call(net, x, mask)
    out = out[0] if isinstance(out, (tuple, list)) else out
    if out.ndim != 2 or out.shape[1] != n_classes:
        raise ValueError(f"torch ablation: the module's output has shape {tuple(out.shape)}; fine-tuning it as a "
                         f"classifier of the inputs' {n_classes} labels needs (batch, {n_classes}) logits")
    return out


def ablate(model: TorchModel, ablation: Ablation, params: dict, device: str, workdir: Path | None = None) -> Metrics:
    t0 = time.perf_counter()
    if model.inputs.labels is None:
        raise ValueError("torch ablation: the inputs have no labels to fine-tune on (params.inputs needs labels)")
    spec = spec_from_params(TorchTuneSpec, params, "torch ablation", skip=("eval",), fixed={"seed": ablation.seed})
    train, test = _held_out(model, params)
    torch.manual_seed(ablation.seed)
    net = ablated(model, ablation)
    if ablation.kind == "freeze" and ablation.first_trained:
        _freeze(net, model, ablation.first_trained)
    net.to(device)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=spec.lr,
                            weight_decay=spec.weight_decay)
    batches = [perm[s:s + spec.batch_size] for e in range(spec.epochs)
               for perm in [np.random.default_rng([spec.seed, e]).permutation(len(train.x))]
               for s in range(0, len(train.x), spec.batch_size)]
    state = TrainState(workdir, budget=len(batches), what="torch ablation")
    parts = {"net": net, "optimizer": opt}
    resumed = state.resume(parts, device=device)
    n_classes = model.inputs.n_classes
    save_at = resume_points(len(batches))
    net.train()
    for step in range(resumed.step if resumed else 0, len(batches)):
        rows = batches[step]
        x, mask = _rows(train, rows, device)
        loss = nn.functional.cross_entropy(_logits(net, x, mask, n_classes),
                                           torch.as_tensor(train.labels[rows], device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step + 1 in save_at:
            state.save(step + 1, parts, device=device)
    return Metrics(step=len(batches), accuracy=accuracy(net, model, test, device), split="eval",
                   extra={"seconds": time.perf_counter() - t0, "n_train": len(train.x)})


def _rows(inputs: Inputs, rows: np.ndarray, device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    x = torch.as_tensor(inputs.x[rows], device=device)
    mask = None if inputs.mask is None else torch.as_tensor(inputs.mask[rows], device=device)
    return x, mask


@torch.no_grad()
def accuracy(net: nn.Module, model: TorchModel, inputs: Inputs, device: str) -> float:
    net.eval()
    hits = 0
    for s in range(0, len(inputs.x), 256):
        rows = np.arange(s, min(s + 256, len(inputs.x)))
        x, mask = _rows(inputs, rows, device)
        pred = _logits(net, x, mask, inputs.n_classes).argmax(-1).cpu().numpy()
        hits += int((pred == inputs.labels[rows]).sum())
    return hits / len(inputs.x)


def reference(model: TorchModel, params: dict, device: str) -> Metrics | None:
    """The module as it is, when its output is logits over the labels; else None."""
    if model.inputs.labels is None:
        return None
    _, test = _held_out(model, params)
    try:
        acc = accuracy(model.module.to(device), model, test, device)
    except ValueError:
        return None
    return Metrics(step=0, accuracy=acc, split="eval")
