"""Checkpoint and training-state files, and the one resumable training state of every loop.

A checkpoint is ``<name>.safetensors`` (the state dict) with ``<name>.json`` (its record)
beside it. Both are written to temporary names and renamed, the JSON last, so a JSON next
to weights means a finished checkpoint.

A training state (weights, optimizer, scheduler, random generators, progress: what a resumed
training needs) is one ``torch.save`` file, :data:`STATE_FILE` in a loop's working folder, kept
by :class:`TrainState`. It is loaded with ``weights_only=True``: a state file is data, and one
that holds anything else (a pickled object that would run code on load) is refused.

Every file here is written under a hidden temporary name and renamed (:func:`atomic_write`);
:func:`in_progress` is the rule by which a folder mirror (``workflows.sync``) leaves such
files alone. Importing this module imports no torch; its functions do.

One rule for a changed budget: a state resumes only under the budget it was saved for, since
a schedule (warm-up, decay, one cycle) depends on it; a loop whose steps do not depend on the
budget (a constant rate) says ``extendable`` and then continues a state under any budget above
the step it reached.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the training-state file of a loop in its working folder
STATE_FILE = "train-state.pt"
#: keys of a state file that a loop's record may not use
_RESERVED = ("step", "budget", "parts", "rng_cpu", "rng_cuda", "generator")


def in_progress(name: str) -> bool:
    """Whether a file or folder name is a save still being written (hidden: it starts with '.')."""
    return name.startswith(".")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a hidden temporary sibling of ``path``, then rename it to ``path``:
    a crash mid-save leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    tmp.replace(path)
    return path


def save_checkpoint(state_dict: dict, record: dict, directory: str | Path, name: str) -> Path:
    """Write ``<directory>/<name>.safetensors`` then ``<name>.json``, each atomically; the weights' path."""
    from safetensors.torch import save_file

    directory = Path(directory)
    weights, meta = directory / f"{name}.safetensors", directory / f"{name}.json"
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    directory.mkdir(parents=True, exist_ok=True)
    meta.unlink(missing_ok=True)  # the JSON marks a finished checkpoint: never beside other weights
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(meta, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
    return weights


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> tuple[dict, dict]:
    """The state dict and record of ``<path>.safetensors`` with ``<path>.json``; a missing file is
    a ValueError naming it (``what`` names the kind of checkpoint)."""
    from safetensors.torch import load_file

    path = Path(path)
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for f in (weights, meta):
        if not f.exists():
            raise ValueError(f"{what} file {f} does not exist (a checkpoint is <id>.safetensors with <id>.json "
                             f"beside it)")
    return load_file(str(weights)), json.loads(meta.read_text())


def resume_points(total: int, count: int = 3) -> set[int]:
    """``count`` steps spread evenly through ``total`` (none at 0 or at the end): where a loop saves
    its state when the caller names no interval."""
    return {total * k // (count + 1) for k in range(1, count + 1)} - {0, total}


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a training state atomically."""
    import torch

    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | Path) -> dict[str, Any] | None:
    """A training state saved by :func:`save_state`, or None when there is none.

    Only tensors and plain data are unpickled (``weights_only=True``); a file holding other
    objects is a ValueError, since unpickling them could run code.
    """
    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"training state {path} holds objects other than tensors and plain data; it is not "
                         f"loaded, since unpickling them could run code ({str(e).splitlines()[0]})") from None


@dataclass
class Resumed:
    """Where a resumed loop stands: the step reached and its own record (histories, phase, ...)."""

    step: int
    record: dict = field(default_factory=dict)


class TrainState:
    """The training state of one loop in ``folder`` (None: nothing is saved, nothing resumes).

    ``budget`` is what the loop was started to do (steps or epochs; a list for several phases);
    ``what`` and ``unit`` name it in messages. ``parts`` (for :meth:`resume` and :meth:`save`) are
    name -> anything with ``state_dict`` and ``load_state_dict`` (models, optimizers,
    schedulers); ``generator`` is a torch or NumPy generator the loop draws from, saved and
    restored with torch's own CPU and CUDA generators. A loop's ``record`` (plain data) is saved
    beside them and returned on resume.
    """

    def __init__(self, folder: str | Path | None, *, budget: int | list[int], what: str, unit: str = "steps",
                 extendable: bool = False, filename: str = STATE_FILE) -> None:
        self.path = None if folder is None else Path(folder) / filename
        self.budget, self.what, self.unit, self.extendable = budget, what, unit, extendable

    def peek(self) -> dict[str, Any] | None:
        """The saved state as it is (for a loop that must know its phase before building the
        parts to restore), checked against the budget; None when there is none."""
        state = load_state(self.path) if self.path is not None else None
        if state is not None:
            self.check(state)
        return state

    def check(self, state: dict[str, Any]) -> None:
        """The one rule for a changed budget (module docstring), as a ValueError naming the file."""
        if "budget" not in state:
            raise ValueError(f"{self.path} holds a training state written by an earlier layergw (it records no "
                             f"budget): delete it to start the {self.what} again")
        saved = state["budget"]
        goes_on = self.extendable and isinstance(self.budget, int) and self.budget > state.get("step", 0)
        if saved != self.budget and not goes_on:
            raise ValueError(f"{self.path} holds the state of a {self.what} of {saved} {self.unit}, not "
                             f"{self.budget}: delete it to start again")

    def resume(self, parts: Mapping[str, Any], *, generator: Any = None, device: Any = "cpu",
               state: dict[str, Any] | None = None) -> Resumed | None:
        """Restore ``parts`` and the random generators from the saved state (or ``state``, a
        :meth:`peek` result) and return where it stopped; None when there is no state yet."""
        import torch

        if state is None:
            state = self.peek()
            if state is None:
                return None
        else:
            self.check(state)
        missing = sorted(set(parts) - set(state["parts"]))
        if missing:
            raise ValueError(f"{self.what}: the training state {self.path} has no {', '.join(missing)}")
        for name, part in parts.items():
            part.load_state_dict(state["parts"][name])
        if state.get("rng_cpu") is not None:
            torch.set_rng_state(state["rng_cpu"])
        device = torch.device(device)
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        if generator is not None and state.get("generator") is not None:
            _set_generator(generator, state["generator"])
        if state["budget"] != self.budget:
            log.info("%s: continuing the state saved for %s %s to %s", self.what, state["budget"], self.unit,
                     self.budget)
        log.info("%s: resuming from step %d of %s (%s)", self.what, state["step"], self.budget, self.path)
        return Resumed(int(state["step"]), {k: v for k, v in state.items() if k not in _RESERVED})

    def save(self, step: int, parts: Mapping[str, Any], record: Mapping[str, Any] | None = None, *,
             generator: Any = None, device: Any = "cpu") -> None:
        """Save the state at ``step`` (a no-op without a folder)."""
        import torch

        if self.path is None:
            return
        record = dict(record or {})
        clash = sorted(set(record) & set(_RESERVED))
        if clash:
            raise ValueError(f"{self.what}: a training record may not use the keys {clash}")
        device = torch.device(device)
        save_state(self.path, {
            **record, "step": int(step), "budget": self.budget,
            "parts": {k: v.state_dict() for k, v in parts.items()}, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "generator": None if generator is None else _get_generator(generator)})

    def clear(self) -> None:
        """Remove the state: the training finished and its result is written."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _get_generator(generator: Any) -> Any:
    import numpy as np

    return generator.bit_generator.state if isinstance(generator, np.random.Generator) else generator.get_state()


def _set_generator(generator: Any, state: Any) -> None:
    import numpy as np

    if isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state
    else:
        generator.set_state(state)
