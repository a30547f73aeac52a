"""Adapter for the modular-sum transformers: probes are (a, b) pairs, targets c1, c2, c."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layergw.data.modsum import ModSumData, make_modsum, one_hot
from layergw.extract import extract
from layergw.models.modsum import ModSumTransformer
from layergw.models.points import RepPoint
from layergw.training import load_checkpoint


@dataclass
class ModSumAdapter:
    model: ModSumTransformer
    record: dict
    data: ModSumData

    @classmethod
    def load(cls, path: Path) -> "ModSumAdapter":
        model, record = load_checkpoint(path)
        spec = record.get("spec", {})
        data = make_modsum(spec.get("task", "f_mod"), train_fraction=spec.get("train_fraction", 0.8),
                           split_seed=spec.get("split_seed", 0))
        return cls(model, record, data)

    def points(self) -> list[RepPoint]:
        return self.model.representation_points()

    def n_inputs(self) -> int:
        return len(self.data.inputs)

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu",
                batch_size: int = 1024) -> dict[str, np.ndarray]:
        model = self.model.to(device)
        x = torch.as_tensor(self.data.inputs[indices], device=device)
        batches = [lambda s=s: model(x[s:s + batch_size]) for s in range(0, len(x), batch_size)]
        return extract(model, points, batches)

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {name: one_hot(self.data.targets[indices, i], m)
                for i, (name, m) in enumerate(zip(self.data.target_names(), self.data.moduli))}

    def describe(self) -> dict:
        return {"family": "modsum", "task": self.data.task, "final_train_acc": self.record.get("final_train_acc"),
                "final_val_acc": self.record.get("final_val_acc"), "complete": self.record.get("complete"),
                "epochs": sum(p.get("epochs", 0) for p in self.record.get("phases", [])) or None,
                "model_config": self.record.get("model_config")}
