"""Checkpoint and training-state files, written once for every family.

A checkpoint is ``<name>.safetensors`` (the state dict) with ``<name>.json`` (its record)
beside it. Both are written to temporary names and renamed, the JSON last, so a JSON next
to weights means a finished checkpoint. A training state (weights, optimizer, progress:
what a resumed training needs) is one ``torch.save`` file, written atomically and loaded
with ``weights_only=True``: a state file is data, and one that holds anything else (a
pickled object that would run code on load) is refused.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

#: the training-state file of a resumable fine-tuning in its working folder
TRAIN_STATE = "train-state.pt"


def save_checkpoint(state_dict: dict[str, torch.Tensor], record: dict, directory: str | Path, name: str) -> Path:
    """Write ``<directory>/<name>.safetensors`` then ``<name>.json``, each atomically; the weights' path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, meta = directory / f"{name}.safetensors", directory / f"{name}.json"
    tmp_w = weights.with_name(f".{weights.name}.{os.getpid()}.tmp")
    tmp_m = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp_w))
    meta.unlink(missing_ok=True)  # the JSON marks a finished checkpoint: never beside other weights
    tmp_w.replace(weights)
    tmp_m.write_text(json.dumps(record, indent=1))
    tmp_m.replace(meta)
    return weights


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict]:
    """The state dict and record of ``<path>.safetensors`` with ``<path>.json``; a missing file is
    a ValueError naming it (``what`` names the kind of checkpoint)."""
    path = Path(path)
    weights, meta = path.with_suffix(".safetensors"), path.with_suffix(".json")
    for f in (weights, meta):
        if not f.exists():
            raise ValueError(f"{what} file {f} does not exist (a checkpoint is <id>.safetensors with <id>.json "
                             f"beside it)")
    return load_file(str(weights)), json.loads(meta.read_text())


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a training state atomically: a crash mid-save leaves the previous one intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_state(path: str | Path) -> dict[str, Any] | None:
    """A training state saved by :func:`save_state`, or None when there is none.

    Only tensors and plain data are unpickled (``weights_only=True``); a file holding other
    objects is a ValueError, since unpickling it could run code.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"training state {path} holds objects other than tensors and plain data; it is not "
                         f"loaded, since unpickling them could run code ({str(e).splitlines()[0]})") from None
