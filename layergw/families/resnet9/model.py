"""The paper's ResNet9 (experiment 4, their Table 3) with named representation points.

Modules 0..8, each a conv unit (Conv2d, BatchNorm, ReLU, sometimes a max pool):

====  =====================================================  =====================
 mod  layer                                                  output at 32x32 input
====  =====================================================  =====================
 0    conv 3->64, k3, stride 1, pad 1 + BN + ReLU            64 x 32 x 32
 1    conv 64->128, k5, stride 2, pad 2 + BN + ReLU          128 x 16 x 16
 2,3  residual block: two conv 128->128 k3 pad 1 units,      128 x 16 x 16
      the output of unit 3 added to the block input
 4    conv 128->256, k3, pad 1 + BN + ReLU + max pool 2      256 x 8 x 8
 5,6  residual block 256->256 as 2,3                         256 x 8 x 8
 7    conv 256->128, k3, pad 0 + BN + ReLU                   128 x 6 x 6
      + adaptive max pool to 1x1                             128
 8    linear 128->num_classes (no bias) times logit_scale    num_classes
====  =====================================================  =====================

The table gives kernels and widths but not strides or paddings; they follow the
FFCV / datamodels "ResNet-9" for CIFAR-10 that the table matches module for module:
the only strided convolution is module 1 (k5, stride 2, padding 2), so the network
down-samples twice (module 1 and the max pool of module 4) and module 7's unpadded
k3 conv shrinks 8x8 to 6x6 before the adaptive max pool. Convolutions have no bias
(BatchNorm follows), ReLUs are not in place (so a hooked output is never changed
afterwards), the residual sum has no ReLU after it, and the linear head has no bias
and its output is multiplied by ``logit_scale`` = 0.2 (FFCV's ``Mul(0.2)``; the scale is
inside module 8, so the point ``8.Linear`` is the logits). Inputs need
size >= 12 (after the two halvings module 7's unpadded conv needs 3x3).

Representation points, in depth order (29 with the residual sums, 27 without, as the
paper's table): ``0.Conv2d 0.BatchNorm 0.ReLU 1.Conv2d 1.BatchNorm 1.ReLU 2.Conv2d
2.BatchNorm 2.ReLU 3.Conv2d 3.BatchNorm 3.ReLU 3.Residual 4.Conv2d 4.BatchNorm 4.ReLU
4.MaxPool 5.Conv2d 5.BatchNorm 5.ReLU 6.Conv2d 6.BatchNorm 6.ReLU 6.Residual 7.Conv2d
7.BatchNorm 7.ReLU 7.MaxPool 8.Linear``. ``3.Residual`` / ``6.Residual`` are the block
outputs (input + unit 3 / 6), what module 4 / 7 receives.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from layergw.points import RepPoint

RESIDUAL_UNITS = {3: 2, 6: 5}  # last unit of a residual block -> its first unit
MIN_SIZE = 12


@dataclass(frozen=True)
class ResNet9Config:
    """What determines the architecture; stored in every checkpoint's JSON."""

    num_classes: int = 10
    in_channels: int = 3
    logit_scale: float = 0.2

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {self.in_channels}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ResNet9Config:
        return cls(**d)


class Add(nn.Module):
    """The residual sum as a module, so a forward hook can take the block output."""

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return x + h


class ConvUnit(nn.Module):
    """Conv2d (no bias) + BatchNorm + ReLU, then an optional max pool.

    ``residual`` gives the unit an :class:`Add` module (``add``) that the network uses to
    add the unit's output to its block's input; the unit's own forward does not use it.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1,
                 pool: str | None = None, residual: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=False)
        if pool == "max2":
            self.pool = nn.MaxPool2d(2)
        elif pool == "adaptive":
            self.pool = nn.AdaptiveMaxPool2d((1, 1))
        elif pool is not None:
            raise ValueError(f"pool must be None, 'max2' or 'adaptive', got {pool!r}")
        else:
            self.pool = None
        self.add = Add() if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv(x)))
        return self.pool(x) if self.pool is not None else x


class ScaledLinear(nn.Linear):
    """A linear layer without bias whose output is multiplied by a fixed scale (the logits)."""

    def __init__(self, d_in: int, d_out: int, scale: float) -> None:
        super().__init__(d_in, d_out, bias=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale


class ResNet9(nn.Module):
    """ResNet9 as in the paper's Table 3; ``layers[i]`` is module i (see the module docstring)."""

    def __init__(self, cfg: ResNet9Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or ResNet9Config()
        units: list[nn.Module] = [
            ConvUnit(cfg.in_channels, 64, 3, 1, 1),
            ConvUnit(64, 128, 5, 2, 2),
            ConvUnit(128, 128),
            ConvUnit(128, 128, residual=True),
            ConvUnit(128, 256, pool="max2"),
            ConvUnit(256, 256),
            ConvUnit(256, 256, residual=True),
            ConvUnit(256, 128, 3, 1, 0, pool="adaptive"),
            ScaledLinear(128, cfg.num_classes, cfg.logit_scale),
        ]
        self.layers = nn.ModuleList(units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.cfg.in_channels or min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"ResNet9 input must be (batch, {self.cfg.in_channels}, H, W) with H, W >= {MIN_SIZE}, "
                             f"got shape {tuple(x.shape)}")
        L = self.layers
        x = L[1](L[0](x))
        x = L[3].add(x, L[3](L[2](x)))
        x = L[4](x)
        x = L[6].add(x, L[6](L[5](x)))
        x = L[7](x).flatten(1)
        return L[8](x)

    def representation_points(self, *, residual: bool = True, pooling: str = "flatten") -> list[RepPoint]:
        return resnet9_points(residual=residual, pooling=pooling)


def resnet9_points(*, residual: bool = True, pooling: str = "flatten") -> list[RepPoint]:
    """The Table 3 points in depth order; ``residual`` adds the block outputs ``3.Residual``, ``6.Residual``.

    ``hook`` is the module path in :class:`ResNet9`; ``block`` is the module index 0..8.
    """
    points: list[RepPoint] = []

    def add(module: int, role: str, hook: str) -> None:
        name = f"{module}.{role}"
        points.append(RepPoint(name, f"{module} {role}", len(points), f"layers.{module}.{hook}",
                               pooling=pooling, block=module, role=role))

    for m in range(8):
        add(m, "Conv2d", "conv")
        add(m, "BatchNorm", "bn")
        add(m, "ReLU", "relu")
        if m in (4, 7):
            add(m, "MaxPool", "pool")
        if residual and m in RESIDUAL_UNITS:
            add(m, "Residual", "add")
    points.append(RepPoint("8.Linear", "8 Linear", len(points), "layers.8", pooling=pooling, block=8, role="Linear"))
    return points


def random_resnet9(seed: int, cfg: ResNet9Config | None = None) -> ResNet9:
    """An untrained ResNet9 whose weights depend only on ``seed`` (PyTorch's default init), in eval mode."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = ResNet9(cfg)
    finally:
        torch.random.set_rng_state(gen_state)
    return model.eval()
