"""Model families by name: ``families.get("modsum")``. Importing this package imports no
torch; loading or training a model does.

A family is found by its registered name (the built-in ``modsum``, ``resnet9``, ``hf``,
``torch`` and ``synthetic``), by a package's entry point in the ``layergw.families`` group (so an installed
plugin is found in the driver and in every Ray worker alike), or as ``"package.module:Class"``.
Adding a family is one module with a :class:`~layergw.families.base.Family` subclass.
"""
from __future__ import annotations

import logging
from importlib.metadata import entry_points

from layergw.families.base import (
    METRICS_FILE,
    CausalLM,
    Family,
    LoadedModel,
    Metrics,
    content_hash,
    read_metrics,
    write_metrics,
)
from layergw.registry import Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "layergw.families"
FAMILIES: Registry[Family] = Registry("model family")
_BUILTIN = {"modsum": "layergw.families.modsum:ModSumFamily", "resnet9": "layergw.families.resnet9:ResNet9Family",
            "hf": "layergw.families.hf:HFFamily", "torch": "layergw.families.torch:TorchFamily",
            "synthetic": "layergw.families.synthetic:SyntheticFamily"}
_plugins_loaded = False


def _load_plugins() -> None:
    """Register every installed package's ``layergw.families`` entry point (once, lazily)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in FAMILIES:
            log.warning("model family plugin %s (%s) is ignored: the name is taken", ep.name, ep.value)
            continue
        try:
            FAMILIES.register_lazy(ep.name, ep.value)
        except ValueError as e:
            log.warning("model family plugin %s (%s) is ignored: %s", ep.name, ep.value, e)


def names() -> list[str]:
    _load_plugins()
    return FAMILIES.names()


def get(name: str) -> Family:
    """The family ``name`` (registered, an installed plugin, or ``"package.module:Class"``); an
    unknown name is a ValueError naming the valid ones."""
    if isinstance(name, str) and ":" in name:
        return _by_path(name)
    if name not in FAMILIES:
        _load_plugins()
    family = FAMILIES.get(name)
    if not isinstance(family, Family):
        raise ValueError(f"model family {name!r} is a {type(family).__name__}, not a layergw Family")
    return family


def _by_path(target: str) -> Family:
    from layergw.registry import import_object

    cls = import_object(target, "model family (importable on the driver and every worker)")
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise ValueError(f"model family {target!r} is not a subclass of layergw.families.Family")
    return cls()


def fingerprint(family: str, checkpoint: str) -> str:
    """What identifies a checkpoint's contents, for run ids (see ``Family.fingerprint``)."""
    return get(family).fingerprint(checkpoint)


for _name, _target in _BUILTIN.items():
    FAMILIES.register_lazy(_name, _target)

__all__ = ["ENTRY_POINT_GROUP", "FAMILIES", "METRICS_FILE", "CausalLM", "Family", "LoadedModel", "Metrics",
           "content_hash", "fingerprint", "get", "names", "read_metrics", "write_metrics"]
