"""What one block of a modular-sum model hands the next: how linearly its output codes the
residues the next step needs.

Layer-wise Model L trains block 2 on a frozen block 1 to compute c2 = (c1 + b) mod 31. A
block adds residues through Fourier features (Nanda et al.; Zhong et al.): it needs
cos/sin(2 pi k c1 / 31) and the same of b. Block 1, trained for (c1, b), may code c1 only
through a few Z_59 frequencies, from which the Z_31 features are a 59-way lookup rather than
a linear read. ``handover`` measures that: a ridge regression from a block's output to the
Fourier features of a residue modulo m, fitted on the model's training pairs and scored by
R² on its validation pairs (1: the features are linearly there for every held-out input;
about 0: not at all), over all m // 2 frequencies (``r2``) and for the best single frequency
(``best_r2``, its cos and sin together, at ``best_k``): a block that adds residues needs a
few frequencies, not all. The Z_59 features of c1 are the control block 1 was trained for.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from layergw.data.modsum import ModSumData

#: (quantity, modulus) pairs measured at a block's output: what the next phase needs
#: (Z_31 of c1 and b for c2, Z_17 of c2 and b for c), and the controls
QUANTITIES = (("c1", 59), ("c1", 31), ("b", 31), ("c2", 17), ("b", 17))


def fourier_features(values: np.ndarray, modulus: int) -> np.ndarray:
    """(n,) residues -> (n, 2 * (modulus // 2)) cos and sin of 2 pi k v / m, k = 1 .. m // 2."""
    k = np.arange(1, modulus // 2 + 1)
    angle = 2 * np.pi * np.outer(np.asarray(values) % modulus, k) / modulus
    return np.hstack([np.cos(angle), np.sin(angle)])


def ridge_errors(X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray,
                 alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)) -> tuple[np.ndarray, np.ndarray]:
    """Held-out squared errors of a ridge regression of Y on X, per column of Y, and the
    columns' total sums of squares about the training mean (features standardized on the
    training rows; the penalty chosen by efficient leave-one-out on them)."""
    from sklearn.linear_model import RidgeCV

    mean, std = X_train.mean(0), X_train.std(0)
    std[std == 0] = 1.0
    fit = RidgeCV(alphas=alphas).fit((X_train - mean) / std, Y_train)
    residual = Y_val - fit.predict((X_val - mean) / std)
    return (residual ** 2).sum(0), ((Y_val - Y_train.mean(0)) ** 2).sum(0)


def ridge_r2(X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray) -> float:
    """Held-out R² of a ridge regression of Y on X: 1 - SSE / SST over all of Y's columns."""
    sse, sst = ridge_errors(X_train, Y_train, X_val, Y_val)
    return float(1.0 - sse.sum() / sst.sum())


def residue(data: ModSumData, name: str) -> np.ndarray:
    """The value of ``a``, ``b``, ``c1``, ``c2``, ... for every input."""
    if name in ("a", "b"):
        return data.inputs[:, "ab".index(name)]
    names = data.target_names()
    if name not in names:
        raise ValueError(f"task {data.task} has no quantity {name!r}; it has a, b, {', '.join(names)}")
    return data.targets[:, names.index(name)]


@dataclass(frozen=True)
class HandoverRow:
    block: int
    pooling: str
    quantity: str
    modulus: int
    r2: float
    best_r2: float
    best_k: int

    def to_json(self) -> dict:
        return asdict(self)


def handover(outputs: dict[str, np.ndarray], data: ModSumData, block: int,
             quantities: tuple[tuple[str, int], ...] = QUANTITIES) -> list[HandoverRow]:
    """R² of each (quantity, modulus) from one block's output, for each pooling given in
    ``outputs`` (pooling name -> (n_inputs, d) over all of the task's inputs)."""
    rows = []
    for pooling, X in outputs.items():
        if X.shape[0] != len(data.inputs):
            raise ValueError(f"outputs[{pooling!r}] has {X.shape[0]} rows; the task has {len(data.inputs)} inputs")
        X = X.astype(np.float64)
        for name, m in quantities:
            if name not in ("a", "b") and name not in data.target_names():
                continue
            Y = fourier_features(residue(data, name), m)
            sse, sst = ridge_errors(X[data.train_idx], Y[data.train_idx], X[data.val_idx], Y[data.val_idx])
            half = m // 2
            per_k = 1.0 - (sse[:half] + sse[half:]) / (sst[:half] + sst[half:])
            best = int(np.argmax(per_k))
            rows.append(HandoverRow(block, pooling, name, m, float(1.0 - sse.sum() / sst.sum()), float(per_k[best]),
                                    best + 1))
    return rows


def handover_table(paths: list[Path], blocks: list[int] | None = None) -> Any:
    """One row per checkpoint, block, pooling and quantity (a pandas DataFrame): the checkpoint's
    id, snapshot phase and epoch when it is one, its accuracies there, and the R² of
    :func:`handover`. ``paths`` are checkpoints or folders of them."""
    import pandas as pd

    from layergw.families.modsum.adapter import ModSumModel, block_outputs

    files = [f for p in paths for f in (sorted(p.glob("*.safetensors")) if p.is_dir() else [p])]
    if not files:
        raise ValueError(f"no checkpoints in {', '.join(map(str, paths))}")
    rows = []
    for f in files:
        model = ModSumModel.load(f.with_suffix(".safetensors"))
        snap = model.record.get("snapshot", {})
        for block in blocks if blocks is not None else range(model.model.cfg.n_blocks):
            for r in handover(block_outputs(model, block), model.data, block):
                rows.append({"checkpoint": model.record["model_id"], "phase": snap.get("phase"),
                             "epoch": snap.get("epoch"), "train_acc": snap.get("train_acc"),
                             "val_acc": snap.get("val_acc"), **r.to_json()})
    return pd.DataFrame(rows)
