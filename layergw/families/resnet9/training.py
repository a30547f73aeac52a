"""Train the paper's ResNet9 on an image data set and save it as a layergw checkpoint.

Defaults (the paper gives none for its ResNet9): SGD with Nesterov momentum 0.9, a
one-cycle learning rate (linear warm-up from lr/25 to ``lr`` = 0.2 over the first 25% of
the steps, then cosine annealing to lr/1e4; PyTorch's ``OneCycleLR`` with momentum
cycling off), weight decay 5e-4 on every parameter, no label smoothing, batch 128,
no augmentation (digits are not flip-invariant), 5 epochs, images 16x16. Digits are 8x8,
so 32x32 (CIFAR-10's size, the loader's default) adds no information but costs about 5x
the time (one CPU thread: 5 epochs reach 98.9-99.7% test accuracy in about 80 s at 16x16,
99.4% in about 400 s at 32x32) and 4x the width of flattened representations; at 16x16
the network still down-samples as on CIFAR-10 (16 -> 8 -> 4 -> 2 -> 1). The logits are the
network's ``0.2 * linear`` (see :mod:`layergw.families.resnet9.model`). Each epoch ends with
the test accuracy in eval mode (BatchNorm running statistics); the train accuracy of an
epoch is the running one in train mode, and the final one is re-measured in eval mode.

On the CPU with a fixed seed a run is deterministic (same weights, same record but
for the seconds): the initialization, the shuffling and the data split all follow
``spec.seed`` / ``spec.data_seed``.

A checkpoint is ``<out>/<model_id>.safetensors`` (the state dict) and ``<model_id>.json``
(spec, model config, history, accuracies, seconds), each written to a temporary name and
renamed, the JSON last, so a JSON beside the weights means a finished checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from layergw.data.images import ImageData, load_images
from layergw.families.base import spec_from_params, write_metrics
from layergw.families.resnet9.checkpoint import metrics_of, read_record, save_checkpoint
from layergw.families.resnet9.model import ResNet9, ResNet9Config, random_resnet9
from layergw.families.resnet9.spec import ImageTrainSpec
from layergw.torchkit import checkpoint as ckpt
from layergw.torchkit.device import resolve_device

log = logging.getLogger(__name__)



def load_split(spec: ImageTrainSpec, split: str) -> ImageData:
    return load_images(spec.data, split=split, seed=spec.data_seed, test_fraction=spec.test_fraction, size=spec.size)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, *, device: str = "cpu", batch_size: int = 256) -> float:
    """Accuracy in eval mode; the model's train/eval mode is restored."""
    was = model.training
    model.eval()
    correct = 0
    try:
        for s in range(0, len(data), batch_size):
            x = torch.as_tensor(data.images[s:s + batch_size], device=device)
            y = torch.as_tensor(data.labels[s:s + batch_size], device=device)
            correct += int((model(x).argmax(-1) == y).sum())
    finally:
        model.train(was)
    return correct / max(len(data), 1)


def train_image_classifier(spec: ImageTrainSpec, out: str | Path, *, overwrite: bool = False,
                           progress: Callable[[str], None] | None = None, workdir: Path | None = None) -> dict:
    """Train ResNet9 per ``spec``; write ``<out>/<model_id>.safetensors`` + ``.json``; return the record.

    A finished checkpoint for the same spec already in ``out`` is returned as is (no
    training) unless ``overwrite``; one for another spec is an error unless ``overwrite``. With
    ``workdir`` the training saves its state there after every epoch and resumes from it.
    """
    out = Path(out)
    existing = read_record(out / f"{spec.model_id}.json")
    if existing is not None and not overwrite:
        if existing.get("spec") == json.loads(json.dumps(asdict(spec))):
            log.info("%s: finished checkpoint for this spec in %s, not training again", spec.model_id, out)
            return existing
        raise ValueError(f"{out / spec.model_id}.json holds a checkpoint trained with another spec; "
                         f"use another model_id or out, or overwrite=True")
    model, record = fit_image_classifier(spec, progress=progress, workdir=workdir)
    save_checkpoint(model, record, out)
    return record


