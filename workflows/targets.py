"""Targets stage (the paper's Table 1): each known target against every point of a model.

``target_rows`` is the plain function (tested without a cluster); ``target_task`` is the
Ray task running it in a worker.
"""
from __future__ import annotations

import logging
from typing import Any

import ray

from layergw import layout
from workflows.compare import PrepareFailed, build_measure
from workflows.extract import PointRow

log = logging.getLogger(__name__)


def target_rows(store, model: str, target: str, measure_name: str, params: dict,
                layers: list[PointRow], geoms: list[Any]) -> list[dict]:
    """Value of ``measure(layer, target)`` for every layer; rows of the TARGETS schema.

    ``geoms[i]`` is the measure's prepared geometry of ``layers[i]`` (or a PrepareFailed);
    the target is read from ``layout.target_rep(model, target)`` in ``store``. The layer
    is the first argument of ``compare`` and the target the second, as probe measures
    (``target = True``) expect. Rank 1 is the best value (lowest for a distance, highest
    for a similarity); equal values share the better rank (1, 2, 2, 4), since Resid-Post
    of one block and Resid-Pre of the next are the same tensor and probes often tie at 0
    error; a layer without a value has rank None.
    """
    from threadpoolctl import threadpool_limits

    from layergw.isometry import same_class_structure

    m = build_measure(measure_name, params)
    Y = store.read_array(layout.target_rep(model, target))
    rows = []
    with threadpool_limits(limits=1):
        gy = m.prepare(Y, label=f"target {target}")
        for layer, g in zip(layers, geoms):
            value = None
            if not isinstance(g, PrepareFailed):
                try:
                    value = float(m.compare(g, gy).value)
                except (ValueError, ArithmeticError) as e:
                    log.warning("target %s vs %s of %s: %s", target, layer.layer, model, e)
            same = same_class_structure(store.read_array(layout.rep(model, layer.layer_index)), Y)
            rows.append({"model": model, "target": target, "layer": layer.layer,
                         "layer_index": layer.layer_index, "display": layer.display,
                         "measure": measure_name, "params": m.params_json, "value": value, "rank": None,
                         "same_classes": same})
    better_high = m.kind == "similarity"
    ranked = sorted((r for r in rows if r["value"] is not None), key=lambda r: r["value"], reverse=better_high)
    for place, r in enumerate(ranked, start=1):
        tied = place > 1 and r["value"] == ranked[place - 2]["value"]
        r["rank"] = ranked[place - 2]["rank"] if tied else place
    return rows


@ray.remote(num_cpus=1)
def target_task(store, model: str, target: str, measure_name: str, params: dict,
                layers: list[PointRow], where: list[tuple[int, int]], *chunks) -> list[dict]:
    """Ray task: ``target_rows`` for one (model, target) in a worker; ``where`` places each
    layer's geometry in ``chunks`` (``workflows.compare.GeometryCache.refs_for``)."""
    from workflows.compare import resolve

    return target_rows(store, model, target, measure_name, params, layers, resolve(where, chunks))
