"""Representation points: named places in a model whose output is taken, and how a
sample's tensor there becomes one vector (pooling)."""
from __future__ import annotations

from dataclasses import dataclass

POOLINGS = ("flatten", "last", "first", "mean", "tril")


@dataclass(frozen=True)
class RepPoint:
    """A named representation point.

    ``hook`` is the module path whose forward output is taken; ``head`` selects one
    attention head along ``head_axis`` (2 for (batch, pos, head, d_head), 1 for
    (batch, head, q, k));
    ``pooling`` turns one sample's tensor into a vector (``tril`` keeps the
    causally unmasked entries of an attention matrix and drops the masked ones).
    """

    name: str
    display: str
    index: int
    hook: str
    head: int | None = None
    pooling: str = "flatten"
    block: int | None = None
    role: str = ""
    head_axis: int = 2

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"point {self.name!r}: pooling must be one of {POOLINGS}, got {self.pooling!r}")


def select_points(points: list[RepPoint], wanted: list[str] | str, *, model: str = "model") -> list[RepPoint]:
    """Points by exact name or shell pattern (``blocks.0.*``); ``"all"`` keeps every one.

    A name or pattern that matches nothing is a ValueError listing close valid names.
    """
    import fnmatch

    from layergw.registry import suggest

    if wanted == "all":
        return list(points)
    if isinstance(wanted, str):
        wanted = [wanted]
    names = [p.name for p in points]
    keep: set[str] = set()
    for w in wanted:
        hits = [n for n in names if n == w or fnmatch.fnmatchcase(n, w)]
        if not hits:
            raise ValueError(
                f"{model}: unknown representation point {w!r}{suggest(w, names)}; "
                f"it has {len(names)} points, e.g. {', '.join(names[:4])} ... {names[-1]}"
            )
        keep.update(hits)
    return [p for p in points if p.name in keep]


def with_pooling(points: list[RepPoint], pooling: str | None) -> list[RepPoint]:
    """Points with their pooling overridden; attention matrices keep ``tril`` unless ``last``.

    ``last`` on an attention matrix takes the last query's row, which no causal mask hides,
    so masked entries are never taken whatever the override.
    """
    from dataclasses import replace

    if pooling is None:
        return list(points)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    out = []
    for p in points:
        if p.pooling == "tril" and pooling != "last":
            out.append(p)
        else:
            out.append(replace(p, pooling=pooling))
    return out


#: the paper's Table-2 points of a block that are not per head, in depth order: (TransformerLens
#: hook inside ``blocks.<b>``, display name); the per-head points sit after Resid-Pre
BLOCK_POINTS = (("hook_resid_pre", "Resid-Pre"), ("hook_attn_out", "Attn-Out"), ("hook_resid_mid", "Resid-Mid"),
                ("mlp.hook_pre", "Pre"), ("mlp.hook_post", "Post"), ("hook_mlp_out", "MLP-out"),
                ("hook_resid_post", "Resid-Post"))
#: per head, in the paper's order: (hook inside ``blocks.<b>.attn``, display name)
HEAD_POINTS = (("hook_k", "k"), ("hook_q", "q"), ("hook_attn_scores", "Attn-Pre"), ("hook_pattern", "Attn"),
               ("hook_v", "v"), ("hook_z", "z"))
#: per-head hooks whose tensor is an attention matrix (batch, head, query, key)
ATTENTION_MATRICES = ("hook_attn_scores", "hook_pattern")


def table2_points(n_blocks: int, *, pooling: str = "flatten", matrix_pooling: str = "flatten",
                  heads: dict[str, int] | None = None, leave_out: tuple[str, ...] = (),
                  start: int = 0) -> list[RepPoint]:
    """The paper's Table-2 points of ``n_blocks`` blocks under TransformerLens names, in depth order.

    ``heads`` maps a per-head hook (``hook_q``, ...) to its number of heads (grouped-query
    attention has fewer key-value heads); hooks it leaves out, and every per-head point when it
    is None, are not listed. ``leave_out`` drops block points by hook (``hook_resid_mid`` of a
    parallel block). Roles are the display names; indices count from ``start``.
    """
    points: list[RepPoint] = []

    def add(name: str, display: str, block: int, role: str, head: int | None = None, how: str = pooling,
            matrix: bool = False) -> None:
        hook = name if head is None else name.rsplit(".", 1)[0]
        points.append(RepPoint(name, display, start + len(points), hook, head, how, block, role, 1 if matrix else 2))

    for b in range(n_blocks):
        pre, tag = f"blocks.{b}", f"B{b + 1}"
        for hook, display in BLOCK_POINTS:
            if hook in leave_out:
                continue
            add(f"{pre}.{hook}", f"{tag} {display}", b, display)
            if hook == "hook_resid_pre" and heads:
                width = max(heads.values())
                for h in range(width):
                    for head_hook, head_display in HEAD_POINTS:
                        if h < heads.get(head_hook, 0):
                            matrix = head_hook in ATTENTION_MATRICES
                            add(f"{pre}.attn.{head_hook}.h{h}", f"{tag} h{h} {head_display}", b, head_display, h,
                                matrix_pooling if matrix else pooling, matrix)
    return points
