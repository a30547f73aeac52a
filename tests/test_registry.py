"""The registry behind measures and model families: names, parameters, lazy imports."""
from __future__ import annotations

import sys

import pytest

from layergw.registry import Registry


def test_lazy_entry_imports_its_module_only_when_used():
    reg: Registry = Registry("thing")
    reg.register_lazy("dec", "decimal:Decimal")
    sys.modules.pop("fractions", None)
    reg.register_lazy("frac", "fractions:Fraction")
    assert "fractions" not in sys.modules
    assert reg.names() == ["dec", "frac"]
    assert reg.get("frac", numerator=3, denominator=6) == 0.5
    assert "fractions" in sys.modules


def test_lazy_entry_checks_parameters_like_an_eager_one():
    reg: Registry = Registry("thing")
    reg.register_lazy("frac", "fractions:Fraction")
    with pytest.raises(ValueError, match="thing 'frac' has no parameter 'numerater' \\(did you mean 'numerator'\\?\\)"):
        reg.get("frac", numerater=1)


def test_lazy_target_must_name_module_and_function():
    with pytest.raises(ValueError, match="must be 'module:function', got 'decimal.Decimal'"):
        Registry("thing").register_lazy("dec", "decimal.Decimal")


def test_unknown_name_suggests_and_lists():
    reg: Registry = Registry("thing")
    reg.register("alpha")(dict)
    with pytest.raises(ValueError, match=r"unknown thing 'alpah' \(did you mean 'alpha'\?\); valid things: alpha"):
        reg.get("alpah")
