"""Modules of a user's own, loaded by file path (never imported as part of layergw)."""
from __future__ import annotations

import torch
from torch import nn


class Stages(nn.Module):
    """A CNN whose blocks change the shape: only the first N of them can be kept."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU()))
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean((2, 3)))


class TextMixer(nn.Module):
    """Token ids and a padding mask in, class logits out; blocks keep the shape."""

    def __init__(self, vocab: int = 30522, width: int = 16, depth: int = 3, classes: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width)) for _ in range(depth))
        self.head = nn.Linear(width, classes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.blocks:
            x = x + block(x)
        w = mask.unsqueeze(-1).float()
        return self.head((x * w).sum(1) / w.sum(1))


def stages(classes: int = 10) -> Stages:
    return Stages(classes)


def text_mixer(depth: int = 3) -> TextMixer:
    return TextMixer(depth=depth)


def not_a_module() -> int:
    return 3


class Nested(nn.Module):
    """Blocks inside a container (``encoder.layers``), after an input layer inside it too."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.inp = nn.Linear(3 * 16 * 16, 12)
        self.encoder.layers = nn.ModuleList(nn.Linear(12, 12) for _ in range(3))
        self.head = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder.inp(x.flatten(1))
        for layer in self.encoder.layers:
            h = torch.relu(layer(h))
        return self.head(h)


def nested() -> Nested:
    return Nested()
