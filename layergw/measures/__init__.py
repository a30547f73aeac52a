"""Layer-comparison measures behind one registry: ``measures.get(name, **params)``.

Every submodule of this package is imported here, so adding a measure is one new module
holding a ``@register("name")`` frozen-dataclass subclass of ``Measure``.

>>> from layergw import measures
>>> m = measures.get("gw", normalize="none", init="product")
>>> value = m.score(X, Y)                         # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import pkgutil

from layergw.measures.base import (
    REGISTRY,
    Comparison,
    Measure,
    check_finite,
    check_representation,
    check_same_n,
    check_shape,
    get,
    names,
    parameters,
    register,
)

__all__ = [
    "REGISTRY",
    "Comparison",
    "Measure",
    "check_finite",
    "check_representation",
    "check_same_n",
    "check_shape",
    "get",
    "names",
    "parameters",
    "register",
]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name != "base" and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
del _info
