"""Representation points: named places in a model whose output is taken, and how a
sample's tensor there becomes one vector (pooling)."""
from __future__ import annotations

from dataclasses import dataclass

POOLINGS = ("flatten", "last", "first", "mean", "tril")


@dataclass(frozen=True)
class RepPoint:
    """A named representation point.

    ``hook`` is the module path whose forward output is taken; ``head`` selects one
    attention head from a (batch, pos, head, d_head) or (batch, head, q, k) tensor;
    ``pooling`` turns one sample's tensor into a vector (``tril`` keeps the
    causally unmasked entries of an attention matrix and drops the masked ones).
    """

    name: str
    display: str
    index: int
    hook: str
    head: int | None = None
    pooling: str = "flatten"
    block: int | None = None
    role: str = ""

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"point {self.name!r}: pooling must be one of {POOLINGS}, got {self.pooling!r}")
