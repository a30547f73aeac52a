"""A loaded ResNet9 (family ``resnet9``): probes are images of a split, the target is the label.

``checkpoint`` is a path to a checkpoint written by :mod:`layergw.families.resnet9.training`
(``<id>.safetensors`` with ``<id>.json``) or ``random:<seed>`` for an untrained network
(PyTorch's default initialization under that seed), the paper's random-init comparison.
The data, split seed, test fraction and image size default to those the checkpoint was
trained with (for ``random:`` those of a default :class:`ImageTrainSpec`: digits at 16x16),
so the probes come from the held-out test split the model never saw.

Pooling turns a point's (C, H, W) output into one vector:

- ``flatten`` (default): all C*H*W values, the representation as the layer outputs it,
  as the paper takes "any intermediate output". Widths at 32x32 inputs: 65,536 for
  module 0 and 4's conv/BN/ReLU, 32,768 for modules 1-3, 16,384 for 4.MaxPool and 5-6,
  4,608 for module 7's conv/BN/ReLU, 128 for 7.MaxPool, 10 for the logits; about 866k
  values per image over all 29 points, so n = 500 probes are 1.7 GB of float32 (0.43 GB
  at 16x16, the default digits size). Measures only need the n x n geometry, so the width
  costs time linearly and memory only at extraction.
- ``avg`` (stored on the points as ``mean``): the global average over H and W, C values
  per point (64 to 256), for large n or large images; it discards spatial layout.

Extraction runs the network in eval mode (BatchNorm running statistics).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from layergw.data.images import ImageData, load_images
from layergw.families.resnet9.model import ResNet9, ResNet9Config, random_resnet9, resnet9_points
from layergw.families.resnet9.checkpoint import load_checkpoint, metrics_of
from layergw.families.resnet9.spec import ImageTrainSpec
from layergw.points import RepPoint
from layergw.inputs import one_hot
from layergw.torchkit.hooks import extract
from layergw.torchkit.pooling import check_pooling

POOLINGS = {"flatten": "flatten", "avg": "mean", "mean": "mean"}


@dataclass
class ResNet9Model:
    model: ResNet9
    record: dict
    data: ImageData
    checkpoint: str
    pooling: str = "flatten"
    residual_points: bool = True

    def points(self) -> list[RepPoint]:
        return resnet9_points(residual=self.residual_points, pooling=POOLINGS[self.pooling])

    def n_inputs(self) -> int:
        return len(self.data)

    def splits(self) -> dict[str, np.ndarray]:
        return {}

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu",
                batch_size: int = 256) -> dict[str, np.ndarray]:
        """Point name -> (len(indices), d) float32, the network in eval mode, batch by batch."""
        if len(indices) == 0:
            raise ValueError("indices must name at least one probe image, got none")
        for p in points:
            check_pooling(p, 4)  # an unsupported pooling fails before any work
        model = self.model.to(device)
        idx = np.asarray(indices)
        return extract(model, points, [
            lambda s=s: model(torch.as_tensor(self.data.images[idx[s:s + batch_size]], device=device))
            for s in range(0, len(idx), batch_size)])

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {"label": one_hot(self.data.labels[np.asarray(indices)], self.data.num_classes)}

    @property
    def n_blocks(self) -> int:
        """Modules 0..7; module 8, the linear head, is the classifier an ablation replaces."""
        return 8

    def depth(self, point: RepPoint) -> float:
        """A module's output (its ReLU, or the max pool / residual sum that follows it) is at
        m + 1; its other points inside it; the logits after all eight."""
        m = point.block
        if m == 8:
            return 8.0
        last = {4: "MaxPool", 7: "MaxPool"}.get(m) or ("Residual" if m in (3, 6) and self.residual_points else "ReLU")
        return m + 1.0 if point.role == last else m + 0.5

    def block_states(self, indices: np.ndarray, *, device: str = "cpu") -> list[np.ndarray]:
        raise ValueError("ResNet9's modules change the width of their input, so it has no residual stream for the "
                         "block_influence and angular selectors; use first or last")

    def describe(self) -> dict:
        return {"family": "resnet9", "checkpoint": self.checkpoint, "trained": bool(self.record.get("trained")),
                "data": self.data.describe(), "pooling": self.pooling, "residual_points": self.residual_points,
                "metrics": m.to_json() if (m := metrics_of(self.record)) else None,
                "model_config": self.record.get("model_config"), "spec": self.record.get("spec")}


def _random_seed(checkpoint: str) -> int:
    text = checkpoint.split(":", 1)[1]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"checkpoint {checkpoint!r}: 'random:<seed>' needs an integer seed, got {text!r}") from None


def load(checkpoint: str, *, data: str | None = None, split: str = "test", size: int | None = None,
         pooling: str = "flatten", residual_points: bool = True) -> ResNet9Model:
    """A ResNet9 with its probe images: a checkpoint path or ``random:<seed>`` (see the module docstring).

    ``data``: an image source for :func:`layergw.data.images.load_images` (``digits``,
    ``cifar10``, a folder or .npz); ``None`` takes the checkpoint's. ``size``: image size,
    ``None`` takes the checkpoint's. ``pooling``: ``flatten`` or ``avg``.
    ``residual_points``: include the residual block outputs ``3.Residual`` and ``6.Residual``
    (29 points; ``False`` gives the paper's 27).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be 'flatten' or 'avg', got {pooling!r}")
    if checkpoint.startswith("random:"):
        seed = _random_seed(checkpoint)
        spec = ImageTrainSpec()
        record: dict = {"model_id": f"resnet9_random_{seed}", "trained": False, "seed": seed}
        model = None
    else:
        from layergw.families.resnet9 import ResNet9Family

        model, record = load_checkpoint(ResNet9Family().resolve(checkpoint))
        spec = ImageTrainSpec.from_dict(record["spec"]) if "spec" in record else ImageTrainSpec()
    images = load_images(data or spec.data, split=split, seed=spec.data_seed, test_fraction=spec.test_fraction,
                         size=size or spec.size)
    if model is None:
        cfg = ResNet9Config(num_classes=images.num_classes)
        model = random_resnet9(record["seed"], cfg)
        record["model_config"] = cfg.to_dict()
    elif images.num_classes > model.cfg.num_classes:
        raise ValueError(f"data {images.source!r} has {images.num_classes} classes but checkpoint {checkpoint!r} "
                         f"predicts {model.cfg.num_classes}")
    return ResNet9Model(model.eval(), record, images, checkpoint, pooling, residual_points)
