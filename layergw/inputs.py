"""The input set: which inputs every model runs, drawn by a recorded seed, and one-hot targets.

Every family draws its inputs with :func:`input_indices`, so the same ``inputs`` settings
of a study pick the same rows whatever the model; known targets are one-hot rows
(:func:`one_hot`), the form that probe measures and GW-to-target comparisons read.
("Probe" in layergw names only the probe measures, ``linear_probe`` and ``mlp_probe``.)
"""
from __future__ import annotations

import numpy as np


def input_indices(n_total: int, n: int, seed: int) -> np.ndarray:
    """A seeded subsample of n of n_total inputs, sorted; all of them when n >= n_total."""
    if n <= 0:
        raise ValueError(f"inputs.n must be positive, got {n}")
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) integer labels -> (n, n_classes) float32 one-hot rows."""
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out
