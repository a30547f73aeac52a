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
