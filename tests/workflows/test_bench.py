import pyarrow.parquet as pq
import pytest

from workflows.bench import bench_measures, run_bench


def test_bench_measures_times_prepare_and_compare_per_size():
    rows = bench_measures(["gw", "cka"], (16, 32), repeats=1)
    assert {(r["measure"], r["n"]) for r in rows} == {("gw", 16), ("gw", 32), ("cka", 16), ("cka", 32)}
    assert all(r["prepare_s"] >= 0 and r["compare_s"] > 0 for r in rows)
    assert all(r["iterations"] >= 1 for r in rows if r["measure"] == "gw")


def test_bench_gw_suite_writes_parquet(tmp_path):
    path = run_bench("gw", str(tmp_path))
    table = pq.read_table(path)
    assert set(table.column("n").to_pylist()) == {64, 128, 256, 512}
    assert {"prepare_s", "compare_s", "timestamp", "machine"} <= set(table.column_names)


def test_unknown_suite_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid suites: gw, measures"):
        run_bench("nope", str(tmp_path))
