"""The modular-sum transformer of the paper (after Nanda et al. 2023 and Zhong et al. 2023).

Two layouts, recorded in the config as ``layout``:

- ``reference`` (the references' model, Zhong et al.'s Clock-and-Pizza code, which the
  paper's p = 59, weight decay 2 and 80% split match): tokens ``[a, b]``, attention
  without mask, unembedding without bias, initialisation as that code (embeddings and
  attention ``randn/sqrt(d_model)``, MLP ``W_in`` ``randn/sqrt(d_mlp)`` and ``W_out``
  ``randn/sqrt(d_model)`` with zero biases, unembedding ``randn/sqrt(classes)``).
- ``eq_causal`` (layergw's first layout): tokens ``[a, b, =]``, causal attention,
  PyTorch's default ``nn.Linear`` initialisation and biased heads.

Both have learned token and position embeddings, no LayerNorm, a ReLU MLP and linear
heads read at the last position. Every output of the paper's Table 2 passes through a
named :class:`HookPoint`, 7 + 6 per head per block in TransformerLens naming.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from layergw.points import HEAD_POINTS, RepPoint, table2_points

LAYOUTS = ("eq_causal", "reference")


@dataclass(frozen=True)
class ModSumConfig:
    p: int = 59
    n_blocks: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    n_ctx: int = 3
    head_sizes: tuple[int, ...] = field(default=(59,))
    layout: str = "eq_causal"

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.n_ctx != self.context_length(self.layout):
            raise ValueError(f"layout {self.layout!r} reads {self.context_length(self.layout)} tokens, "
                             f"got n_ctx={self.n_ctx}")

    @staticmethod
    def context_length(layout: str) -> int:
        return 2 if layout == "reference" else 3

    @property
    def causal(self) -> bool:
        return self.layout == "eq_causal"

    @property
    def vocab(self) -> int:
        """Token count: the p residues, plus ``=`` in the eq_causal layout."""
        return self.p + (1 if self.layout == "eq_causal" else 0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["head_sizes"] = list(self.head_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModSumConfig":
        d = dict(d)
        d["head_sizes"] = tuple(d.get("head_sizes", (59,)))
        return cls(**d)


class HookPoint(nn.Module):
    """Identity module: a named place whose output forward hooks can take."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Attention(nn.Module):
    def __init__(self, cfg: ModSumConfig) -> None:
        super().__init__()
        h, dh, d = cfg.n_heads, cfg.d_head, cfg.d_model
        self.n_heads, self.d_head = h, dh
        self.W_Q = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_K = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_V = nn.Parameter(torch.randn(h, d, dh) / math.sqrt(d))
        self.W_O = nn.Parameter(torch.randn(h, dh, d) / math.sqrt(d if cfg.layout == "reference" else h * dh))
        self.causal = cfg.causal
        self.register_buffer("mask", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)), persistent=False)
        self.hook_k, self.hook_q, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores, self.hook_pattern, self.hook_z = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """Attention output at every position, or only at the last (``last_only``: queries from the
        last position, keys and values from all, as a training step that reads only the last
        position needs). q, k and v come from one matrix product."""
        b, t, d = x.shape
        h, e = self.n_heads, self.d_head
        w = torch.stack([self.W_Q, self.W_K, self.W_V]).permute(2, 0, 1, 3).reshape(d, 3 * h * e)
        q, k, v = (x.reshape(b * t, d) @ w).view(b, t, 3, h, e).unbind(2)
        if last_only:
            q = q[:, -1:]
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        scores = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1).permute(0, 3, 1, 2) / math.sqrt(e)  # b h q k
        if self.causal:
            rows = torch.arange(t - q.shape[1], t, device=x.device)
            scores = scores.masked_fill(~self.mask[rows, :t], float("-inf"))
        scores = self.hook_attn_scores(scores)
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z((pattern.permute(0, 2, 3, 1).unsqueeze(-1) * v.unsqueeze(1)).sum(2))  # b q h e
        return (z.reshape(-1, h * e) @ self.W_O.reshape(h * e, d)).view(b, q.shape[1], d)


