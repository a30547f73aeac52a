"""The project's import graph, walked from its source: dependencies run one way.

``workflows`` may import ``layergw``; ``layergw`` never imports ``workflows`` or Ray. Inside
``layergw`` every module sits in a layer and imports only its own layer or lower ones
(lazy imports inside functions count too), model and loaded-model modules never import a
trainer, and the modules that run no model import no torch.
"""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: layer of each top-level part of layergw, lowest first
LAYERS = [
    {"registry", "points", "inputs", "layout", "results", "store", "data"},
    {"torchkit"},
    {"measures"},
    {"grouping", "segmentation", "diagnostics", "agreement", "isometry"},
    {"families"},
    {"interventions"},
    {"plot"},
    {"report"},
    {"api"},
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}
#: modules of a family that hold or load models; they never import its trainers (a family's
#: ``__init__``, its Family class, reaches them only inside the methods that train)
MODEL_MODULES = {"model", "adapter", "checkpoint", "spec"}
TRAINERS = {"training", "finetune", "lm"}
#: modules whose import must pull in neither torch nor Ray (nor the datasets library)
LIGHT = ["layergw", "layergw.measures", "layergw.families", "layergw.grouping", "layergw.diagnostics",
         "layergw.report", "layergw.store", "layergw.results", "layergw.plot", "layergw.registry",
         "layergw.layout", "layergw.inputs", "layergw.points", "layergw.data.modsum", "layergw.data.images",
         "layergw.data.text", "layergw.interventions.skip", "layergw.torchkit", "layergw.torchkit.checkpoint"]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, lazy ones included."""
    pkg = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            out += [(node.lineno, f"{base}.{a.name}" if base.startswith("layergw") else base) for a in node.names]
    return out


def library_files() -> list[pathlib.Path]:
    return sorted(ROOT.joinpath("layergw").rglob("*.py"))


def part_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "layergw" else None


def test_layergw_never_imports_workflows_or_ray():
    bad = [f"{p.relative_to(ROOT)}:{line}: {mod}" for p in library_files() for line, mod in imports(p)
           if mod.split(".")[0] in ("workflows", "ray")]
    assert bad == []


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    bad = []
    for p in library_files():
        mine = part_of(module_name(p))
        if mine is None:
            continue
        assert mine in RANK, f"{p}: put layergw.{mine} in a layer of tests/test_imports.py"
        for line, mod in imports(p):
            theirs = part_of(mod)
            if theirs in RANK and RANK[theirs] > RANK[mine]:
                bad.append(f"{p.relative_to(ROOT)}:{line}: layergw.{mine} (layer {RANK[mine]}) imports {mod} "
                           f"(layer {RANK[theirs]})")
    assert bad == []


def test_models_never_import_their_trainers():
    bad = []
    for p in sorted(ROOT.joinpath("layergw", "families").rglob("*.py")):
        if p.stem not in MODEL_MODULES:
            continue
        for line, mod in imports(p):
            if mod.startswith("layergw.families.") and set(mod.split(".")[3:4]) & TRAINERS:
                bad.append(f"{p.relative_to(ROOT)}:{line}: {mod}")
    assert bad == []


def test_families_reach_their_trainers_only_inside_methods():
    bad = []
    for p in sorted(ROOT.joinpath("layergw", "families").rglob("__init__.py")):
        for node in ast.parse(p.read_text()).body:  # module level only
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                bad += [f"{p.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                        if n.startswith("layergw.families.") and set(n.split(".")[3:4]) & TRAINERS]
    assert bad == []


def test_the_walk_sees_what_it_checks():
    """The checks above are only as good as the walk: it must find relative, lazy and aliased imports."""
    found = {mod for p in library_files() for _, mod in imports(p)}
    assert "layergw.families.modsum.adapter.ModSumModel" in found  # a lazy import inside a method
    assert "layergw.measures.base.KINDS" in found
    assert any(mod.startswith("torch") for mod in found)


def test_light_modules_import_neither_torch_nor_ray():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in LIGHT) +
            "print(','.join(m for m in ('ray', 'torch', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
