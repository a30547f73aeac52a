"""Group stage (driver): stored pair tiles -> L x L matrix -> spectral groups -> GROUPS rows."""
from __future__ import annotations

import json

from workflows.config import GroupingSpec, MeasureSpec


def measure_params(measure: MeasureSpec) -> str:
    """The measure's full parameters as stored in result rows' ``params`` (as in PAIRS)."""
    from layergw import measures

    return json.dumps(measures.get(measure.name, **measure.params).params(), sort_keys=True)


def group_rows(run, model: str, measure: MeasureSpec, names: list[str], display: dict[int, str],
               spec: GroupingSpec) -> list[dict]:
    """Group one model's layers under one measure variant from the tiles in the run folder."""
    from layergw.grouping import group_layers, pair_kind, pair_matrix
    from layergw.results import PAIRS

    pairs = run.read_tables(f"pairs/{model}/{measure.key}", PAIRS)
    if pairs is None:
        raise ValueError(f"no pair results under pairs/{model}/{measure.key}")
    kind = pair_kind(pairs, model, measure.name)
    M = pair_matrix(pairs, model, measure.name, len(names))
    g = group_layers(M, kind, k_max=spec.k_max, select=spec.select, transform=spec.transform, seed=spec.seed)
    return g.to_rows(model, measure.name, names, [display[i] for i in range(len(names))],
                     params=measure_params(measure))
