"""A small network of one's own for layergw's ``torch`` family (docs/models.md): a patch stem,
a sequence of residual MLP blocks that keep the shape (16 patches x width), and a linear head.

    models:
      - {id: tinynet, family: torch, checkpoint: "random:0",
         params: {factory: "examples/torch_module/tinynet.py:build", kwargs: {width: 32, depth: 4},
                  blocks: blocks, inputs: {kind: images, source: digits, split: test, size: 16}}}
"""
from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class TinyNet(nn.Module):
    def __init__(self, width: int = 32, depth: int = 4, classes: int = 10, patch: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, patch, stride=patch)
        self.blocks = nn.ModuleList(Block(width) for _ in range(depth))
        self.head = nn.Linear(width, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images).flatten(2).transpose(1, 2)  # (batch, patches, width)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(1))


def build(width: int = 32, depth: int = 4, classes: int = 10) -> TinyNet:
    return TinyNet(width, depth, classes)
