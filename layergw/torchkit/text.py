"""Text batching for every text model: tokenize once, pad per batch (dynamic padding)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, list[list[int]]]:
    """Tokenize (truncating to ``max_length``, special tokens included) without padding."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return {k: [list(row) for row in v] for k, v in enc.items()}


def pad_rows(tokenizer: Any, encoded: dict[str, list[list[int]]], rows: Sequence[int], device: str | torch.device,
             keys: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The chosen rows of an encoding, padded by the tokenizer to their longest row, on ``device``;
    with ``keys``, only the inputs the model takes."""
    batch = tokenizer.pad({k: [v[int(r)] for r in rows] for k, v in encoded.items()}, padding=True,
                          return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items() if keys is None or k in keys}


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists right-padded with ``pad_id`` to the longest, and the 0/1 attention mask."""
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    mask = torch.zeros(len(seqs), t, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[r, :len(s)] = 1
    return ids, mask
