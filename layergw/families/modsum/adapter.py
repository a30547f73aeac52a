"""A loaded modular-sum transformer: probes are (a, b) pairs, targets c1, c2, c."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from layergw.data.modsum import ModSumData, make_modsum
from layergw.families.modsum.checkpoint import load_checkpoint, metrics_of
from layergw.families.modsum.model import ModSumTransformer
from layergw.points import RepPoint
from layergw.inputs import one_hot
from layergw.torchkit.hooks import extract


@dataclass
class ModSumModel:
    model: ModSumTransformer
    record: dict
    data: ModSumData

    @classmethod
    def load(cls, path: Path) -> ModSumModel:
        model, record = load_checkpoint(path)
        spec = record.get("spec", {})
        data = make_modsum(spec.get("task", "f_mod"), train_fraction=spec.get("train_fraction", 0.8),
                           split_seed=spec.get("split_seed", 0))
        return cls(model, record, data)

    def points(self) -> list[RepPoint]:
        return self.model.representation_points()

    def n_inputs(self) -> int:
        return len(self.data.inputs)

    def splits(self) -> dict[str, np.ndarray]:
        """The training and validation pairs of the checkpoint's own split."""
        return {"train": self.data.train_idx, "validation": self.data.val_idx}

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu",
                batch_size: int = 1024) -> dict[str, np.ndarray]:
        model = self.model.to(device)
        x = torch.as_tensor(self.data.inputs[indices], device=device)
        return extract(model, points, [lambda s=s: model(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {name: one_hot(self.data.targets[indices, i], m)
                for i, (name, m) in enumerate(zip(self.data.target_names(), self.data.moduli))}

    @property
    def n_blocks(self) -> int:
        return self.model.cfg.n_blocks

    def depth(self, point: RepPoint) -> float:
        return point.block + {"Resid-Pre": 0.0, "Resid-Post": 1.0}.get(point.role, 0.5)

    def block_states(self, indices: np.ndarray, *, device: str = "cpu") -> list[np.ndarray]:
        from layergw.points import select_points

        names = ["blocks.0.hook_resid_pre"] + [f"blocks.{b}.hook_resid_post" for b in range(self.n_blocks)]
        points = select_points(self.points(), names)
        taken = self.extract(np.asarray(indices), points, device=device)
        d = self.model.cfg.d_model
        return [taken[p.name].reshape(-1, d) for p in sorted(points, key=lambda p: p.index)]

    def describe(self) -> dict:
        return {"family": "modsum", "task": self.data.task, "model_config": self.record.get("model_config"),
                "metrics": metrics_of(self.record).to_json() if self.record.get("phases") else None}


def block_outputs(model: ModSumModel, block: int) -> dict[str, np.ndarray]:
    """A block's output (its Resid-Post) for every input of the task, as the next block reads
    it (``flatten``: every position) and at the last position (``last``: what a head reads)."""
    from layergw.points import select_points, with_pooling

    if not 0 <= block < model.model.cfg.n_blocks:
        raise ValueError(f"block must be in 0..{model.model.cfg.n_blocks - 1}, got {block}")
    (point,) = select_points(model.points(), [f"blocks.{block}.hook_resid_post"])
    every = np.arange(model.n_inputs())
    return {pooling: model.extract(every, with_pooling([point], pooling))[point.name] for pooling in ("flatten", "last")}
