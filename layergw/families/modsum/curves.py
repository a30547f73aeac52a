"""Training curves of modular-sum checkpoints: accuracy over the epochs of one phase, from the
record each checkpoint's JSON keeps (an evaluation every ``eval_every`` epochs, per head), so
every run of a sweep can be drawn as it went, including the ones that failed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_record(path: str | Path) -> dict:
    """The training record of a checkpoint: its ``.json``, given as it or as its ``.safetensors``."""
    path = Path(path)
    json_path = path.with_suffix(".json") if path.suffix == ".safetensors" else path
    if json_path.suffix != ".json":
        raise ValueError(f"path must be a checkpoint's .json or .safetensors, got {str(path)!r}")
    if not json_path.is_file():
        raise FileNotFoundError(f"no training record at {json_path} (the JSON written beside a checkpoint)")
    record = json.loads(json_path.read_text())
    if not isinstance(record.get("phases"), list):
        raise ValueError(f"{json_path} holds no training phases: not a modular-sum training record")
    return record


def phase_curve(record: dict, phase: int, what: str = "val") -> tuple[np.ndarray, np.ndarray]:
    """(epochs, accuracy) of ``phase`` (counted from 1). ``what``: "val" or "train" (every head
    right), or one head's target (``c2``, ``b``, ...) for its validation accuracy: NaN at the
    evaluations that kept no per-head accuracies."""
    phases = record["phases"]
    name = record.get("model_id", "this record")
    if not 1 <= phase <= len(phases):
        raise ValueError(f"phase must be between 1 and {len(phases)} for {name} (phases it ran), got {phase}")
    rec = phases[phase - 1]
    history = rec.get("history") or []
    epochs = np.array([h["epoch"] for h in history], dtype=np.int64)
    if what in ("val", "train"):
        return epochs, np.array([h[f"{what}_acc"] for h in history], dtype=np.float64)
    targets = list(rec.get("targets") or [])
    if what not in targets:
        raise ValueError(f"what must be 'val', 'train' or a head of phase {phase} of {name} "
                         f"({', '.join(targets) or 'none recorded'}), got {what!r}")
    k = targets.index(what)
    heads = np.array([h["val_acc_heads"][k] if "val_acc_heads" in h else np.nan for h in history], dtype=np.float64)
    if history and np.isnan(heads).all():
        raise ValueError(f"phase {phase} of {name} records no per-head accuracies (trained before layergw kept "
                         f"them); draw what='val' instead, got what={what!r}")
    return epochs, heads  # entries from before per-head records (a resumed older run) are gaps


def phase_series(paths: list[str | Path], *, phase: int = 1, what: str = "val",
                 labels: list[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each checkpoint's :func:`phase_curve`, by its model id (or ``labels``), to draw together
    (``layergw curves``)."""
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"labels must name each of the {len(paths)} paths, got {len(labels)}")
    series = {}
    for i, path in enumerate(paths):
        record = read_record(path)
        label = labels[i] if labels else record.get("model_id") or Path(path).stem
        series[label] = phase_curve(record, phase, what)
    return series
