"""Boundary confidence: one Ray task per model and measure resamples the inputs and records how
often each block cut of the depth segmentation recurs (``layergw.segmentation.bootstrap_cuts``).

The stored representations are resampled, so nothing is extracted again; by default only the
points at block boundaries are compared (``grouping.bootstrap_points: blocks``), which keeps
each replicate at a few pairs. A finished table is reused on rerun.
"""
from __future__ import annotations

import logging

import ray

from layergw import layout
from workflows.config import GroupingSpec, MeasureSpec, StudyConfig
from workflows.extract import Manifest

log = logging.getLogger(__name__)


@ray.remote(num_cpus=1)
def bootstrap_task(store, model: str, measure: MeasureSpec, indices: list[int], depths: list[float],
                   spec: GroupingSpec) -> int:
    from threadpoolctl import threadpool_limits

    from layergw.results import BOOTSTRAP, table
    from layergw.segmentation import bootstrap_cuts

    path = layout.bootstrap(model, measure.key)
    if store.exists(path):
        return 0
    reps = [store.read_array(layout.rep(model, i)) for i in indices]
    with threadpool_limits(limits=1):
        shares = bootstrap_cuts(reps, depths, measure.resolved(), replicates=spec.bootstrap, seed=spec.seed, k=spec.k,
                                k_max=spec.k_max)
    rows = [{"model": model, "measure": measure.name, "params": measure.params_json, "cut": cut, "share": share,
             "replicates": spec.bootstrap, "points": len(indices), "seed": spec.seed} for cut, share in shares.items()]
    store.write_table(path, table(rows, BOOTSTRAP))
    return len(rows)


def run_bootstrap(cfg: StudyConfig, run, manifests: dict[str, Manifest]) -> list[str]:
    """Every model and measure; gathers bootstrap.parquet. Returns the failures."""
    import pyarrow as pa

    from layergw.results import BOOTSTRAP

    refs, paths = {}, []
    for spec in cfg.models:
        man = manifests[spec.id]
        points = [p for p in man.points if p.depth is not None
                  and (cfg.grouping.bootstrap_points == "all" or float(p.depth).is_integer())]
        if len(points) < 3:
            log.info("bootstrap of %s: %d points at block boundaries, too few to segment", spec.id, len(points))
            continue
        for measure in cfg.measures:
            paths.append(layout.bootstrap(spec.id, measure.key))
            refs[f"bootstrap of {spec.id}/{measure.key}"] = bootstrap_task.remote(
                run, spec.id, measure, [p.layer_index for p in points], [p.depth for p in points], cfg.grouping)
    failures = []
    for label, ref in refs.items():
        try:
            ray.get(ref)
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None) or e
            failures.append(f"{label}: {type(cause).__name__}: {cause}")
    parts = [run.read_table(p) for p in paths if run.exists(p)]
    if parts:
        run.write_table(layout.BOOTSTRAP, pa.concat_tables([p.select(BOOTSTRAP.names).cast(BOOTSTRAP) for p in parts]))
    return failures
