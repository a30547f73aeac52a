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
network's ``0.2 * linear`` (see :mod:`layergw.models.resnet9`). Each epoch ends with
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
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from layergw.data.images import ImageData, load_images
from layergw.models.resnet9 import ResNet9, ResNet9Config, random_resnet9

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class ImageTrainSpec:
    """Everything that determines a trained ResNet9 (see the module docstring for the defaults)."""

    model_id: str = "resnet9_digits"
    data: str = "digits"
    size: int = 16
    test_fraction: float = 0.2
    data_seed: int = 0
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: str = "onecycle"
    pct_start: float = 0.25
    logit_scale: float = 0.2
    seed: int = 0
    device: str = "auto"
    max_train: int | None = None  # use only the first N training images (quick runs, tests)

    def __post_init__(self) -> None:
        if self.schedule not in ("onecycle", "constant"):
            raise ValueError(f"schedule must be 'onecycle' or 'constant', got {self.schedule!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0 or not 0 <= self.label_smoothing < 1 or not 0 < self.pct_start < 1:
            raise ValueError("need lr > 0, weight_decay >= 0, 0 <= label_smoothing < 1 and 0 < pct_start < 1")
        if self.max_train is not None and self.max_train < 1:
            raise ValueError(f"max_train must be None or >= 1, got {self.max_train}")

    @classmethod
    def from_dict(cls, d: dict) -> ImageTrainSpec:
        return cls(**d)


def resolve_device(device: str) -> str:
    """``auto`` is ``cuda`` when PyTorch sees a GPU, else ``cpu``."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but PyTorch sees no GPU")
    return device


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
                           progress: Callable[[str], None] | None = None) -> dict:
    """Train ResNet9 per ``spec``; write ``<out>/<model_id>.safetensors`` + ``.json``; return the record.

    A finished checkpoint for the same spec already in ``out`` is returned as is (no
    training) unless ``overwrite``; one for another spec is an error unless ``overwrite``.
    """
    out = Path(out)
    existing = read_record(out / f"{spec.model_id}.json")
    if existing is not None and not overwrite:
        if existing.get("spec") == json.loads(json.dumps(asdict(spec))):
            log.info("%s: finished checkpoint for this spec in %s, not training again", spec.model_id, out)
            return existing
        raise ValueError(f"{out / spec.model_id}.json holds a checkpoint trained with another spec; "
                         f"use another model_id or out, or overwrite=True")
    model, record = fit_image_classifier(spec, progress=progress)
    save_checkpoint(model, record, out)
    return record


def fit_image_classifier(spec: ImageTrainSpec, *, progress: Callable[[str], None] | None = None
                         ) -> tuple[ResNet9, dict]:
    """Train ResNet9 per ``spec`` without writing anything; the model (CPU, eval mode) and its record."""
    device = resolve_device(spec.device)
    train, test = load_split(spec, "train"), load_split(spec, "test")
    if spec.max_train is not None:
        train = ImageData(train.images[:spec.max_train], train.labels[:spec.max_train], train.source, train.split,
                          train.num_classes, train.mean, train.std)
    cfg = ResNet9Config(num_classes=train.num_classes, logit_scale=spec.logit_scale)
    model = random_resnet9(spec.seed, cfg).train().to(device)
    x_all = torch.as_tensor(train.images)
    y_all = torch.as_tensor(train.labels)
    steps_per_epoch = math.ceil(len(train) / spec.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                          weight_decay=spec.weight_decay)
    sched = None
    if spec.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, epochs=spec.epochs,
                                                    steps_per_epoch=steps_per_epoch, pct_start=spec.pct_start,
                                                    cycle_momentum=False)
    gen = torch.Generator().manual_seed(spec.seed)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=spec.label_smoothing)
    history = []
    started = time.perf_counter()
    for epoch in range(1, spec.epochs + 1):
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


def random_checkpoint(seed: int, out: str | Path, *, model_id: str | None = None, num_classes: int = 10,
                      logit_scale: float = 0.2) -> Path:
    """Write an untrained ResNet9 (PyTorch's default init under ``seed``) as a checkpoint; its path.

    The same network as the adapter's ``random:<seed>`` checkpoint, for the paper's
    random-init comparison when a file is wanted.
    """
    cfg = ResNet9Config(num_classes=num_classes, logit_scale=logit_scale)
    model_id = model_id or f"resnet9_random_{seed}"
    record = {"model_id": model_id, "family": "resnet9", "trained": False, "seed": seed,
              "model_config": cfg.to_dict(), "torch_version": torch.__version__}
    return save_checkpoint(random_resnet9(seed, cfg), record, out)


def save_checkpoint(model: ResNet9, record: dict, out: str | Path) -> Path:
    """Write ``<model_id>.safetensors`` then ``<model_id>.json``, each atomically; the weights' path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mid = record["model_id"]
    weights, meta = out / f"{mid}.safetensors", out / f"{mid}.json"
    tmp_w = weights.with_name(f".{weights.name}.{os.getpid()}.tmp")
    tmp_m = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp_w))
    meta.unlink(missing_ok=True)  # the JSON marks a finished checkpoint: never beside other weights
    tmp_w.replace(weights)
    tmp_m.write_text(json.dumps(record, indent=1))
    tmp_m.replace(meta)
    return weights


def read_record(path: str | Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def load_checkpoint(path: str | Path) -> tuple[ResNet9, dict]:
    """A ResNet9 checkpoint (``x.safetensors`` with ``x.json`` beside it) in eval mode, and its record."""
    path = Path(path)
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for f in (weights, meta):
        if not f.exists():
            raise ValueError(f"ResNet9 checkpoint file {f} does not exist (a checkpoint is <id>.safetensors "
                             f"with <id>.json beside it, as layergw.image_training writes)")
    record = json.loads(meta.read_text())
    if "model_config" not in record:
        raise ValueError(f"{meta} is not a ResNet9 checkpoint record (no model_config)")
    model = ResNet9(ResNet9Config.from_dict(record["model_config"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), record


__all__ = [
    "ImageTrainSpec",
    "evaluate",
    "fit_image_classifier",
    "load_checkpoint",
    "random_checkpoint",
    "read_record",
    "resolve_device",
    "save_checkpoint",
    "train_image_classifier",
]
