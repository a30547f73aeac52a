"""What determines a trained ResNet9: its data and its recipe (read by the training and by
the loaded model, which takes a checkpoint's data settings from it)."""
from __future__ import annotations

from dataclasses import dataclass


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
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
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
