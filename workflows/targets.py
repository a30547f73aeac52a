"""Targets stage (the paper's Table 1): each known target against every point of a model."""
from __future__ import annotations

import json
import logging

import ray

from workflows.compare import PrepareFailed, build_measure

log = logging.getLogger(__name__)


@ray.remote(num_cpus=1)
def target_task(store, model: str, target: str, measure_name: str, params: dict,
                layers: list[dict], *geoms) -> list[dict]:
    """Value of ``measure(layer, target)`` for every layer; rows of the TARGETS schema."""
    from threadpoolctl import threadpool_limits

    m = build_measure(measure_name, params)
    params_json = json.dumps(m.params(), sort_keys=True)  # as in the pair rows: tells variants apart
    Y = store.read_array(f"reps/{model}/targets/{target}.npy")
    rows = []
    with threadpool_limits(limits=1):
        gy = m.prepare(Y, label=f"target {target}")
        for layer, g in zip(layers, geoms):
            value = None
            if not isinstance(g, PrepareFailed):
                try:
                    value = float(m.compare(g, gy).value)  # layer first: probes read Y as the target
                except (ValueError, ArithmeticError) as e:
                    log.warning("target %s vs %s of %s: %s", target, layer["layer"], model, e)
            rows.append({"model": model, "target": target, "layer": layer["layer"],
                         "layer_index": layer["layer_index"], "display": layer["display"],
                         "measure": measure_name, "params": params_json, "value": value, "rank": None})
    better_high = m.kind == "similarity"
    ranked = sorted((r for r in rows if r["value"] is not None), key=lambda r: r["value"], reverse=better_high)
    for rank, r in enumerate(ranked, start=1):
        r["rank"] = rank
    return rows
