"""Model families by name: ``families.get("modsum")``. Importing this package imports no
torch; loading or training a model does.

Adding a family is one package here with a :class:`~layergw.families.base.Family`
subclass, registered below.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from layergw.families.base import METRICS_FILE, Family, LoadedModel, Metrics, read_metrics, write_metrics
from layergw.registry import Registry

FAMILIES: Registry[Family] = Registry("model family")


def names() -> list[str]:
    return FAMILIES.names()


def get(name: str) -> Family:
    """The family registered as ``name``; unknown names are a ValueError naming the valid ones."""
    return FAMILIES.get(name)


def fingerprint(family: str, checkpoint: str) -> str:
    """What identifies a checkpoint's contents, for run ids (see ``Family.fingerprint``)."""
    return get(family).fingerprint(checkpoint)


_SMALL_FILE = 1 << 20


def content_hash(path: Path) -> str:
    """Names and sizes of every file under ``path``, and the bytes of the small ones (configs,
    vocabularies) and the first MiB of the large: changes when weights are replaced, without
    reading gigabytes of weights."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.relative_to(path) if p != path else p.name}:{size}\n".encode())
        with p.open("rb") as f:
            h.update(f.read() if size <= _SMALL_FILE else f.read(_SMALL_FILE))
    return h.hexdigest()[:16]


def _register() -> None:
    from layergw.families.hf import HFFamily
    from layergw.families.modsum import ModSumFamily
    from layergw.families.resnet9 import ResNet9Family

    for cls in (ModSumFamily, ResNet9Family, HFFamily):
        FAMILIES.register(cls.name)(cls)


_register()

__all__ = ["FAMILIES", "METRICS_FILE", "Family", "LoadedModel", "Metrics", "content_hash", "fingerprint", "get",
           "names", "read_metrics", "write_metrics"]
