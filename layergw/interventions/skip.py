"""Skip interventions on causal language models, and how well layer distances track them.

The paper's language-model experiment (PAPER.md, experiment 5) asks whether a measure's
layer distances rank layer pairs as a functional intervention does. layergw's
intervention is *skipping*: the residual stream after block ``i`` is fed straight into
block ``j + 1`` (blocks ``i+1 .. j`` are skipped), and the damage is
``KL(p_original || p_skipped)`` of the next-token distribution.

Indexing of the (L+1) x (L+1) matrix, for a model with L blocks:

* index 0 is the stream entering block 1 (the embedding output);
* index ``i`` (1..L) is the residual stream after block ``i``, before any final norm.

This is the depth order of a family's stream points (``embeddings`` / ``blocks.0.hook_resid_pre``,
then each block's output). Entry ``[i, j]`` for ``i < j`` is the KL when the residual after block
``i`` enters block ``j + 1``; for ``j = L`` it enters the final norm and LM head directly. The
matrix is filled symmetrically (``[j, i] = [i, j]``) with a zero diagonal (skipping nothing
changes nothing), so it is a distance-like layer-pair matrix that can be compared row by row
with a measure's symmetric L x L matrix (:func:`row_spearman`).

The model side runs any :class:`~layergw.families.base.CausalLM` (a family's block-by-block
access to a causal LM: ``Family.causal_lm``); only the model-running functions import torch
(lazily), so :func:`row_spearman` and :func:`agreement_table` work without it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from layergw.measures.base import KINDS

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from layergw.families.base import CausalLM

log = logging.getLogger(__name__)

POSITIONS = ("all", "last")


# ---------------------------------------------------------------------------- model side

def skip_logits(lm: CausalLM, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, i: int, j: int
                ) -> torch.Tensor:
    """Logits (B, T, V) when the residual after block ``i`` is fed into block ``j + 1``.

    ``0 <= i <= j <= L``; ``i == j`` is the unmodified forward pass. Inputs are right padded
    (``attention_mask`` 1 for real tokens, real tokens first), as :func:`skip_kl_per_text` builds them.
    """
    import torch

    L = lm.n_blocks
    if not (0 <= i <= j <= L):
        raise ValueError(f"need 0 <= i <= j <= L={L}, got i={i}, j={j}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    h = lm.streams(input_ids, attention_mask)[i]
    return lm.logits_from(h, j, input_ids, attention_mask)


def _batch_kl(lm: CausalLM, ids: torch.Tensor, mask: torch.Tensor, positions: str) -> np.ndarray:
    """(B, L+1, L+1) per-text mean KL over the chosen positions, upper triangle filled."""
    import torch

    L = lm.n_blocks
    b = ids.shape[0]
    hs = lm.streams(ids, mask)
    if positions == "all":
        sel = mask.bool()
    else:
        sel = torch.zeros_like(mask, dtype=torch.bool)
        sel[torch.arange(b, device=mask.device), mask.sum(1) - 1] = True
    owner = sel.nonzero()[:, 0]                       # text of each selected position
    counts = torch.bincount(owner, minlength=b).to(torch.float64)
    logp = torch.log_softmax(lm.logits_from(hs[L], L, ids, mask)[sel].double(), dim=-1)
    p = logp.exp()
    out = np.zeros((b, L + 1, L + 1))
    for j in range(1, L + 1):                         # residual enters block j+1 (zero-based module j)
        stack = torch.cat(hs[:j], dim=0)              # sources i = 0..j-1, stacked along the batch
        logits = lm.logits_from(stack, j, ids.repeat(j, 1), mask.repeat(j, 1))
        for i in range(j):
            logq = torch.log_softmax(logits[i * b:(i + 1) * b][sel].double(), dim=-1)
            kl = (p * (logp - logq)).sum(-1).clamp_min(0.0)   # >= 0 in exact arithmetic
            per_text = torch.zeros(b, dtype=torch.float64, device=kl.device).index_add_(0, owner, kl)
            out[:, i, j] = (per_text / counts).cpu().numpy()
    return out


def skip_kl_per_text(lm: CausalLM, texts: Sequence[str], *, max_length: int = 128, batch_size: int = 8,
                     positions: str = "all", device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Per-text skip KL matrices and how many positions each averages over.

    Returns ``(kl, n_positions)``: ``kl`` is (n_texts, L+1, L+1), each text's mean over its
    positions (every non-padding token for ``positions="all"``, the last one for ``"last"``)
    of ``KL(p_orig || p_skip)``, symmetric with a zero diagonal (see the module docstring for
    the indexing); ``n_positions`` is (n_texts,). A text that tokenizes to nothing has a NaN
    matrix and 0 positions. Texts are batched by length to keep padding small; each batch is
    right padded and masked. The model is moved to ``device`` and run in eval mode (its
    training flag is restored afterwards).
    """
    import torch

    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    n_pos = lm.max_positions
    if n_pos is not None and max_length > n_pos:
        log.warning("skip KL: max_length %d exceeds the model's %d positions; truncating to %d",
                    max_length, n_pos, n_pos)
        max_length = n_pos
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("texts must be a non-empty sequence of strings")
    from layergw.torchkit.text import encode, pad_right

    L = lm.n_blocks
    seqs = encode(lm.tokenizer, texts, max_length)["input_ids"]
    empty = [k for k, s in enumerate(seqs) if len(s) == 0]
    if len(empty) == len(seqs):
        raise ValueError("texts: every text tokenizes to zero tokens")
    if empty:
        log.warning("skip KL: %d of %d texts tokenize to nothing and are left out", len(empty), len(seqs))
    order = sorted((k for k in range(len(seqs)) if seqs[k]), key=lambda k: len(seqs[k]))
    kl = np.full((len(seqs), L + 1, L + 1), np.nan)
    counts = np.zeros(len(seqs), dtype=np.int64)
    model = lm.model
    was_training = model.training
    model.to(device)
    model.eval()
    pad = getattr(lm.tokenizer, "pad_token_id", None) or 0
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                ids, mask = (t.to(device) for t in pad_right([seqs[k] for k in idx], pad))
                kl[idx] = _batch_kl(lm, ids, mask, positions)
                counts[idx] = mask.sum(1).cpu().numpy() if positions == "all" else 1
                log.debug("skip KL: %d/%d texts", min(start + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)
    iu = np.triu_indices(L + 1, 1)
    for k in order:
        m = kl[k]
        m[iu[1], iu[0]] = m[iu]
        np.fill_diagonal(m, 0.0)
    return kl, counts


def skip_kl_matrix(lm: CausalLM, texts: Sequence[str], *, max_length: int = 128, batch_size: int = 8,
                   positions: str = "all", device: str = "cpu") -> np.ndarray:
    """The (L+1) x (L+1) skip KL matrix, averaged over all chosen positions of all texts.

    ``[i, j] = [j, i]`` (i < j) is the mean of ``KL(p_orig || p_skip)`` when the residual
    after block ``i`` (0 = embeddings) is fed into block ``j + 1`` (``j = L``: straight into
    the final norm and LM head); the diagonal is 0. ``positions="all"`` weighs every
    non-padding token equally (a token-weighted mean over texts), ``"last"`` takes each
    text's last token (a plain mean over texts). Texts are truncated to ``max_length`` tokens
    (at most the model's positions).
    """
    kl, counts = skip_kl_per_text(lm, texts, max_length=max_length, batch_size=batch_size,
                                  positions=positions, device=device)
    keep = counts > 0
    w = counts[keep].astype(np.float64)
    return np.tensordot(w / w.sum(), kl[keep], axes=(0, 0))


# ------------------------------------------------------------------------- comparison side

def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    if den == 0.0:
        return float("nan")
    return float(np.clip((ra * rb).sum() / den, -1.0, 1.0))


def row_spearman(measure: np.ndarray, reference: np.ndarray, *, kind: str = "distance",
                 min_points: int = 3) -> dict[str, Any]:
    """Row-by-row Spearman correlation of a measure's layer matrix with a reference (the skip KL).

    For each row r, the off-diagonal entries ``measure[r, c]`` and ``reference[r, c]``
    (c != r, both finite) are rank-correlated (average ranks for ties). A similarity
    measure (``kind="similarity"``) is negated first so that for both matrices higher
    means more different. A row that is constant in either matrix, or has fewer than
    ``min_points`` finite pairs, gives NaN and is left out of the mean.

    Returns ``{"mean", "sem", "per_row", "rows_used", "rows_nan"}``: mean and standard
    error (sample std / sqrt(rows_used); NaN with fewer than two rows) over the rows used.
    Pass symmetrized matrices: the rows are taken as given.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    M = np.asarray(measure, dtype=np.float64)
    R = np.asarray(reference, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"measure must be a square matrix, got shape {M.shape}")
    if R.shape != M.shape:
        raise ValueError(f"reference must have the measure's shape {M.shape}, got {R.shape}")
    if min_points < 2:
        raise ValueError(f"min_points must be >= 2, got {min_points}")
    if kind == "similarity":
        M = -M
    n = M.shape[0]
    per_row = np.full(n, np.nan)
    for r in range(n):
        cols = np.arange(n) != r
        a, b = M[r, cols], R[r, cols]
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() >= min_points:
            per_row[r] = _spearman(a[ok], b[ok])
    used = per_row[np.isfinite(per_row)]
    mean = float(used.mean()) if used.size else float("nan")
    sem = float(used.std(ddof=1) / np.sqrt(used.size)) if used.size >= 2 else float("nan")
    return {"mean": mean, "sem": sem, "per_row": per_row, "rows_used": int(used.size),
            "rows_nan": int(n - used.size)}


def agreement_table(measure_matrices: Mapping[str, tuple[np.ndarray, str]], kl: np.ndarray, *,
                    min_points: int = 3) -> list[dict[str, Any]]:
    """One row per measure: how its layer matrix ranks layer pairs against the skip KL matrix.

    ``measure_matrices`` maps a measure name to ``(matrix, kind)`` with kind "distance" or
    "similarity"; every matrix must have ``kl``'s shape. Rows are
    ``{measure, mean, sem, rows_used, rows_nan}`` in the mapping's order (the paper's Figure 20).
    """
    rows = []
    for name, entry in measure_matrices.items():
        if not (isinstance(entry, tuple) and len(entry) == 2):
            raise ValueError(f"measure_matrices[{name!r}] must be (matrix, kind), got {type(entry).__name__}")
        matrix, kind = entry
        try:
            res = row_spearman(matrix, kl, kind=kind, min_points=min_points)
        except ValueError as e:
            raise ValueError(f"measure {name!r}: {e}") from e
        rows.append({"measure": name, "mean": res["mean"], "sem": res["sem"],
                     "rows_used": res["rows_used"], "rows_nan": res["rows_nan"]})
    return rows


__all__ = ["POSITIONS", "agreement_table", "row_spearman", "skip_kl_matrix", "skip_kl_per_text", "skip_logits"]
