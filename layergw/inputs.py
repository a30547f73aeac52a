"""The input set: which inputs every model runs, drawn by a recorded seed, and one-hot targets.

Every family draws its inputs with :func:`input_indices`, so the same ``inputs`` settings
of a study pick the same rows whatever the model; known targets are one-hot rows
(:func:`one_hot`), the form that probe measures and GW-to-target comparisons read.
("Probe" in layergw names only the probe measures, ``linear_probe`` and ``mlp_probe``.)
"""
from __future__ import annotations

import numpy as np


SPLITS = ("all", "train", "validation")


def input_indices(n_total: int, n: int, seed: int, pool: np.ndarray | None = None) -> np.ndarray:
    """A seeded subsample of n of n_total inputs, sorted; all of them when n >= n_total.

    ``pool`` restricts the draw to those input indices (a model's training or validation
    split); without it every input is a candidate, and the draw is the same as over
    ``pool = arange(n_total)``.
    """
    if n <= 0:
        raise ValueError(f"inputs.n must be positive, got {n}")
    pool = np.arange(n_total) if pool is None else np.asarray(pool)
    if n >= len(pool):
        return np.sort(pool)
    return np.sort(pool[np.random.default_rng(seed).choice(len(pool), size=n, replace=False)])


def split_pool(splits: dict[str, np.ndarray], split: str, where: str) -> np.ndarray | None:
    """The input indices of ``split`` from a model's named splits; None for ``all``. A split the
    model does not have is a ValueError naming the ones it has."""
    if split not in SPLITS:
        raise ValueError(f"inputs.split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        return None
    if split not in splits:
        have = ", ".join(splits) or "none"
        raise ValueError(f"{where}: inputs.split {split!r} needs a model whose inputs have a {split} split "
                         f"(its splits: {have}); choose the data split in the model's params instead, "
                         f"or use inputs.split: all")
    return splits[split]


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(n,) integer labels -> (n, n_classes) float32 one-hot rows."""
    out = np.zeros((len(labels), n_classes), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out
