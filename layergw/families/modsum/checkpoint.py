"""Modular-sum checkpoints: the transformer's weights with its training record."""
from __future__ import annotations

from pathlib import Path

from layergw.families.base import Metrics
from layergw.families.modsum.model import ModSumConfig, ModSumTransformer
from layergw.torchkit import checkpoint


def save_checkpoint(model: ModSumTransformer, record: dict, directory: str | Path) -> Path:
    """Write ``<model_id>.safetensors`` and ``<model_id>.json`` (config, epochs, accuracies)."""
    return checkpoint.save_checkpoint(model.state_dict(), record, directory, record["model_id"])


def load_checkpoint(path: str | Path) -> tuple[ModSumTransformer, dict]:
    """A checkpoint written by :func:`save_checkpoint`, in eval mode, and its record."""
    weights, record = checkpoint.load_checkpoint(path, "modular-sum checkpoint")
    model = ModSumTransformer(ModSumConfig.from_dict(record["model_config"]))
    model.load_state_dict(weights)
    model.eval()
    return model, record


def metrics_of(record: dict) -> Metrics:
    """The shared metrics of a training record: the last phase's accuracies, epochs summed."""
    last = record["phases"][-1]
    return Metrics(step=sum(p["epochs"] for p in record["phases"]), accuracy=last["val_acc"],
                   train_accuracy=last["train_acc"], loss=last["train_loss"], split="validation",
                   complete=bool(record["complete"]),
                   extra={"phases": len(record["phases"]), "targets": last["targets"]})
