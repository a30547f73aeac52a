"""ResNet9 checkpoints: the network's weights with its training record, and untrained ones."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from layergw.families.base import Metrics
from layergw.families.resnet9.model import ResNet9, ResNet9Config, random_resnet9
from layergw.torchkit import checkpoint


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
    return checkpoint.save_checkpoint(model.state_dict(), record, out, record["model_id"])


def read_record(path: str | Path) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def load_checkpoint(path: str | Path) -> tuple[ResNet9, dict]:
    """A ResNet9 checkpoint (``x.safetensors`` with ``x.json`` beside it) in eval mode, and its record."""
    weights, record = checkpoint.load_checkpoint(path, "ResNet9 checkpoint")
    if "model_config" not in record:
        raise ValueError(f"{Path(path).with_suffix('.json')} is not a ResNet9 checkpoint record (no model_config)")
    model = ResNet9(ResNet9Config.from_dict(record["model_config"]))
    model.load_state_dict(weights)
    return model.eval(), record


def metrics_of(record: dict) -> Metrics | None:
    """The shared metrics of a training record; None for an untrained network."""
    if not record.get("trained"):
        return None
    return Metrics(step=record["spec"]["epochs"], accuracy=record["final_test_acc"],
                   train_accuracy=record["final_train_acc"], loss=record["history"][-1]["loss"], split="test")
