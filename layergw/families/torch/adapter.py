"""A loaded torch module of one's own (family ``torch``): built by a factory, weights from a
safetensors file, points read by forward hooks on named modules, on images, texts or tensors.

``params``:

- ``factory``: ``"package.module:function"`` or ``"path/to/file.py:function"`` that returns the
  ``nn.Module``; ``kwargs``: its keyword arguments;
- ``blocks``: the module path of the block sequence (an ``nn.ModuleList`` or ``nn.Sequential``;
  ``"layers.*"`` is read as ``"layers"``): what pruning keeps and freezing freezes;
- ``points``: module-name patterns (``fnmatch``; ``"path:in"`` reads a module's input); default:
  the first block's input and every block's output;
- ``inputs``: ``{kind: images, source: digits, split: test, size: 16}`` (:mod:`layergw.data.images`),
  ``{kind: text, source: sst2, ...}`` (:mod:`layergw.data.text`, token ids of MiniLM's WordPiece
  or ``tokenizer``, padded per batch; the module is called as ``module(ids, mask)`` when its
  forward takes two arguments, else ``module(ids)``) or ``{kind: tensors, path: x.npy,
  labels: y.npy}`` (``.npy`` or ``.pt`` arrays, rows fed as they are);
- ``pooling``: how a point's tensor becomes one vector per input (``flatten``, ``mean``, ``first``,
  ``last``; a feature map's ``mean`` is the global average).

The checkpoint is a ``.safetensors`` state dict of the module, or ``random:<seed>`` (the factory's
initialisation under that seed).
"""
from __future__ import annotations

import fnmatch
import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from layergw.inputs import one_hot
from layergw.points import POOLINGS, RepPoint
from layergw.registry import import_object
from layergw.torchkit.pooling import pool

log = logging.getLogger(__name__)

INPUT_KINDS = ("images", "text", "tensors")
DEFAULT_INPUTS = {"kind": "images", "source": "digits", "split": "test", "size": 16}


@dataclass(frozen=True, eq=False)
class Inputs:
    """The probe inputs of a torch model: one array of rows (images, token ids or tensors), their
    labels when known, and for texts the padding mask."""

    kind: str
    x: np.ndarray
    labels: np.ndarray | None
    mask: np.ndarray | None = None
    n_classes: int = 0
    describe: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)  # the params.inputs they were read by


