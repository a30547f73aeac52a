"""Forward hooks that take named representation points and pool them to (n, d) float32."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from layergw.models.points import RepPoint

log = logging.getLogger(__name__)


def pool(t: torch.Tensor, point: RepPoint) -> torch.Tensor:
    """One sample's tensor to one vector, batched: (batch, ...) -> (batch, d)."""
    if point.head is not None:
        t = t.select(point.head_axis, point.head)
    if point.pooling == "flatten":
        return t.reshape(t.shape[0], -1)
    if point.pooling == "tril":
        q, k = t.shape[-2], t.shape[-1]
        keep = torch.tril(torch.ones(q, k, dtype=torch.bool, device=t.device))
        return t[:, keep]
    if t.ndim != 3:
        raise ValueError(f"point {point.name!r}: pooling {point.pooling!r} needs (batch, pos, d), got shape {tuple(t.shape)}")
    if point.pooling == "last":
        return t[:, -1]
    if point.pooling == "first":
        return t[:, 0]
    return t.mean(dim=1)


@contextmanager
def capture(model: nn.Module, points: list[RepPoint]) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Hooks every point's module for the duration; yields point name -> pooled batches."""
    out: dict[str, list[torch.Tensor]] = {p.name: [] for p in points}
    by_hook: dict[str, list[RepPoint]] = {}
    for p in points:
        by_hook.setdefault(p.hook, []).append(p)
    handles = []
    try:
        for hook, pts in by_hook.items():
            try:
                module = model.get_submodule(hook)
            except AttributeError as e:
                raise ValueError(f"representation point {pts[0].name!r}: the model has no module {hook!r}") from e

            def fn(_m: nn.Module, _inp: object, output: torch.Tensor, pts: list[RepPoint] = pts) -> None:
                for p in pts:
                    out[p.name].append(pool(output.detach(), p).float().cpu())

            handles.append(module.register_forward_hook(fn))
        yield out
    finally:
        for h in handles:
            h.remove()


def extract(
    model: nn.Module,
    points: list[RepPoint],
    batches: Iterator[Callable[[], object]] | list[Callable[[], object]],
) -> dict[str, np.ndarray]:
    """Run ``model`` once per batch (each a thunk calling it) and return point -> (n, d) float32."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture(model, points) as taken:
            for run in batches:
                run()
    finally:
        model.train(was_training)
    result = {}
    for p in points:
        if not taken[p.name]:
            raise RuntimeError(f"representation point {p.name!r} was never reached by the forward pass")
        result[p.name] = torch.cat(taken[p.name]).numpy().astype(np.float32, copy=False)
    return result
