"""Pruning and freezing of ResNet9: the kept modules (0..7), a global max pool and a fresh
linear classifier on the last kept module, trained with the family's recipe (SGD, one-cycle)
and measured on the checkpoint's test split.

A module's residual sum stays when both units of its block are kept (2 with 3, 5 with 6);
keeping modules whose widths do not chain (dropping module 4, which doubles the channels, and
keeping 5) is a ValueError naming them, so only cuts the architecture allows are run.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from layergw.families.base import Ablation, Metrics, spec_from_params
from layergw.families.resnet9.adapter import ResNet9Model
from layergw.families.resnet9.model import RESIDUAL_UNITS, ScaledLinear
from layergw.families.resnet9.spec import ImageTrainSpec


class TruncatedResNet9(nn.Module):
    """The kept conv units of a ResNet9 in order, then max pool over space and a fresh head."""

    def __init__(self, units: nn.ModuleList, keep: tuple[int, ...], head: nn.Module) -> None:
        super().__init__()
        self.units, self.keep, self.head = units, keep, head
        self.pool = nn.AdaptiveMaxPool2d((1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block_input = None
        for m, unit in zip(self.keep, self.units):
            if m in RESIDUAL_UNITS.values():
                block_input = x
            y = unit(x)
            if m in RESIDUAL_UNITS and block_input is not None and RESIDUAL_UNITS[m] in self.keep:
                y = unit.add(block_input, y)
            x = y
        return self.head(self.pool(x).flatten(1))


def ablated_model(model: ResNet9Model, ablation: Ablation) -> TruncatedResNet9:
    base = model.model
    ablation.check(model.n_blocks, "resnet9 ablation")
    torch.manual_seed(ablation.seed)
    units = nn.ModuleList(copy.deepcopy(base.layers[m]) for m in ablation.keep)
    width = base.cfg.in_channels
    for m, unit in zip(ablation.keep, units):
        if unit.conv.in_channels != width:
            raise ValueError(f"resnet9 ablation: keeping modules {list(ablation.keep)} does not fit: module {m} takes "
                             f"{unit.conv.in_channels} channels but gets {width}; keep the first N modules instead")
        width = unit.conv.out_channels
    head = ScaledLinear(width, base.cfg.num_classes, base.cfg.logit_scale)
    net = TruncatedResNet9(units, ablation.keep, head)
    for i, unit in enumerate(units):
        for p in unit.parameters():
            p.requires_grad_(i >= ablation.first_trained)
    return net


def _spec(model: ResNet9Model, params: dict, seed: int, device: str) -> ImageTrainSpec:
    """The checkpoint's training spec with ``params`` over it, as a cell trains and measures."""
    trained = model.record.get("spec") or {}
    spec = ImageTrainSpec.from_dict(trained) if trained else ImageTrainSpec()
    overrides = spec_from_params(ImageTrainSpec, {**trained, **params}, "resnet9 ablation")
    return replace(overrides, seed=seed, model_id=f"{spec.model_id}-ablation", device=device)


def reference(model: ResNet9Model, params: dict, device: str) -> Metrics:
    """The checkpoint as trained, measured as the cells are (the test split of its data)."""
    from layergw.families.resnet9.training import evaluate, load_split

    t0 = time.perf_counter()
    spec = _spec(model, params, 0, device)
    test = load_split(spec, "test")
    return Metrics(step=0, accuracy=evaluate(model.model.to(device), test, device=device),
                   split="test",
                   extra={"seconds": time.perf_counter() - t0})


def ablate(model: ResNet9Model, ablation: Ablation, params: dict, device: str,
           workdir: Path | None = None) -> Metrics:
    """Fine-tune one ablation cell with the checkpoint's recipe (``params`` override its
    fields, e.g. ``epochs``) and measure it on the test split; with ``workdir``, resumably
    (the state of the last finished epoch is ``workdir/``:data:`~layergw.torchkit.checkpoint.STATE_FILE`)."""
    from layergw.families.resnet9.training import evaluate, load_split, train_loop

    t0 = time.perf_counter()
    spec = _spec(model, params, ablation.seed, device)
    net = ablated_model(model, ablation)
    train, test = load_split(spec, "train"), load_split(spec, "test")
    if spec.max_train is not None:
        from layergw.data.images import ImageData

        train = ImageData(train.images[:spec.max_train], train.labels[:spec.max_train], train.source, train.split,
                          train.num_classes, train.mean, train.std)
    history = train_loop(net, train, test, spec, device, workdir=Path(workdir) if workdir is not None else None)
    return Metrics(step=spec.epochs, accuracy=history[-1]["test_acc"],
                   train_accuracy=evaluate(net, train, device=device), loss=history[-1]["loss"], split="test",
                   extra={"seconds": time.perf_counter() - t0, "n_train": len(train),
                          "trainable_parameters": sum(p.numel() for p in net.parameters() if p.requires_grad)})
