"""What GW to a known target can see, and what only a probe can.

GW compares metric-measure spaces up to isometry. A one-hot target of K classes is, as a metric
space, K points at equal distance each holding its class's share of the inputs; any layer whose
rows fall into K tight classes of the same sizes is (nearly) isometric to it, whichever variable
those classes encode. So GW to a target tells targets apart by their class structure, not by the
variable; a probe (can the target be read off the layer?) tells the variable.

:func:`classes` counts a layer's tight classes (rows equal to a relative 1e-6), and
:func:`same_class_structure` is the test the target table uses to flag points that share a
target's class structure by construction (a block input at the last token holding one token's
embedding, say). With few classes the distances between them matter too (4 classes at random
places are far from a one-hot's 4 equidistant ones); with many, as the 59 residues, random
embeddings are nearly equidistant and such a point is nearly isometric to the target. :func:`synthetic_check`
measures the point on the modular-sum inputs: layers that encode c1, b or a, c2 against the c1
target, by raw, mean- and max-normalised GW, linear CKA, and a linear and an MLP probe.
"""
from __future__ import annotations

import numpy as np


def classes(X: np.ndarray, rtol: float = 1e-6) -> int:
    """How many distinct rows ``X`` has, rows equal to ``rtol`` of its largest entry counted once."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or not len(X):
        raise ValueError(f"X must be a non-empty (n, d) array, got shape {X.shape}")
    scale = float(np.abs(X).max()) or 1.0
    keys = np.round(X / (scale * rtol)).astype(np.int64)
    return int(len(np.unique(keys, axis=0)))


def same_class_structure(X: np.ndarray, target: np.ndarray) -> bool:
    """Whether ``X`` falls into about as many tight classes as the one-hot ``target`` has among
    these inputs (within 10%, or one: a subsample may miss a value of either variable), and fewer
    classes than inputs: GW cannot tell such a point's variable from the target's."""
    k = int((np.asarray(target).sum(axis=0) > 0).sum())
    found = classes(X)
    return found < len(X) and abs(found - k) <= max(1, round(0.1 * k))


def synthetic_check(n: int = 1000, seed: int = 0, d: int = 128) -> list[dict]:
    """Layers that encode c1, b, a or c2 of the modular-sum inputs (one-hot, or a random d-wide
    embedding per value: the same classes, unequal distances) against the c1 target: one row each
    with raw / mean / max GW, linear CKA, linear and MLP probe error and the layer's class count."""
    from layergw import measures
    from layergw.data.modsum import make_modsum
    from layergw.inputs import input_indices, one_hot

    data = make_modsum("f_mod3")
    idx = input_indices(len(data.inputs), n, seed)
    a, b = data.inputs[idx, 0], data.inputs[idx, 1]
    c1, c2 = data.targets[idx, 0], data.targets[idx, 1]
    rng = np.random.default_rng(seed)

    def embedding(values: np.ndarray, k: int) -> np.ndarray:
        return rng.standard_normal((k, d))[values] / np.sqrt(d)

    target = one_hot(c1, 59).astype(np.float64)
    layers = {
        "c1 one-hot (the target's variable)": target,
        "c1 embedding": embedding(c1, 59),
        "b one-hot": one_hot(b, 59).astype(np.float64),
        "b embedding": embedding(b, 59),
        "a embedding": embedding(a, 59),
        "c2 one-hot (31 classes)": one_hot(c2, 31).astype(np.float64),
        "(a, b) embedding (every input its own)": embedding(a, 59) + embedding(b, 59),
    }
    gw = {k: measures.get("gw", normalize=k, init="product") for k in ("none", "mean", "max")}
    cka = measures.get("cka")
    probes = {"linear_probe": measures.get("linear_probe"), "mlp_probe": measures.get("mlp_probe")}
    rows = []
    for name, X in layers.items():
        row = {"layer": name, "target": "c1 (59 classes)", "n": n, "classes": classes(X),
               "same_class_structure": same_class_structure(X, target)}
        for k, m in gw.items():
            row[f"gw_{k}"] = float(m.score(X, target))
        row["cka"] = float(cka.score(X, target))
        for k, m in probes.items():
            row[f"{k}_error"] = float(m.score(X, target))
        rows.append(row)
    return rows
