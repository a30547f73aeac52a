"""Group stage: stored pair tiles to groups, and what it says when pairs failed."""
from __future__ import annotations

import numpy as np
import pytest

from layergw import results
from layergw.store import ResultStore
from workflows.config import GroupingSpec, MeasureSpec
from workflows.group import group_rows

WIDTHS = [8, 8, 8, 4, 8, 8]


def _store_pairs(tmp_path) -> ResultStore:
    rng = np.random.default_rng(0)
    store = ResultStore(str(tmp_path / "run"))
    rows = []
    for i in range(len(WIDTHS)):
        for j in range(i + 1, len(WIDTHS)):
            unequal = WIDTHS[i] != WIDTHS[j]
            error = (f"ValueError: euclidean needs equal widths: X has d={WIDTHS[i]} columns but Y has d={WIDTHS[j]}"
                     if unequal else None)
            rows.append({"study": "s", "run_id": "r", "model_a": "m", "seed_a": 0, "checkpoint_a": "final",
                         "layer_a": f"l{i}", "layer_a_index": i, "model_b": "m", "seed_b": 0, "checkpoint_b": "final",
                         "layer_b": f"l{j}", "layer_b_index": j, "measure": "euclidean", "params": "{}",
                         "kind": "distance", "value": None if unequal else float(rng.uniform(1, 2)),
                         "n_samples": 8, "iterations": 0, "converged": True, "seconds": 0.0, "error": error,
                         "config_hash": "h", "code_version": "0"})
    store.write_table("pairs/m/euclidean/tile-0-0.parquet", results.table(rows, results.PAIRS))
    return store


def test_grouping_with_failed_pairs_says_what_failed_and_that_a_rerun_repeats_it(tmp_path):
    store = _store_pairs(tmp_path)
    names = [f"l{i}" for i in range(len(WIDTHS))]
    with pytest.raises(ValueError) as info:
        group_rows(store, "m", MeasureSpec(name="euclidean"), names, dict(enumerate(names)), GroupingSpec())
    msg = str(info.value)
    assert "5 of 15 layer pairs are missing" in msg
    assert "5 of them failed" in msg and "a rerun repeats" in msg
    assert "euclidean needs equal widths: X has d=8 columns but Y has d=4" in msg
    assert "ValueError:" not in msg