class MLP(nn.Module):
    def __init__(self, cfg: ModSumConfig) -> None:
        super().__init__()
        self.W_in = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.W_out = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()
        if cfg.layout == "reference":
            with torch.no_grad():
                self.W_in.weight.copy_(torch.randn(cfg.d_mlp, cfg.d_model) / math.sqrt(cfg.d_mlp))
                self.W_out.weight.copy_(torch.randn(cfg.d_model, cfg.d_mlp) / math.sqrt(cfg.d_model))
                self.W_in.bias.zero_()
                self.W_out.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(self.W_in(x))
        return self.W_out(self.hook_post(torch.relu(pre)))


class Block(nn.Module):
    def __init__(self, cfg: ModSumConfig) -> None:
        super().__init__()
        self.attn, self.mlp = Attention(cfg), MLP(cfg)
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_mid = HookPoint(), HookPoint(), HookPoint()
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """The block's output at every position, or at the last one only (``last_only``)."""
        x = self.hook_resid_pre(x)
        attn = self.hook_attn_out(self.attn(x, last_only))
        x = self.hook_resid_mid((x[:, -1:] if last_only else x) + attn)
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(x)))


def make_head(cfg: ModSumConfig, classes: int) -> nn.Linear:
    """A linear readout to ``classes``: the reference layout's unembedding has no bias."""
    if cfg.layout == "eq_causal":
        return nn.Linear(cfg.d_model, classes)
    head = nn.Linear(cfg.d_model, classes, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(classes, cfg.d_model) / math.sqrt(classes))
    return head


class ModSumTransformer(nn.Module):
    """Embeds the tokens, runs the blocks, and reads every head at the last position."""

    def __init__(self, cfg: ModSumConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.randn(cfg.vocab, cfg.d_model) / math.sqrt(cfg.d_model))
        self.W_pos = nn.Parameter(torch.randn(cfg.n_ctx, cfg.d_model) / math.sqrt(cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        self.heads = nn.ModuleList(make_head(cfg, s) for s in cfg.head_sizes)

    def tokens(self, ab: torch.Tensor) -> torch.Tensor:
        if not self.cfg.causal:
            return ab
        eq = torch.full((ab.shape[0], 1), self.cfg.p, dtype=ab.dtype, device=ab.device)
        return torch.cat([ab, eq], dim=1)

    def embed(self, ab: torch.Tensor) -> torch.Tensor:
        return self.W_E[self.tokens(ab)] + self.W_pos

    def run_blocks(self, resid: torch.Tensor, start: int = 0, stop: int | None = None, *,
                   last_only: bool = False) -> torch.Tensor:
        """Blocks ``start..stop-1`` on ``resid``; ``last_only``: the last of them only at the last
        position (what the heads read), the rest at every position."""
        blocks = self.blocks[start:stop]
        for i, block in enumerate(blocks):
            resid = block(resid, last_only and i == len(blocks) - 1)
        return resid

    def forward(self, ab: torch.Tensor, last_only: bool = False) -> list[torch.Tensor]:
        resid = self.run_blocks(self.embed(ab), last_only=last_only)
        return [head(resid[:, -1]) for head in self.heads]

    def representation_points(self) -> list[RepPoint]:
        return modsum_points(self.cfg.n_blocks, self.cfg.n_heads, causal=self.cfg.causal)


def modsum_points(n_blocks: int, n_heads: int = 4, *, causal: bool = True) -> list[RepPoint]:
    """The paper's Table 2 points in depth order: 7 + 6 * n_heads per block.

    With a causal mask the attention matrices keep only their unmasked entries (``tril``);
    without one every entry is taken."""
    return table2_points(n_blocks, heads={hook: n_heads for hook, _ in HEAD_POINTS},
                         matrix_pooling="tril" if causal else "flatten")
