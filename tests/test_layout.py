"""The run folder's paths: one home for them, distinct and relative."""
import ast
import pathlib
import re

import pytest

from layergw import layout

ROOT = pathlib.Path(__file__).resolve().parent.parent
#: first folders of the run and study layout: a string literal starting with one of these
#: outside layergw/layout.py is a path written a second time
FOLDERS = ("reps/", "pairs/", "cross/", "targets/", "diagnostics/", "skip/", "report/", "train/")


def test_tile_paths_are_distinct_and_name_their_origin():
    paths = {layout.tile(m, k, i0, j0) for m in ("a", "b") for k in ("gw-1", "cka-2")
             for i0 in (0, 16) for j0 in (0, 16, 32)}
    assert len(paths) == 24
    p = layout.tile("model_a", "gw-1234abcd", 16, 32)
    assert p == "pairs/model_a/gw-1234abcd/tile-0016-0032.parquet"
    assert p.startswith(layout.pairs_dir("model_a", "gw-1234abcd") + "/")
    assert layout.cross_tile("a", "b", "k", 0, 16).startswith(layout.cross_dir("a", "b", "k") + "/")


def test_every_path_is_relative_and_unique_per_model():
    per_model = [layout.rep("m", 0), layout.rep("m", 1), layout.target_rep("m", "c"), layout.extracted("m"),
                 layout.target_table("m", "gw-1", "c"), layout.skip_kl("m"), layout.skip_agreement("m"),
                 layout.diagnosed("m"), *(layout.diagnostics("m", t) for t in layout.DIAGNOSTIC_TABLES)]
    top = [layout.CONFIG, layout.RUN, layout.TILING, layout.SERIES, layout.POINTS, layout.TARGETS, layout.GROUPS,
           layout.REPORT_PAGE, layout.train_done("job/abc", 0)]
    every = per_model + top
    assert len(set(every)) == len(every)
    assert not any(p.startswith("/") or ".." in p.split("/") for p in every)
    with pytest.raises(ValueError, match="diagnostic table must be one of"):
        layout.diagnostics("m", "plans")


def test_no_module_but_layout_spells_a_run_folder_path():
    offenders = []
    for path in [*ROOT.joinpath("layergw").rglob("*.py"), *ROOT.joinpath("workflows").rglob("*.py")]:
        if path.name == "layout.py" and path.parent.name == "layergw":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(FOLDERS)
                    and not re.fullmatch(r"[a-z]+/s", node.value)):  # a rate's unit ("pairs/s") is no path
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                head = node.values[0].value
                if isinstance(head, str) and head.startswith(FOLDERS):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: f{head!r}...")
    assert offenders == []
    assert re.match(r"^reps/m/\d+\.npy$", layout.rep("m", 3))
