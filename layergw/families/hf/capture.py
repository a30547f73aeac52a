"""Reading a Hugging Face model's Table-2 points through its architecture entry: which module's
input or output holds each point, and how a fused or per-head tensor is cut out of it."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from layergw.families.hf.architectures import FINE_FIELDS, HEAD_FIELDS, Architecture, ArchitectureError, split_site
from layergw.points import RepPoint, table2_points

_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")
#: TransformerLens hook inside a block -> the architecture field whose site holds it
_SITE_OF = {"hook_attn_out": "attn_out", "hook_resid_mid": "resid_mid", "mlp.hook_pre": "mlp_act",
            "mlp.hook_post": "mlp_down", "hook_mlp_out": "mlp_out"}
#: per-head hooks read here (Hugging Face attention modules do not expose the pre-softmax scores)
HEAD_HOOKS = ("hook_q", "hook_k", "hook_v", "hook_z", "hook_pattern")


@dataclass(frozen=True)
class Reader:
    """Where one point's tensor comes from: a module's input or output (``element`` of a tuple
    output), optionally one of a fused projection's q/k/v parts (``part`` of ``sizes`` laid out
    as ``layout``), optionally split into ``heads`` along the last axis."""

    path: str
    block: str
    is_input: bool = False
    element: int = 0
    part: int | None = None
    sizes: tuple[int, int, int] = (0, 0, 0)
    layout: str = "concat"
    heads: int | None = None

    def read(self, value: object, lead: torch.Size | None = None) -> torch.Tensor:
        """The point's tensor from a module's input or output; ``lead`` (the block input's batch and
        position sizes) restores a tensor a block flattened to (batch * positions, d), as OPT's MLP."""
        t = value[self.element] if isinstance(value, (tuple, list)) else value
        if t is None:
            raise ValueError(f"module {self.path!r} returned no tensor at element {self.element} (attention weights "
                             f"need eager attention: load the model with points: heads)")
        if lead is not None and t.ndim == 2 and len(lead) == 2 and t.shape[0] == lead[0] * lead[1]:
            t = t.reshape(*lead, t.shape[-1])
        if self.part is not None:
            if self.layout == "per_head":
                per_head = t.view(*t.shape[:-1], self.heads, 3 * (t.shape[-1] // (3 * self.heads)))
                return per_head.chunk(3, dim=-1)[self.part]
            start = sum(self.sizes[:self.part])
            t = t[..., start:start + self.sizes[self.part]]
        if self.heads is not None and self.element == 0:
            t = t.reshape(*t.shape[:-1], self.heads, t.shape[-1] // self.heads)
        return t


def base_prefix(model: nn.Module) -> str:
    """The path of ``model.base_model`` inside ``model`` ('' when it is the model itself)."""
    base = getattr(model, "base_model", model)
    for name, module in model.named_modules():
        if module is base:
            return name
    return ""


def module_path(model: nn.Module, path: str, what: str) -> str:
    """``path`` (relative to the base model, or to ``model`` itself) as a path in ``model``; an
    :class:`ArchitectureError` naming ``what`` when neither has such a module."""
    prefix = base_prefix(model)
    for candidate in ((f"{prefix}.{path}" if prefix else path), path):
        try:
            model.get_submodule(candidate)
            return candidate
        except AttributeError:
            continue
    raise ArchitectureError(f"architecture table: {what} {path!r} is not a module of {type(model).__name__}")


def block_list(model: nn.Module, arch: Architecture) -> tuple[str, nn.ModuleList]:
    """(path, module list) of the model's blocks."""
    arch.require(("blocks",), "finding the blocks")
    path = module_path(model, arch.blocks, "blocks")
    blocks = model.get_submodule(path)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        raise ArchitectureError(f"architecture table: blocks {arch.blocks!r} of {type(model).__name__} is a "
                                f"{type(blocks).__name__}, not a list of blocks")
    return path, blocks


def head_counts(config: object) -> tuple[int, int, int]:
    """(query heads, key-value heads, head dimension) of a transformer config."""
    heads = int(getattr(config, "num_attention_heads"))
    kv = getattr(config, "num_key_value_heads", None) or heads
    dim = getattr(config, "head_dim", None) or int(getattr(config, "hidden_size")) // heads
    return heads, int(kv), int(dim)


def fine_points(arch: Architecture, config: object, n_blocks: int, pooling: str, heads: bool) -> list[RepPoint]:
    """The Table-2 points of a model: 7 per block (6 with a parallel block), and per head q, k, v, z
    and the attention pattern when ``heads``. Fails naming a missing table field."""
    arch.require(("blocks",) + FINE_FIELDS, "points='fine'")
    counts = None
    if heads:
        arch.require(HEAD_FIELDS + ("q", "k", "v"), "points='heads'")
        n, kv, _ = head_counts(config)
        counts = {"hook_q": n, "hook_k": kv, "hook_v": kv, "hook_z": n, "hook_pattern": n}
    leave_out = ("hook_resid_mid",) if arch.residual == "parallel" else ()
    return table2_points(n_blocks, pooling=pooling, matrix_pooling=pooling, heads=counts, leave_out=leave_out)


def readers(model: nn.Module, arch: Architecture, points: list[RepPoint]) -> dict[str, Reader]:
    """Point name -> :class:`Reader` for every ``blocks.<b>.*`` point of ``points``."""
    blocks_path, blocks = block_list(model, arch)
    config = getattr(model, "config", None)
    out: dict[str, Reader] = {}
    owners: dict[int, int] = {}  # a module object -> the block it was read in
    for p in points:
        m = _BLOCK_HOOK.match(p.hook)
        if not m:
            continue
        b, hook = int(m.group(1)), m.group(2)
        if b >= len(blocks):
            raise ValueError(f"point {p.name!r}: the model has {len(blocks)} blocks")
        prefix = f"{blocks_path}.{b}"

        def at(site: str, field: str, **kw: object) -> Reader:
            path, is_input = split_site(site)
            full = f"{prefix}.{path}" if path else prefix
            try:
                module = model.get_submodule(full)
            except AttributeError:
                raise ArchitectureError(f"architecture table: {field} {site!r} is not a module of block {b} of "
                                        f"{type(model).__name__} ({arch.describe()})") from None
            if owners.setdefault(id(module), b) != b:
                raise ArchitectureError(f"{field} {site!r} of block {b} is the same module object as in block "
                                        f"{owners[id(module)]}: its points cannot be told apart per block")
            return Reader(full, prefix, is_input, **kw)  # type: ignore[arg-type]

        if hook == "hook_resid_pre":
            out[p.name] = at(":in", "blocks")
        elif hook == "hook_resid_post":
            out[p.name] = at("", "blocks")
        elif hook in _SITE_OF:
            field = _SITE_OF[hook]
            arch.require((field,), f"point {p.name!r}")
            site = getattr(arch, field)
            if field in ("mlp_act", "mlp_down"):
                site = f"{site}:in"
            out[p.name] = at(site, field)
        elif hook.startswith("attn."):
            out[p.name] = _head_reader(arch, config, hook[len("attn."):], p.name, at)
        else:
            raise ValueError(f"point {p.name!r}: no Table-2 point {hook!r} (see layergw.points.table2_points)")
    return out


def _head_reader(arch: Architecture, config: object, hook: str, name: str, at: Callable[..., Reader]) -> Reader:
    if hook not in HEAD_HOOKS:
        raise ArchitectureError(f"point {name!r}: {hook} is not read from Hugging Face models (per head: "
                                f"{', '.join(HEAD_HOOKS)})")
    n, kv, dim = head_counts(config)
    if hook == "hook_pattern":
        arch.require(("attn",), f"point {name!r}")
        return at(arch.attn, "attn", element=1)
    if hook == "hook_z":
        arch.require(("o",), f"point {name!r}")
        return at(f"{arch.o}:in", "o", heads=n)
    part = "qkv".index(hook[-1])
    heads = n if part == 0 else kv
    if arch.qkv is not None:
        return at(arch.qkv, "qkv", part=part, sizes=(n * dim, kv * dim, kv * dim), layout=arch.qkv_layout, heads=heads)
    field = "qkv"[part]
    arch.require((field,), f"point {name!r}")
    return at(getattr(arch, field), field, heads=heads)


@contextmanager
def capture(model: nn.Module, point_readers: dict[str, Reader],
            on_value: Callable[[str, torch.Tensor], None]) -> Iterator[None]:
    """Call ``on_value(point name, tensor)`` for every point while the model runs."""
    by_site: dict[tuple[str, bool], list[tuple[str, Reader]]] = {}
    for name, r in point_readers.items():
        by_site.setdefault((r.path, r.is_input), []).append((name, r))
    lead: dict[str, torch.Size] = {}  # block path -> its input's (batch, positions)

    def entering(block: str) -> Callable[..., None]:
        def pre(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            value = args[0] if args else kwargs.get("hidden_states")
            lead[block] = value.shape[:-1]
        return pre

    handles = [model.get_submodule(b).register_forward_pre_hook(entering(b), with_kwargs=True)
               for b in dict.fromkeys(r.block for r in point_readers.values())]
    try:
        for (path, is_input), wanted in by_site.items():
            module = model.get_submodule(path)
            if is_input:
                def pre(_m: nn.Module, args: tuple, kwargs: dict, wanted: list = wanted) -> None:
                    value = args[0] if args else kwargs.get("hidden_states")
                    for name, r in wanted:
                        on_value(name, r.read(value, lead.get(r.block)).detach())

                handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            else:
                def post(_m: nn.Module, _args: tuple, output: object, wanted: list = wanted) -> None:
                    for name, r in wanted:
                        on_value(name, r.read(output, lead.get(r.block)).detach())

                handles.append(module.register_forward_hook(post))
        yield
    finally:
        for h in handles:
            h.remove()
