"""Pruning and freezing checks of layer groups, written once for every family.

Which blocks to drop, at a kept depth N of a model with L blocks (``n = L - N`` dropped):

- ``first``: keep blocks 0..N-1 (the paper's Table 7: "keep the first N blocks").
- ``last``: drop the n blocks just before the final one and keep the final block (the
  "drop the deepest layers but the last" rule Gromov et al. 2024 find strong; dropping the
  last n outright is ``first``).
- ``block_influence``: drop the n blocks of lowest Block Influence, BI_i = 1 - mean cos(h_i,
  h_{i+1}) between a block's input and output over every input and token (ShortGPT, Men et al.
  2024).
- ``angular``: drop the contiguous window of n blocks whose input and output are closest in
  angle, mean arccos(cos(h_l, h_{l+n})) / pi over every input and token (Gromov et al. 2024,
  who take the last token; layergw averages over all).
- ``random``: a seeded random contiguous window of n blocks.

``h_0`` is the residual stream entering block 0 and ``h_i`` the one leaving block i-1; the
family's loaded model provides them (``LoadedModel.block_states``). A family whose blocks
change the width of their input (ResNet9's modules) has no such stream, and only ``first``
and ``last`` apply to it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SELECTORS = ("first", "last", "block_influence", "angular", "random")
#: selectors that need block input/output states
STATE_SELECTORS = ("block_influence", "angular")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.clip(np.divide(num, den, out=np.zeros_like(num), where=den > 0), -1.0, 1.0)


def check_states(states: Sequence[np.ndarray]) -> list[np.ndarray]:
    """L + 1 arrays (rows, d): the same rows (inputs x tokens) of the residual stream before
    block 0 and after each block."""
    states = [np.asarray(s, dtype=np.float64) for s in states]
    if len(states) < 2:
        raise ValueError(f"block states must hold at least 2 arrays (before and after one block), got {len(states)}")
    shape = states[0].shape
    if len(shape) != 2 or any(s.shape != shape for s in states):
        raise ValueError(f"block states must be (rows, d) arrays of one shape, got {[s.shape for s in states]}")
    return states


def block_influence(states: Sequence[np.ndarray]) -> np.ndarray:
    """BI of each of the L blocks: 1 - mean cosine between its input and output."""
    states = check_states(states)
    return np.array([1.0 - _cosines(a, b).mean() for a, b in zip(states, states[1:])])


def angular_distances(states: Sequence[np.ndarray]) -> np.ndarray:
    """A[l, l + n] = mean arccos(cos(h_l, h_{l+n})) / pi: how far n blocks from l turn the stream."""
    states = check_states(states)
    L = len(states) - 1
    A = np.zeros((L + 1, L + 1))
    for i in range(L + 1):
        for j in range(i + 1, L + 1):
            A[i, j] = A[j, i] = float(np.mean(np.arccos(_cosines(states[i], states[j])) / np.pi))
    return A


def select_blocks(selector: str, n_blocks: int, n_keep: int, *, seed: int = 0, influence: np.ndarray | None = None,
                  angular: np.ndarray | None = None) -> tuple[int, ...]:
    """The blocks kept, in depth order, when ``selector`` keeps ``n_keep`` of ``n_blocks``."""
    if selector not in SELECTORS:
        from layergw.registry import suggest

        raise ValueError(f"unknown selector {selector!r}{suggest(selector, SELECTORS)}; selectors: {', '.join(SELECTORS)}")
    if not 0 <= n_keep <= n_blocks:
        raise ValueError(f"the kept depth must be in 0..{n_blocks} (the model's blocks), got {n_keep}")
    n = n_blocks - n_keep
    every = range(n_blocks)
    if n == 0 or selector == "first":
        return tuple(range(n_keep))
    if n_keep == 0:
        return ()
    if selector == "last":
        return tuple(b for b in every if not n_blocks - 1 - n <= b < n_blocks - 1)
    if selector == "random":
        start = int(np.random.default_rng(seed).integers(0, n_blocks - n + 1))
        return tuple(b for b in every if not start <= b < start + n)
    if selector == "block_influence":
        if influence is None or len(influence) != n_blocks:
            raise ValueError(f"block_influence needs one Block Influence per block ({n_blocks})")
        dropped = set(np.argsort(influence, kind="stable")[:n].tolist())
        return tuple(b for b in every if b not in dropped)
    if angular is None or np.shape(angular) != (n_blocks + 1, n_blocks + 1):
        raise ValueError(f"angular needs the ({n_blocks + 1} x {n_blocks + 1}) angular distances of the block states")
    start = int(np.argmin([angular[s, s + n] for s in range(n_blocks - n + 1)]))
    return tuple(b for b in every if not start <= b < start + n)
