"""The modular-sum tasks of the paper: f_mod (c = (a+b) mod p) and the chained f_mod3.

A task is a list of moduli. The first step is c1 = (a + b) mod m1 and each further step
is c_k = (c_{k-1} + b) mod m_k, so f_mod is ``(59,)`` and f_mod3 is ``(59, 31, 17)``.
Inputs range over all p^2 pairs (a, b) with p = m1.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS: dict[str, tuple[int, ...]] = {"f_mod": (59,), "f_mod3": (59, 31, 17)}


def task_moduli(task: str) -> tuple[int, ...]:
    if task not in TASKS:
        raise ValueError(f"unknown modular-sum task {task!r}; valid tasks: {', '.join(TASKS)}")
    return TASKS[task]


@dataclass(frozen=True)
class ModSumData:
    """All p^2 inputs with every intermediate target, and a seeded train/validation split."""

    task: str
    moduli: tuple[int, ...]
    inputs: np.ndarray  # (p*p, 2) int64: a, b
    targets: np.ndarray  # (p*p, len(moduli)) int64: c1, c2, ...
    train_idx: np.ndarray
    val_idx: np.ndarray
    split_seed: int
    train_fraction: float

    @property
    def p(self) -> int:
        return self.moduli[0]

    def target_names(self) -> list[str]:
        """``c`` names the final output; intermediate steps are ``c1``, ``c2``, ..."""
        k = len(self.moduli)
        return [f"c{i + 1}" if i + 1 < k else "c" for i in range(k)]


def chained_targets(a: np.ndarray, b: np.ndarray, moduli: tuple[int, ...]) -> np.ndarray:
    out = []
    c = (a + b) % moduli[0]
    out.append(c)
    for m in moduli[1:]:
        c = (c + b) % m
        out.append(c)
    return np.stack(out, axis=1)


def make_modsum(task: str = "f_mod", *, train_fraction: float = 0.8, split_seed: int = 0) -> ModSumData:
    moduli = task_moduli(task)
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    p = moduli[0]
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    inputs = np.stack([a, b], axis=1).astype(np.int64)
    targets = chained_targets(a, b, moduli).astype(np.int64)
    perm = np.random.default_rng(split_seed).permutation(p * p)
    n_train = int(round(train_fraction * p * p))
    return ModSumData(
        task=task,
        moduli=moduli,
        inputs=inputs,
        targets=targets,
        train_idx=np.sort(perm[:n_train]),
        val_idx=np.sort(perm[n_train:]),
        split_seed=split_seed,
        train_fraction=train_fraction,
    )
