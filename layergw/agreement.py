"""Seed agreement: how alike the groups of one model trained with different seeds are.

A *seed set* is the models that are seeds of one another: the members of a ``train:`` job's
seeds at one checkpoint label, or the models a config puts in one ``seed_group``. For every
seed set and grouping (measure, params, method) :func:`agreement` gives

- one row per pair of seeds: the adjusted Rand index of their groupings (1: the same
  groups; about 0: chance), the ``SEED_AGREEMENT`` table;
- one summary row: mean and smallest ARI, the k of each seed, and where each boundary lies
  across the seeds that chose the most common k and, among them, the most common number of
  boundaries (mean and standard deviation of its layer index), the ``AGREEMENT_SUMMARY`` table.
"""
from __future__ import annotations

import json
from collections import Counter
from itertools import combinations
from typing import Any

import numpy as np


def seed_ari(labels: list[list[int]]) -> list[float]:
    """Adjusted Rand index of every pair of groupings of the same layers."""
    from sklearn.metrics import adjusted_rand_score

    return [float(adjusted_rand_score(a, b)) for a, b in combinations(labels, 2)]


def seed_sets(series: dict[str, list[dict]], seed_groups: dict[str, list[tuple[str, int]]]) -> dict[str, list[tuple[str, int]]]:
    """Seed set name -> [(model id, seed)]: each series' members at one label with two or more
    seeds (``<entry>`` or ``<entry>@<label>`` when the entry has several labels), and the
    config's seed groups."""
    out: dict[str, list[tuple[str, int]]] = {}
    for entry, members in series.items():
        labels: dict[str, list[dict]] = {}
        for m in members:
            labels.setdefault(m["label"], []).append(m)
        for label, ms in labels.items():
            if len({m["seed"] for m in ms}) >= 2:
                out[entry if len(labels) == 1 else f"{entry}@{label}"] = [(m["model"], m["seed"]) for m in ms]
    for name, ms in seed_groups.items():
        if len({s for _, s in ms}) >= 2:
            out[name] = list(ms)
    return out


def agreement(groups: Any, sets: dict[str, list[tuple[str, int]]]) -> tuple[list[dict], list[dict]]:
    """(SEED_AGREEMENT rows, AGREEMENT_SUMMARY rows) of every seed set and grouping."""
    df = groups.to_pandas() if hasattr(groups, "to_pandas") else groups
    pairs, summary = [], []
    for name, members in sets.items():
        ids = [m for m, _ in members]
        seed_of = dict(members)
        g = df[df["model"].isin(ids)]
        for (measure, params, method), gm in g.groupby(["measure", "params", "method"], sort=False, dropna=False):
            runs = {}
            for mid in ids:
                one = gm[gm["model"] == mid].sort_values("layer_index")
                if len(one):
                    runs[mid] = one
            if len(runs) < 2 or len({len(r) for r in runs.values()}) != 1:
                continue
            aris = []
            for a, b in combinations(runs, 2):
                ari = seed_ari([runs[a]["group"].astype(int).tolist(), runs[b]["group"].astype(int).tolist()])[0]
                aris.append(ari)
                pairs.append({"seed_set": name, "measure": measure, "params": params, "method": method,
                              "model_a": a, "model_b": b, "seed_a": seed_of[a], "seed_b": seed_of[b], "ari": ari})
            ks = {m: int(r["k"].iloc[0]) for m, r in runs.items()}
            modal = Counter(ks.values()).most_common(1)[0][0]
            at = [r.loc[r["boundary"] == True, "layer_index"].tolist()  # noqa: E712
                  for m, r in runs.items() if ks[m] == modal]
            # spectral groups need not be contiguous: seeds of one k can differ in boundary count
            count = Counter(len(b) for b in at).most_common(1)[0][0]
            bounds = np.array([b for b in at if len(b) == count], dtype=float)
            summary.append({"seed_set": name, "measure": measure, "params": params, "method": method,
                            "seeds": len(runs), "mean_ari": float(np.mean(aris)), "min_ari": float(np.min(aris)),
                            "k": json.dumps({m: ks[m] for m in runs}), "modal_k": modal,
                            "boundary_mean": json.dumps(bounds.mean(0).round(3).tolist() if bounds.size else []),
                            "boundary_spread": json.dumps(bounds.std(0).round(3).tolist() if bounds.size else [])})
    return pairs, summary
