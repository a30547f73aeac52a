from pathlib import Path

import pyarrow.parquet as pq
import pytest

from workflows.bench import bench_measures, markdown_table, measure_cases, run_bench


def test_bench_measures_times_prepare_and_compare_per_size():
    rows = bench_measures(["gw", "cka"], (16, 32), repeats=1)
    assert {(r["measure"], r["n"]) for r in rows} == {("gw", 16), ("gw", 32), ("cka", 16), ("cka", 32)}
    assert all(r["prepare_s"] >= 0 and r["compare_s"] > 0 for r in rows)
    assert all(r["iterations"] >= 1 for r in rows if r["measure"] == "gw")


def test_bench_gw_suite_times_layergw_and_pot_on_the_same_pairs(tmp_path):
    path = run_bench("gw", str(tmp_path), sizes=(24, 40), markdown=str(tmp_path / "gw.md"))
    table = pq.read_table(path).to_pandas()
    assert sorted(table["n"]) == [24, 24, 40, 40]  # two pairs at each n
    assert {"layergw_s", "pot_s", "ratio", "solver", "timestamp", "machine"} <= set(table.columns)
    assert set(table["solver"]) == {"lean"}
    assert (table["value"] - table["pot_value"]).abs().max() < 1e-9 * table["pot_value"].abs().max()
    assert (table["relative_difference"] < 1e-9).all()
    lines = (tmp_path / "gw.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines if line.startswith("| 24") or line.startswith("| 40")] == ["| 24",
                                                                                                             "| 40"]
    assert Path(path).with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_suite_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid suites: gw, gw-model, gw-batch, measures"):
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


def test_two_runs_leave_a_history_and_an_injected_regression_fails_history(tmp_path, capsys):
    import pyarrow as pa

    from layergw.store import ResultStore
    from workflows.bench_history import HISTORY, read
    from workflows.cli import main

    store = str(tmp_path / "store")
    for _ in range(2):
        assert main(["bench", "gw", "--sizes", "24", "--out", str(tmp_path / "out"), "--store", store,
                     "--repeats", "3"]) == 0
    history = read(store)
    assert history["timestamp"].nunique() >= 1 and len(history) == 4  # two figures, two runs
    assert set(history["figure"]) == {"gw seconds per pair, n=24", "POT time over layergw's, n=24"}
    assert history["code_version"].str.len().min() > 0 and history["cluster"].str.contains("cpus").all()
    assert (history["repeats"] == 3).all() and (history["low"] <= history["value"]).all()
    assert (history["value"] <= history["high"]).all()
    # the verdict on two identical runs must not hang on this machine's noise: the second run's file is
    # replaced by the first run's figures under a later stamp
    files = sorted((tmp_path / "store" / "history").glob("*.parquet"))
    assert len(files) == 2
    files[1].unlink()
    again = read(store).assign(timestamp="99991230T000000Z")
    ResultStore(store).write_table("history/99991230T000000Z-gw-again.parquet",
                                   pa.Table.from_pandas(again, schema=HISTORY, preserve_index=False))
    history = read(store)
    capsys.readouterr()
    assert main(["bench", "history", store]) == 0  # two identical runs: no flag
    out = capsys.readouterr().out
    assert "over 2 runs" in out and "REGRESSED" not in out
    assert "lower is better, so a value above the range is worse" in out
    assert "higher is better, so a value below the range is worse" in out
    assert (tmp_path / "store" / "history-report" / "index.html").is_file()

    # a third run 2x slower than the slowest repeat so far (POT's ratio half the lowest)
    slow = history.groupby("figure").tail(1).copy()
    slow["timestamp"] = "99991231T000000Z"
    edge = {f: (2.0 * g["high"].max() if f.startswith("gw seconds") else 0.5 * g["low"].min())
            for f, g in history.groupby("figure")}
    for col in ("value", "low", "high"):
        slow[col] = [edge[f] for f in slow["figure"]]
    ResultStore(store).write_table("history/99991231T000000Z-gw-injected.parquet",
                                   pa.Table.from_pandas(slow, schema=HISTORY, preserve_index=False))
    assert main(["bench", "history", store]) == 1
    captured = capsys.readouterr()
    assert "REGRESSED gw seconds per pair, n=24" in captured.out and "REGRESSED POT time" in captured.out
    assert "regressed, more than 25% beyond their history's range on the worse side" in captured.err


def test_a_figure_regresses_only_beyond_the_range_of_its_history_on_the_worse_side():
    import pandas as pd

    from workflows.bench_history import combine, trends

    def run(stamp, value, low, high, better="lower"):
        return {"timestamp": stamp, "figure": "f", "value": value, "low": low, "high": high, "unit": "s",
                "better": better}

    noisy = [run("1", 1.0, 0.5, 3.0), run("2", 1.1, 0.6, 2.0)]
    inside = trends(pd.DataFrame([*noisy, run("3", 2.9, 2.5, 3.5)]))[0]
    assert not inside.regressed and inside.change == 0.0 and (inside.low, inside.high) == (0.5, 3.0)
    spiky = trends(pd.DataFrame([*noisy, run("3", 4.5, 2.9, 9.0)]))[0]  # noise on some repeats: its best overlaps
    assert not spiky.regressed and spiky.change == 0.0
    beyond = trends(pd.DataFrame([*noisy, run("3", 4.0, 3.9, 4.1)]))[0]
    assert beyond.regressed and beyond.change == pytest.approx(0.3)
    faster = trends(pd.DataFrame([*noisy, run("3", 0.1, 0.1, 0.1)]))[0]
    assert not faster.regressed and faster.change == 0.0  # better is never a regression
    ratio = [run(s, v, v, v, better="higher") for s, v in (("1", 4.0), ("2", 1.5))]
    assert not trends(pd.DataFrame([*ratio, run("3", 1.3, 1.3, 1.3, "higher")]))[0].regressed
    assert trends(pd.DataFrame([*ratio, run("3", 1.0, 1.0, 1.0, "higher")]))[0].regressed
    figs = combine([[{"figure": "f", "value": v}] for v in (3.0, 1.0, 2.0)])
    assert figs == [{"figure": "f", "value": 2.0, "low": 1.0, "high": 3.0, "repeats": 3}]


