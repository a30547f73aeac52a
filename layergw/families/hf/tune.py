"""Fine-tuning of an edited (pruned or frozen) Hugging Face model for the tasks other than text
classification (``finetune.py``): next-token prediction for a causal LM, scored by held-out loss,
perplexity and top-1 next-token accuracy, and image classification for a vision transformer,
scored by accuracy. Both are resumable through :class:`~layergw.torchkit.checkpoint.TrainState`.

Defaults: AdamW (betas 0.9/0.999, no weight decay), a linear decay to 0 without warm-up, gradient
clipping at 1.0, seeded shuffling: the text-classification recipe's choices.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layergw.torchkit.text import pad_right
from layergw.torchkit.checkpoint import TrainState, resume_points

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneSpec:
    """A fine-tuning budget and optimizer (an ablation cell's ``params``)."""

    epochs: int = 1
    batch_size: int = 16
    lr: float = 5e-5
    max_length: int = 128
    max_grad_norm: float | None = 1.0
    seed: int = 0
    save_every: int = 0  # steps between saved states (0: three evenly spaced)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if isinstance(self.save_every, bool) or not isinstance(self.save_every, int) or self.save_every < 0:
            raise ValueError(f"save_every must be an integer >= 0, got {self.save_every!r}")


def _tokens(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return [list(s) for s in ids if len(s) >= 2]  # one target token at least


@torch.no_grad()
def lm_scores(model: Any, seqs: list[list[int]], pad_id: int, device: str, batch_size: int = 32) -> dict[str, float]:
    """Token-weighted next-token loss (nats), its perplexity and top-1 accuracy over ``seqs``."""
    was = model.training
    model.eval()
    loss, hits, count = 0.0, 0, 0
    for s in range(0, len(seqs), batch_size):
        ids, mask = (t.to(device) for t in pad_right(seqs[s:s + batch_size], pad_id))
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                  ignore_index=-100, reduction="sum").item()
        real = target != -100
        hits += int((logits.argmax(-1)[real] == target[real]).sum())
        count += int(real.sum())
    model.train(was)
    mean = loss / count
    return {"loss": mean, "perplexity": math.exp(mean), "accuracy": hits / count, "tokens": count}


def _schedule(optimizer: torch.optim.Optimizer, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, (total - step) / max(1, total)))


def _save_steps(spec: TuneSpec, total: int) -> set[int]:
    if spec.save_every:
        return set(range(spec.save_every, total, spec.save_every))
    return resume_points(total)


def _loop(model: Any, batches: list[np.ndarray], loss_of: Any, spec: TuneSpec, device: str, workdir: Path | None,
          what: str) -> int:
    """The optimizer loop over precomputed batches of row indices, resumable in ``workdir``."""
    model.to(device)  # before the optimizer: a resumed optimizer's moments follow its parameters
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    total = len(batches)
    scheduler = _schedule(optimizer, total)
    state = TrainState(workdir, budget=total, what=what)
    parts = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
    resumed = state.resume(parts, device=device)
    start = resumed.step if resumed else 0
    if resumed is None:
        torch.manual_seed(spec.seed)  # dropout
    save_at = _save_steps(spec, total)
    model.train()
    for step in range(start, total):
        loss = loss_of(batches[step])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if spec.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise ValueError(f"{what}: training loss must stay finite, got {value} at step {step + 1}; lower lr")
        if step + 1 in save_at:
            state.save(step + 1, parts, device=device)
    model.eval()
    return total


def _epochs(n: int, spec: TuneSpec) -> list[np.ndarray]:
    batches = []
    for epoch in range(spec.epochs):
        perm = np.random.default_rng([spec.seed, epoch]).permutation(n)
        batches += [perm[s:s + spec.batch_size] for s in range(0, n, spec.batch_size)]
    return batches


def tune_lm(model: Any, tokenizer: Any, train: Sequence[str], evaluation: Sequence[str], spec: TuneSpec, device: str,
            workdir: Path | None = None) -> dict:
    """Fine-tune a causal LM on next-token prediction; its scores on ``evaluation`` and the steps run."""
    train_seqs = _tokens(tokenizer, train, spec.max_length)
    eval_seqs = _tokens(tokenizer, evaluation, spec.max_length)
    if not train_seqs or not eval_seqs:
        raise ValueError("hf ablation (lm): the train and eval texts need at least one text of 2 or more tokens each")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def loss_of(rows: np.ndarray) -> torch.Tensor:
        ids, mask = (t.to(device) for t in pad_right([train_seqs[r] for r in rows], pad))
        return model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss

    steps = _loop(model, _epochs(len(train_seqs), spec), loss_of, spec, device, workdir, "hf ablation (lm)")
    return {**lm_scores(model, eval_seqs, pad, device), "steps": steps, "n_train": len(train_seqs)}


def tune_images(model: Any, train: Any, test: Any, spec: TuneSpec, device: str, workdir: Path | None = None) -> dict:
    """Fine-tune an image classifier; its accuracy on ``test`` and the steps run."""
    x, y = torch.as_tensor(train.images), torch.as_tensor(train.labels)

    def loss_of(rows: np.ndarray) -> torch.Tensor:
        return model(pixel_values=x[rows].to(device), labels=y[rows].to(device)).loss

    steps = _loop(model, _epochs(len(y), spec), loss_of, spec, device, workdir, "hf ablation (images)")
    with torch.no_grad():
        pred = torch.cat([model(pixel_values=torch.as_tensor(test.images[s:s + 256]).to(device)).logits.argmax(-1).cpu()
                          for s in range(0, len(test), 256)])
    return {"accuracy": float((pred.numpy() == test.labels).mean()), "steps": steps, "n_train": len(y)}
