"""Dependency direction: layergw never imports Ray; only modules that run models import torch."""
import pathlib
import subprocess
import sys

LIGHT = ["layergw", "layergw.measures", "layergw.models", "layergw.grouping", "layergw.report", "layergw.store",
         "layergw.results", "layergw.plots", "layergw.registry", "layergw.data.modsum"]


def test_library_modules_import_neither_ray_nor_torch():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in LIGHT) +
            "bad = [m for m in ('ray', 'torch') if m in sys.modules]\nprint(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_layergw_source_mentions_ray_import():
    root = pathlib.Path(__file__).resolve().parent.parent / "layergw"
    offenders = [str(p) for p in root.rglob("*.py")
                 if any(line.strip().startswith(("import ray", "from ray")) for line in p.read_text().splitlines())]
    assert offenders == []