def test_history_of_an_empty_store_says_how_to_start_one(tmp_path):
    from workflows.bench_history import read

    with pytest.raises(ValueError, match="no benchmark history under .*run `layergw bench SUITE --store"):
        read(str(tmp_path))


def test_bench_gw_model_suite_compares_pot_and_layergw_on_layer_pairs_of_model_l(tmp_path):
    from workflows.bench import model_pairs, run_bench

    source = model_pairs(count=3)
    X, Y = source(48, 0)
    assert X.shape[0] == Y.shape[0] == 48 and " / " in source.labels[0]
    path = run_bench("gw-model", str(tmp_path), sizes=(48,), markdown=str(tmp_path / "gw-model.md"))
    df = pq.read_table(path).to_pandas()
    assert len(df) == 12 and (df["n"] == 48).all() and df["layers"].nunique() > 1
    assert (df["relative_difference"] < 1e-9).all()  # the same values as POT's solver, pair by pair
    assert (df["pot_s"] > 0).all() and (df["layergw_s"] > 0).all()
    text = (tmp_path / "gw-model.md").read_text()
    assert "POT / layergw" in text
    assert source.grid_pairs == 93 * 92 // 2 and (df["grid_pairs"] == source.grid_pairs).all()
    minutes = source.grid_pairs * df["layergw_s"].mean() / 2 / 60  # the whole grid, one pair on each of two cores
    assert f"whole grid (4,278 pairs) takes about {minutes:.0f} minutes" in text


@pytest.mark.long
def test_extract_memory_suite_measures_a_task_streamed_and_in_one_pass(tmp_path):
    from workflows.bench import bench_extract_memory, rows_markdown

    texts = tmp_path / "texts.tsv"
    texts.write_text("text\tlabel\n" + "".join(f"sentence number {i} is {'good' if i % 2 else 'bad'} .\t{i % 2}\n"
                                              for i in range(60)))
    rows, figures = bench_extract_memory((40,), texts={"source": str(texts)})
    assert sorted(r["mode"] for r in rows) == ["one pass", "streamed"] and all(r["n"] == 40 for r in rows)
    assert all(r["peak_mib"] > 50 and r["samples_per_s"] > 0 for r in rows)
    assert {f["figure"] for f in figures} == {"extraction task peak RSS, n=40", "extraction samples per second, n=40"}
    assert rows_markdown(rows).startswith("| n | mode | peak_mib")


def test_bench_gw_batch_times_the_batch_against_exact_gw_on_the_same_model_l_pairs():
    from workflows.bench import bench_gw_batch, model_pairs

    rows = bench_gw_batch((64,), pairs=6, source=model_pairs(count=6), device="cpu")
    assert [(r["solver"].split()[0], r["dtype"]) for r in rows] == [("gw", "float64"), ("gw_batch", "float64"),
                                                                    ("gw_batch", "float32")]
    for r in rows:
        assert r["n"] == 64 and r["pairs"] == 6 and r["pairs_per_s"] == pytest.approx(6 / r["seconds"])
        assert 0 <= r["converged"] <= 6
    # entropic GW blurs the plans but orders Model L's layer pairs much as the exact solver does
    assert rows[1]["spearman"] > 0.7 and rows[2]["spearman"] == pytest.approx(rows[1]["spearman"], abs=0.05)


def test_a_suite_rewrites_only_its_own_table_on_a_page_of_several(tmp_path):
    from workflows.bench import write_markdown

    page = tmp_path / "perf.md"
    page.write_text("# P\n\nintro\n\n<!-- bench:gw -->\nold gw\n<!-- /bench:gw -->\n\nmiddle\n\n"
                    "<!-- bench:trainer -->\nold trainer\n<!-- /bench:trainer -->\n\nend\n")
    write_markdown(page, "gw", "Measured now.\n\n| n |\n|---|\n| 1 |\n")
    text = page.read_text()
    assert "old gw" not in text and "| 1 |" in text and "old trainer" in text
    assert text.startswith("# P\n\nintro\n\n<!-- bench:gw -->\nMeasured now.") and text.endswith("end\n")
    with pytest.raises(ValueError, match="no <!-- bench:demo --> ... <!-- /bench:demo --> block"):
        write_markdown(page, "demo", "x")
    assert page.read_text() == text  # refused: nothing written
    write_markdown(tmp_path / "alone.md", "demo", "table")
    assert (tmp_path / "alone.md").read_text() == "table"


def test_every_suite_the_performance_page_regenerates_has_its_block():
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "performance.md").read_text()
    for suite in re.findall(r"layergw bench ([a-z-]+) --markdown docs/performance\.md", page):
        assert page.count(f"<!-- bench:{suite} -->") == 1 and page.count(f"<!-- /bench:{suite} -->") == 1, suite