def build(factory: str, kwargs: dict | None, checkpoint: str) -> nn.Module:
    """The module from its factory, with the checkpoint's weights (or seeded at random)."""
    make = import_object(factory, "params.factory")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ValueError(f"params.kwargs must be a mapping of the factory's keyword arguments, got {kwargs!r}")
    if checkpoint.startswith("random:"):
        seed = checkpoint.split(":", 1)[1]
        if not seed.isdigit():
            raise ValueError(f"checkpoint {checkpoint!r}: random:<seed> needs an integer seed")
        torch.manual_seed(int(seed))
    try:
        module = make(**(kwargs or {}))
    except TypeError as e:
        raise ValueError(f"params.factory {factory!r} could not be called with kwargs {kwargs or {}}: {e}") from None
    if not isinstance(module, nn.Module):
        raise ValueError(f"params.factory {factory!r} returned a {type(module).__name__}, not a torch nn.Module")
    if not checkpoint.startswith("random:"):
        from safetensors.torch import load_file

        from layergw.families.base import weights_path

        path = weights_path(checkpoint, "torch checkpoint", "use a .safetensors state dict of the module, or "
                            "random:<seed>")
        result = module.load_state_dict(load_file(str(path)), strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"torch checkpoint {checkpoint!r} does not fit the factory's module: missing "
                             f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return module.eval()


def read_inputs(spec: dict | None, tokenizer: str | None = None, max_length: int = 64) -> Inputs:
    given = dict(DEFAULT_INPUTS if spec is None else spec)
    spec = dict(given)
    kind = spec.pop("kind", None)
    if kind not in INPUT_KINDS:
        raise ValueError(f"params.inputs.kind must be one of {', '.join(INPUT_KINDS)}, got {kind!r}")
    if kind == "images":
        from layergw.data.images import images_from_params

        size = spec.pop("size", 32)
        data = images_from_params(spec, size, "params.inputs")
        return Inputs(kind, data.images, data.labels, None, data.num_classes, data.describe(), given)
    if kind == "text":
        from layergw.data.text import text_from_params
        from layergw.families.hf import load_tokenizer

        data = text_from_params(spec, "params.inputs")
        tok = load_tokenizer(tokenizer)
        ids = tok(list(data.texts), truncation=True, max_length=max_length, padding="max_length")
        return Inputs(kind, np.asarray(ids["input_ids"], np.int64), data.labels,
                      np.asarray(ids["attention_mask"], np.int64), data.n_classes(),
                      {"source": data.source, "split": data.split, "n": len(data)}, given)
    unknown = sorted(set(spec) - {"path", "labels"})
    if "path" not in spec or unknown:
        raise ValueError(f"params.inputs of kind tensors needs path (and optionally labels), got keys {sorted(spec)}")
    x = _array(spec["path"], "params.inputs.path")
    labels = _array(spec["labels"], "params.inputs.labels").astype(np.int64) if spec.get("labels") else None
    if labels is not None and (labels.ndim != 1 or len(labels) != len(x)):
        raise ValueError(f"params.inputs.labels must hold one integer per row of path ({len(x)}), got shape "
                         f"{labels.shape}")
    return Inputs(kind, x, labels, None, int(labels.max()) + 1 if labels is not None and len(labels) else 0,
                  {"path": str(spec["path"]), "n": len(x)}, given)


def _array(path: str, what: str) -> np.ndarray:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"{what} {path!r}: no such file (a .npy or .pt array)")
    if p.suffix == ".pt":
        value = torch.load(p, map_location="cpu", weights_only=True)
        return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return np.load(p, allow_pickle=False)


def blocks_path(blocks: str) -> str:
    return blocks[:-2] if blocks.endswith(".*") else blocks


