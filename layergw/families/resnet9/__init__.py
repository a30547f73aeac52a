"""The ResNet9 family: the paper's vision network (``model.py``), its training on an image set
(``training.py``) and the loaded model the workflows use (``adapter.py``). Checkpoints are a
path to ``<id>.safetensors`` with ``<id>.json`` beside it, or ``random:<seed>``.
"""
from __future__ import annotations

from pathlib import Path

from layergw.families.base import Family, LoadedModel, weights_path


class ResNet9Family(Family):
    name = "resnet9"
    recipes = {"train": ("layergw.families.resnet9.training:recipe",
                         "SGD with Nesterov momentum and a one-cycle schedule (params: ImageTrainSpec)")}
    ablation = "layergw.families.resnet9.ablation:ablate"

    def resolve(self, checkpoint: str) -> Path:
        """The weights file of a checkpoint path (``random:<seed>`` has none)."""
        return weights_path(checkpoint, "ResNet9 checkpoint",
                            "use a path to a .safetensors file written by layergw's resnet9 training, or random:<seed>")

    def fingerprint(self, checkpoint: str) -> str:
        from layergw.families import content_hash

        return checkpoint if checkpoint.startswith("random:") else content_hash(self.resolve(checkpoint))

    def load(self, checkpoint: str, *, data: str | None = None, split: str = "test", size: int | None = None,
             pooling: str = "flatten", residual_points: bool = True) -> LoadedModel:
        """See :func:`layergw.families.resnet9.adapter.load`."""
        from layergw.families.resnet9.adapter import load

        return load(checkpoint, data=data, split=split, size=size, pooling=pooling, residual_points=residual_points)
