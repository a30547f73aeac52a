"""Tiling of the upper triangle of a layer grid, and tile paths."""
from __future__ import annotations

from collections import Counter

import pytest

from workflows.compare import Usage, make_cross_tiles, make_tiles


@pytest.mark.parametrize("n_layers,size", [(1, 1), (2, 1), (5, 1), (5, 2), (7, 3), (8, 8), (19, 8), (38, 8),
                                            (19, 2), (10, 16), (16, 4), (17, 4)])
def test_tiles_cover_every_pair_once_and_no_diagonal(n_layers: int, size: int) -> None:
    tiles = make_tiles(n_layers, size)
    counts = Counter(p for t in tiles for p in t.pairs)
    expected = {(i, j) for i in range(n_layers) for j in range(i + 1, n_layers)}
    assert set(counts) == expected
    assert all(c == 1 for c in counts.values())
    assert all(i < j for i, j in counts)
    assert sum(len(t.pairs) for t in tiles) == n_layers * (n_layers - 1) // 2


@pytest.mark.parametrize("n_layers,size", [(5, 2), (19, 8), (38, 8), (17, 4)])
def test_tiles_stay_within_their_block_and_are_not_empty(n_layers: int, size: int) -> None:
    tiles = make_tiles(n_layers, size)
    for t in tiles:
        assert t.pairs
        assert len(t.pairs) <= size * size
        for i, j in t.pairs:
            assert t.i0 <= i < t.i0 + size
            assert t.j0 <= j < t.j0 + size
        assert t.layers == sorted({k for p in t.pairs for k in p})
        assert t.count == len(t.pairs)
        assert t.rows == sorted({i for i, _ in t.pairs}) and t.cols == sorted({j for _, j in t.pairs})
    # origins are distinct, so paths are distinct
    assert len({(t.i0, t.j0) for t in tiles}) == len(tiles)


@pytest.mark.parametrize("n_a,n_b,size", [(1, 1, 1), (5, 3, 2), (7, 11, 4), (6, 6, 8)])
def test_cross_tiles_cover_the_full_grid_once_with_their_counts_rows_and_columns(n_a: int, n_b: int, size: int) -> None:
    tiles = make_cross_tiles(n_a, n_b, size)
    counts = Counter(p for t in tiles for p in t.pairs)
    assert set(counts) == {(i, j) for i in range(n_a) for j in range(n_b)} and set(counts.values()) == {1}
    for t in tiles:
        assert t.count == len(t.pairs)
        assert t.rows == sorted({i for i, _ in t.pairs}) and t.cols == sorted({j for _, j in t.pairs})


def test_tiles_are_deterministic() -> None:
    assert make_tiles(23, 5) == make_tiles(23, 5)


@pytest.mark.parametrize("size", [0, -1])
def test_make_tiles_rejects_non_positive_size(size: int) -> None:
    with pytest.raises(ValueError, match="tile size"):
        make_tiles(5, size)


def test_usage_sums_tile_reports_into_busy_and_overhead_shares() -> None:
    usage = Usage()
    for task, compared in ((2.0, 1.5), (4.0, 3.5)):
        usage.add({"path": "t", "pairs": 3, "errors": 0, "seconds": compared, "task_seconds": task})
    usage.add([{"row": 1}])  # a targets task reports rows, not times: not counted
    got = usage.summary(wall_seconds=4.0, cpus=2)
    assert got["tasks"] == 2 and got["task_seconds"] == 6.0 and got["compare_seconds"] == 5.0
    assert got["busy_share"] == pytest.approx(6.0 / 8.0)
    assert got["overhead_share"] == pytest.approx(1 - 5.0 / 6.0, abs=1e-4)
    assert Usage().summary(wall_seconds=1.0, cpus=2)["overhead_share"] is None


def test_only_batched_measures_ask_for_a_gpu_and_only_where_there_is_one() -> None:
    from workflows.compare import tile_gpus
    from workflows.config import MeasureSpec

    batched, exact = MeasureSpec(name="gw_batch"), MeasureSpec(name="gw")
    specs = [batched, exact]
    assert tile_gpus(specs, None, cluster_gpus=8) == {batched.key: 1.0, exact.key: 0.0}
    assert tile_gpus(specs, 0.5, cluster_gpus=8) == {batched.key: 0.5, exact.key: 0.0}  # several tiles share one
    assert tile_gpus(specs, None, cluster_gpus=0) == {batched.key: 0.0, exact.key: 0.0}
