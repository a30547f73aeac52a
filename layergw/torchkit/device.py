"""Device choice for every family, stage and trainer."""
from __future__ import annotations

import re

import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def resolve_device(device: str | None = "auto") -> str:
    """``auto`` (or None) is ``cuda`` when PyTorch sees a GPU, else ``cpu``; ``cpu``, ``cuda``,
    ``cuda:N`` and ``mps`` are checked and returned as given."""
    device = device or "auto"
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but PyTorch sees no GPU")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but PyTorch sees no MPS device")
    return device
