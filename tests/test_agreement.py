"""Seed agreement: which models are seeds of one another, and how alike their groups are."""
import json

import pandas as pd
import pytest

from layergw.agreement import agreement, seed_ari, seed_sets


def groups(model: str, labels: list[int], measure: str = "gw", method: str = "segment") -> list[dict]:
    starts = {i for i in range(1, len(labels)) if labels[i] != labels[i - 1]}
    return [{"model": model, "measure": measure, "params": "{}", "method": method, "layer_index": i,
             "group": g, "k": len(set(labels)), "boundary": i in starts} for i, g in enumerate(labels)]


def test_seed_sets_come_from_series_labels_and_declared_groups():
    series = {"m": [{"model": "m-s0", "seed": 0, "label": "final"}, {"model": "m-s1", "seed": 1, "label": "final"}],
              "ft": [{"model": "ft-s0@step-1", "seed": 0, "label": "step-1"},
                     {"model": "ft-s0@step-2", "seed": 0, "label": "step-2"}],
              "one": [{"model": "one", "seed": 0, "label": "final"}]}
    sets = seed_sets(series, {"mine": [("a", 3), ("b", 4)], "alone": [("c", 0)]})
    assert sets == {"m": [("m-s0", 0), ("m-s1", 1)], "mine": [("a", 3), ("b", 4)]}


def test_agreement_gives_ari_per_pair_and_where_the_boundaries_lie():
    df = pd.DataFrame(groups("a", [0, 0, 1, 1, 1, 2]) + groups("b", [5, 5, 3, 3, 3, 4])
                      + groups("c", [0, 0, 0, 1, 1, 2]))
    pairs, summary = agreement(df, {"s": [("a", 0), ("b", 1), ("c", 2)]})
    ari = {(p["model_a"], p["model_b"]): p["ari"] for p in pairs}
    assert ari[("a", "b")] == pytest.approx(1.0) and ari[("a", "c")] < 1.0
    (row,) = summary
    assert row["seeds"] == 3 and row["modal_k"] == 3 and row["min_ari"] == pytest.approx(min(ari.values()))
    assert json.loads(row["boundary_mean"]) == pytest.approx([7 / 3, 5.0], abs=1e-3)  # (2, 5), (2, 5), (3, 5)
    assert json.loads(row["boundary_spread"])[1] == 0.0


def test_seed_ari_is_one_for_relabelled_groups():
    assert seed_ari([[0, 0, 1], [1, 1, 0]]) == [1.0]


def test_spectral_seeds_of_one_k_with_different_boundary_counts_are_summarised():
    """Spectral groups need not be contiguous: at k = 2, [0,1,0,0] has two boundaries and [0,0,1,1]
    one. The boundaries are averaged over the seeds with the most common count."""
    df = pd.DataFrame(groups("a", [0, 1, 0, 0], method="spectral") + groups("b", [0, 0, 1, 1], method="spectral")
                      + groups("c", [0, 0, 0, 1], method="spectral"))
    _, (row,) = agreement(df, {"s": [("a", 0), ("b", 1), ("c", 2)]})
    assert row["modal_k"] == 2
    assert json.loads(row["boundary_mean"]) == pytest.approx([2.5])  # b at 2, c at 3; a has two
    assert json.loads(row["boundary_spread"]) == pytest.approx([0.5])
