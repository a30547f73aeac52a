"""Pruning and freezing of a modular-sum transformer: the kept blocks, a fresh head for the
task's final target fitted first on its own, then full-batch AdamW as in training, accuracy
on the checkpoint's own validation split.

Given a ``workdir``, the fine-tuning saves its state there every :data:`SAVE_EVERY` epochs
and a rerun resumes from it, to the same weights as an uninterrupted run (full-batch
training draws nothing at random)."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from layergw.families.base import Ablation, Metrics, spec_from_params
from layergw.families.modsum.adapter import ModSumModel
from layergw.families.modsum.model import ModSumTransformer, make_head
from layergw.torchkit import checkpoint as ckpt

log = logging.getLogger(__name__)

#: epochs between saved states of a cell's fine-tuning (a state is the small model and AdamW's moments)
SAVE_EVERY = 50


@dataclass(frozen=True)
class ModSumAblationSpec:
    """The fine-tuning budget of one ablation cell (the paper's optimizer; a fixed epoch budget,
    since a pruned model is not expected to reach the full model's goal).

    ``head_epochs``: the fresh head is first trained alone on the frozen features, then
    ``epochs`` train everything the cell trains (linear probe, then fine-tune). With a random
    head from the start, full-batch AdamW at weight decay 2 rewrites the blocks before the head
    aligns: the whole Model E kept (N = L) fell from 0.92 to 0.72 validation accuracy in 150
    epochs; with 100 head epochs first it stays at 0.92.
    """

    epochs: int = 1000
    head_epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 2.0
    betas: tuple[float, float] = (0.9, 0.98)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.head_epochs < 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"need epochs >= 1, head_epochs >= 0, lr > 0 and weight_decay >= 0, got {self}")


def ablated_model(model: ModSumModel, ablation: Ablation) -> ModSumTransformer:
    """The kept blocks (copies) over the trained embeddings, with one fresh head for the final
    target, seeded by the ablation; frozen parameters have ``requires_grad`` off."""
    base = model.model
    ablation.check(base.cfg.n_blocks, "modsum ablation")
    torch.manual_seed(ablation.seed)
    cfg = replace(base.cfg, n_blocks=len(ablation.keep), head_sizes=(model.data.moduli[-1],))
    new = ModSumTransformer(cfg)
    new.W_E, new.W_pos = copy.deepcopy(base.W_E), copy.deepcopy(base.W_pos)
    new.blocks = nn.ModuleList(copy.deepcopy(base.blocks[b]) for b in ablation.keep)
    new.heads = nn.ModuleList([make_head(cfg, model.data.moduli[-1])])
    frozen = [new.W_E, new.W_pos] if ablation.first_trained else []
    frozen += [p for block in new.blocks[:ablation.first_trained] for p in block.parameters()]
    for p in new.parameters():
        p.requires_grad_(all(p is not f for f in frozen))
    return new


def fine_tune(net: ModSumTransformer, model: ModSumModel, spec: ModSumAblationSpec, device: str,
              workdir: Path | None = None) -> float:
    """Train ``net`` in place on the checkpoint's training split: its head alone, then every
    parameter that requires a gradient; the last training loss. With ``workdir``, the progress is
    saved there every :data:`SAVE_EVERY` epochs and resumed from it when it exists."""
    data = model.data
    x = torch.as_tensor(data.inputs, device=device)
    y = torch.as_tensor(data.targets[:, -1], device=device)
    tr = torch.as_tensor(data.train_idx, device=device)
    trainable = [p for p in net.parameters() if p.requires_grad]
    head = list(net.heads.parameters())
    phases = ((head, spec.head_epochs), (trainable, spec.epochs))
    state = ckpt.TrainState(workdir, budget=[spec.head_epochs, spec.epochs], what="fine-tuning", unit="epochs")
    saved = state.peek()
    start_phase, loss = (saved["phase"], saved["loss"]) if saved else (0, None)
    net.train()
    for phase, (params, epochs) in enumerate(phases):
        if phase < start_phase or not epochs:
            continue
        chosen = {id(p) for p in params}
        for p in trainable:
            p.requires_grad_(id(p) in chosen)
        opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay, betas=spec.betas)
        parts = {"net": net, "opt": opt}
        first = 0
        if phase == start_phase and saved is not None:
            first = state.resume(parts, device=device, state=saved).record["epoch"]
            log.info("resuming from epoch %d of phase %d (%s)", first, phase, state.path)
        for epoch in range(first, epochs):
            step_loss = nn.functional.cross_entropy(net(x[tr])[0].double(), y[tr])
            opt.zero_grad(set_to_none=True)
            step_loss.backward()
            opt.step()
            loss = float(step_loss.item())
            if (epoch + 1) % SAVE_EVERY == 0:
                state.save(sum(e for _, e in phases[:phase]) + epoch + 1, parts,
                           {"phase": phase, "epoch": epoch + 1, "loss": loss}, device=device)
    for p in trainable:
        p.requires_grad_(True)
    return float("nan") if loss is None else loss


def _scores(net: ModSumTransformer, model: ModSumModel, device: str) -> tuple[float, float, float]:
    """Validation accuracy, training accuracy and validation loss of ``net``'s first head on
    the final target."""
    data = model.data
    x = torch.as_tensor(data.inputs, device=device)
    y = torch.as_tensor(data.targets[:, -1], device=device)
    tr = torch.as_tensor(data.train_idx, device=device)
    va = torch.as_tensor(data.val_idx, device=device)
    net.eval()
    with torch.no_grad():
        logits = net(x)[0]
        pred = logits.argmax(-1)
        val_loss = float(nn.functional.cross_entropy(logits[va].double(), y[va]))
    return float((pred[va] == y[va]).float().mean()), float((pred[tr] == y[tr]).float().mean()), val_loss


def reference(model: ModSumModel, params: dict, device: str) -> Metrics | None:
    """The checkpoint as trained, measured as the cells are (validation split, final target);
    None when its head is not the final target's (a layer-wise checkpoint stopped early)."""
    net = model.model
    if not model.record.get("complete", True) or tuple(net.cfg.head_sizes[:1]) != (model.data.moduli[-1],):
        return None
    t0 = time.perf_counter()
    accuracy, train_accuracy, loss = _scores(net.to(device), model, device)
    goal = all(p.get("reached_goal_at") is not None for p in model.record.get("phases", [{}]))
    return Metrics(step=0, accuracy=accuracy, train_accuracy=train_accuracy, loss=loss, split="validation",
                   extra={"seconds": time.perf_counter() - t0, "n_train": len(model.data.train_idx),
                          "goal_reached": goal})


def ablate(model: ModSumModel, ablation: Ablation, params: dict, device: str,
           workdir: Path | None = None) -> Metrics:
    """Fine-tune one ablation cell and measure it on the checkpoint's validation split; with
    ``workdir``, resumably (its state is ``workdir/``:data:`~layergw.torchkit.checkpoint.STATE_FILE`)."""
    spec = spec_from_params(ModSumAblationSpec, params, "modsum ablation")
    t0 = time.perf_counter()
    net = ablated_model(model, ablation).to(device)
    train_loss = fine_tune(net, model, spec, device, Path(workdir) if workdir is not None else None)
    trainable = [p for p in net.parameters() if p.requires_grad]
    accuracy, train_accuracy, val_loss = _scores(net, model, device)
    data = model.data
    return Metrics(step=spec.head_epochs + spec.epochs, accuracy=accuracy,
                   train_accuracy=train_accuracy, loss=val_loss, split="validation",
                   extra={"train_loss": train_loss, "seconds": time.perf_counter() - t0, "n_train": len(data.train_idx),
                          "trainable_parameters": sum(p.numel() for p in trainable)})
