"""Tiles sized by cost: the side a measure gets, and that a run folder keeps the tiling it chose."""
from __future__ import annotations

import math

import pytest

from workflows.tiling import MAX_SIDE, MIN_SIDE, TARGET_SECONDS, TASKS_PER_CPU, choose_side, probe_pairs


def _tiles(n: int, side: int) -> int:
    blocks = math.ceil(n / side)
    return blocks * (blocks + 1) // 2


def test_a_cheap_measure_on_a_wide_cluster_gets_enough_tiles_for_every_cpu_but_not_thousands() -> None:
    side = choose_side(948, seconds_per_pair=5e-5, cpus=64)
    assert _tiles(948, side) >= TASKS_PER_CPU * 64
    assert _tiles(948, side) < _tiles(948, 16) / 3  # the fixed default of 16 gave 1,830 tiles


def test_an_expensive_measure_gets_tiles_of_about_the_target_seconds() -> None:
    side = choose_side(948, seconds_per_pair=1.7, cpus=2)
    assert MIN_SIDE <= side and side ** 2 * 1.7 <= max(TARGET_SECONDS, MIN_SIDE ** 2 * 1.7)


@pytest.mark.parametrize("cost", [1e-6, 1e-3, 0.1, 10.0])
def test_the_side_shrinks_with_cost_and_with_width_within_its_bounds(cost: float) -> None:
    assert MIN_SIDE <= choose_side(948, cost, 2) <= MAX_SIDE
    assert choose_side(948, cost * 10, 2) <= choose_side(948, cost, 2)
    assert choose_side(948, cost, 256) <= choose_side(948, cost, 2)


def test_probe_pairs_are_distinct_pairs_of_the_grid() -> None:
    for n in (2, 3, 10, 948):
        pairs = probe_pairs(n)
        assert pairs and len(set(pairs)) == len(pairs) and all(0 <= i < j < n for i, j in pairs)


@pytest.mark.ray
def test_an_unset_tile_size_is_probed_and_recorded_and_a_recorded_one_is_kept(tiny_checkpoints, tiny_layers,
                                                                             study_config, ray_local, tmp_path) -> None:
    import pyarrow.parquet as pq

    from layergw import layout
    from layergw.store import ResultStore
    from workflows.config import ConfigError
    from workflows.study import run_study

    common = dict(measures=["cka", "rsm"], targets={"enabled": False}, compare={})
    root = ResultStore(str(tmp_path / "store"))
    probed = study_config(tiny_checkpoints, tmp_path / "store", run_id="probed", **common)
    assert probed.compare.tile_size is None
    run_study(probed, show_progress=False)
    tiling = root.child("wf", "probed").read_json(layout.TILING)
    largest = max(tiny_layers.values())
    keys = [m.key for m in probed.measures]
    for key in keys:
        assert tiling["seconds_per_pair"][key] > 0
        assert tiling["tile_size"][key] == choose_side(largest, tiling["seconds_per_pair"][key], tiling["cpus"])

    # a folder's recorded sides are used as they are (a resumed run never cuts a grid two ways)
    kept = study_config(tiny_checkpoints, tmp_path / "store", run_id="kept", **common)
    run = root.child("wf", "kept")
    run.write_json(layout.TILING, {"tile_size": {k: 5 for k in keys}})
    run_study(kept, show_progress=False)
    assert run.read_json(layout.TILING)["tile_size"] == {k: 5 for k in keys}
    assert run.read_json(layout.RUN)["compare_usage"]["tile_sizes"] == {k: 5 for k in keys}
    for mid, n in tiny_layers.items():
        for key in keys:
            folder = tmp_path / "store" / "wf" / "kept" / layout.pairs_dir(mid, key)
            files = sorted(folder.glob("*.parquet"))
            assert len(files) == math.ceil(n / 5) * (math.ceil(n / 5) + 1) // 2
            pairs = [tuple(r) for f in files
                     for r in pq.read_table(f, columns=["layer_a_index", "layer_b_index"]).to_pandas().to_numpy()]
            assert len(pairs) == len(set(pairs)) == n * (n - 1) // 2, (mid, key)
    with pytest.raises(ConfigError, match="tile_size=5.*has 7"):
        run_study(study_config(tiny_checkpoints, tmp_path / "store", run_id="kept",
                               **{**common, "compare": {"tile_size": 7}}), show_progress=False)
