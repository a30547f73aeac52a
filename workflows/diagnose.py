"""Diagnose stage: the paper's diagnostic tables of every model, one Ray task per model.

Each task reads the model's stored representations (and, for the steps and the transport
plan, its stored pairs of one GW variant), computes ``layergw.diagnostics.diagnostic_tables``
and writes them as Parquet under ``diagnostics/<model>/`` with ``done.json`` last; a rerun
reuses a model whose tables were made with the same GW variant. The report only draws them.
"""
from __future__ import annotations

import logging

import ray

from layergw import layout
from workflows.config import MeasureSpec, StudyConfig
from workflows.extract import Manifest

log = logging.getLogger(__name__)


def steps_measure(cfg: StudyConfig) -> MeasureSpec | None:
    """The GW variant whose layer-to-previous values and plan the diagnostics show: of the
    study's gw measures, the last by parameters (none without gw)."""
    gws = sorted((m for m in cfg.measures if m.name == "gw"), key=lambda m: m.params_json)
    return gws[-1] if gws else None


@ray.remote(num_cpus=1)
def diagnose_task(store, model: str, n_points: int, measure: MeasureSpec | None) -> str:
    """Compute and store one model's diagnostic tables unless they are there; return what it did."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from layergw import diagnostics
    from layergw.grouping import pair_matrix
    from layergw.results import DIAGNOSTICS, PAIRS, table

    marker = {"measure": None if measure is None else measure.name,
              "params": None if measure is None else measure.params_json}
    if store.exists(layout.diagnosed(model)) and store.read_json(layout.diagnosed(model)) == marker:
        return "reused"
    reps = [store.read_array(layout.rep(model, k)).astype(np.float64) for k in range(n_points)]
    steps = None
    if measure is not None:
        pairs = store.read_tables(layout.pairs_dir(model, measure.key), PAIRS)
        if pairs is not None:
            steps = pair_matrix(pairs, model, measure.name, n_points)
    with threadpool_limits(limits=1):
        tables = diagnostics.diagnostic_tables(reps, steps, measure.resolved() if measure else None)
    for name, rows in tables.items():
        store.write_table(layout.diagnostics(model, name), table(rows, DIAGNOSTICS[name]))
    store.write_json(layout.diagnosed(model), marker)
    return "computed"


def run_diagnose(cfg: StudyConfig, run, manifests: dict[str, Manifest]) -> list[str]:
    """Every model of two or more points, in parallel; the failures (the rest is stored)."""
    measure = steps_measure(cfg)
    refs = {mid: diagnose_task.remote(run, mid, len(man.points), measure)
            for mid, man in manifests.items() if len(man.points) >= 2}
    failures = []
    for mid, ref in refs.items():
        try:
            log.info("diagnostics of %s: %s", mid, ray.get(ref))
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None) or e
            failures.append(f"diagnostics of {mid}: {type(cause).__name__}: {cause}")
    return failures
