"""Pooling: one sample's tensor at a representation point becomes one vector.

One function serves every family. The point says how (``RepPoint.pooling``) and which
head, if any; the tensor's shape says what it is: (batch, pos, d) token sequences, where
``first``/``last``/``mean`` work over positions (over the real tokens only when a padding
``mask`` is given); (batch, C, H, W) feature maps, where ``mean`` is the global average over
H and W; (batch, head, q, k) attention matrices after the head is selected, where ``tril``
keeps the causally unmasked entries and drops the masked ones (never fed as -inf).
"""
from __future__ import annotations

import torch

from layergw.points import RepPoint


def pool(t: torch.Tensor, point: RepPoint, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, ...) -> (batch, d) float32 on the CPU, by the point's pooling."""
    if point.head is not None:
        t = t.select(point.head_axis, point.head)
    how = point.pooling
    if how == "flatten":
        out = t.reshape(t.shape[0], -1)
    elif how == "tril":
        keep = torch.tril(torch.ones(t.shape[-2], t.shape[-1], dtype=torch.bool, device=t.device))
        out = t[:, keep]
    elif t.ndim == 2:
        out = t
    elif t.ndim == 4:
        if how != "mean":
            raise ValueError(f"point {point.name!r}: a (batch, C, H, W) feature map pools by 'flatten' or "
                             f"'mean' (global average over H, W), got {how!r}")
        out = t.mean(dim=(2, 3))
    elif t.ndim != 3:
        raise ValueError(f"point {point.name!r}: pooling {how!r} needs (batch, pos, d), got shape {tuple(t.shape)}")
    elif mask is None:
        out = t[:, -1] if how == "last" else t[:, 0] if how == "first" else t.mean(dim=1)
    else:
        out = _masked(t, mask, how)
    return out.float().cpu()


def check_pooling(point: RepPoint, ndim: int) -> None:
    """Fail before any work when a point's pooling cannot apply to tensors of ``ndim`` dimensions."""
    pool(torch.zeros((1,) * ndim), point)


def _masked(t: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """First, last or mean over each row's real tokens; left or right padding alike."""
    m = mask.to(t.device).bool()
    pos = torch.arange(m.shape[1], device=t.device).expand_as(m)
    rows = torch.arange(t.shape[0], device=t.device)
    if how == "first":
        return t[rows, torch.where(m, pos, m.shape[1]).min(dim=1).values]
    if how == "last":
        return t[rows, torch.where(m, pos, -1).max(dim=1).values]
    w = m.to(t.dtype).unsqueeze(-1)
    return (t * w).sum(dim=1) / w.sum(dim=1)
