"""Forward-hook capture: the outputs of named modules during a forward pass, pooled per point."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from layergw.points import RepPoint
from layergw.torchkit.pooling import pool


@contextmanager
def forward_hooks(model: nn.Module, hooks: Iterable[str],
                  on_output: Callable[[str, torch.Tensor], None]) -> Iterator[None]:
    """Call ``on_output(path, output)`` for each named module's forward output while the block
    runs (a tuple output gives its first element); an unknown path is a ValueError naming it."""
    handles = []
    try:
        for path in dict.fromkeys(hooks):
            try:
                module = model.get_submodule(path)
            except AttributeError as e:
                raise ValueError(f"representation point on {path!r}: the model has no such module") from e

            def fn(_m: nn.Module, _inp: object, out: Any, path: str = path) -> None:
                on_output(path, (out[0] if isinstance(out, (tuple, list)) else out).detach())

            handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


def extract(model: nn.Module, points: list[RepPoint], batches: Iterable[Callable[[], object]]) -> dict[str, np.ndarray]:
    """Run ``model`` (in eval mode, no gradients) once per batch, each a thunk calling it, and
    return point name -> (n, d) float32 pooled from the hooked module outputs."""
    taken: dict[str, list[torch.Tensor]] = {p.name: [] for p in points}
    by_hook: dict[str, list[RepPoint]] = {}
    for p in points:
        by_hook.setdefault(p.hook, []).append(p)

    def keep(path: str, out: torch.Tensor) -> None:
        for p in by_hook[path]:
            taken[p.name].append(pool(out, p))

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), forward_hooks(model, by_hook, keep):
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
