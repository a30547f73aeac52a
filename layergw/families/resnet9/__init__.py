"""The ResNet9 family: the paper's vision network (``model.py``), its training on an image set
(``training.py``) and the loaded model the workflows use (``adapter.py``). Checkpoints are a
path to ``<id>.safetensors`` with ``<id>.json`` beside it, or ``random:<seed>``.
"""
from __future__ import annotations

from pathlib import Path

from typing import Any

from layergw.families.base import Ablation, Family, LoadedModel, Metrics, content_hash, weights_path


class ResNet9Family(Family):
    name = "resnet9"
    recipes = {"train": "SGD with Nesterov momentum and a one-cycle schedule (params: ImageTrainSpec)"}

    def resolve(self, checkpoint: str) -> Path:
        """The weights file of a checkpoint path (``random:<seed>`` has none)."""
        return weights_path(checkpoint, "ResNet9 checkpoint",
                            "use a path to a .safetensors file written by layergw's resnet9 training, or random:<seed>")

    def fingerprint(self, checkpoint: str) -> str:
        return checkpoint if checkpoint.startswith("random:") else content_hash(self.resolve(checkpoint))

    def load(self, checkpoint: str, *, data: str | None = None, split: str = "test", size: int | None = None,
             pooling: str = "flatten", residual_points: bool = True) -> LoadedModel:
        """See :func:`layergw.families.resnet9.adapter.load`."""
        from layergw.families.resnet9.adapter import load

        return load(checkpoint, data=data, split=split, size=size, pooling=pooling, residual_points=residual_points)

    def train(self, recipe: str | None, job_id: str, params: dict, seed: int, out: Path, device: str) -> None:
        from layergw.families.resnet9.training import recipe as train_recipe

        self.recipe_name(recipe)
        train_recipe(job_id, params, seed, out, device)

    def ablate(self, model: Any, ablation: Ablation, params: dict, device: str, workdir: Path | None = None) -> Metrics:
        from layergw.families.resnet9.ablation import ablate

        ablation.check(model.n_blocks, "resnet9 ablation")
        return ablate(model, ablation, params, device, workdir=workdir)

    def reference(self, model: Any, params: dict, device: str) -> Metrics | None:
        from layergw.families.resnet9.ablation import reference

        return reference(model, params, device)
