"""One resumable training state for every training loop of layergw.

A loop keeps its progress in one file, :data:`STATE_FILE`, in its working folder: the step
reached (optimizer steps or epochs, as the loop counts), the budget it was started with, the
state dicts of its model(s), optimizer(s) and scheduler, the random generators (torch's CPU and
CUDA, and any NumPy generator the loop passes) and the loop's own record (histories, phase).
The file is written under a hidden temporary name and renamed (:func:`atomic_write`), so a
crash mid-save leaves the previous state, and :func:`in_progress` is the rule by which a
folder mirror (``workflows.sync``) leaves such files alone. It is loaded with
``weights_only=True``: a state holding anything but tensors and plain data is refused.

One rule for a changed budget: a state resumes only under the budget it was saved for, since
a schedule (warm-up, decay, one cycle) depends on it; a loop whose steps do not depend on the
budget (a constant rate) says ``extendable`` and then continues a state under a larger budget.
"""
from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

STATE_FILE = "train-state.pt"


def in_progress(name: str) -> bool:
    """Whether a file or folder name is a save still being written (hidden: it starts with '.')."""
    return name.startswith(".")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a hidden temporary sibling of ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    tmp.replace(path)
    return path


def load_file(path: str | Path) -> dict[str, Any] | None:
    """A state file's contents, or None when there is none; a file holding objects other than
    tensors and plain data is a ValueError, since unpickling them could run code."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"training state {path} holds objects other than tensors and plain data; it is not "
                         f"loaded, since unpickling them could run code ({str(e).splitlines()[0]})") from None


def save_file(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write a state file atomically."""
    atomic_write(path, lambda tmp: torch.save(dict(state), tmp))


@dataclass
class Resumed:
    """What a loop gets back from :meth:`TrainState.resume`: the step reached and its own record."""

    step: int
    record: dict = field(default_factory=dict)


class TrainState:
    """The training state of one loop in ``folder`` (None: nothing is saved, nothing resumes).

    ``parts`` are what the state holds besides the step: name -> anything with ``state_dict``
    and ``load_state_dict`` (models, optimizers, schedulers). ``generator`` is a NumPy generator
    the loop draws from (its position is saved and restored too).
    """

    def __init__(self, folder: str | Path | None, *, budget: int, what: str, extendable: bool = False,
                 filename: str = STATE_FILE) -> None:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ValueError(f"{what}: budget must be an integer >= 0, got {budget!r}")
        self.path = None if folder is None else Path(folder) / filename
        self.budget, self.what, self.extendable = budget, what, extendable

    def resume(self, parts: Mapping[str, Any], *, generator: np.random.Generator | None = None,
               device: str | torch.device = "cpu") -> Resumed | None:
        """Restore ``parts`` and the random generators from the saved state and return where it
        stopped; None when there is no state yet."""
        state = load_file(self.path) if self.path is not None else None
        if state is None:
            return None
        saved = int(state["budget"])
        if saved != self.budget and not (self.extendable and self.budget > state["step"]):
            raise ValueError(f"{self.what}: the training state {self.path} was saved for a budget of {saved}, not "
                             f"{self.budget}; delete it to start again under the new budget")
        missing = sorted(set(parts) - set(state["parts"]))
        if missing:
            raise ValueError(f"{self.what}: the training state {self.path} has no {', '.join(missing)}")
        for name, part in parts.items():
            part.load_state_dict(state["parts"][name])
        torch.set_rng_state(state["rng_cpu"])
        device = torch.device(device)
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        if generator is not None and state.get("numpy") is not None:
            generator.bit_generator.state = state["numpy"]
        if saved != self.budget:
            log.info("%s: continuing the state saved for %d steps to %d", self.what, saved, self.budget)
        log.info("%s: resuming from step %d of %d (%s)", self.what, state["step"], self.budget, self.path)
        return Resumed(int(state["step"]), dict(state.get("record") or {}))

    def save(self, step: int, parts: Mapping[str, Any], record: Mapping[str, Any] | None = None, *,
             generator: np.random.Generator | None = None, device: str | torch.device = "cpu") -> None:
        """Save the state at ``step`` (a no-op without a folder)."""
        if self.path is None:
            return
        device = torch.device(device)
        save_file(self.path, {
            "step": int(step), "budget": self.budget, "parts": {k: v.state_dict() for k, v in parts.items()},
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": generator.bit_generator.state if generator is not None else None,
            "record": dict(record or {})})

    def clear(self) -> None:
        """Remove the state (the training finished and its result is written)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
