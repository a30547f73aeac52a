"""The HTML report from a small synthetic run folder."""
from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from layergw import results
from layergw.grouping import group_layers, pair_matrix
from layergw.report import build_report
from layergw.store import ResultStore

MODELS = {"modsum-L": 6, "bert/base": 4}  # a "/" in a name must still give a flat PNG name
MEASURES = {"gw": "distance", "cka": "similarity"}


def _matrix(L: int, kind: str) -> np.ndarray:
    lab = np.repeat([0, 1], [L // 2, L - L // 2])
    D = np.where(lab[:, None] == lab[None, :], 0.1, 1.0) + 0.01 * np.arange(L)[None, :]
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0)
    return D if kind == "distance" else 1 - D


def make_run(root, *, with_groups: bool = True, with_targets: bool = True) -> ResultStore:
    store = ResultStore(str(root))
    points, groups, targets = [], [], []
    for model, L in MODELS.items():
        points += [{"model": model, "layer": f"blocks.{i}.out", "layer_index": i, "display": f"B{i + 1} Resid-Post",
                    "block": i, "role": "Resid-Post", "dim": 8} for i in range(L)]
        for measure, kind in MEASURES.items():
            M = _matrix(L, kind)
            rows = []
            for i in range(L):
                for j in range(i + 1, L):
                    failed = model == "modsum-L" and measure == "gw" and (i, j) == (0, 5)
                    rows.append({
                        "study": "demo-study", "run_id": "run-42", "model_a": model, "seed_a": 0,
                        "checkpoint_a": "final", "layer_a": f"blocks.{i}.out", "layer_a_index": i,
                        "model_b": model, "seed_b": 0, "checkpoint_b": "final", "layer_b": f"blocks.{j}.out",
                        "layer_b_index": j, "measure": measure, "params": "{}", "kind": kind,
                        "value": None if failed else float(M[i, j]), "n_samples": 32, "iterations": 3,
                        "converged": (i, j) != (1, 2), "seconds": 0.01, "error": "solver failed" if failed else None,
                        "config_hash": "abc", "code_version": "0.1.0",
                    })
            tbl = results.table(rows, results.PAIRS)
            store.write_table(f"pairs/{model}/{measure}/tile-0-0.parquet", tbl)
            g = group_layers(_matrix(L, kind), kind, k_max=3)
            groups += g.to_rows(model, measure, [f"blocks.{i}.out" for i in range(L)],
                                [f"B{i + 1} Resid-Post" for i in range(L)])
            assert pair_matrix(tbl, model, measure, L).shape == (L, L)
        vals = np.linspace(1.0, 0.1, L)
        order = np.argsort(vals)
        ranks = np.empty(L, dtype=int)
        ranks[order] = np.arange(1, L + 1)
        targets += [{"model": model, "target": "c1", "layer": f"blocks.{i}.out", "layer_index": i,
                     "display": f"B{i + 1} Resid-Post", "measure": "gw", "value": float(vals[i]),
                     "rank": int(ranks[i])} for i in range(L)]
    store.write_table("points.parquet", results.table(points, results.POINTS))
    if with_groups:
        store.write_table("groups.parquet", results.table(groups, results.GROUPS))
    if with_targets:
        store.write_table("targets.parquet", results.table(targets, results.TARGETS))
    store.write_json("config.json", {"study": "demo-study", "measures": list(MEASURES), "note": "<b>x</b>"})
    store.write_json("run.json", {"run_id": "run-42", "status": "done", "timings": {"extract": 1.5, "compare": 12.25}})
    return store


def test_report_builds_with_everything(tmp_path):
    store = make_run(tmp_path / "run")
    url = build_report(store)
    assert url == store.url("report/index.html")
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "demo-study" in page and "run-42" in page
    for model in MODELS:
        assert model in page
    for measure in MEASURES:
        assert f"<b>{measure}</b>" in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == len(MODELS) * len(MEASURES)
    for src in srcs:
        assert "/" not in src
        assert (tmp_path / "run" / "report" / src).read_bytes().startswith(b"\x89PNG")
    assert "heatmap-modsum-L-gw.png" in srcs
    # groups as ranges of display names, with k and both selections
    assert "B1 Resid-Post … B3 Resid-Post" in page and "eigengap" in page
    # targets ranked: the deepest layer has the smallest value, rank 1, listed first
    targets = page[page.index("<h3>Targets</h3>"):]
    assert targets.index("B6 Resid-Post") < targets.index("B1 Resid-Post")
    assert "<td class=\"num\">1</td><td>B6 Resid-Post</td>" in targets
    # failures and non-converged pairs, config and timings
    assert "Failed and non-converged pairs" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page  # config is escaped
    assert "compare" in page and "12.25" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_report_without_targets_and_groups(tmp_path):
    store = make_run(tmp_path / "run", with_groups=False, with_targets=False)
    (tmp_path / "run" / "config.json").unlink()
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    assert "Targets" not in page and "Groups" not in page and "Config" not in page
    assert len(re.findall(r'<img src="([^"]+)"', page)) == len(MODELS) * len(MEASURES)


def test_report_needs_points_and_pairs(tmp_path):
    store = ResultStore(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="points"):
        build_report(store)
    store.write_table("points.parquet", pa.Table.from_pylist([], schema=results.POINTS))
    with pytest.raises(FileNotFoundError, match="pair"):
        build_report(store)


def test_report_separates_checkpoints(tmp_path):
    store = make_run(tmp_path / "run", with_groups=False, with_targets=False)
    tbl = store.read_table("pairs/bert/base/gw/tile-0-0.parquet")
    early = tbl.set_column(tbl.schema.get_field_index("checkpoint_a"), "checkpoint_a",
                           pa.array(["step-10"] * tbl.num_rows))
    early = early.set_column(early.schema.get_field_index("checkpoint_b"), "checkpoint_b",
                             pa.array(["step-10"] * tbl.num_rows))
    store.write_table("pairs/bert/base/gw/step-10/tile-0-0.parquet", early)
    build_report(store)
    page = (tmp_path / "run" / "report" / "index.html").read_text()
    srcs = [s for s in re.findall(r'<img src="([^"]+)"', page) if s.startswith("heatmap-bert_base-gw")]
    assert len(srcs) == 2 and "checkpoint step-10" in page
    for src in srcs:
        assert (tmp_path / "run" / "report" / src).exists()
