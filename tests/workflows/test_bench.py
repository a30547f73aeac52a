import pyarrow.parquet as pq
import pytest

from workflows.bench import bench_measures, markdown_table, measure_cases, run_bench


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


def test_measures_suite_covers_every_measure_and_probes_get_a_target(tmp_path):
    from layergw import measures

    path = run_bench("measures", str(tmp_path), sizes=(80,), markdown=str(tmp_path / "t.md"))
    table = pq.read_table(path).to_pandas()
    assert set(table["measure"]) == set(measures.names())
    assert (table["compare_s"] > 0).all() and table["value"].notna().all()
    text = (tmp_path / "t.md").read_text()
    for name in measures.names():
        assert f"| {name} |" in text


def test_cases_add_only_supported_variants():
    cases = measure_cases(["gw", "cka"])
    assert ("gw", {}) in cases and ("gw", {"normalize": "mean"}) in cases
    assert all(name in ("gw", "cka") for name, _ in cases)


def test_markdown_table_has_one_line_per_variant():
    rows = bench_measures([("gw", {}), ("gw", {"normalize": "max"})], (8, 12), repeats=1)
    lines = markdown_table(rows).strip().splitlines()
    assert len(lines) == 4 and "prepare n=12" in lines[0] and '`{"normalize": "max"}`' in lines[3]