@dataclass
class TorchModel:
    """A loaded torch module with its probe inputs (see the module docstring)."""

    module: nn.Module
    inputs: Inputs
    checkpoint: str
    factory: str
    blocks: str
    patterns: tuple[str, ...]
    pooling: str = "flatten"
    batch_size: int = 64
    kwargs: dict = field(default_factory=dict)
    _before: set[str] | None = field(default=None, repr=False)

    def block_list(self) -> nn.Module:
        try:
            seq = self.module.get_submodule(self.blocks)
        except AttributeError:
            raise ValueError(f"params.blocks {self.blocks!r} is not a module of {type(self.module).__name__}; its "
                             f"sequences: {_sequences(self.module)}") from None
        if not isinstance(seq, (nn.ModuleList, nn.Sequential)):
            raise ValueError(f"params.blocks {self.blocks!r} is a {type(seq).__name__}, not an nn.ModuleList or "
                             f"nn.Sequential; its sequences: {_sequences(self.module)}")
        return seq

    @property
    def n_blocks(self) -> int:
        return len(self.block_list())

    def points(self) -> list[RepPoint]:
        names = [n for n, _ in self.module.named_modules() if n]
        chosen: list[tuple[str, bool]] = []
        for pattern in self.patterns:
            path, _, side = pattern.partition(":")
            if side not in ("", "in"):
                raise ValueError(f"params.points: {pattern!r} must be a module pattern, optionally with ':in'")
            hits = [n for n in names if n == path or fnmatch.fnmatchcase(n, path)]
            if not hits:
                from layergw.registry import suggest

                raise ValueError(f"params.points: {pattern!r} matches no module of {type(self.module).__name__}"
                                 f"{suggest(path, names)}")
            chosen += [(n, side == "in") for n in hits]
        order = {n: i for i, n in enumerate(names)}
        chosen = sorted(dict.fromkeys(chosen), key=lambda c: (order[c[0]], not c[1]))
        return [RepPoint(f"{n}:in" if is_in else n, f"{n} (input)" if is_in else n, i, f"{n}:in" if is_in else n,
                         pooling=self.pooling, block=self._block_of(n), role="input" if is_in else "output")
                for i, (n, is_in) in enumerate(chosen)]

    def _block_of(self, name: str) -> int | None:
        """The position in the block sequence of the block holding module ``name`` (None outside)."""
        prefix = self.blocks + "."
        if not name.startswith(prefix):
            return None
        child = name[len(prefix):].split(".")[0]
        children = [n for n, _ in self.block_list().named_children()]
        return children.index(child) if child in children else None

    def depth(self, point: RepPoint) -> float:
        name = point.hook.removesuffix(":in")
        if point.block is None:
            return 0.0 if name in self.modules_before_blocks() else float(self.n_blocks)
        whole = name == f"{self.blocks}.{[n for n, _ in self.block_list().named_children()][point.block]}"
        if whole:
            return float(point.block) if point.hook.endswith(":in") else point.block + 1.0
        return point.block + 0.5

    def modules_before_blocks(self) -> set[str]:
        """Names of the modules that run before the first block (found by running one input),
        the blocks' ancestors left out."""
        if self._before is None:
            seen: list[str] = []
            handles = [m.register_forward_pre_hook(lambda _m, _a, n=n: seen.append(n))
                       for n, m in self.module.named_modules() if n]
            try:
                with torch.no_grad():
                    self._run(*next(self._batches(np.arange(1), "cpu", 1))[1:])
            finally:
                for h in handles:
                    h.remove()
            first = f"{self.blocks}.{next(n for n, _ in self.block_list().named_children())}"
            stop = seen.index(first) if first in seen else len(seen)
            self._before = {n for n in seen[:stop] if not n.startswith(self.blocks + ".") and n != self.blocks
                            and not self.blocks.startswith(n + ".")}  # an ancestor of the blocks holds them
        return self._before

    def n_inputs(self) -> int:
        return len(self.inputs.x)

    def splits(self) -> dict[str, np.ndarray]:
        return {}

    def _batches(self, indices: np.ndarray, device: str, batch_size: int
                 ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor | None]]:
        for s in range(0, len(indices), batch_size):
            rows = np.asarray(indices[s:s + batch_size])
            x = torch.as_tensor(self.inputs.x[rows], device=device)
            mask = None
            if self.inputs.mask is not None:
                m = torch.as_tensor(self.inputs.mask[rows], device=device)
                width = max(int(m.sum(1).max()), 1)
                x, mask = x[:, :width], m[:, :width]
            yield rows, x, mask

    def _run(self, x: torch.Tensor, mask: torch.Tensor | None) -> Any:
        return call(self.module, x, mask)

    def extract(self, indices: np.ndarray, points: list[RepPoint], *, device: str = "cpu",
                batch_size: int | None = None) -> dict[str, np.ndarray]:
        for p in points:
            if p.pooling not in POOLINGS:
                raise ValueError(f"point {p.name!r}: pooling must be one of {POOLINGS}, got {p.pooling!r}")
        module = self.module.to(device)
        taken: dict[str, torch.Tensor] = {}
        out: dict[str, list[np.ndarray]] = {p.name: [] for p in points}
        handles = []
        for p in points:
            path, is_in = p.hook.removesuffix(":in"), p.hook.endswith(":in")
            target = module.get_submodule(path)
            if is_in:
                handles.append(target.register_forward_pre_hook(
                    lambda _m, args, name=p.name: taken.__setitem__(name, args[0].detach())))
            else:
                handles.append(target.register_forward_hook(
                    lambda _m, _a, o, name=p.name: taken.__setitem__(
                        name, (o[0] if isinstance(o, (tuple, list)) else o).detach())))
        was = module.training
        module.eval()
        try:
            with torch.no_grad():
                for _, x, mask in self._batches(np.asarray(indices), device, batch_size or self.batch_size):
                    taken.clear()
                    self._run(x, mask)
                    for p in points:
                        if p.name not in taken:
                            raise ValueError(f"point {p.name!r} was not reached by the module's forward pass")
                        t = taken[p.name]
                        use = mask if mask is not None and t.ndim == 3 and t.shape[1] == mask.shape[1] else None
                        out[p.name].append(pool(t, p, use).numpy())
        finally:
            for h in handles:
                h.remove()
            module.train(was)
        return {name: np.concatenate(parts).astype(np.float32, copy=False) for name, parts in out.items()}

    def block_states(self, indices: np.ndarray, *, device: str = "cpu") -> list[np.ndarray]:
        """Block 0's input and every block's output, one row per input (flattened), for the
        layer-drop selectors; a ValueError when the blocks change the shape of their input."""
        L = self.n_blocks
        names = [f"{self.blocks}.0:in"] + [f"{self.blocks}.{b}" for b in range(L)]
        points = [RepPoint(n, n, i, n, pooling="flatten") for i, n in enumerate(names)]
        reps = self.extract(indices, points, device=device)
        widths = {reps[n].shape[1] for n in names}
        if len(widths) != 1:
            raise ValueError(f"the blocks of {self.factory} change the shape of their input ({sorted(widths)} values "
                             f"per input); only the 'first' selector applies")
        return [reps[n] for n in names]

    def targets(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        if self.inputs.labels is None:
            return {}
        return {"label": one_hot(self.inputs.labels[np.asarray(indices)], self.inputs.n_classes)}

    def describe(self) -> dict:
        return {"family": "torch", "checkpoint": self.checkpoint, "factory": self.factory, "kwargs": self.kwargs,
                "blocks": self.blocks, "n_blocks": self.n_blocks, "module": type(self.module).__name__,
                "pooling": self.pooling, "inputs": {"kind": self.inputs.kind, **self.inputs.describe}}


def call(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> Any:
    """``module(x, mask)`` for a text module whose forward takes two arguments, else ``module(x)``."""
    if mask is not None and len(inspect.signature(module.forward).parameters) >= 2:
        return module(x, mask)
    return module(x)


def _sequences(module: nn.Module) -> str:
    found = [n for n, m in module.named_modules() if n and isinstance(m, (nn.ModuleList, nn.Sequential))]
    return ", ".join(found[:8]) or "(none)"


def load(checkpoint: str, *, factory: str, blocks: str, kwargs: dict | None = None, points: list[str] | None = None,
         inputs: dict | None = None, pooling: str = "flatten", batch_size: int = 64, max_length: int = 64,
         tokenizer: str | None = None) -> TorchModel:
    """See the module docstring."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(blocks, str) or not blocks:
        raise ValueError(f"params.blocks must be the module path of the block sequence, got {blocks!r}")
    module = build(factory, kwargs, checkpoint)
    path = blocks_path(blocks)
    patterns = tuple(points) if points else (f"{path}.0:in", f"{path}.[0-9]*")
    if points is not None and (isinstance(points, str) or not all(isinstance(p, str) for p in points)):
        raise ValueError(f"params.points must be a list of module-name patterns, got {points!r}")
    model = TorchModel(module, read_inputs(inputs, tokenizer, max_length), checkpoint, factory, path, patterns,
                       pooling, batch_size, dict(kwargs or {}))
    model.block_list()
    if not points:  # the blocks themselves, not what they contain
        model.patterns = (f"{path}.0:in", *(f"{path}.{b}" for b in range(model.n_blocks)))
    model.points()
    return model
