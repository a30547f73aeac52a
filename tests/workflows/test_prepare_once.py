"""Every measure prepares each layer once per run (in chunks of a tile row's layers), not L^2 times."""
from __future__ import annotations

import json
from collections import Counter

import pytest


pytestmark = pytest.mark.long  # every measure through a study

class CountingPrepare:
    """Stands in for ``workflows.compare.prepare_task`` on the driver and counts submissions."""

    def __init__(self, task, options: dict | None = None, calls: Counter | None = None) -> None:
        self.task, self.opts = task, options or {}
        self.calls: Counter = Counter() if calls is None else calls

    def options(self, **options):
        return CountingPrepare(self.task, options, self.calls)

    def remote(self, store, rep_paths: list[str], name: str, params: dict):
        for path in rep_paths:
            self.calls[(path, name, json.dumps(params, sort_keys=True))] += 1
        return self.task.options(**self.opts).remote(store, rep_paths, name, params)


@pytest.mark.ray
def test_each_layer_is_prepared_once_per_measure(tiny_checkpoints, tiny_layers, study_config, ray_local,
                                                 tmp_path, monkeypatch) -> None:
    from layergw import measures
    from layergw.results import PAIRS
    from layergw.store import ResultStore
    from workflows import compare
    from workflows.study import run_study

    pair_measures = [n for n in measures.names() if not measures.get(n).target]
    model = "tiny_fmod"
    cfg = study_config({model: tiny_checkpoints[model]}, tmp_path, measures=pair_measures,
                       inputs={"n": 20, "seed": 0}, targets={"enabled": True, "measure": {"name": "gw"}})
    counting = CountingPrepare(compare.prepare_task)
    monkeypatch.setattr(compare, "prepare_task", counting)
    run_study(cfg, show_progress=False)

    L = tiny_layers[model]
    per_measure = Counter(name for (_, name, _) in counting.calls)
    assert per_measure == {name: L for name in pair_measures}, "one prepare per layer and measure"
    assert set(counting.calls.values()) == {1}, "no layer prepared twice (targets reuse the gw geometry)"
    pairs = ResultStore(cfg.store).child(cfg.study, cfg.resolved_run_id).read_tables("pairs", PAIRS)
    assert pairs.num_rows == len(pair_measures) * L * (L - 1) // 2


def test_a_probe_in_the_pair_grid_is_refused_naming_where(tiny_checkpoints, study_config, tmp_path) -> None:
    from layergw import measures
    from workflows.config import ConfigError
    from workflows.study import check_plan

    probes = [n for n in measures.names() if measures.get(n).target]
    if not probes:
        pytest.skip("no probe measure registered")
    cfg = study_config(tiny_checkpoints, tmp_path, measures=["gw", probes[0]])
    with pytest.raises(ConfigError, match=rf"measures\[1\]: '{probes[0]}' is a probe.*targets\.measure"):
        check_plan(cfg)
    check_plan(study_config(tiny_checkpoints, tmp_path, targets={"measure": {"name": probes[0]}}))