def train_loop(model: nn.Module, train: ImageData, test: ImageData, spec: ImageTrainSpec, device: str, *,
               progress: Callable[[str], None] | None = None, workdir: Path | None = None) -> list[dict]:
    """Train ``model``'s trainable parameters (``requires_grad``) per ``spec``'s recipe; one history
    row per epoch with the test accuracy in eval mode. Shuffling follows ``spec.seed``. With
    ``workdir``, the progress is saved there after every epoch and a rerun resumes from it, to
    the same weights on the CPU as an uninterrupted run."""
    model.train().to(device)
    x_all = torch.as_tensor(train.images)
    y_all = torch.as_tensor(train.labels)
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=spec.lr, momentum=spec.momentum,
                          nesterov=spec.nesterov, weight_decay=spec.weight_decay)
    sched = None
    if spec.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, epochs=spec.epochs,
                                                    steps_per_epoch=steps_per_epoch, pct_start=spec.pct_start,
                                                    cycle_momentum=False)
    gen = torch.Generator().manual_seed(spec.seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=spec.label_smoothing)
    history: list[dict] = []
    state = ckpt.TrainState(workdir, budget=spec.epochs, what="training", unit="epochs")
    parts = {"model": model, "opt": opt, **({"sched": sched} if sched is not None else {})}
    resumed = state.resume(parts, generator=gen, device=device)
    if resumed is not None:
        history = list(resumed.record["history"])
        model.train()
    for epoch in range(len(history) + 1, spec.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=gen)
        total_loss, correct = 0.0, 0
        for s in range(0, len(order), spec.batch_size):
            idx = order[s:s + spec.batch_size]
            x, y = x_all[idx].to(device), y_all[idx].to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(-1) == y).sum())
        row = {"epoch": epoch, "loss": total_loss / len(train), "train_acc": correct / len(train),
               "test_acc": evaluate(model, test, device=device), "lr": opt.param_groups[0]["lr"],
               "seconds": time.perf_counter() - t0}
        history.append(row)
        msg = (f"{spec.model_id} epoch {epoch}/{spec.epochs} loss {row['loss']:.4f} train {row['train_acc']:.4f} "
               f"test {row['test_acc']:.4f} ({row['seconds']:.1f}s)")
        log.info(msg)
        if progress:
            progress(msg)
        state.save(epoch, parts, {"history": history}, generator=gen, device=device)
    model.eval()
    return history


def fit_image_classifier(spec: ImageTrainSpec, *, progress: Callable[[str], None] | None = None,
                         workdir: Path | None = None) -> tuple[ResNet9, dict]:
    """Train ResNet9 per ``spec``; the model (CPU, eval mode) and its record. Nothing is written but
    the training state in ``workdir`` (when given), to resume from."""
    device = resolve_device(spec.device)
    train, test = load_split(spec, "train"), load_split(spec, "test")
    if spec.max_train is not None:
        train = ImageData(train.images[:spec.max_train], train.labels[:spec.max_train], train.source, train.split,
                          train.num_classes, train.mean, train.std)
    cfg = ResNet9Config(num_classes=train.num_classes, logit_scale=spec.logit_scale)
    model = random_resnet9(spec.seed, cfg)
    started = time.perf_counter()
    history = train_loop(model, train, test, spec, device, progress=progress, workdir=workdir)
    model.eval()
    record = {
        "model_id": spec.model_id,
        "family": "resnet9",
        "trained": True,
        "spec": asdict(spec),
        "model_config": cfg.to_dict(),
        "data": {"train": train.describe(), "test": test.describe()},
        "history": history,
        "final_train_acc": evaluate(model, train, device=device),
        "final_test_acc": history[-1]["test_acc"],
        "seconds": time.perf_counter() - started,
        "device": device,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    return model.cpu(), record


def recipe(job_id: str, params: dict, seed: int, out: Path, device: str) -> None:
    """A study's resnet9 train job: ``out/final/<job>.safetensors`` with its record and metrics."""
    spec = spec_from_params(ImageTrainSpec, params, f"train job {job_id!r} (resnet9)",
                            fixed={"model_id": job_id, "seed": seed, "device": device})
    record = train_image_classifier(spec, out / "final", overwrite=True, workdir=out)
    write_metrics(out / "final", metrics_of(record))
    ckpt.TrainState(out, budget=spec.epochs, what="training").clear()


__all__ = ["ImageTrainSpec", "evaluate", "fit_image_classifier", "load_split", "recipe", "train_image_classifier"]
